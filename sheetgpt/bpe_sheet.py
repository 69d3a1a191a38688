"""The typed prompt: GPT-2's tokenizer as classic formulas on a ``BPE`` tab.

The learner types any text into one cell (``Prompt!B4``); the ``BPE`` tab turns it into
token ids in four sections, each a block of ordinary formulas:

1. **characters**, one row per character: ``MID`` takes it out of the text, an exact
   (case-sensitive) lookup in the ``bytes`` tab gives its code point, class (letter, digit,
   whitespace, other) and GPT-2 byte symbols; GPT-2's pre-tokenization regex
   ``'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+``
   decides for each character from it and its neighbours (up to three rows above, one below)
   whether it starts a match: a class change; a contraction, which the regex only tries where
   a match starts (at the start, after a letter, digit or whitespace other than U+0020), or
   the character after one; U+0020 before a letter, digit or other joins that word; of
   several whitespace characters before a non-space the last starts a new match. No row
   reads its own column above except the word's byte symbols so far, so the section is a
   few vectorized steps, not one step per character;
2. **words**, one row per pre-token: its text, its UTF-8 byte symbols and their vocab ids;
3. **merge rounds**, one block per round: every adjacent pair's rank is looked up by a
   numeric key (left id x V + right id) in the ``merges`` tab, the best-ranked pair is
   merged everywhere in the word (left to right, no overlaps) and the word is compacted;
4. **tokens**: the final ids of all words, in order, padded with ``<|endoftext|>``.

The sizes are fixed when the book is built (:class:`TypedLimits`), shown on the tab, and a
text outside them (or with a character the formulas do not classify: only Latin-1 is known)
shows a message asking to rebuild with ``sheetgpt build --prompt`` instead of wrong tokens.

:func:`reference` computes the checked regions (character classes, word numbers, ids) in
Python from :class:`sheetgpt.tokenizer.Tokenizer`, for ``sheetgpt check``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
import regex
from xlsxwriter.utility import xl_col_to_name

from .tokenizer import ENDOFTEXT, PAT, Tokenizer, _byte_table

# Character classes as the sheet numbers them (0: past the end of the text).
LETTER, DIGIT, SPACE, OTHER, UNKNOWN = 1, 2, 3, 4, 9
CLASS_NAMES = {LETTER: "letter", DIGIT: "digit", SPACE: "whitespace", OTHER: "other", UNKNOWN: "not supported"}
BIG = 1_000_000_000  # "no rank": larger than any merge rank
# Code points the formulas know: newline and Latin-1's printable characters. (CR cannot be stored
# in a cell's XML text; a TAB written into the bytes tab does not read back equal to a typed TAB in
# LibreOffice 7.4 (measured: every text with a TAB missed), so TAB is refused with the message; the
# other controls cannot be typed.)
SUPPORTED = [10] + list(range(32, 127)) + list(range(160, 256))
REBUILD_MESSAGE = 'Rebuild the book with: sheetgpt build --prompt "your text"'

TAB = "BPE"
MERGES = "merges"
BYTES = "bytes"
# The Guide's configuration rows that record the limits (in TypedLimits' field order).
GUIDE_LABELS = (
    "typed prompt: max characters",
    "typed prompt: max words",
    "typed prompt: max bytes per word",
    "typed prompt: merges",
)


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


def char_class(code: int) -> int:
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


def char_table() -> list[tuple[int, str, int, str]]:
    """Per code point 0..255: (code, the character or '' if not supported, class, GPT-2 byte symbols)."""
    table = _byte_table()
    rows = []
    for code in range(256):
        ok = code in SUPPORTED
        symbols = "".join(table[b] for b in chr(code).encode("utf-8"))
        rows.append((code, chr(code) if ok else "", char_class(code), symbols if ok else ""))
    return rows


def default_limits(T: int, n_merges: int, text: str = "") -> TypedLimits:
    """Room for the book's T token rows: 4 characters a token, T words, 16 bytes a word (more if the prompt needs it)."""
    longest = max((len(w.encode("utf-8")) for w in PAT.findall(text)), default=0)
    return TypedLimits(max(4 * T, len(text)), T, max(16, longest), n_merges)


