"""The prompt of a book, tokenized once: its text, GPT-2's words, the token rows' ids and texts.

``make_prompt`` (``sheetgpt build``) and ``read_typed_prompt`` (``sheetgpt check``, on the text
typed into a book) run the tokenizer once and return a :class:`Prompt`; the writer, the tabs,
the reference's typed-prompt stages and the checker all read that value.

A typed-prompt book tokenizes its text with formulas (the ``BPE`` tab) within sizes fixed
at build time (:class:`TypedLimits`); :meth:`Prompt.problem` says why a text does not fit
them, in the words the sheet's own message uses, and :meth:`Prompt.bpe_reference` gives
the values the BPE tab's checked regions must hold.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import regex

from .errors import SheetGPTError
from .tokenizer import ENDOFTEXT, Tokenizer, WordTrace

TYPED_CONTEXT = 16  # token rows of a typed-prompt book when --context is not given (or the prompt's length)

# Character classes as the BPE tab numbers them (0: past the end of the text).
LETTER, DIGIT, SPACE, OTHER, UNKNOWN = 1, 2, 3, 4, 9
CLASS_NAMES = {LETTER: "letter", DIGIT: "digit", SPACE: "whitespace", OTHER: "other", UNKNOWN: "not supported"}
# Code points the formulas know: newline and Latin-1's printable characters. (CR cannot be stored
# in a cell's XML text; a TAB written into the bytes tab does not read back equal to a typed TAB in
# LibreOffice 7.4 (measured: every text with a TAB missed), so TAB is refused with the message; the
# other controls cannot be typed.)
SUPPORTED = [10] + list(range(32, 127)) + list(range(160, 256))


def char_class(code: int) -> int:
    """The class of a code point as GPT-2's pre-tokenizer sees it: letter, digit, whitespace, other."""
    ch = chr(code)
    if code not in SUPPORTED:
        return UNKNOWN
    if regex.fullmatch(r"\p{L}", ch):
        return LETTER
    if regex.fullmatch(r"\p{N}", ch):
        return DIGIT
    if regex.fullmatch(r"\s", ch):
        return SPACE
    return OTHER


@dataclass(frozen=True)
class TypedLimits:
    """Sizes of the BPE tab, fixed at build time."""

    max_chars: int
    max_words: int
    max_word_bytes: int
    n_merges: int = 0  # the merges tab's rows (the tokenizer's merges)

    @property
    def rounds(self) -> int:
        return max(self.max_word_bytes - 1, 0)


