"""One worksheet part parsed into a ``Sheet``: constants, formula text and cached values, nothing executed.

Sheet XML is scanned with compiled regular expressions over decompressed chunks that
end on a ``</row>`` boundary. Rows of purely numeric cells (weight tabs) take a fast
path: one ``findall`` per chunk and one numpy conversion of the value texts, and the rows after
such a row that are laid out byte for byte like it are read as one array (``alike_rows``); rows as
Excel, LibreOffice and xlsxwriter write them take a regular path; anything else the general (slow)
one, which defines what every other path must read. Sizes are checked against Excel's limits.
"""

from __future__ import annotations

import re
import zipfile

import numpy as np

from ..a1 import MAX_COLS, MAX_FORMULA_CHARS, MAX_ROWS, col_index, parse_range
from ..a1 import cell as cell_name
from ..errors import WorkbookError
from . import alike_rows, zip_limits
from .book import Formulas, LazyDict, Sheet
from .markup import SPREADSHEETML, Namespaces, decode, refuse_markup, unescape, xml_attrs, xml_start
from .shared_strings import text_of
from .zip_limits import stream

# numeric fast path (numpy over the chunk's bytes): see _SheetParser.fast
_ROW_RE = re.compile(rb"<(?:\w+:)?row\b([^>]*?)(/?)>")
_CELL_RE = re.compile(rb"<(?:\w+:)?c\b([^>]*?)(?:/>|>(.*?)</(?:\w+:)?c>)", re.S)
_V_RE = re.compile(rb"<(?:\w+:)?v\b[^>]*?(?:/>|>([^<]*)</(?:\w+:)?v>)")
_F_RE = re.compile(rb"<(?:\w+:)?f\b([^>]*?)(?:/>|>([^<]*)</(?:\w+:)?f>)")
_IS_RE = re.compile(rb"<(?:\w+:)?is\b[^>]*>(.*?)</(?:\w+:)?is>", re.S)
_NUM_RE = re.compile(rb"\s*[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\s*")
_DIM_RE = re.compile(rb"<(?:\w+:)?dimension\b([^>]*)/?>")
_CELLREF_RE = re.compile(rb"([A-Za-z]{1,4})([0-9]{1,8})")
# attributes of <c> that change what the cell means (t: type; vm: rich value)
_TYPED_C_RE = re.compile(rb"<c\s[^>]*[\s:](?:t|vm)\s*=")
# regular cells as Excel, LibreOffice and xlsxwriter write them (attributes r, s, t in
# this order; <f> with t/ref/si; <v> perhaps with xml:space, as LibreOffice writes text that
# starts with a space); anything else takes the general path. Groups: ref, t, <f>'s attributes,
# <f>'s text, "<v" if there is a <v> (an empty one is an empty cached text), <v>'s text.
_REG_CELL_RE = re.compile(
    rb'<c r="([A-Z]{1,3}[0-9]{1,7})"(?: s="[0-9]{1,5}")?(?: t="([a-zA-Z]{1,9})")?'
    rb'(?:/>|>(?:<f( t="(?:array|shared)"(?: ref="[A-Z0-9:]{2,20}")?(?: si="[0-9]{1,9}")?)?(?:/>|>([^<]*)</f>))?'
    rb'(?:(<v)(?: xml:space="preserve")?>([^<]*)</v>)?</c>)'
)
# any tag but <row>, <c ...>, <f>, <v> and their ends: such a chunk takes the slow path
_OTHER_TAG_RE = re.compile(rb'<(?!c |/c>|v>|v xml:space="preserve">|/v>|f[ >/]|/f>|row[ >/]|/row>)')
_TAG_END = np.zeros(256, bool)
_TAG_END[list(b" \t\r\n>/")] = True
_FA_T_RE = re.compile(rb't="(\w+)"')
_FA_REF_RE = re.compile(rb'ref="([^"]*)"')
_FA_SI_RE = re.compile(rb'si="([^"]*)"')
_NUM_CHARS = np.zeros(256, bool)
_NUM_CHARS[list(b"0123456789.+-eE")] = True
_NUM_CHARS[0] = True  # padding


def _number(text: bytes, where: str) -> float:
    if not _NUM_RE.fullmatch(text):
        raise WorkbookError(f"{where}: {text[:40]!r} is not a number")
    return float(text)