def problem(text: str, tokenizer: Tokenizer, limits: TypedLimits, T: int) -> str | None:
    """Why the BPE tab cannot tokenize ``text`` (the sheet's own message), or None if it can."""
    if not text:
        return "the text is empty"
    if len(text) > limits.max_chars:
        return f"{len(text)} characters, more than the {limits.max_chars} this book tokenizes"
    bad = [c for c in text if ord(c) not in SUPPORTED]
    if bad:
        return f"the character {bad[0]!r} (U+{ord(bad[0]):04X}) is not one the formulas classify (Latin-1 only)"
    if ENDOFTEXT in text:
        return f"{ENDOFTEXT} is a special token the formulas do not handle"
    words = tokenizer.pretokenize(text)
    if len(words) > limits.max_words:
        return f"{len(words)} words, more than the {limits.max_words} this book has rows for"
    longest = max(len(w.encode("utf-8")) for w in words)
    if longest > limits.max_word_bytes:
        return f"a word of {longest} bytes, more than the {limits.max_word_bytes} this book merges"
    n = len(tokenizer.encode(text))
    if n > T:
        return f"{n} tokens, more than the book's {T} token rows"
    return None


def reference(text: str, tokenizer: Tokenizer, limits: TypedLimits, T: int) -> dict[str, np.ndarray]:
    """The checked regions of the BPE tab, computed with the tokenizer: classes, word numbers, ids."""
    N = limits.max_chars
    cls = np.zeros((N, 1))
    word = np.zeros((N, 1))
    k = 0
    for w_index, w in enumerate(tokenizer.pretokenize(text), start=1):
        for ch in w:
            cls[k, 0] = char_class(ord(ch))
            word[k, 0] = w_index
            k += 1
    word[k:, 0] = word[k - 1, 0] if k else 0
    ids = tokenizer.encode(text)
    pad = tokenizer.vocab_size - 1
    padded = np.array(ids + [pad] * (T - len(ids)), dtype=np.float64)[:, None]
    return {"bpe.class": cls, "bpe.word": word, "bpe.ids": padded, "bpe.count": np.array([[len(ids)]], float)}


# ----------------------------------------------------------------------------- the sheet


@cache
def _letters(c: int) -> str:
    return xl_col_to_name(c)


def _a1(r: int, c: int, row_abs: bool = False, col_abs: bool = False) -> str:
    """A1 reference of 0-based (r, c), as xl_rowcol_to_cell (called ~200,000 times for a 64-row tab)."""
    return f"{'$' if col_abs else ''}{_letters(c)}{'$' if row_abs else ''}{r + 1}"


def _span(r0: int, c0: int, r1: int, c1: int) -> str:
    return f"{_a1(r0, c0, True, True)}:{_a1(r1, c1, True, True)}"


@dataclass
class Cell:
    """One cell of the BPE tab: a label, a number or a formula."""

    row: int
    col: int
    kind: str  # "label", "title", "note", "header", "slot", "number", "formula"
    # ("slot": a header that is a number, shown through its format, e.g. 3 as "rank 3", so that
    # formulas below it can use it: one formula for every column of a group)
    content: object
    fmt: str = ""  # number format for formulas, "" = general