@dataclass
class Prompt:
    """The token rows of a book and where they came from."""

    text: str
    words: list[WordTrace]  # GPT-2's pre-tokens, each with its byte symbols, merge steps and ids
    ids: list[int]  # one per token row: the prompt's tokens, then <|endoftext|> as padding
    texts: list[str]  # each row's token as the book shows it (Tokenizer.display)
    n_prompt: int  # rows that hold the prompt's tokens
    typed: TypedLimits | None = None  # a typed-prompt book: the BPE tab's sizes
    pad: int = -1  # the id that fills the BPE tab's rows after the prompt (<|endoftext|>)

    def continued(self, ids: list[int], tokenizer: Tokenizer) -> Prompt:
        """The same prompt with its rows' ids (and texts) replaced, e.g. by a generated continuation."""
        return replace(self, ids=list(ids), texts=[tokenizer.display(i) for i in ids])

    @property
    def predict_after(self) -> int:
        """The position whose next token the book predicts: the prompt's last token."""
        return self.n_prompt - 1

    @property
    def longest_word(self) -> int:
        """UTF-8 bytes of the prompt's longest word (0 for no words)."""
        return max((len(w.text.encode("utf-8")) for w in self.words), default=0)

    def problem(self, limits: TypedLimits, rows: int) -> str | None:
        """Why the BPE tab cannot tokenize this text (the sheet's own message), or None if it can."""
        text = self.text
        if not text:
            return "the text is empty"
        if len(text) > limits.max_chars:
            return f"{len(text)} characters, more than the {limits.max_chars} this book tokenizes"
        bad = [c for c in text if ord(c) not in SUPPORTED]
        if bad:
            return f"the character {bad[0]!r} (U+{ord(bad[0]):04X}) is not one the formulas classify (Latin-1 only)"
        if ENDOFTEXT in text:
            return f"{ENDOFTEXT} is a special token the formulas do not handle"
        if len(self.words) > limits.max_words:
            return f"{len(self.words)} words, more than the {limits.max_words} this book has rows for"
        if self.longest_word > limits.max_word_bytes:
            return f"a word of {self.longest_word} bytes, more than the {limits.max_word_bytes} this book merges"
        if self.n_prompt > rows:
            return f"{self.n_prompt} tokens, more than the book's {rows} token rows"
        return None

    def bpe_reference(self) -> dict[str, np.ndarray]:
        """The BPE tab's checked regions: each character's class and word number, the token count and ids."""
        n_chars = self.typed.max_chars
        cls = np.zeros((n_chars, 1))
        word = np.zeros((n_chars, 1))
        k = 0
        for number, w in enumerate(self.words, start=1):
            for ch in w.text:
                cls[k, 0] = char_class(ord(ch))
                word[k, 0] = number
                k += 1
        word[k:, 0] = word[k - 1, 0] if k else 0
        return {
            "bpe.class": cls,
            "bpe.word": word,
            "bpe.ids": np.array(
                self.ids[: self.n_prompt] + [self.pad] * (len(self.ids) - self.n_prompt), dtype=np.float64
            )[:, None],
            "bpe.count": np.array([[self.n_prompt]], float),
        }


def _rows(text: str, words: list[WordTrace], rows: int, tokenizer: Tokenizer, typed: TypedLimits | None) -> Prompt:
    ids = [i for w in words for i in w.ids]
    pad = tokenizer.vocab_size - 1  # <|endoftext|> fills rows after the prompt; causal attention ignores them
    all_ids = ids + [pad] * (rows - len(ids))
    return Prompt(text, words, all_ids, [tokenizer.display(i) for i in all_ids], len(ids), typed, pad)


def make_prompt(
    text: str, tokenizer: Tokenizer, n_positions: int, *, context: int | None = None, typed: bool | None = False
) -> Prompt:
    """The prompt of a book being built: ``context`` token rows (default: the prompt's length).

    ``typed`` True: a typed-prompt book (an error if the BPE formulas cannot tokenize the text);
    None: typed when they can (Latin-1 text, no <|endoftext|>); False: token rows only.
    """
    if not text or not text.strip():
        raise SheetGPTError("the prompt is empty; give some text with --prompt")
    words = tokenizer.trace(text)
    prompt = _rows(text, words, 0, tokenizer, None)
    n = prompt.n_prompt
    if typed is not False:
        rows = context or min(max(n, TYPED_CONTEXT), n_positions)
        limits = TypedLimits(max(4 * rows, len(text)), rows, max(16, prompt.longest_word), len(tokenizer.merges))
        why = prompt.problem(limits, rows) if n <= rows else None
        if why is not None and typed:
            raise SheetGPTError(
                f"--typed-prompt: the BPE formulas cannot tokenize this prompt ({why}); use --no-typed-prompt"
            )
        if why is None and n <= rows:
            return _rows(text, words, rows, tokenizer, limits)
    limit = min(context or n_positions, n_positions)
    if n > limit:
        if context and context < n_positions:
            raise SheetGPTError(
                f"the prompt is {n} tokens, more than --context {context}; shorten it or raise --context"
            )
        raise SheetGPTError(f"the prompt is {n} tokens, more than the model's n_positions ({n_positions}); shorten it")
    return _rows(text, words, context or n, tokenizer, None)


def read_typed_prompt(text: str, tokenizer: Tokenizer, limits: TypedLimits, rows: int) -> Prompt:
    """The prompt a typed-prompt book's formulas make of ``text``; ask ``problem(limits, rows)`` before using it."""
    return _rows(text, tokenizer.trace(text), rows, tokenizer, limits)
