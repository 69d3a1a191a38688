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

The sizes are fixed when the book is built (``prompt.TypedLimits``), shown on the tab, and a
text outside them (or with a character the formulas do not classify: only Latin-1 is known)
shows a message asking to rebuild with ``sheetgpt build --prompt`` instead of wrong tokens.

``Prompt.bpe_reference`` (sheetgpt/prompt.py) computes the checked regions (character classes,
word numbers, the count and ids) from the tokenizer, for ``sheetgpt check``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ... import a1
from ...prompt import DIGIT, LETTER, OTHER, SPACE, UNKNOWN
from ...tokenizer import ENDOFTEXT
from .. import cells, fill_cached, prompt_cells
from ..layout import FRAME_ROWS, INPUT, Layout, Region, Tab
from ..xlsx.shared import FormulaBlock
from ..xlsx.worksheet import style_index
from . import bytes_table, merges, vocab

if TYPE_CHECKING:
    from ...prompt import Prompt
    from ..output import BookWriter
    from ..trace import BookInputs

NAME = "BPE"
BIG = 1_000_000_000  # "no rank": larger than any merge rank
REBUILD_MESSAGE = 'Rebuild the book with: sheetgpt build --prompt "your text"'


@dataclass
class Cell:
    """One cell of the BPE tab: a label, a number or a formula."""

    row: int
    col: int
    kind: str  # "label", "title", "note", "header", "slot", "number", "formula", "array" (a one-cell CSE formula)
    # ("slot": a header that is a number, shown through its format, e.g. 3 as "rank 3", so that
    # formulas below it can use it: one formula for every column of a group)
    content: object
    fmt: str = ""  # number format for formulas, "" = general


