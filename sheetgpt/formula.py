"""Excel formula text -> a canonical relative form (for grouping) -> an AST.

``to_r1c1(text, row, col)`` rewrites every A1 reference of a formula that sits at
0-based (row, col) so that relative parts become offsets: ``B4+1`` at B5 and ``B5+1`` at
B6 both become ``R[-1]C[0]+1``. Cells with equal keys compute "the same formula up to
relative references" and are evaluated together. ``parse_r1c1`` turns a key into an
AST once per key; ``parse(text, row, col)`` does both.

AST nodes are tuples, tag first:
    ('num', float) ('str', str) ('bool', bool) ('err', '#N/A') ('missing',)
    ('ref', sheet|None, r, r_abs, c, c_abs)            one cell
    ('range', sheet|None, r0, r0_abs, c0, c0_abs, r1, r1_abs, c1, c1_abs)
    ('neg', x) ('pct', x) ('bin', op, a, b) ('call', NAME, (args...))
For a relative part, r/c is the offset from the formula's cell; for an absolute part,
the 0-based index. Sheet names are unquoted. Function names are upper-case without
the ``_xlfn.``/``_xlws.`` prefix.
"""

from __future__ import annotations

import re
from functools import lru_cache

import numpy as np
from xlsxwriter.utility import xl_col_to_name

from .errors import WorkbookError

MAX_ROWS = 1_048_576
MAX_COLS = 16_384

_SHEET = r"(?:'(?:[^']|'')+'|[A-Za-z_\\][\w.]*)!"
_A1 = r"(\$?)([A-Za-z]{1,3})(\$?)([0-9]{1,7})"
# strings are matched first so that text inside them is never rewritten
_A1_RE = re.compile(
    r'("(?:[^"]|"")*")'
    r"|(?<![\w.$'!])(" + _SHEET + r")?" + _A1 + r"(?::" + _A1 + r")?(?![\w(.!\[])"
)

_COL_CACHE: dict[str, int] = {}


def _col(letters: str) -> int:
    c = _COL_CACHE.get(letters)
    if c is None:
        n = 0
        for ch in letters.upper():
            n = n * 26 + (ord(ch) - 64)
        c = n - 1
        _COL_CACHE[letters] = c
    return c


def to_r1c1(text: str, row: int, col: int) -> str:
    """Canonical form of ``text`` (no leading '=') at 0-based (row, col).

    Relative parts become ``R[dr]``/``C[dc]`` offsets, absolute parts ``R5``/``C3``
    (1-based, as in Excel's R1C1). Strings are left untouched.

    Texts that differ only in their runs of digits (``B4+1`` and ``B5+1``, a column of
    one formula) share one parse, cached by the text with every run replaced by ``#``.
    """
    digits = _DIGITS.findall(text)
    skeleton = _skeleton(text, digits)
    template = _TEMPLATES.get(skeleton)
    if template is None:
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
        if end - i > 1 and template is not None:
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
            parts[k] = (bool(m.group(first + 2)), _col(m.group(first + 1)), bool(m.group(first)))
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
        c = _col(letters) + (0 if cabs else dcol)
        if not (0 <= r < MAX_ROWS and 0 <= c < MAX_COLS):
            return None
        return f"{cabs}{xl_col_to_name(c)}{rabs}{r + 1}"

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


# ----------------------------------------------------------------------------- tokens

_TOKEN_RE = re.compile(
    r"""\s*(?:
    (?P<str>"(?:[^"]|"")*")
  | (?P<ref>(?P<sheet>'(?:[^']|'')+'!|[A-Za-z_\\][\w.]*!)?
        R(?P<r0>\[-?\d+\]|\d+)C(?P<c0>\[-?\d+\]|\d+)
        (?::R(?P<r1>\[-?\d+\]|\d+)C(?P<c1>\[-?\d+\]|\d+))?)(?![\w(])
  | (?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<err>\#(?:NULL!|DIV/0!|VALUE!|REF!|NAME\?|NUM!|N/A))
  | (?P<func>[A-Za-z_][\w.]*)\s*\(
  | (?P<bool>TRUE|FALSE)(?![\w(.])
  | (?P<name>[A-Za-z_\\][\w.]*)
  | (?P<op><>|<=|>=|[-+*/^&=<>%(),{};:])
    )""",
    re.X | re.I,
)

_BIN = {
    "=": 1,
    "<>": 1,
    "<": 1,
    ">": 1,
    "<=": 1,
    ">=": 1,
    "&": 2,
    "+": 3,
    "-": 3,
    "*": 4,
    "/": 4,
    "^": 5,
}
_PCT_BP = 6
_UNARY_BP = 7


