"""GPT-2's byte-level BPE tokenizer, exactly, plus our own BPE learner.

Text -> ids in three steps, each of which the workbook shows:

1. pre-tokenize: split the text with GPT-2's regex ``PAT`` into words, each carrying
   its leading space (``"Hello world"`` -> ``["Hello", " world"]``);
2. bytes -> symbols: each word's UTF-8 bytes become printable characters through
   ``bytes_to_unicode()`` (the space byte becomes ``'Ġ'``), one symbol per byte;
3. merge: repeatedly merge the adjacent pair with the lowest rank in ``merges.txt``
   until no ranked pair is left; each final symbol is one token id.

``<|endoftext|>`` written in the text is the special token 50256, not 7 tokens; this
is what Hugging Face does (OpenAI's encoder.py would split it like any text).

Text must be encodable as UTF-8: a lone surrogate (``"\\ud800"``) raises
TokenizerError. Hugging Face refuses such text too (a TypeError from its Rust core);
``surrogatepass`` would produce bytes that no UTF-8 decoder turns back into the text.
"""

from __future__ import annotations

import heapq
import json
import os
import re
import tempfile
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import regex

from .errors import TokenizerError
from .safe_io import loads_bounded, read_capped

PAT = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")
ENDOFTEXT = "<|endoftext|>"
MERGES_HEADER = "#version: 0.2"
_HEX_FORM = re.compile(r"<[0-9A-F]{2}( [0-9A-F]{2})*>")


@cache
def _byte_table() -> tuple[str, ...]:
    # printable bytes map to themselves; the other 68 (controls, space, DEL, NBSP, SHY)
    # map to chr(256), chr(257), ... in byte order, so every symbol is a visible character
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    table = [""] * 256
    for b, c in zip(bs, cs):
        table[b] = chr(c)
    return tuple(table)


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable-character map (byte 32, the space, -> 'Ġ')."""
    return dict(enumerate(_byte_table()))


def byte_symbol_order() -> list[str]:
    """The 256 byte symbols in GPT-2's id order: ids 0..255 of encoder.json ('!' is 0, 'Ġ' is 220)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    rest = [b for b in range(256) if b not in bs]
    table = _byte_table()
    return [table[b] for b in bs + rest]


def _to_symbols(word: str) -> str:  # text -> byte-level string, one character per UTF-8 byte
    table = _byte_table()
    return "".join(table[b] for b in word.encode("utf-8"))


@dataclass
class MergeStep:
    """One merge inside one word: ``pair`` (ranked ``rank`` in merges.txt) became one symbol."""

    pair: tuple[str, str]
    rank: int
    symbols: list[str]  # the word's symbols after this step


@dataclass
class WordTrace:
    """How one pre-token became ids: text -> byte symbols -> merge steps -> ids."""

    text: str
    symbols: list[str]  # initial byte-level symbols, one per UTF-8 byte
    steps: list[MergeStep] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)  # final symbols, GPT-2 form
    ids: list[int] = field(default_factory=list)