def _parse_numbers(mat: np.ndarray) -> np.ndarray | None:
    """uint8 [n, L] value texts (0-padded) -> float64[n]; None unless every text is a
    finite number of the plain grammar (digits, one '.', an exponent, a sign)."""
    if mat.shape[0] == 0:
        return np.zeros(0)
    if not _NUM_CHARS[mat].all():
        return None
    try:
        v = np.ascontiguousarray(mat).view(f"S{mat.shape[1]}").ravel().astype(np.float64)
    except ValueError:
        return None
    return v if np.isfinite(v).all() else None


def _decode_refs(w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """uint8 [n, k] windows starting at 'AB12"...' -> (rows, cols, text length) 0-based;
    None unless each is 1-3 capital letters, 1-7 digits, then a quote."""
    n, k = w.shape
    is_l = (w >= 65) & (w <= 90)
    is_d = (w >= 48) & (w <= 57)
    q = w == 34
    if not q.any(axis=1).all():
        return None
    length = q.argmax(axis=1)
    n_l = (~is_l).argmax(axis=1)
    j = np.arange(k)[None, :]
    in_l = j < n_l[:, None]
    in_d = (j >= n_l[:, None]) & (j < length[:, None])
    if not ((n_l >= 1).all() and (n_l <= 3).all() and (length - n_l >= 1).all() and (length - n_l <= 7).all()):
        return None
    if not (np.where(in_l, is_l, True) & np.where(in_d, is_d, True)).all():
        return None
    wi = w.astype(np.int64)
    rows = np.zeros(n, np.int64)
    cols = np.zeros(n, np.int64)
    for t in range(int(length.max())):
        cols = np.where(in_l[:, t], cols * 26 + wi[:, t] - 64, cols)
        rows = np.where(in_d[:, t], rows * 10 + wi[:, t] - 48, rows)
    return rows - 1, cols - 1, length


def _row_named(a: np.ndarray, lt: np.ndarray, tags: np.ndarray, w_at: int) -> np.ndarray:
    """Of the tags at lt[tags] ('<ro' or '</ro'), those named exactly 'row': a 'w' at lt + w_at,
    then a space, '>' or '/' (not '<rows' or a prefixed '<ro:w')."""
    at, last = lt[tags], len(a) - 1
    tags[tags] = (a[np.minimum(at + w_at, last)] == 119) & _TAG_END[a[np.minimum(at + w_at + 1, last)]]
    return tags


def _values_between(a: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray | None:
    """The numbers whose texts lie at a[starts[i]:ends[i]] (the <v> contents), or None if any
    is empty, longer than 40 bytes or not a number."""
    width = ends - starts
    L = int(width.max())
    if width.min() < 1 or L > 40:
        return None
    mat = a[np.minimum(starts[:, None] + np.arange(L), len(a) - 1)]
    mat[np.arange(L)[None, :] >= width[:, None]] = 0
    return _parse_numbers(mat)


class _Run:
    """Rows r0 .. r0 + n - 1 read by the alike-rows path: its numbers are an [n, cells] array at the
    columns of the row before (kept as a block: the grid takes it as one slice)."""

    def __init__(self, r0: int, n: int):
        self.r0, self.n = r0, n

    def rows(self, cells: int) -> np.ndarray:
        return np.repeat(np.arange(self.r0, self.r0 + self.n, dtype=np.int32), cells)


class _SheetParser:
    def __init__(self, book_name: str, name: str, sst: list[str], foreign: re.Pattern):
        self.where = f"{book_name} sheet {name!r}"
        self.foreign = foreign  # finds an element tag of a foreign namespace
        self.name = name
        self.sst = sst
        self.rows: list[np.ndarray] = []
        self.cols: list[np.ndarray] = []
        self.vals: list[np.ndarray] = []
        self.strings: dict = {}
        self.booleans: dict = {}
        self.errors: dict = {}
        self.formulas = Formulas()
        self.cached = LazyDict()
        self.cached_types: dict = {}
        self.row = -1  # current row (0-based)
        self.col = -1  # last column seen in the current row
        self.max_r = -1
        self.max_c = -1
        self.pending_r: list[int] = []
        self.pending_c: list[int] = []
        self.pending_v: list[bytes] = []
        self.template: alike_rows.Template | None = None  # the last row layout the alike path read
        self.unordered = False  # numbers read by the general path (which may repeat a cell)

    def chunk(self, buf: bytes) -> None:
        again = True
        while again:
            used, again = self.alike(buf)
            buf = buf[used:]
        if not self.fast(buf) and not self.regular(buf):
            self.slow(buf)

    # -- alike rows: a row read by the fast path, then the rows after it laid out like it (alike_rows.py)
    def alike(self, buf: bytes) -> tuple[int, bool]:
        """(bytes read from the start of ``buf``, whether to try again after them)."""
        if not buf.startswith(b"<row"):
            return 0, False
        if self.template is not None and self.row >= 0:  # the rows after the last one, laid out as before
            used = self._run(self.template, buf, 0)
            if used:
                return used, True
        end = alike_rows.first_row_end(buf)
        if end < 0 or 2 * end > len(buf) or buf.count(b"<c ", 0, end) < alike_rows.MIN_CELLS:
            return 0, False
        held = len(self.vals)
        if not self.fast(buf[:end]):
            return 0, False
        if len(self.vals) == held or self.rows[-1][0] != self.rows[-1][-1]:
            return end, False
        self.template = alike_rows.template(buf[:end], self.row, self.cols[-1])
        if self.template is None:
            return end, False
        used = self._run(self.template, buf, end)
        return end + used, used > 0

    def _run(self, t: alike_rows.Template, buf: bytes, start: int) -> int:
        """Bytes read of the rows laid out like ``t`` from ``buf[start:]`` (0: none)."""
        n, values = alike_rows.read_run(t, np.frombuffer(buf, np.uint8), start, self.row, _parse_numbers)
        n = min(n, MAX_ROWS - 1 - self.row)  # a row beyond Excel's: the fast path refuses it
        if n <= 0:
            return 0
        self.rows.append(_Run(self.row + 1, n))
        self.cols.append(t.cols)
        self.vals.append(values[:n])
        self.row, self.col = self.row + n, int(t.cols[-1])
        self.max_r, self.max_c = max(self.max_r, self.row), max(self.max_c, self.col)
        return n * len(t.row)

    # -- fast path: a chunk of complete rows where every cell is <c r="..." [s=".."]><v>number</v></c>
    def fast(self, buf: bytes) -> bool:
        if b"x" in buf and b"xmlns" in buf:
            return False  # a namespace declaration: the slow path refuses it
        a = np.frombuffer(buf, np.uint8)
        lt = np.flatnonzero(a == 60)  # every '<'
        if len(lt) == 0:
            return not buf.strip()
        if lt[-1] + 4 > len(a):
            return False
        b1, b2, b3 = a[lt + 1], a[lt + 2], a[lt + 3]
        row_open = _row_named(a, lt, (b1 == 114) & (b2 == 111), 3)  # <row
        row_close = _row_named(a, lt, (b1 == 47) & (b2 == 114) & (b3 == 111), 4)  # </row
        c_open = (b1 == 99) & (b2 == 32)  # '<c '
        if not c_open.any() and ((b1 == 99) & (b2 == 62)).any():
            return self._fast_no_refs(buf, a, lt, b1, b2, b3, row_open, row_close)
        row_tag = row_open | row_close
        ic = np.flatnonzero(c_open)
        n = len(ic)
        if n == 0:
            if not row_tag.all():
                return False
            self._rows_only(buf)
            return True
        if len(lt) - int(row_tag.sum()) != 4 * n or ic[-1] + 3 >= len(lt):
            return False
        # each cell is exactly the tags <c ...> <v> </v> </c>, in this order
        if not (
            ((b1[ic + 1] == 118) & (b2[ic + 1] == 62)).all()
            and ((b1[ic + 2] == 47) & (b2[ic + 2] == 118) & (b3[ic + 2] == 62)).all()
            and ((b1[ic + 3] == 47) & (b2[ic + 3] == 99) & (b3[ic + 3] == 62)).all()
        ):
            return False
        p = lt[ic]
        vs = lt[ic + 1]  # '<v>' (so the <c> tag ends at vs - 1)
        last = len(a) - 1
        at = p + 3  # r=, after the space of '<c ' and up to three more (padded cells: '<c   r="AB12" >')
        for _ in range(3):
            at = at + (a[np.minimum(at, last)] == 32)
        r_eq = a[np.minimum(at[:, None] + np.arange(3), last)] == np.frombuffer(b'r="', np.uint8)
        if not (r_eq.all(axis=1) & (a[vs - 1] == 62) & (a[vs - 2] != 47)).all():
            return False  # r= is not the first attribute, or an empty <c/> cell
        win = a[np.minimum((at + 3)[:, None] + np.arange(11), last)]
        dec = _decode_refs(win)
        if dec is None:
            return False
        rows, cols, length = dec
        gap = vs - 1 - (at + 4 + length)  # bytes between r="..."'s closing quote and '>'
        plain = (gap == 0) | ((gap == 1) & (a[vs - 2] == 32))
        if (gap < 0).any() or (not plain.all() and _TYPED_C_RE.search(buf)):
            return False  # more attributes than r=, and one of them types the cell
        v = _values_between(a, vs + 3, lt[ic + 2])
        return v is not None and self._accept(rows, cols, v)

    def _fast_no_refs(self, buf: bytes, a, lt, b1, b2, b3, row_open, row_close) -> bool:
        """Numeric cells written without r= (``<row r="5"><c><v>1.5</v></c>...``): the
        row comes from the enclosing <row> (its r=, or the row after the previous one),
        the column from the cell's place in the row."""
        c_open = (b1 == 99) & (b2 == 62)  # '<c>'
        ic = np.flatnonzero(c_open)
        n = len(ic)
        if len(lt) - int(row_open.sum()) - int(row_close.sum()) != 4 * n or ic[-1] + 3 >= len(lt):
            return False
        if not (
            ((b1[ic + 1] == 118) & (b2[ic + 1] == 62)).all()
            and ((b1[ic + 2] == 47) & (b2[ic + 2] == 118) & (b3[ic + 2] == 62)).all()
            and ((b1[ic + 3] == 47) & (b2[ic + 3] == 99) & (b3[ic + 3] == 62)).all()
            and (lt[ic + 1] - lt[ic] == 3).all()
        ):
            return False
        row_tags = _ROW_RE.findall(buf)
        ir = np.flatnonzero(row_open)
        if len(row_tags) != len(ir):
            return False
        numbers = []
        r = self.row
        for attrs, closed in row_tags:
            r = self._row_number(xml_attrs(attrs) if attrs else {}, r)
            numbers.append(-1 if closed else r)
        numbers = np.array(numbers, np.int64)
        owner = np.searchsorted(ir, ic) - 1  # the <row> each cell sits in
        if (owner < 0).any():
            return False
        rows = numbers[owner]
        if (rows < 0).any():
            return False  # a cell after a self-closed <row/>
        first = np.searchsorted(owner, owner, side="left")  # index of the row's first cell
        cols = np.arange(n) - first
        v = _values_between(a, lt[ic + 1] + 3, lt[ic + 2])
        if v is None or not self._accept(rows, cols, v):
            return False
        self.max_r = max(self.max_r, int(numbers.max()) if len(numbers) else -1, r)
        self.row, self.col = r, (self.col if numbers[-1] == int(rows[-1]) else -1)
        return True

    def _accept(self, rows: np.ndarray, cols: np.ndarray, v: np.ndarray | None) -> bool:
        """Record numbers at (rows, cols) if the cells are in strictly increasing order
        after what came before (as the format requires); else leave it to the slow path."""
        n = len(rows)
        if n == 0:
            return True
        if rows.max() >= MAX_ROWS or cols.max() >= MAX_COLS:
            self.check_limits(int(rows.max()), int(cols.max()))
        key = rows * MAX_COLS + cols
        if (n > 1 and not (np.diff(key) > 0).all()) or (rows < 0).any() or (cols < 0).any():
            return False
        if self.row >= 0 and key[0] <= self.row * MAX_COLS + self.col:
            return False
        if v is not None:
            self.rows.append(rows.astype(np.int32))
            self.cols.append(cols.astype(np.int32))
            self.vals.append(v)
        self.row, self.col = int(rows[-1]), int(cols[-1])
        self.max_r = max(self.max_r, self.row)
        self.max_c = max(self.max_c, int(cols.max()))
        return True

    # -- regular path: every cell matches _REG_CELL_RE (formula tabs); one findall per chunk
    def regular(self, buf: bytes) -> bool:
        if _OTHER_TAG_RE.search(buf) or (b"x" in buf and b"xmlns" in buf):
            return False  # markup, a namespace or an element beyond <row> <c> <f> <v>: the slow path
        cells = _REG_CELL_RE.findall(buf)
        n = len(cells)
        if n != buf.count(b"<c") or n == 0 or b"<f/>" in buf or b"<f></f>" in buf:
            return False
        refs = np.array([c[0] for c in cells])
        w = np.zeros((n, 11), np.uint8)
        raw = refs.view(np.uint8).reshape(n, -1)
        w[:, : raw.shape[1]] = raw
        w[np.arange(n), (raw != 0).sum(axis=1)] = 34  # close each ref with a quote
        dec = _decode_refs(w)
        if dec is None:
            return False
        rows, cols, _ = dec
        if not self._accept(rows, cols, None):
            return False
        num_i, num_v, f_i, f_t, f_v = [], [], [], [], []
        members: list[tuple[bytes, int]] = []  # (si, cell index) of shared-formula members, added in batches
        for i, (_, t, fa, ftext, has_v, v) in enumerate(cells):
            v = v if has_v else None  # as the general path reads it: b"" for <v></v>
            if fa or ftext:
                if fa and not ftext and fa.startswith(b' t="shared" si="'):
                    members.append((fa[16:-1], i))
                    if t and t != b"n":
                        self.cached_types[(int(rows[i]), int(cols[i]))] = t.decode()
                    continue
                if fa:
                    self._add_members(members, rows, cols, cells)  # before a master: members keep their order
                    r, c = int(rows[i]), int(cols[i])
                    self._formula(r, c, xml_attrs(fa), ftext, f"{self.where} cell {cell_name(r, c)}")
                    if v is not None:
                        self.cached[(r, c)] = unescape(v)
                    if t and t != b"n":
                        self.cached_types[(r, c)] = t.decode()
                    continue
                if t and t != b"n":
                    self.cached_types[(int(rows[i]), int(cols[i]))] = t.decode()
                f_i.append(i)
                f_t.append(ftext)
                f_v.append(v)
            elif not t or t == b"n":
                if v and v.strip():
                    num_i.append(i)
                    num_v.append(v)
            elif t == b"s" or t == b"b" or t == b"e" or t == b"str" or t == b"inlineStr" or t == b"d":
                r, c = int(rows[i]), int(cols[i])
                self._typed(r, c, t, v, b"", f"{self.where} cell {cell_name(r, c)}")
            else:
                raise WorkbookError(
                    f"{self.where} cell {cell_name(int(rows[i]), int(cols[i]))}: unknown cell type {t[:20]!r}"
                )
        self._add_members(members, rows, cols, cells)
        if f_i:
            idx = np.array(f_i)
            texts = []
            plain = b"\r" not in buf  # else each text goes through decode, which makes CR LF and CR an LF
            try:
                for k, ft in enumerate(f_t):
                    text = (unescape(ft) if b"&" in ft else ft.decode() if plain else decode(ft)).strip()
                    if text.startswith("="):
                        text = text[1:]
                    if not text or len(text) > MAX_FORMULA_CHARS:
                        r, c = int(rows[f_i[k]]), int(cols[f_i[k]])
                        self._formula_length(text, f"{self.where} cell {cell_name(r, c)}")
                    texts.append(text)
            except UnicodeDecodeError:
                raise WorkbookError(f"{self.where}: a formula's text is not UTF-8; refusing it") from None
            self.formulas.add_plain_many(rows[idx], cols[idx], texts)
            self.cached.add_many(rows[idx], cols[idx], f_v)
        if num_i:
            idx = np.array(num_i)
            width = max(len(v) for v in num_v)
            v = _parse_numbers(np.array(num_v, dtype=f"S{width}").view(np.uint8).reshape(len(num_v), width))
            if v is None:
                for k, text in enumerate(num_v):  # name the first bad cell
                    where = f"{self.where} cell {cell_name(int(rows[num_i[k]]), int(cols[num_i[k]]))}"
                    if not np.isfinite(_number(text, where)):
                        raise WorkbookError(f"{self.where}: a number cell is not finite")
                raise WorkbookError(f"{self.where}: a number cell is not a number")  # pragma: no cover
            self.rows.append(rows[idx].astype(np.int32))
            self.cols.append(cols[idx].astype(np.int32))
            self.vals.append(v)
        return True

    def _add_members(self, members: list, rows: np.ndarray, cols: np.ndarray, cells: list) -> None:
        """Shared-formula member cells (si, index into the chunk's cells), with their cached values."""
        if not members:
            return
        by_si: dict[bytes, list[int]] = {}
        for si, i in members:
            by_si.setdefault(si, []).append(i)
        for si, idx in by_si.items():
            if not self.formulas.add_shared_members(si, rows[idx].tolist(), cols[idx].tolist()):
                r, c = int(rows[idx[0]]), int(cols[idx[0]])
                raise WorkbookError(f"{self.where} cell {cell_name(r, c)}: shared formula si={si!r} has no master")
        idx = np.array([i for _, i in members])
        self.cached.add_many(rows[idx], cols[idx], [cells[i][5] if cells[i][4] else None for i in idx.tolist()])
        members.clear()

    def _rows_only(self, buf: bytes, cells_seen: bool = False) -> None:
        """Track explicit row numbers (for dims and the 'next row' rule)."""
        for attrs, _ in _ROW_RE.findall(buf):
            a = xml_attrs(attrs)
            if b"r" in a:
                r = self._row_number(a, self.row)
                if not cells_seen:
                    self.row, self.col = r, -1
                self.max_r = max(self.max_r, r)
            elif not cells_seen:
                self.row, self.col = self.row + 1, -1

    def _row_number(self, attrs: dict, previous: int) -> int:
        """A <row>'s 0-based number: its r attribute, else the row after ``previous``; within Excel's rows."""
        if b"r" in attrs:
            try:
                r = int(attrs[b"r"]) - 1
            except ValueError:
                raise WorkbookError(f"{self.where}: bad row number {attrs[b'r'][:20]!r}") from None
        else:
            r = previous + 1
        self.check_limits(r, 0)
        return r

    def check_limits(self, r: int, c: int) -> None:
        if r >= MAX_ROWS or r < 0:
            raise WorkbookError(f"{self.where}: row {r + 1} is beyond Excel's {MAX_ROWS} rows")
        if c >= MAX_COLS or c < 0:
            raise WorkbookError(f"{self.where}: column {c + 1} is beyond Excel's {MAX_COLS} columns")

    # -- general path
    def slow(self, buf: bytes) -> None:
        refuse_markup(buf, 0, self.where)
        if b"xmlns" in buf:
            raise WorkbookError(f"{self.where}: a namespace declaration inside <sheetData>; refusing it")
        m = self.foreign.search(buf)
        if m:
            tag = m.group().decode("utf-8", "replace")
            raise WorkbookError(
                f"{self.where}: an element of a foreign XML namespace ({tag}...) inside <sheetData>; refusing it"
            )
        pos = 0
        for m in _ROW_RE.finditer(buf):
            self._cells(buf[pos : m.start()])
            r = self._row_number(xml_attrs(m.group(1)), self.row)
            self.row, self.col = r, -1
            self.max_r = max(self.max_r, r)
            pos = m.end()
        self._cells(buf[pos:])
        self._flush()

    def _cells(self, seg: bytes) -> None:
        if b"<" not in seg:
            return
        for attrs, inner in _CELL_RE.findall(seg):
            a = xml_attrs(attrs)
            ref = a.get(b"r")
            if ref:
                m = _CELLREF_RE.fullmatch(ref)
                if not m:
                    raise WorkbookError(f"{self.where}: bad cell reference {ref[:20]!r}")
                r, c = int(m.group(2)) - 1, col_index(m.group(1).decode())
                self.check_limits(r, c)
                if r != self.row:
                    self.row = r
            else:
                r, c = self.row, self.col + 1
                self.check_limits(max(r, 0), c)
            if r < 0:
                r = self.row = 0
            self.col = c
            self.max_r = max(self.max_r, r)
            self.max_c = max(self.max_c, c)
            if not inner:
                continue
            t = a.get(b"t", b"n")
            fm = _F_RE.search(inner) if b"f" in inner else None
            vm = _V_RE.search(inner)
            v = vm.group(1) if vm else None
            where = f"{self.where} cell {cell_name(r, c)}"
            if fm is not None:
                self._formula(r, c, xml_attrs(fm.group(1)), fm.group(2), where)
                if v is not None:
                    self.cached[(r, c)] = unescape(v)
                if t != b"n":
                    self.cached_types[(r, c)] = t.decode("ascii", "replace")
                continue
            if t == b"n":
                if v is not None and v.strip():
                    self.pending_r.append(r)
                    self.pending_c.append(c)
                    self.pending_v.append(v)
            else:
                self._typed(r, c, t, v, inner, where)

    def _typed(self, r: int, c: int, t: bytes, v: bytes | None, inner: bytes, where: str) -> None:
        if t == b"s":
            try:
                self.strings[(r, c)] = self.sst[int(v)]
            except (TypeError, ValueError, IndexError):
                raise WorkbookError(f"{where}: bad shared string index {v!r}") from None
        elif t == b"inlineStr":
            im = _IS_RE.search(inner)
            self.strings[(r, c)] = text_of(im.group(1)) if im else ""
        elif t == b"b":
            self.booleans[(r, c)] = v is not None and v.strip() in (b"1", b"true")
        elif t == b"e":
            self.errors[(r, c)] = unescape(v or b"#VALUE!").strip()
        elif t == b"str":
            # cached formula text without a formula (a cell of a CSE range): not a constant we trust;
            # no <v> at all (an app that drops cached values keeps t="str"): no cached value
            if v is not None:
                self.cached[(r, c)] = unescape(v)
        elif t == b"d":
            raise WorkbookError(f'{where}: ISO date cells (t="d") are not supported')
        else:
            raise WorkbookError(f"{where}: unknown cell type {t[:20]!r}")

    @staticmethod
    def _formula_length(text: str, where: str) -> None:
        if not text:
            raise WorkbookError(f"{where}: empty formula")
        if len(text) > MAX_FORMULA_CHARS:
            raise WorkbookError(
                f"{where}: a formula of {len(text):,} characters (Excel's limit is {MAX_FORMULA_CHARS:,}); refusing it"
            )

    def _formula(self, r: int, c: int, fa: dict, text: bytes | None, where: str) -> None:
        kind = fa.get(b"t", b"normal")
        ftext = unescape(text or b"").strip()
        if ftext.startswith("="):
            ftext = ftext[1:]
        if len(ftext) > MAX_FORMULA_CHARS:
            self._formula_length(ftext, where)
        if kind == b"shared":
            si = fa.get(b"si")
            if ftext:
                self.formulas.add_shared_master(si, r, c, ftext)
            elif not self.formulas.add_shared_member(si, r, c):
                raise WorkbookError(f"{where}: shared formula si={si!r} has no master")
        elif kind == b"array":
            ref = fa.get(b"ref", b"")
            try:
                rng = parse_range(ref.decode()) if ref else (r, c, r, c)
            except WorkbookError:
                raise WorkbookError(f"{where}: bad array range {ref[:30]!r}") from None
            self.check_limits(rng[2], rng[3])
            self.max_r = max(self.max_r, rng[2])
            self.max_c = max(self.max_c, rng[3])
            self.formulas.arrays.append((r, c, ftext, rng))
        elif kind == b"normal":
            if not ftext:
                raise WorkbookError(f"{where}: empty formula")
            self.formulas.add_plain(r, c, ftext)
        else:
            raise WorkbookError(f"{where}: unsupported formula type {kind[:20]!r}")

    def _flush(self) -> None:
        if not self.pending_v:
            return
        vals = []
        for r, c, v in zip(self.pending_r, self.pending_c, self.pending_v):
            vals.append(_number(v, f"{self.where} cell {cell_name(r, c)}"))
        v = np.array(vals, dtype=np.float64)
        if not np.isfinite(v).all():
            raise WorkbookError(f"{self.where}: a number cell is not finite")
        self.unordered = True  # the general path does not check the order of cells
        self.rows.append(np.array(self.pending_r, dtype=np.int32))
        self.cols.append(np.array(self.pending_c, dtype=np.int32))
        self.vals.append(v)
        self.pending_r, self.pending_c, self.pending_v = [], [], []

    def finish(self) -> Sheet:
        self._flush()
        held = list(zip(self.rows, self.cols, self.vals))  # in reading order
        n_numbers = sum(v.size for _, _, v in held)
        self.rows = self.cols = self.vals = []
        for d in (self.strings, self.booleans, self.errors):
            for r, c in d:
                self.max_r, self.max_c = max(self.max_r, r), max(self.max_c, c)
        f = self.formulas
        for arr in (f.rows, f.cols):
            if len(arr):
                m = int(arr.max())
                if arr is f.rows:
                    self.max_r = max(self.max_r, m)
                else:
                    self.max_c = max(self.max_c, m)
        for _, _, _, rs, cs in f.shared:
            self.max_r, self.max_c = max(self.max_r, max(rs)), max(self.max_c, max(cs))
        for r, c, _, _ in f.arrays:
            self.max_r, self.max_c = max(self.max_r, r), max(self.max_c, c)
        if not self.cached.pending():
            for r, c in self.cached:
                self.max_r, self.max_c = max(self.max_r, r), max(self.max_c, c)
        _resolve(self.cached, self.cached_types, self.sst, self.where)
        dims = (self.max_r + 1, self.max_c + 1)
        parts = dict(
            name=self.name,
            strings=self.strings,
            booleans=self.booleans,
            errors=self.errors,
            formulas=self.formulas,
            cached=self.cached,
            cached_types=self.cached_types,
            dims=dims,
        )
        if n_numbers >= (dims[0] * dims[1]) // 2 and n_numbers > 0:
            # every cell set: as many numbers as cells, all distinct (each path but the general one
            # takes cells only in increasing order)
            full = n_numbers == dims[0] * dims[1] and not self.unordered
            grid = np.empty(dims) if full else np.full(dims, np.nan)
            for r, c, v in held:  # in reading order: a cell the general path read twice keeps its last value
                if not isinstance(r, _Run):
                    grid[r, c] = v
                elif int(c[-1]) - int(c[0]) + 1 == len(c):  # adjacent columns (a weight tab's)
                    grid[r.r0 : r.r0 + r.n, int(c[0]) : int(c[0]) + len(c)] = v
                else:
                    grid[r.r0 : r.r0 + r.n, c] = v
            return Sheet(**parts, grid=grid, has_gaps=not full and bool(np.isnan(grid).any()))
        expanded = [
            (r.rows(len(c)), np.tile(c, r.n), v.ravel()) if isinstance(r, _Run) else (r, c, v) for r, c, v in held
        ]
        if not held:
            expanded = [(np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(0))]
        rows, cols, vals = (np.concatenate([p[i] for p in expanded]) for i in range(3))
        return Sheet(**parts, numbers=(rows, cols, vals))


def _resolve(cached, cached_types, sst: list[str], where: str) -> None:
    """A formula's cached text stored as a shared string (``t="s"``, as Gnumeric writes it): the text itself."""
    for (r, c), t in cached_types.items():
        if t == "s" and (r, c) in cached:
            v = cached[(r, c)]
            try:
                dict.__setitem__(cached, (r, c), sst[int(v)])
            except (ValueError, IndexError):
                raise WorkbookError(f"{where} cell {cell_name(r, c)}: bad shared string index {v!r}") from None


def read_sheet(zf: zipfile.ZipFile, part: str, name: str, sst: list[str]) -> Sheet:
    where = f"{zf.filename}: {part}"
    p = None
    buf = b""
    state = 0  # 0: before <sheetData>, 1: inside, 2: after
    for data in stream(zf, part):
        buf += data
        if state == 0:
            i = buf.find(b"sheetData")
            if i < 0:
                if len(buf) > zip_limits.MAX_ROW_XML_BYTES:
                    raise WorkbookError(
                        f"{zf.filename}: {part} has no <sheetData> in its first {zip_limits.MAX_ROW_XML_BYTES} bytes"
                    )
                continue
            j = buf.find(b">", i)
            if j < 0:
                continue
            p = _SheetParser(str(zf.filename), name, sst, _head_namespaces(buf, i, j, where))
            dm = _DIM_RE.search(buf, 0, i)
            if dm:
                ref = xml_attrs(dm.group(1)).get(b"ref", b"")
                for m in _CELLREF_RE.finditer(ref):
                    p.check_limits(int(m.group(2)) - 1, col_index(m.group(1).decode()))
            if buf[j - 1 : j] == b"/":  # <sheetData/>
                state = 2
                buf = b""
                continue
            buf = buf[j + 1 :]
            state = 1
        if state != 1:
            continue
        end = buf.find(b"sheetData>") if b"h" in buf else -1  # weight XML has no "h": a fast byte search
        if end >= 0:
            body, buf, state = buf[: buf.rfind(b"<", 0, end)], b"", 2
        else:
            cut = _after_last_row_end(buf)
            if cut < 0:
                if len(buf) > zip_limits.MAX_ROW_XML_BYTES:
                    raise WorkbookError(
                        f"{zf.filename}: {part} has a row longer than {zip_limits.MAX_ROW_XML_BYTES} bytes"
                    )
                continue
            else:
                body, buf = buf[:cut], buf[cut:]
        p.chunk(body)
    if state == 0:
        raise WorkbookError(f"{zf.filename}: {part} has no <sheetData>")
    if state == 1:
        raise WorkbookError(f"{zf.filename}: {part} is truncated (no </sheetData>)")
    return p.finish()


def _after_last_row_end(buf: bytes) -> int:
    """The index just past the last complete ``</row>`` end tag in ``buf`` (white space may stand
    before its '>', as XML allows and sheetgpt's padded weight rows write it), or -1."""
    k = buf.rfind(b"</row")
    while k >= 0:
        e = buf.find(b">", k + 5)
        if e >= 0 and not buf[k + 5 : e].strip():
            return e + 1
        k = buf.rfind(b"</row", 0, k)  # an end tag cut off by the chunk, or </rowX>: look further back
    return -1


def _head_namespaces(buf: bytes, i: int, j: int, where: str) -> re.Pattern:
    """The sheet XML before <sheetData> (which starts before ``i``, its tag ends at ``j``): no
    markup we do not read, SpreadsheetML the default namespace, <sheetData> itself SpreadsheetML's.
    Returns the pattern that finds a foreign element tag inside <sheetData>."""
    start = xml_start(buf, where)
    refuse_markup(buf, start, where, j)
    ns = Namespaces(buf, start, where)
    ns.require_spreadsheetml(where)
    prefix = buf[buf.rfind(b"<", 0, i) + 1 : i]
    if prefix and prefix[:-1] not in ns.bound_to(SPREADSHEETML):
        raise WorkbookError(f"{where}: its <sheetData> is in a foreign XML namespace; refusing it")
    return ns.foreign_tag()