def _tokens(text: str) -> list[tuple[str, object]]:
    out = []
    pos = 0
    n = len(text)
    while pos < n:
        m = _TOKEN_RE.match(text, pos)
        if not m or m.end() == pos:
            if text[pos:].strip() == "":
                break
            raise WorkbookError(f"cannot parse formula near {text[pos : pos + 20]!r}")
        pos = m.end()
        kind = m.lastgroup
        if kind in ("r0", "c0", "r1", "c1", "sheet"):
            kind = "ref"
        if kind == "str":
            out.append(("str", m.group("str")[1:-1].replace('""', '"')))
        elif kind == "ref":
            out.append(("ref", m))
        elif kind == "num":
            out.append(("num", float(m.group("num"))))
        elif kind == "err":
            out.append(("err", m.group("err").upper()))
        elif kind == "func":
            name = m.group("func").upper()
            for pre in ("_XLFN.", "_XLWS."):
                if name.startswith(pre):
                    name = name[len(pre) :]
            out.append(("func", name))
        elif kind == "bool":
            out.append(("bool", m.group("bool").upper() == "TRUE"))
        elif kind == "name":
            raise WorkbookError(f"unsupported name {m.group('name')!r} in formula (defined names are not supported)")
        else:
            out.append(("op", m.group("op")))
    return out


def _part(tok: str) -> tuple[int, bool]:
    if tok.startswith("["):
        return int(tok[1:-1]), False
    return int(tok) - 1, True


def _ref_node(m: re.Match) -> tuple:
    sheet = m.group("sheet")
    if sheet:
        sheet = sheet[:-1]
        if sheet.startswith("'"):
            sheet = sheet[1:-1].replace("''", "'")
    r0, r0a = _part(m.group("r0"))
    c0, c0a = _part(m.group("c0"))
    if m.group("r1") is None:
        return ("ref", sheet, r0, r0a, c0, c0a)
    r1, r1a = _part(m.group("r1"))
    c1, c1a = _part(m.group("c1"))
    return ("range", sheet, r0, r0a, c0, c0a, r1, r1a, c1, c1a)


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.toks = _tokens(text)
        self.i = 0

    def peek(self):
        return self.toks[self.i] if self.i < len(self.toks) else ("end", None)

    def next(self):
        t = self.peek()
        self.i += 1
        return t

    def expect(self, op: str):
        t = self.next()
        if t != ("op", op):
            raise WorkbookError(f"formula {self.text!r}: expected {op!r}")

    def parse(self):
        node = self.expr(0)
        if self.i != len(self.toks):
            raise WorkbookError(f"formula {self.text!r}: unexpected {self.peek()[1]!r}")
        return node

    def expr(self, min_bp: int):
        left = self.prefix()
        while True:
            kind, v = self.peek()
            if kind != "op":
                break
            if v == "%":
                if _PCT_BP < min_bp:
                    break
                self.i += 1
                left = ("pct", left)
                continue
            bp = _BIN.get(v)
            if bp is None or bp < min_bp:
                break
            self.i += 1
            right = self.expr(bp + 1)  # all binary operators are left-associative
            left = ("bin", v, left, right)
        return left

    def prefix(self):
        kind, v = self.next()
        if kind == "num":
            return ("num", v)
        if kind == "str":
            return ("str", v)
        if kind == "bool":
            return ("bool", v)
        if kind == "err":
            return ("err", v)
        if kind == "ref":
            return _ref_node(v)
        if kind == "func":
            args = []
            if self.peek() == ("op", ")"):
                self.i += 1
                return ("call", v, ())
            while True:
                if self.peek() in (("op", ","), ("op", ")")):
                    args.append(("missing",))
                else:
                    args.append(self.expr(0))
                t = self.next()
                if t == ("op", ")"):
                    break
                if t != ("op", ","):
                    raise WorkbookError(f"formula {self.text!r}: expected ',' or ')' in {v}()")
            return ("call", v, tuple(args))
        if kind == "op":
            if v == "(":
                e = self.expr(0)
                self.expect(")")
                return e
            if v in ("-", "+"):
                x = self.expr(_UNARY_BP)
                return ("neg", x) if v == "-" else x
            if v == "{":
                raise WorkbookError(f"formula {self.text!r}: array constants {{...}} are not supported")
        raise WorkbookError(f"formula {self.text!r}: unexpected {v!r}")


@lru_cache(maxsize=65536)
def parse_r1c1(key: str) -> tuple:
    """AST of a canonical (R1C1) formula text."""
    return _Parser(key).parse()


def parse(text: str, row: int = 0, col: int = 0) -> tuple:
    """AST of an A1 formula ``text`` (no leading '=') sitting at 0-based (row, col)."""
    return parse_r1c1(to_r1c1(text, row, col))