class Tokenizer:
    """A byte-level BPE tokenizer: ``encoder`` (token -> id) and ranked ``merges``."""

    def __init__(self, encoder: dict[str, int], merges: list[tuple[str, str]]):
        self.encoder = dict(encoder)
        self.decoder = {i: t for t, i in self.encoder.items()}
        self.merges = [tuple(m) for m in merges]
        self.bpe_ranks = {m: r for r, m in enumerate(self.merges)}
        self.byte_decoder = {c: b for b, c in enumerate(_byte_table())}
        self.special = {t: i for t, i in self.encoder.items() if t == ENDOFTEXT}
        self._special_re = (
            regex.compile("(" + "|".join(regex.escape(t) for t in self.special) + ")") if self.special else None
        )
        self.cache: dict[str, list[str]] = {}
        self._display: list[str] | None = None
        self._display_ids: dict[str, int] | None = None

    # ---- loading and saving ------------------------------------------------------------

    @classmethod
    def from_dir(cls, path: str | os.PathLike) -> Tokenizer:
        """Load ``vocab.json`` + ``merges.txt`` (Hugging Face) or ``encoder.json`` + ``vocab.bpe`` (OpenAI)."""
        d = Path(path)
        if not d.is_dir():
            raise TokenizerError(f"{d}: not a directory; give the model directory that holds vocab.json and merges.txt")
        for vocab_name, merges_name in (("vocab.json", "merges.txt"), ("encoder.json", "vocab.bpe")):
            if (d / vocab_name).exists() or (d / merges_name).exists():
                break
        else:
            raise TokenizerError(
                f"{d}: no tokenizer files (neither vocab.json + merges.txt nor encoder.json + vocab.bpe)"
            )
        encoder = load_vocab(d / vocab_name)
        merges = load_merges(d / merges_name)
        check(encoder, merges, d / vocab_name, d / merges_name)
        return cls(encoder, merges)

    def save(self, path: str | os.PathLike) -> list[Path]:
        """Write ``vocab.json`` and ``merges.txt`` as Hugging Face ``tokenizers`` does; returns the two paths."""
        d = Path(path)
        d.mkdir(parents=True, exist_ok=True)
        vocab = {t: i for t, i in sorted(self.encoder.items(), key=lambda kv: kv[1])}
        vocab_text = json.dumps(vocab, ensure_ascii=False, separators=(",", ":"))
        merges_text = MERGES_HEADER + "\n" + "".join(f"{a} {b}\n" for a, b in self.merges)
        return [_write_atomic(d / "vocab.json", vocab_text), _write_atomic(d / "merges.txt", merges_text)]

    # ---- the vocabulary ----------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        return max(self.decoder) + 1 if self.decoder else 0

    def token_str(self, i: int) -> str:
        """GPT-2's byte-level form of token ``i``, e.g. 'Ġquick'."""
        self._check_id(i)
        return self.decoder[i]

    def token_bytes(self, i: int) -> bytes:
        self._check_id(i)
        t = self.decoder[i]
        if t in self.special:
            return t.encode("utf-8")
        return bytes(self.byte_decoder[c] for c in t)

    def display(self, i: int) -> str:
        """Readable, printable and unique: ' quick' (real leading space), or '<E2 80>' for bytes that are not
        clean text."""
        self._check_id(i)
        return self.display_table()[i]

    def display_table(self) -> list[str]:
        """``display(i)`` for every id, computed once."""
        if self._display is None:
            self._display = [
                display_text(self.token_bytes(i)) if i in self.decoder else f"<unused {i}>"
                for i in range(self.vocab_size)
            ]
            self._display_ids = {s: i for i, s in enumerate(self._display)}
        return self._display

    def display_ids(self) -> dict[str, int]:
        """``display(i)`` -> i for every id (the texts are unique)."""
        self.display_table()
        return dict(self._display_ids)

    def id_for_display(self, text: str) -> int | None:
        self.display_table()
        return self._display_ids.get(text)

    def _check_id(self, i: int) -> None:
        if i not in self.decoder:
            raise TokenizerError(f"token id {i} is not in the vocabulary (ids are 0..{self.vocab_size - 1})")

    # ---- encoding ----------------------------------------------------------------------

    def _split_special(self, text: str) -> list[str]:  # text -> pieces; special tokens stand alone
        if self._special_re is None:
            return [text]
        return [p for p in self._special_re.split(text) if p]

    def pretokenize(self, text: str) -> list[str]:
        """GPT-2's pre-tokens of ``text``; ``<|endoftext|>`` is a pre-token of its own."""
        words = []
        for piece in self._split_special(text):
            words.extend([piece] if piece in self.special else PAT.findall(piece))
        return words

    def bpe(self, symbols: str) -> list[str]:
        """Merge a byte-level word (e.g. 'Ġquick') into its final tokens; cached."""
        if symbols not in self.cache:
            steps = list(self._merge_steps(list(symbols)))
            self.cache[symbols] = steps[-1][2] if steps else list(symbols)
        return self.cache[symbols]

    def _merge_steps(self, word: list[str]) -> Iterable[tuple[tuple[str, str], int, list[str]]]:
        # GPT-2's loop: take the lowest-ranked adjacent pair, merge all its occurrences left to right
        while len(word) > 1:
            ranked = [(self.bpe_ranks[p], p) for p in zip(word, word[1:]) if p in self.bpe_ranks]
            if not ranked:
                return
            rank, (a, b) = min(ranked)
            new, i = [], 0
            while i < len(word):
                if i < len(word) - 1 and word[i] == a and word[i + 1] == b:
                    new.append(a + b)
                    i += 2
                else:
                    new.append(word[i])
                    i += 1
            word = new
            yield (a, b), rank, word

    def encode(self, text: str) -> list[int]:
        """Text -> token ids, exactly as GPT-2 (and Hugging Face) tokenize it."""
        _check_utf8(text)
        ids = []
        for w in self.pretokenize(text):
            if w in self.special:
                ids.append(self.special[w])
            else:
                ids.extend(self._lookup(self.bpe(_to_symbols(w)), w))
        return ids

    def _lookup(self, tokens: list[str], word: str) -> list[int]:
        try:
            return [self.encoder[t] for t in tokens]
        except KeyError as e:
            raise TokenizerError(
                f"token {e.args[0]!r} of word {word!r} is not in the vocabulary; the tokenizer files are inconsistent"
            ) from None

    def trace(self, text: str) -> list[WordTrace]:
        """Each pre-token with its byte symbols, every merge step (pair, rank, symbols after) and ids."""
        _check_utf8(text)
        out = []
        for w in self.pretokenize(text):
            if w in self.special:
                out.append(WordTrace(w, [w], [], [w], [self.special[w]]))
                continue
            symbols = list(_to_symbols(w))
            steps = [MergeStep(pair, rank, list(word)) for pair, rank, word in self._merge_steps(symbols)]
            tokens = steps[-1].symbols if steps else symbols
            out.append(WordTrace(w, symbols, steps, list(tokens), self._lookup(tokens, w)))
        return out

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        return b"".join(self.token_bytes(int(i)) for i in ids)

    def decode(self, ids: Iterable[int]) -> str:
        """Ids -> text; byte sequences that are not valid UTF-8 become U+FFFD, as in GPT-2."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")


def _check_utf8(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise TokenizerError(
            f"the text has a lone surrogate U+{ord(text[e.start]):04X} at character {e.start}, "
            "which UTF-8 cannot encode; remove it or decode the source with errors='replace'"
        ) from None


def display_text(b: bytes) -> str:
    """Bytes as the book and the CLI show them: the text if it is printable UTF-8, else '<E2 80>'."""
    try:
        text = b.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and text and text.isprintable() and not _HEX_FORM.fullmatch(text):
        return text
    return "<" + " ".join(f"{x:02X}" for x in b) + ">"


# ---- reading and checking tokenizer files ------------------------------------------------


MAX_TOKENIZER_FILE_BYTES = 64_000_000  # GPT-2's vocab.json is 1.0 MB and merges.txt 0.46 MB


def load_vocab(path: Path) -> dict[str, int]:
    if not path.exists():
        raise TokenizerError(f"{path}: missing; the tokenizer needs it")
    data = read_capped(path, MAX_TOKENIZER_FILE_BYTES, "the tokenizer needs it", TokenizerError)
    vocab = loads_bounded(data, str(path), TokenizerError)
    if not isinstance(vocab, dict):
        raise TokenizerError(f"{path}: expected a JSON object mapping token -> id, got a {type(vocab).__name__}")
    for t, i in vocab.items():
        if not isinstance(i, int) or isinstance(i, bool) or i < 0:
            raise TokenizerError(f"{path}: token {t!r} has id {i!r}; ids must be integers >= 0")
    return vocab


def load_merges(path: Path) -> list[tuple[str, str]]:
    if not path.exists():
        raise TokenizerError(f"{path}: missing; the tokenizer needs it")
    data = read_capped(path, MAX_TOKENIZER_FILE_BYTES, "the tokenizer needs it", TokenizerError)
    try:
        lines = data.decode("utf-8").split("\n")
    except UnicodeDecodeError as e:
        raise TokenizerError(f"{path}: not UTF-8 text (byte {e.start})") from None
    merges = []
    for n, line in enumerate(lines, 1):
        line = line.rstrip("\r")
        if (n == 1 and line.startswith("#version")) or not line:
            continue
        parts = line.split(" ")
        if len(parts) != 2 or not all(parts):
            raise TokenizerError(f"{path}, line {n}: a merge is two tokens separated by one space, got {line[:60]!r}")
        merges.append((parts[0], parts[1]))
    return merges


def check(encoder: dict[str, int], merges: list[tuple[str, str]], vocab_path: Path, merges_path: Path) -> None:
    """Raise TokenizerError (one line, naming the file) unless vocabulary and merges fit together."""
    seen: dict[int, str] = {}
    for t, i in encoder.items():
        if i in seen:
            raise TokenizerError(f"{vocab_path}: id {i} is used twice ({seen[i]!r} and {t!r})")
        seen[i] = t
    top = max(seen, default=-1)
    if top != len(encoder) - 1:  # unique ids >= 0: they are 0..N-1 exactly when the largest is N-1
        raise TokenizerError(
            f"{vocab_path}: the largest id is {top:,} but there are {len(encoder):,} tokens; "
            "ids must run from 0 to the number of tokens - 1, without gaps"
        )
    for b, c in enumerate(_byte_table()):
        if c not in encoder:
            raise TokenizerError(
                f"{vocab_path}: byte symbol {c!r} (byte 0x{b:02X}) is missing; byte-level BPE needs all 256"
            )
    ranks: dict[tuple[str, str], int] = {}
    byte_chars = set(_byte_table())
    for r, (a, b) in enumerate(merges):
        n = r + 2  # line number, after the #version header
        if (a, b) in ranks:
            raise TokenizerError(f"{merges_path}, line {n}: merge {a!r} + {b!r} repeats line {ranks[(a, b)] + 2}")
        ranks[(a, b)] = r
        for part in (a, b):
            if part not in encoder:
                raise TokenizerError(f"{merges_path}, line {n}: {part!r} is not in the vocabulary {vocab_path.name}")
            if not set(part) <= byte_chars:
                raise TokenizerError(f"{merges_path}, line {n}: {part!r} is not made of byte-level symbols")
        if a + b not in encoder:
            raise TokenizerError(
                f"{merges_path}, line {n}: the merge result {a + b!r} is not in the vocabulary {vocab_path.name}"
            )


def _write_atomic(path: Path, text: str) -> Path:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


# ---- learning merges ---------------------------------------------------------------------


def bpe_learn(
    text: str,
    vocab_size: int,
    *,
    on_merge: Callable[[int, tuple[str, str], str, int], None] | None = None,
) -> Tokenizer:
    """Learn byte-level BPE on ``text`` with GPT-2's pre-tokenization.

    Ids 0..255 are the byte symbols in GPT-2's order, then one id per merge, then
    ``<|endoftext|>`` last, so ``vocab_size = 256 + merges + 1`` (GPT-2: 50257). Each step
    merges the adjacent pair that occurs most often inside pre-tokens (every occurrence
    counts, so 'aaa' holds ('a', 'a') twice; weighted by word frequency). Ties go to the
    pair with the smallest (left id, right id). Both rules are those of Hugging Face's
    ``tokenizers`` BpeTrainer, whose merges the tests compare with ours. ``<|endoftext|>``
    in the text is plain text here. Stops early when no pair is left.
    ``on_merge(rank, pair, new_token, count)`` is called per merge.

    Pair counts are kept incrementally: a merge only revisits the words that hold the
    pair, and a heap with lazy deletion finds the next best pair.
    """
    if vocab_size < 257:
        raise TokenizerError(
            f"vocab_size {vocab_size} is too small: it must be at least 257 (256 bytes + <|endoftext|>)"
        )
    _check_utf8(text)
    symbols = byte_symbol_order()
    sym_id = {s: i for i, s in enumerate(symbols)}
    word_freq = Counter(_to_symbols(w) for w in PAT.findall(text))
    words = [[sym_id[c] for c in w] for w in word_freq]
    freqs = list(word_freq.values())

    counts: Counter = Counter()  # (left id, right id) -> weighted count
    where: defaultdict = defaultdict(set)  # pair -> indices of words holding it
    for wi, (w, f) in enumerate(zip(words, freqs)):
        for p in zip(w, w[1:]):
            counts[p] += f
            where[p].add(wi)
    heap = [(-c, p) for p, c in counts.items()]
    heapq.heapify(heap)

    merges: list[tuple[str, str]] = []
    while len(symbols) < vocab_size - 1 and heap:
        c, pair = heapq.heappop(heap)
        if counts.get(pair, 0) != -c:  # stale entry; the current count was pushed again
            continue
        if c == 0:
            break
        a, b = pair
        new = len(symbols)
        symbols.append(symbols[a] + symbols[b])
        merges.append((symbols[a], symbols[b]))
        if on_merge:
            on_merge(len(merges) - 1, (symbols[a], symbols[b]), symbols[new], -c)
        changed = set()
        for wi in where.pop(pair):
            w, f = words[wi], freqs[wi]
            for p in zip(w, w[1:]):
                counts[p] -= f
                changed.add(p)
            out, i = [], 0
            while i < len(w):
                if i < len(w) - 1 and w[i] == a and w[i + 1] == b:
                    out.append(new)
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            words[wi] = out
            for p in zip(out, out[1:]):
                counts[p] += f
                where[p].add(wi)
                changed.add(p)
        for p in changed:
            if counts[p] > 0:
                heapq.heappush(heap, (-counts[p], p))
            else:
                counts.pop(p, None)
                where.pop(p, None)
    symbols.append(ENDOFTEXT)
    return Tokenizer({s: i for i, s in enumerate(symbols)}, merges)