class BpeSheet:
    """Where every cell of the BPE, merges and bytes tabs is, and its formula.

    ``V`` is the vocabulary size, ``M`` the number of merges, ``T`` the token rows,
    ``vocab`` the vocab tab's name (column B display text, column C GPT-2 form).
    """

    # summary block (0-based rows, value in column B)
    STATUS, TEXT, N_ROW, W_ROW, L_ROW, T_ROW, CHARS, WORDS, LONGEST, COUNT, OK = range(2, 13)
    CHAR_TOP = 17  # first character row (title 14, explanation 15, headers 16)
    # character section columns
    K, CH, CODE, CLS, CLEN, CSTART, PART, START, WORD, WSTART, SYM, CUMSYM, NBYTES, CUMTXT = range(14)

    def __init__(self, limits: TypedLimits, T: int, V: int, M: int, prompt_tab: str, vocab: str):
        self.lim, self.T, self.V, self.M = limits, T, V, M
        self.N, self.W, self.L = limits.max_chars, limits.max_words, limits.max_word_bytes
        self.R = limits.rounds
        self.prompt_tab, self.vocab = prompt_tab, vocab
        self.word_top = self.CHAR_TOP + self.N + 4  # first word row
        self.slot0 = 6  # word section: column of the first round-0 slot (ids), then L token texts
        # merge rounds: block r (1..R) starts below the previous one
        self.round_tops = [self.word_top + self.W + 4 + (r - 1) * (self.W + 4) for r in range(1, self.R + 1)]
        # columns of a round block: A w, B best rank, C merged id, D merged token, then groups of L
        self.g_rank, self.g_merge, self.g_pos, self.g_new, self.g_tok = (5 + k * (self.L + 1) for k in range(5))
        after = (self.round_tops[-1] if self.R else self.word_top) + self.W + 4
        self.tokword_top = after  # per word: tokens, first token
        self.token_top = after + self.W + 4  # per token: word, id, GPT-2 form, display text

    # ---- references --------------------------------------------------------------------
    def v(self, row: int) -> str:
        """A summary value: $B$5."""
        return _a1(row, 1, True, True)

    @property
    def text(self) -> str:
        return self.v(self.TEXT)

    def chars(self, col: int) -> str:
        return _span(self.CHAR_TOP, col, self.CHAR_TOP + self.N - 1, col)

    def bytes_col(self, col: int) -> str:  # bytes tab, rows 2..257 (code point / byte + 1)
        return f"{BYTES}!{_span(1, col, 256, col)}"

    def merges_col(self, col: int) -> str:
        return f"{MERGES}!{_span(1, col, self.M, col)}"

    def vocab_col(self, col: int) -> str:
        return f"{self.vocab}!{_span(0, col, self.V - 1, col)}"

    def slots(self, row: int, first_col: int) -> str:
        """One word's L slots in a row, columns absolute: $G20:$V20."""
        return f"{_a1(row, first_col, False, True)}:{_a1(row, first_col + self.L - 1, False, True)}"

    def final_block(self) -> str:
        top, col = (self.round_tops[-1], self.g_new) if self.R else (self.word_top, self.slot0)
        return _span(top, col, top + self.W - 1, col + self.L - 1)

    def final_count(self, w: int) -> str:
        """Tokens of word w after the last round (its last position count, or round 0's)."""
        return _a1(self.round_tops[-1] + w, self.g_pos + self.L - 1, True, True)

    # ---- the cells ---------------------------------------------------------------------
    def cells(self) -> list[Cell]:
        out: list[Cell] = []
        self._summary(out)
        self._characters(out)
        self._words(out)
        for r in range(1, self.R + 1):
            self._round(out, r)
        self._tokens(out)
        return out

    def _frame(self, out, top: int, title: str, note: str, headers: list[tuple[int, str]]) -> None:
        out.append(Cell(top - 3, 0, "title", title))
        out.append(Cell(top - 2, 0, "note", note))
        for c, h in headers:
            out.append(Cell(top - 1, c, "header", h))

    def _slots(self, out, top: int, first_col: int, name: str) -> str:
        """Headers 1..L over a group of L columns (numbers shown as "name 1", ...); returns
        their range, fully absolute."""
        for j in range(self.L):
            out.append(Cell(top - 1, first_col + j, "slot", j + 1, f'"{name} "0'))
        return _span(top - 1, first_col, top - 1, first_col + self.L - 1)

    def _summary(self, out) -> None:
        N, W, L, T = self.N, self.W, self.L, self.T
        out.append(Cell(0, 0, "title", "BPE: the typed text becomes GPT-2 tokens, in formulas"))
        out.append(
            Cell(
                1,
                0,
                "note",
                "Characters -> words (GPT-2's pre-tokenizer) -> UTF-8 byte symbols -> merge "
                "rounds (lowest-ranked pair of the merges tab first) -> token ids.",
            )
        )
        t = self.text
        REBUILD = REBUILD_MESSAGE.replace('"', '""')  # a quote inside a formula's string is doubled
        cls, code = self.chars(self.CLS), self.chars(self.CODE)
        first_bad = f"MATCH({UNKNOWN},{cls},0)"
        msg = (
            f'IF(LEN({t})=0,"Type some text into the yellow cell Prompt!B4.",'
            f'IF(LEN({t})>{N},"Too long: "&LEN({t})&" characters; this book tokenizes at most {N}. {REBUILD}",'
            f'IF(MAX({cls})={UNKNOWN},"The character "&MID({t},{first_bad},1)&" at position "&{first_bad}&'
            f'" is one these formulas cannot classify (they know Latin-1 text). {REBUILD}",'
            f'IF(MIN({self.chars(self.CLEN)})<0,"{ENDOFTEXT} is a special token these formulas do not handle. {REBUILD}",'
            f'IF({self.v(self.WORDS)}>{W},"Too many words: "&{self.v(self.WORDS)}&"; this book has rows for {W}. {REBUILD}",'
            f'IF({self.v(self.LONGEST)}>{L},"A word of "&{self.v(self.LONGEST)}&" bytes; this book merges words of at '
            f'most {L}. {REBUILD}",'
            f'IF({self.v(self.COUNT)}>{T},"Too many tokens: "&{self.v(self.COUNT)}&"; the book has {T} token rows. '
            f'{REBUILD}","OK: "&LEN({t})&" characters, "&{self.v(self.WORDS)}&" words, "&{self.v(self.COUNT)}&'
            f'" tokens; the model predicts the token after position "&({self.v(self.COUNT)}-1)&".")))))))'
        )
        del code
        rows = [
            (self.STATUS, "status", "formula", msg),
            (self.TEXT, "text (from Prompt!B4)", "formula", f'""&{quote_tab(self.prompt_tab)}$B$4'),
            (self.N_ROW, "max characters", "number", N),
            (self.W_ROW, "max words", "number", W),
            (self.L_ROW, "max bytes per word", "number", L),
            (self.T_ROW, "token rows", "number", T),
            (self.CHARS, "characters", "formula", f"LEN({t})"),
            (self.WORDS, "words", "formula", f"MAX({self.chars(self.WORD)})"),
            (self.LONGEST, "longest word (bytes)", "formula", f"MAX({self.chars(self.NBYTES)})"),
            (self.COUNT, "tokens", "formula", "+".join(self.final_count(w) for w in range(self.W)) if self.W else "0"),
            (
                self.OK,
                "ok (1) or not (0)",
                "formula",
                f"IF(AND(LEN({t})>=1,LEN({t})<={N},MAX({cls})<{UNKNOWN},MIN({self.chars(self.CLEN)})>=0,"
                f"{self.v(self.WORDS)}<={W},{self.v(self.LONGEST)}<={L},{self.v(self.COUNT)}<={T}),1,0)",
            ),
        ]
        for r, label, kind, content in rows:
            out.append(Cell(r, 0, "label", label))
            out.append(
                Cell(r, 1, kind, content, "0" if kind == "formula" and r != self.STATUS and r != self.TEXT else "")
            )

    def _characters(self, out) -> None:
        top, N, t = self.CHAR_TOP, self.N, self.text
        self._frame(
            out,
            top,
            "1. Characters and GPT-2's pre-tokenizer",
            "Each character's class from the bytes tab (1 letter, 2 digit, 3 whitespace, 4 other). A word "
            "starts where GPT-2's regex starts a match, decided from this character and its neighbours: "
            "a class change, a contraction ('s 't 're 've 'm 'll 'd) or its end, a space that joins the "
            "next word, the last of several whitespace characters.",
            [
                (0, "k"),
                (1, "char"),
                (2, "code"),
                (3, "class"),
                (4, "contraction"),
                (5, "contraction starts"),
                (6, "in contraction"),
                (7, "starts word"),
                (8, "word"),
                (9, "word starts at"),
                (10, "byte symbols"),
                (11, "word so far (symbols)"),
                (12, "bytes in word"),
                (13, "word so far (text)"),
            ],
        )
        ks = self.chars(self.K)
        for i in range(N):
            r = top + i
            a = lambda c, dr=0: _a1(r + dr, c)  # noqa: E731
            k = a(self.K)
            mid2, mid3 = f"MID({t},{k},2)", f"MID({t},{k},3)"
            out.append(Cell(r, self.K, "number", i + 1))
            out.append(Cell(r, self.CH, "formula", f"MID({t},{k},1)"))
            # the code point of the one bytes-tab character EXACTly equal (case-sensitive, unlike
            # MATCH); none: -2. SUMPRODUCT evaluates EXACT over the range without CSE.
            out.append(
                Cell(
                    r,
                    self.CODE,
                    "formula",
                    f'IF({a(self.CH)}="",-1,SUMPRODUCT(EXACT({self.bytes_col(1)},{a(self.CH)})*'
                    f"({self.bytes_col(0)}+2))-2)",
                    "0",
                )
            )
            out.append(
                Cell(
                    r,
                    self.CLS,
                    "formula",
                    f"IF({a(self.CODE)}=-1,0,IF({a(self.CODE)}=-2,{UNKNOWN},INDEX({self.bytes_col(2)},{a(self.CODE)}+1)))",
                    "0",
                )
            )
            out.append(
                Cell(
                    r,
                    self.CLEN,
                    "formula",
                    f'IF(EXACT(MID({t},{k},{len(ENDOFTEXT)}),"{ENDOFTEXT}"),-1,'
                    f'IF(OR(EXACT({mid3},"\'re"),EXACT({mid3},"\'ve"),EXACT({mid3},"\'ll")),3,'
                    f'IF(OR(EXACT({mid2},"\'s"),EXACT({mid2},"\'t"),EXACT({mid2},"\'m"),EXACT({mid2},"\'d")),2,0)))',
                    "0",
                )
            )
            cls, clen, part = a(self.CLS), a(self.CLEN), a(self.PART)
            # A contraction is a match only where a match starts: at the text's start, after a letter
            # or digit, or after whitespace other than U+0020 (a space before it joins an "other" run,
            # as an "other" character before it does).
            pc, pcode = (a(self.CLS, -1), a(self.CODE, -1)) if i else ("", "")
            after = f"OR({pc}={LETTER},{pc}={DIGIT},AND({pc}={SPACE},{pcode}<>32))" if i else "TRUE"
            out.append(Cell(r, self.CSTART, "formula", f"IF(AND({clen}>0,{after}),1,0)", "0"))
            # position in a contraction: 1 at its apostrophe, then 2 (and 3 for 're 've 'll)
            part_f = f"IF({a(self.CSTART)}=1,1,"
            if i >= 1:
                part_f += f"IF({a(self.CSTART, -1)}=1,2,"
            if i >= 2:
                part_f += f"IF(AND({a(self.CSTART, -2)}=1,{a(self.CLEN, -2)}=3),3,"
            part_f += "0" + ")" * (1 + min(i, 2))
            out.append(Cell(r, self.PART, "formula", part_f, "0"))
            if i == 0:
                start = f"IF({cls}=0,0,1)"
            else:
                nxt = a(self.CLS, 1) if i < N - 1 else "0"
                start = (
                    f"IF({cls}=0,0,IF({part}>1,0,IF(OR({part}=1,{a(self.PART, -1)}>0),1,"
                    f"IF({pc}={SPACE},IF({cls}={SPACE},IF(OR({nxt}={LETTER},{nxt}={DIGIT},{nxt}={OTHER}),1,0),"
                    f"IF({pcode}=32,0,1)),IF({cls}={pc},0,1)))))"
                )
            out.append(Cell(r, self.START, "formula", start, "0"))
            out.append(Cell(r, self.WORD, "formula", f"SUMPRODUCT({self.chars(self.START)}*({ks}<={k}))", "0"))
            out.append(Cell(r, self.WSTART, "formula", f"MATCH({a(self.WORD)},{self.chars(self.WORD)},0)", "0"))
            out.append(
                Cell(r, self.SYM, "formula", f'IF({a(self.CODE)}<0,"",INDEX({self.bytes_col(3)},{a(self.CODE)}+1))')
            )
            prev_sym = '""' if i == 0 else a(self.CUMSYM, -1)
            out.append(Cell(r, self.CUMSYM, "formula", f"IF({a(self.START)}=1,{a(self.SYM)},{prev_sym}&{a(self.SYM)})"))
            out.append(Cell(r, self.NBYTES, "formula", f"LEN({a(self.CUMSYM)})", "0"))
            out.append(Cell(r, self.CUMTXT, "formula", f"MID({t},{a(self.WSTART)},{k}-{a(self.WSTART)}+1)"))

    def _words(self, out) -> None:
        top, L = self.word_top, self.L
        self._frame(
            out,
            top,
            "2. Words: UTF-8 byte symbols and their vocab ids (merge round 0)",
            "A word's text and byte symbols are the last 'so far' cells of its characters; each byte symbol "
            "is looked up in the bytes tab (exact match) for its token id; -1 = empty slot.",
            [(0, "word"), (1, "last char"), (2, "in text"), (3, "text"), (4, "byte symbols"), (5, "bytes")],
        )
        self._slots(out, top, self.slot0, "id")
        self._slots(out, top, self.slot0 + L + 1, "token")
        for w in range(self.W):
            r = top + w
            a = lambda c: _a1(r, c)  # noqa: E731
            out.append(Cell(r, 0, "number", w + 1))
            out.append(
                Cell(
                    r,
                    1,
                    "formula",
                    f"IF({a(0)}<={self.v(self.WORDS)},SUMPRODUCT(({self.chars(self.WORD)}<={a(0)})*1),0)",
                    "0",
                )
            )
            out.append(Cell(r, 2, "formula", f"IF({a(0)}<={self.v(self.WORDS)},1,0)", "0"))
            out.append(Cell(r, 3, "formula", f'IF({a(2)}=1,INDEX({self.chars(self.CUMTXT)},{a(1)}),"")'))
            out.append(Cell(r, 4, "formula", f'IF({a(2)}=1,INDEX({self.chars(self.CUMSYM)},{a(1)}),"")'))
            out.append(Cell(r, 5, "formula", f"LEN({a(4)})", "0"))
            sym = _a1(r, 4, False, True)
            for j in range(L):
                n = _a1(top - 1, self.slot0 + j, row_abs=True)  # this column's slot number, in its header
                out.append(
                    Cell(
                        r,
                        self.slot0 + j,
                        "formula",
                        f"IF({n}<={_a1(r, 5, False, True)},SUMPRODUCT(EXACT({self.bytes_col(6)},MID({sym},{n},1))*"
                        f"({self.bytes_col(7)}+1))-1,-1)",
                        "0",
                    )
                )
                idc = _a1(r, self.slot0 + j)
                out.append(
                    Cell(r, self.slot0 + L + 1 + j, "formula", f'IF({idc}>=0,INDEX({self.vocab_col(2)},{idc}+1),"")')
                )

    def _prev_slots(self, r: int) -> tuple[int, int]:
        """(top row, first column) of the ids that round r starts from."""
        return (self.word_top, self.slot0) if r == 1 else (self.round_tops[r - 2], self.g_new)

    def _round(self, out, r: int) -> None:
        top, L, V = self.round_tops[r - 1], self.L, self.V
        ptop, pcol = self._prev_slots(r)
        keys = self.merges_col(7)
        self._frame(
            out,
            top,
            f"3.{r} Merge round {r}",
            f"rank j: the merges-tab rank of the pair (slot j, slot j+1), found by its key left id x {V} + right "
            "id. merge j: 1 where the pair has the lowest rank, but in a run of such pairs (a a a) only every "
            "other one, from the left. position j: slots up to j minus merges before j. Then the slots close up.",
            [(0, "word"), (1, "best rank"), (2, "merged id"), (3, "merged token")],
        )
        rank_hdr = self._slots(out, top, self.g_rank, "rank")
        merge_hdr = self._slots(out, top, self.g_merge, "merge")
        self._slots(out, top, self.g_pos, "position")
        id_hdr = self._slots(out, top, self.g_new, "id")
        self._slots(out, top, self.g_tok, "token")
        slot = lambda c: _a1(top - 1, c, row_abs=True)  # noqa: E731  a column's slot number, in its header
        for w in range(self.W):
            row = top + w
            a = lambda c: _a1(row, c)  # noqa: E731
            P = lambda j: _a1(ptop + w, pcol + j)  # noqa: E731
            out.append(Cell(row, 0, "number", w + 1))
            ranks = self.slots(row, self.g_rank)
            out.append(Cell(row, 1, "formula", f"MIN({ranks})", "0;-0;0"))
            best = _a1(row, 1, False, True)
            merged = _a1(row, 2, False, True)
            out.append(Cell(row, 2, "formula", f"IF({best}<{BIG},INDEX({self.merges_col(6)},{best}+1),-1)", "0"))
            out.append(Cell(row, 3, "formula", f'IF({merged}>=0,INDEX({self.vocab_col(2)},{merged}+1),"")'))
            prow = self.slots(ptop + w, pcol)
            mrow = self.slots(row, self.g_merge)
            posrow = self.slots(row, self.g_pos)
            for j in range(L):
                if j < L - 1:
                    rank = (
                        f"IF(AND({P(j)}>=0,{P(j + 1)}>=0),IFERROR(MATCH({P(j)}*{V}+{P(j + 1)},{keys},0)-1,{BIG}),{BIG})"
                    )
                else:
                    rank = f"{BIG}"
                out.append(Cell(row, self.g_rank + j, "formula", rank, f'[>={BIG}]"-";0'))
                # merge: the run of lowest-rank pairs ending here has odd length (the last pair before it that is
                # not one is the largest slot number < n whose rank is not the best; none: 0)
                n = slot(self.g_merge + j)
                # (SUMPRODUCT around MAX evaluates the array inside it without CSE)
                merge = (
                    f"IF(AND({a(self.g_rank + j)}={best},{best}<{BIG},"
                    f"MOD({n}-SUMPRODUCT(MAX(({ranks}<>{best})*({rank_hdr}<{n})*{rank_hdr})),2)=1),1,0)"
                )
                out.append(Cell(row, self.g_merge + j, "formula", merge, "0"))
                n = slot(self.g_pos + j)
                pos = f"SUMPRODUCT(({prow}>=0)*({id_hdr}<={n}))-SUMPRODUCT({mrow}*({merge_hdr}<{n}))"
                out.append(Cell(row, self.g_pos + j, "formula", pos, "0"))
            for j in range(L):
                q = f"MATCH({slot(self.g_new + j)},{posrow},0)"
                new = f"IFERROR(IF(INDEX({mrow},1,{q})=1,{merged},INDEX({prow},1,{q})),-1)"
                out.append(Cell(row, self.g_new + j, "formula", new, "0"))
                idc = a(self.g_new + j)
                out.append(Cell(row, self.g_tok + j, "formula", f'IF({idc}>=0,INDEX({self.vocab_col(2)},{idc}+1),"")'))

    def _tokens(self, out) -> None:
        top, W = self.tokword_top, self.W
        self._frame(
            out,
            top,
            "4. Tokens of each word",
            "How many tokens each word ends with, and the position of its first token.",
            [(0, "word"), (1, "tokens"), (2, "first token")],
        )
        for w in range(W):
            r = top + w
            out.append(Cell(r, 0, "number", w + 1))
            out.append(Cell(r, 1, "formula", self.final_count(w), "0"))
            in_text = _a1(self.word_top + w, 2)
            first = "0" if w == 0 else f"SUM({_span(top, 1, r - 1, 1)})"
            out.append(Cell(r, 2, "formula", f"IF({in_text}=1,{first},{BIG})", f'[>={BIG}]"-";0'))
        ttop = self.token_top
        self._frame(
            out,
            ttop,
            "5. Token ids",
            f"Token t comes from the word whose first token is the largest <= t; rows after the last token "
            f"hold <|endoftext|> (id {self.V - 1}). These ids feed the Prompt tab.",
            [(0, "pos"), (1, "word"), (2, "token id"), (3, "GPT-2 form"), (4, "token")],
        )
        starts = _span(top, 2, top + W - 1, 2)
        count, ok = self.v(self.COUNT), self.v(self.OK)
        for t in range(self.T):
            r = ttop + t
            a = lambda c: _a1(r, c)  # noqa: E731
            out.append(Cell(r, 0, "number", t))
            out.append(Cell(r, 1, "formula", f"IFERROR(MATCH({a(0)},{starts},1),0)", "0"))
            out.append(Cell(r, 2, "formula", self.id_formula(t), "0"))
            out.append(Cell(r, 3, "formula", f'IFERROR(INDEX({self.vocab_col(2)},{a(2)}+1),"")'))
            out.append(Cell(r, 4, "formula", f'IFERROR(INDEX({self.vocab_col(1)},{a(2)}+1),"")'))
        del count, ok

    def id_formula(self, t: int) -> str:
        r = self.token_top + t
        word = _a1(r, 1)
        starts = _span(self.tokword_top, 2, self.tokword_top + self.W - 1, 2)
        return (
            f"IF({self.v(self.OK)}=1,IF({_a1(r, 0)}<{self.v(self.COUNT)},INDEX({self.final_block()},{word},"
            f"{_a1(r, 0)}-INDEX({starts},{word})+1),{self.V - 1}),#N/A)"
        )

    # ---- the regions sheetgpt check compares -----------------------------------------------
    def id_cell(self, t: int, from_tab: str = "") -> str:
        pre = "" if from_tab == TAB else f"{TAB}!"
        return pre + _a1(self.token_top + t, 2, True, True)

    def count_cell(self, from_tab: str = "") -> str:
        pre = "" if from_tab == TAB else f"{TAB}!"
        return pre + self.v(self.COUNT)

    def ok_cell(self, from_tab: str = "") -> str:
        pre = "" if from_tab == TAB else f"{TAB}!"
        return pre + self.v(self.OK)


def quote_tab(name: str) -> str:
    return f"{name}!" if name.replace("_", "").isalnum() else "'" + name.replace("'", "''") + "'!"