class BpeSheet:
    """Where every cell of the BPE tab is, and its formula.

    ``V`` is the vocabulary size, ``M`` the number of merges, ``T`` the token rows; a word has at
    most ``word_bytes`` byte slots, merged in ``rounds`` rounds.
    """

    # summary block (0-based rows, value in column B)
    STATUS, TEXT, N_ROW, W_ROW, L_ROW, T_ROW, CHARS, WORDS, LONGEST, COUNT, OK = range(2, 13)
    CHAR_TOP = 17  # first character row (title 14, explanation 15, headers 16)
    # character section columns
    K, CH, CODE, CLS, CLEN, CSTART, PART, START, WORD, WSTART, SYM, CUMSYM, NBYTES, CUMTXT = range(14)

    def __init__(self, layout: Layout):
        limits = layout.typed
        self.T, self.V, self.M = layout.T, layout.config.vocab_size, limits.n_merges
        self.n_chars, self.n_words, self.word_bytes = limits.max_chars, limits.max_words, limits.max_word_bytes
        self.rounds = limits.rounds
        self.word_top = self.CHAR_TOP + self.n_chars + 4  # first word row
        self.slot0 = 6  # word section: column of the first round-0 slot (ids), then word_bytes token texts
        # merge rounds: block r (1..R) starts below the previous one
        self.round_tops = [
            self.word_top + self.n_words + 4 + (r - 1) * (self.n_words + 4) for r in range(1, self.rounds + 1)
        ]
        # columns of a round block: A w, B best rank, C merged id, D merged token, then groups of word_bytes
        self.g_rank, self.g_merge, self.g_pos, self.g_new, self.g_tok = (
            5 + k * (self.word_bytes + 1) for k in range(5)
        )
        after = (self.round_tops[-1] if self.rounds else self.word_top) + self.n_words + 4
        self.tokword_top = after  # per word: tokens, first token
        self.token_top = after + self.n_words + 4  # per token: word, id, GPT-2 form, display text

    # ---- references --------------------------------------------------------------------
    @staticmethod
    def v(row: int) -> str:
        """A summary value: $B$5."""
        return a1.cell(row, 1, True, True)

    @property
    def text(self) -> str:
        return self.v(self.TEXT)

    def chars(self, col: int) -> str:
        return a1.span(self.CHAR_TOP, col, self.CHAR_TOP + self.n_chars - 1, col)

    def bytes_col(self, col: int) -> str:
        return bytes_table.column(col)

    def merges_col(self, col: int) -> str:
        return merges.column(col, self.M)

    def vocab_col(self, col: int) -> str:
        return vocab.column(col, self.V)

    def slots(self, row: int, first_col: int) -> str:
        """One word's word_bytes slots in a row, columns absolute: $G20:$V20."""
        return f"{a1.cell(row, first_col, False, True)}:{a1.cell(row, first_col + self.word_bytes - 1, False, True)}"

    def final_block(self) -> str:
        top, col = (self.round_tops[-1], self.g_new) if self.rounds else (self.word_top, self.slot0)
        return a1.span(top, col, top + self.n_words - 1, col + self.word_bytes - 1)

    def final_count(self, w: int) -> str:
        """Tokens of word w after the last round (its last position count, or round 0's)."""
        return a1.cell(self.round_tops[-1] + w, self.g_pos + self.word_bytes - 1, True, True)

    # ---- the cells ---------------------------------------------------------------------
    def cells(self) -> list[Cell]:
        out: list[Cell] = []
        self.summary(out)
        self._characters(out)
        self._words(out)
        for r in range(1, self.rounds + 1):
            self._round(out, r)
        self._tokens(out)
        return out

    def _frame(self, out, top: int, title: str, note: str, headers: list[tuple[int, str]]) -> None:
        header = top - 1  # a section's frame is a region's: title, explanation, headers, then its rows
        out.append(Cell(top - FRAME_ROWS, 0, "title", title))
        out.append(Cell(top - FRAME_ROWS + 1, 0, "note", note))
        for c, h in headers:
            out.append(Cell(header, c, "header", h))

    def _slots(self, out, top: int, first_col: int, name: str) -> str:
        """Headers 1..word_bytes over a group of word_bytes columns (numbers shown as "name 1", ...); returns
        their range, fully absolute."""
        for j in range(self.word_bytes):
            out.append(Cell(top - 1, first_col + j, "slot", j + 1, f'"{name} "0'))
        return a1.span(top - 1, first_col, top - 1, first_col + self.word_bytes - 1)

    def summary(self, out) -> None:
        n_chars, n_words, word_bytes, T = self.n_chars, self.n_words, self.word_bytes, self.T
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
        cls = self.chars(self.CLS)
        first_bad = f"MATCH({UNKNOWN},{cls},0)"
        msg = (
            f'IF(LEN({t})=0,"Type some text into the yellow cell Prompt!B4.",'
            f'IF(LEN({t})>{n_chars},"Too long: "&LEN({t})&" characters; this book tokenizes at most {n_chars}. '
            f'{REBUILD}",'
            f'IF(MAX({cls})={UNKNOWN},"The character "&MID({t},{first_bad},1)&" at position "&{first_bad}&'
            f'" is one these formulas cannot classify (they know Latin-1 text). {REBUILD}",'
            f'IF(MIN({self.chars(self.CLEN)})<0,"{ENDOFTEXT} is a special token these formulas do not handle. '
            f'{REBUILD}",'
            f'IF({self.v(self.WORDS)}>{n_words},"Too many words: "&{self.v(self.WORDS)}&"; this book has rows for '
            f'{n_words}. {REBUILD}",'
            f'IF({self.v(self.LONGEST)}>{word_bytes},"A word of "&{self.v(self.LONGEST)}&" bytes; this book merges '
            "words of at "
            f'most {word_bytes}. {REBUILD}",'
            f'IF({self.v(self.COUNT)}>{T},"Too many tokens: "&{self.v(self.COUNT)}&"; the book has {T} token rows. '
            f'{REBUILD}","OK: "&LEN({t})&" characters, "&{self.v(self.WORDS)}&" words, "&{self.v(self.COUNT)}&'
            f'" tokens; the model predicts the token after position "&({self.v(self.COUNT)}-1)&".")))))))'
        )
        rows = [
            (self.STATUS, "status", "formula", msg),
            (self.TEXT, "text (from Prompt!B4)", "formula", '""&' + prompt_cells.typed_text_ref()),
            (self.N_ROW, "max characters", "number", n_chars),
            (self.W_ROW, "max words", "number", n_words),
            (self.L_ROW, "max bytes per word", "number", word_bytes),
            (self.T_ROW, "token rows", "number", T),
            (self.CHARS, "characters", "formula", f"LEN({t})"),
            (self.WORDS, "words", "formula", f"MAX({self.chars(self.WORD)})"),
            (self.LONGEST, "longest word (bytes)", "formula", f"MAX({self.chars(self.NBYTES)})"),
            (
                self.COUNT,
                "tokens",
                "formula",
                "+".join(self.final_count(w) for w in range(self.n_words)) if self.n_words else "0",
            ),
            (
                self.OK,
                "ok (1) or not (0)",
                "formula",
                f"IF(AND(LEN({t})>=1,LEN({t})<={n_chars},MAX({cls})<{UNKNOWN},MIN({self.chars(self.CLEN)})>=0,"
                f"{self.v(self.WORDS)}<={n_words},{self.v(self.LONGEST)}<={word_bytes},{self.v(self.COUNT)}<={T}),1,0)",
            ),
        ]
        for r, label, kind, content in rows:
            out.append(Cell(r, 0, "label", label))
            out.append(
                Cell(r, 1, kind, content, "0" if kind == "formula" and r != self.STATUS and r != self.TEXT else "")
            )

    def _characters(self, out) -> None:
        top, n_chars, t = self.CHAR_TOP, self.n_chars, self.text
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
        for i in range(n_chars):
            r = top + i

            def a(c: int, dr: int = 0, r: int = r) -> str:  # this row's cell in column c, or dr rows away
                return a1.cell(r + dr, c)

            k = a(self.K)
            mid2, mid3 = f"MID({t},{k},2)", f"MID({t},{k},3)"
            out.append(Cell(r, self.K, "number", i + 1))
            out.append(Cell(r, self.CH, "formula", f"MID({t},{k},1)"))
            # the code point of the one bytes-tab character EXACTly equal (case-sensitive, unlike
            # MATCH); none: -2. A CSE formula: EXACT over a range is element-wise in every engine.
            out.append(
                Cell(
                    r,
                    self.CODE,
                    "array",
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
                nxt = a(self.CLS, 1) if i < n_chars - 1 else "0"
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
        top, nb = self.word_top, self.word_bytes
        self._frame(
            out,
            top,
            "2. Words: UTF-8 byte symbols and their vocab ids (merge round 0)",
            "A word's text and byte symbols are the last 'so far' cells of its characters; each byte symbol "
            "is looked up in the bytes tab (exact match) for its token id; -1 = empty slot.",
            [(0, "word"), (1, "last char"), (2, "in text"), (3, "text"), (4, "byte symbols"), (5, "bytes")],
        )
        self._slots(out, top, self.slot0, "id")
        self._slots(out, top, self.slot0 + nb + 1, "token")
        for w in range(self.n_words):
            r = top + w

            def a(c: int, r: int = r) -> str:
                return a1.cell(r, c)

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
            sym = a1.cell(r, 4, False, True)
            for j in range(nb):
                n = a1.cell(top - 1, self.slot0 + j, row_abs=True)  # this column's slot number, in its header
                out.append(
                    Cell(
                        r,
                        self.slot0 + j,
                        "array",
                        f"IF({n}<={a1.cell(r, 5, False, True)},SUMPRODUCT(EXACT({self.bytes_col(6)},MID({sym},{n},1))*"
                        f"({self.bytes_col(7)}+1))-1,-1)",
                        "0",
                    )
                )
                idc = a1.cell(r, self.slot0 + j)
                out.append(
                    Cell(r, self.slot0 + nb + 1 + j, "formula", f'IF({idc}>=0,INDEX({self.vocab_col(2)},{idc}+1),"")')
                )

    def _prev_slots(self, r: int) -> tuple[int, int]:
        """(top row, first column) of the ids that round r starts from."""
        return (self.word_top, self.slot0) if r == 1 else (self.round_tops[r - 2], self.g_new)

    def _round(self, out, r: int) -> None:
        top, nb, V = self.round_tops[r - 1], self.word_bytes, self.V
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

        def slot(c: int) -> str:  # a column's slot number, in its header
            return a1.cell(top - 1, c, row_abs=True)

        for w in range(self.n_words):
            row = top + w

            def a(c: int, row: int = row) -> str:
                return a1.cell(row, c)

            def P(j: int, w: int = w) -> str:  # slot j of the ids this round starts from
                return a1.cell(ptop + w, pcol + j)

            out.append(Cell(row, 0, "number", w + 1))
            ranks = self.slots(row, self.g_rank)
            out.append(Cell(row, 1, "formula", f"MIN({ranks})", "0;-0;0"))
            best = a1.cell(row, 1, False, True)
            merged = a1.cell(row, 2, False, True)
            out.append(Cell(row, 2, "formula", f"IF({best}<{BIG},INDEX({self.merges_col(6)},{best}+1),-1)", "0"))
            out.append(Cell(row, 3, "formula", f'IF({merged}>=0,INDEX({self.vocab_col(2)},{merged}+1),"")'))
            prow = self.slots(ptop + w, pcol)
            mrow = self.slots(row, self.g_merge)
            posrow = self.slots(row, self.g_pos)
            for j in range(nb):
                if j < nb - 1:
                    rank = (
                        f"IF(AND({P(j)}>=0,{P(j + 1)}>=0),IFERROR(MATCH({P(j)}*{V}+{P(j + 1)},{keys},0)-1,{BIG}),{BIG})"
                    )
                else:
                    rank = f"{BIG}"
                out.append(Cell(row, self.g_rank + j, "formula", rank, f'[>={BIG}]"-";0'))
                # merge: the run of lowest-rank pairs ending here has odd length (the last pair before it that is
                # not one is the largest slot number < n whose rank is not the best; none: 0)
                n = slot(self.g_merge + j)
                # (a CSE formula: MAX over the array expression, element-wise in every engine)
                merge = (
                    f"IF(AND({a(self.g_rank + j)}={best},{best}<{BIG},"
                    f"MOD({n}-SUMPRODUCT(MAX(({ranks}<>{best})*({rank_hdr}<{n})*{rank_hdr})),2)=1),1,0)"
                )
                out.append(Cell(row, self.g_merge + j, "array", merge, "0"))
                n = slot(self.g_pos + j)
                pos = f"SUMPRODUCT(({prow}>=0)*({id_hdr}<={n}))-SUMPRODUCT({mrow}*({merge_hdr}<{n}))"
                out.append(Cell(row, self.g_pos + j, "formula", pos, "0"))
            for j in range(nb):
                q = f"MATCH({slot(self.g_new + j)},{posrow},0)"
                new = f"IFERROR(IF(INDEX({mrow},1,{q})=1,{merged},INDEX({prow},1,{q})),-1)"
                out.append(Cell(row, self.g_new + j, "formula", new, "0"))
                idc = a(self.g_new + j)
                out.append(Cell(row, self.g_tok + j, "formula", f'IF({idc}>=0,INDEX({self.vocab_col(2)},{idc}+1),"")'))

    def _tokens(self, out) -> None:
        top, n_words = self.tokword_top, self.n_words
        self._frame(
            out,
            top,
            "4. Tokens of each word",
            "How many tokens each word ends with, and the position of its first token.",
            [(0, "word"), (1, "tokens"), (2, "first token")],
        )
        for w in range(n_words):
            r = top + w
            out.append(Cell(r, 0, "number", w + 1))
            out.append(Cell(r, 1, "formula", self.final_count(w), "0"))
            in_text = a1.cell(self.word_top + w, 2)
            first = "0" if w == 0 else f"SUM({a1.span(top, 1, r - 1, 1)})"
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
        starts = a1.span(top, 2, top + n_words - 1, 2)
        for t in range(self.T):
            r = ttop + t

            def a(c: int, r: int = r) -> str:
                return a1.cell(r, c)

            out.append(Cell(r, 0, "number", t))
            out.append(Cell(r, 1, "formula", f"IFERROR(MATCH({a(0)},{starts},1),0)", "0"))
            out.append(Cell(r, 2, "formula", self.id_formula(t), "0"))
            out.append(Cell(r, 3, "formula", f'IFERROR(INDEX({self.vocab_col(2)},{a(2)}+1),"")'))
            out.append(Cell(r, 4, "formula", f'IFERROR(INDEX({self.vocab_col(1)},{a(2)}+1),"")'))

    def id_formula(self, t: int) -> str:
        r = self.token_top + t
        word = a1.cell(r, 1)
        starts = a1.span(self.tokword_top, 2, self.tokword_top + self.n_words - 1, 2)
        return (
            f"IF({self.v(self.OK)}=1,IF({a1.cell(r, 0)}<{self.v(self.COUNT)},INDEX({self.final_block()},{word},"
            f"{a1.cell(r, 0)}-INDEX({starts},{word})+1),{self.V - 1}),#N/A)"
        )

    def id_ref(self, t: int) -> str:
        """Token t's id, from any tab: BPE!$C$60."""
        return a1.sheet_prefix(NAME) + a1.cell(self.token_top + t, 2, True, True)


# ---- cells other tabs read -------------------------------------------------------------------


def status_ref() -> str:
    """The status message, from any tab: BPE!$B$3."""
    return a1.sheet_prefix(NAME) + BpeSheet.v(BpeSheet.STATUS)


def count_ref() -> str:
    return a1.sheet_prefix(NAME) + BpeSheet.v(BpeSheet.COUNT)


def ok_ref() -> str:
    return a1.sheet_prefix(NAME) + BpeSheet.v(BpeSheet.OK)


def status_text(p: Prompt) -> str:
    """The status message for the prompt the book was built with (its formula gives the same)."""
    return (
        f"OK: {len(p.text)} characters, {len(p.words)} words, {p.n_prompt} tokens; "
        f"the model predicts the token after position {p.predict_after}."
    )


# ---- the tab -----------------------------------------------------------------------------------


TOO_BIG = "lower --context or shorten --prompt, or pass --no-typed-prompt"  # book.limits' advice


def extent(layout: Layout) -> tuple[int, int]:
    """(rows, columns) beyond the checked regions: the token rows last; the widest, the merge rounds' groups."""
    b = BpeSheet(layout)
    rows = b.token_top + layout.T
    cols = max(b.CUMTXT + 1, (b.g_tok + b.word_bytes) if b.rounds else b.slot0 + 2 * b.word_bytes + 1)
    return rows, cols


def long_formulas(layout: Layout):
    """(cell, text) of the summary's formulas: its token count adds a term per word; the other formulas
    do not grow with the book."""
    summary = []
    BpeSheet(layout).summary(summary)
    for c in summary:
        if c.kind in ("formula", "array"):
            yield (c.row, c.col), c.content


def tabs(layout: Layout, placed: dict[str, Region]) -> list[Tab]:
    if not layout.typed:
        return []
    b = BpeSheet(layout)
    regions = [
        Region("bpe.class", NAME, b.CHAR_TOP, b.n_chars, 1, left=b.CLS, number_format="0"),
        Region("bpe.word", NAME, b.CHAR_TOP, b.n_chars, 1, left=b.WORD, number_format="0"),
        Region("bpe.count", NAME, b.COUNT, 1, 1, left=1, number_format="0"),
        Region("bpe.ids", NAME, b.token_top, layout.T, 1, left=2, number_format="0"),
    ]
    return [Tab(NAME, INPUT, regions)]


def stages(inputs: BookInputs, trace: dict) -> dict:
    """The checked regions: what our tokenizer gives for the typed text (``Prompt.bpe_reference``,
    computed with the Prompt tab's inputs)."""
    return inputs["prompt"].bpe


def write(out: BookWriter, tab: Tab) -> int:
    """Every cell of BpeSheet: labels and numbers through xlsxwriter, formulas as shared-formula blocks
    (their cached values are filled in by ``finish``, once the tabs they read are written)."""
    b, fmt = BpeSheet(out.layout), out.fmt
    ws = out.sheet(tab)
    styles = {"label": fmt.label, "title": fmt.title, "note": fmt.note, "header": fmt.header}
    formulas: dict[tuple[int, int], tuple[str, str, bool]] = {}  # merged in as shared formulas
    for c in b.cells():
        if c.kind in ("formula", "array"):
            formulas[(c.row, c.col)] = (c.content, c.fmt, c.kind == "array")
        elif c.kind in styles:
            ws.write_string(c.row, c.col, c.content, styles[c.kind])
        elif c.kind == "number":
            ws.write_number(c.row, c.col, c.content, fmt.label)
        else:  # a slot header
            ws.write_number(c.row, c.col, c.content, fmt.header_number(c.fmt))
    if formulas:
        ws.shared.extend(_formula_blocks(formulas, fmt))
    ws.set_column(0, 0, 12)
    ws.set_column(1, 1, 12)
    ws.freeze_panes(0, 1)
    for region in tab.regions:  # the checked regions' explanations
        cells.note(ws, region.title_row, 0, region.text["explain"])
    return 0


def finish(out: BookWriter, tab: Tab) -> None:
    """The cached value of every formula: the BPE tab's formulas evaluated over the typed text and
    the bytes, merges and vocab tabs (``book.fill_cached``); the checked regions must equal the reference."""
    values = fill_cached.evaluate_tab(out, NAME, [prompt_cells.NAME, bytes_table.NAME, merges.NAME, vocab.NAME])
    for block in out.sheet(tab).shared:
        fill_cached.fill(block, values, NAME)
    for region in tab.regions:
        got = values.number_grid(region)
        want = np.asarray(out.trace[region.name], dtype=np.float64).reshape(got.shape)
        if not np.array_equal(got, want):
            raise AssertionError(
                f"BPE tab: {region.name} evaluates to {got.ravel()[:8]}, the reference says {want.ravel()[:8]}"
            )


def _formula_blocks(cells: dict[tuple[int, int], tuple[str, str, bool]], fmt) -> list[FormulaBlock]:
    """Formulas {(row, col): (text, number format, one-cell CSE)} as FormulaBlocks: runs of
    consecutive rows in a column with one format and kind, side by side runs of the same rows
    joined into rectangles. Number format "" means a formula that gives text. Cached values
    are NaN until ``finish`` fills them.
    Every cell is checked to be its rectangle's first cell filled across (verify "all");
    where one is not, the backend cuts the rectangle into groups of one R1C1 form each."""
    runs: list[list] = []  # [col, first row, last row, (number format, CSE)]
    for r, c in sorted(cells, key=lambda rc: (rc[1], rc[0])):
        f = cells[(r, c)][1:]
        last = runs[-1] if runs else None
        if last and last[0] == c and last[2] == r - 1 and last[3] == f:
            last[2] = r
        else:
            runs.append([c, r, r, f])
    rects: list[list] = []  # [first col, last col, first row, last row, (number format, CSE)]
    ending: dict[tuple, list] = {}  # (last col, first row, last row, format) -> its rect
    for c, r0, r1, f in runs:
        prev = ending.pop((c - 1, r0, r1, f), None)
        if prev is None:
            prev = [c, c, r0, r1, f]
            rects.append(prev)
        prev[1] = c
        ending[(c, r0, r1, f)] = prev
    blocks = []
    for c0, c1, r0, r1, (f, array) in rects:
        values = np.full((r1 - r0 + 1, c1 - c0 + 1), np.nan)
        style = style_index(fmt.number(f) if f else fmt.text)
        if array:
            arrays = [(r, c, r, c, cells[(r, c)][0]) for r in range(r0, r1 + 1) for c in range(c0, c1 + 1)]
            blocks.append(FormulaBlock(r0, c0, values, style, arrays=arrays))
            continue
        blocks.append(
            FormulaBlock(
                r0,
                c0,
                values,
                style,
                [(0, r1 - r0 + 1, 0, c1 - c0 + 1)],
                lambda i, j, r0=r0, c0=c0: cells[(r0 + i, c0 + j)][0],
                verify="all",
            )
        )
    return blocks
