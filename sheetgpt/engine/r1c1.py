"""Excel formula text -> a canonical relative form, R1C1, that groups the cells of one formula.

``to_r1c1(text, row, col)`` rewrites every A1 reference of a formula that sits at
0-based (row, col) so that relative parts become offsets: ``B4+1`` at B5 and ``B5+1`` at
B6 both become ``R[-1]C[0]+1``. Cells with equal keys compute "the same formula up to
relative references": the engine evaluates them together, the writer shares them.
``column_keys`` does the same for a column of cells at once, and ``shift_formula`` moves a
formula the way Excel fills it.
"""

from __future__ import annotations

import re

import numpy as np

from ..a1 import MAX_COLS, MAX_ROWS, col_index, col_name

_SHEET = r"(?:'(?:[^']|'')+'|[A-Za-z_\\][\w.]*)!"
_A1 = r"(\$?)([A-Za-z]{1,3})(\$?)([0-9]{1,7})"
# strings are matched first so that text inside them is never rewritten
_A1_RE = re.compile(
    r'("(?:[^"]|"")*")'
    r"|(?<![\w.$'!])(" + _SHEET + r")?" + _A1 + r"(?::" + _A1 + r")?(?![\w(.!\[])"
)


# whole columns (A:C, $A:$A) and whole rows (1:3, $2:$2), optionally on a sheet
_WHOLE_RE = re.compile(
    r'("(?:[^"]|"")*")'
    r"|(?<![\w.$'!:])("
    + _SHEET
    + r")?(?:(\$?)([A-Za-z]{1,3}):(\$?)([A-Za-z]{1,3})|(\$?)([0-9]{1,7}):(\$?)([0-9]{1,7}))"
    r"(?![\w(.!\[:$])"
)


# what follows the ':' of a whole column or row (and never of a cell range): a fast test first
_MAYBE_WHOLE = re.compile(r":\$?(?:[A-Za-z]{1,3}(?![\w.$!(\[])|[0-9])")


def whole_to_a1(text: str) -> str:
    """``text`` with each whole-column or whole-row reference written as the A1 range it is:
    ``A:B`` -> ``A$1:B$1048576``, ``$3:4`` -> ``$A$3:$XFD4``; other text as it is."""
    if ":" not in text or not _MAYBE_WHOLE.search(text):
        return text

    def sub(m: re.Match) -> str:
        if m.group(1) is not None:
            return m.group(1)
        sheet = m.group(2) or ""
        if m.group(4) is not None:
            a, b = m.group(4), m.group(6)
            if col_index(a) >= MAX_COLS or col_index(b) >= MAX_COLS:
                return m.group(0)
            return f"{sheet}{m.group(3)}{a}$1:{m.group(5)}{b}${MAX_ROWS}"
        a, b = m.group(8), m.group(10)
        if not (1 <= int(a) <= MAX_ROWS and 1 <= int(b) <= MAX_ROWS):
            return m.group(0)
        return f"{sheet}$A{m.group(7)}{a}:${col_name(MAX_COLS - 1)}{m.group(9)}{b}"

    return _WHOLE_RE.sub(sub, text)


def to_r1c1(text: str, row: int, col: int) -> str:
    """Canonical form of ``text`` (no leading '=') at 0-based (row, col).

    Relative parts become ``R[dr]``/``C[dc]`` offsets, absolute parts ``R5``/``C3``
    (1-based, as in Excel's R1C1). Strings are left untouched.

    Texts that differ only in their runs of digits (``B4+1`` and ``B5+1``, a column of
    one formula) share one parse, cached by the text with every run replaced by ``#``.
    Whole columns and rows are ranges over the whole grid (``whole_to_a1``).
    """
    digits = _DIGITS.findall(text)
    skeleton = _skeleton(text, digits)
    template = _TEMPLATES.get(skeleton)
    if template is None:
        whole = whole_to_a1(text)  # (a text with whole columns or rows never gets a template of its own)
        if whole != text:
            return to_r1c1(whole, row, col)
        if len(_TEMPLATES) > 100_000:
            _TEMPLATES.clear()
        template = _TEMPLATES[skeleton] = _template(text)
    pieces, parts = template
    out = [pieces[0]]
    for k, part in enumerate(parts):
        if part is None:  # a number, or digits in a string or sheet name: as they are
            out.append(digits[k])
        else:
            rabs, c, cabs = part
            r = int(digits[k]) - 1
            out.append((f"R{r + 1}" if rabs else f"R[{r - row}]") + (f"C{c + 1}" if cabs else f"C[{c - col}]"))
        out.append(pieces[k + 1])
    return "".join(out)


_DIGITS = re.compile(r"[0-9]+")
_DIGIT_SPLIT = re.compile(r"([0-9]+)")
_TEMPLATES: dict = {}


def _skeleton(text: str, digits: list[str]):
    """The key of ``_TEMPLATES``: the text with every digit run as ``#``, and which runs are
    too long (more than 7 digits) to be a row, as those are not rewritten."""
    skeleton = _DIGITS.sub("#", text)
    if any(len(d) > 7 for d in digits):
        return skeleton, tuple(len(d) > 7 for d in digits)
    return skeleton


def column_keys(texts: list[str], top: int, col: int) -> list[str]:
    """``[to_r1c1(t, top + i, col) for i, t in enumerate(texts)]`` for a column of cells, fast
    where the cells are one formula filled down: in a run of texts with one skeleton, a
    cell whose relative row numbers are the run's first cell's plus its distance, and whose
    other digits are the same characters, has the first cell's key (one to_r1c1 a run)."""
    n = len(texts)
    split = [_DIGIT_SPLIT.split(t) for t in texts]  # text, digits, text, digits, ..., text
    runs = [p[1::2] for p in split]
    skeletons = [tuple(p[0::2]) for p in split]  # equal iff the texts' to_r1c1 skeletons are
    keys: list = [None] * n
    i = 0
    while i < n:
        keys[i] = to_r1c1(texts[i], top + i, col)
        end = i + 1
        while end < n and skeletons[end] == skeletons[i]:
            end += 1
        filled = 1
        template = _TEMPLATES.get(_skeleton(texts[i], runs[i]))  # to_r1c1 just made it
        if end - i > 1 and template is not None and whole_to_a1(texts[i]) == texts[i]:
            digits = np.array(runs[i:end])  # [cells, runs] of str
            relative = np.array([p is not None and not p[0] for p in template[1]], bool)
            if (
                digits.ndim == 2
                and digits.shape[1] == len(relative)
                and max(map(len, digits[:, relative].ravel().tolist()), default=0) <= 7
            ):
                rows = digits[:, relative].astype(np.int64)
                ok = (digits[:, ~relative] == digits[0, ~relative]).all(axis=1) & (
                    rows == rows[0] + np.arange(end - i)[:, None]
                ).all(axis=1)
                filled = len(ok) if ok.all() else int(np.argmin(ok))  # up to the first cell that is not
                keys[i + 1 : i + filled] = [keys[i]] * (filled - 1)
        i += max(filled, 1)
    return keys


def _template(text: str):
    """How to_r1c1 rewrites every text of ``text``'s skeleton: (pieces, parts), the text
    cut around its digit runs (an A1 part's letters go with its row digits), and per
    run None (copied) or (row absolute, column, column absolute) of the A1 part it ends."""
    runs = [m.span() for m in _DIGITS.finditer(text)]
    run_at = {s: k for k, (s, _) in enumerate(runs)}
    parts: list = [None] * len(runs)
    cut = [(s, e) for s, e in runs]  # text taken out for run k
    for m in _A1_RE.finditer(text):
        if m.group(1) is not None:
            continue
        for first in (3, 7):  # groups: $ letters $ digits, of each end of a range
            if m.group(first + 1) is None:
                continue
            k = run_at[m.start(first + 3)]
            parts[k] = (bool(m.group(first + 2)), col_index(m.group(first + 1)), bool(m.group(first)))
            cut[k] = (m.start(first), m.end(first + 3))
    pieces, at = [], 0
    for s, e in cut:
        pieces.append(text[at:s])
        at = e
    pieces.append(text[at:])
    return pieces, parts


def shift_formula(text: str, drow: int, dcol: int) -> str:
    """Move a formula by (drow, dcol) the way Excel fills a shared formula: relative
    parts shift, absolute parts stay; a part pushed off the grid becomes #REF!."""

    def part(cabs, letters, rabs, digits):
        r = int(digits) - 1 + (0 if rabs else drow)
        c = col_index(letters) + (0 if cabs else dcol)
        if not (0 <= r < MAX_ROWS and 0 <= c < MAX_COLS):
            return None
        return f"{cabs}{col_name(c)}{rabs}{r + 1}"

    def sub(m: re.Match) -> str:
        g = m.groups()
        if g[0] is not None:
            return g[0]
        a = part(*g[2:6])
        b = part(*g[6:10]) if g[6] is not None else ""
        if a is None or b is None:
            return "#REF!"
        return (g[1] or "") + a + (":" + b if b else "")

    return _A1_RE.sub(sub, text)
