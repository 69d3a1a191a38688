"""Weight tabs written straight from numpy, deflated in parallel, and the zip that holds them.

xlsxwriter spends about 10 µs of Python per cell; GPT-2 small has 124 M weights. Here a
weight tab's XML is built with array operations, about 80 ns a cell:

* Every cell has the same width, 28 bytes: ``<c><v>0188595336E-10</v></c>`` (a leading
  ``0`` or ``-``, the 9-digit mantissa, a 2-digit exponent). Fixed width means no per-cell
  Python and no compaction: the cells of a block are a ``[n, 7]`` uint32 matrix of which
  four columns are computed (digits by SWAR arithmetic) and three are constant.
* Each number's text is *proved* to read back as exactly the float64 given: the mantissa m
  and exponent k satisfy ``m / 10**k == |x|`` in IEEE arithmetic (an exact power of ten and
  one correctly rounded division, which is what a decimal parser computes). Values that are
  not the double of a 9-digit decimal, or are out of range, take Python's shortest
  round-trip ``repr`` instead; zero is ``0``.
* Cells carry no ``r`` attribute (ECMA-376 §18.3.1.4: optional; a cell without it is the
  next column); rows keep theirs. LibreOffice, openpyxl, python-calamine and
  ``sheetgpt.xlsx_reader`` read such rows (tests/test_fast_xlsx.py).
* Blocks of rows are deflated in worker processes, each as raw deflate ending in a
  ``Z_SYNC_FLUSH`` (so the pieces join into one stream; the last piece ends the stream),
  and their CRCs are joined with ``crc32_combine``. ISA-L (``isal``) is used when installed,
  about 4x faster than zlib at level 1 here; zlib otherwise.
* ``assemble`` copies every member of xlsxwriter's book as it is (raw, not recompressed),
  except the weight tabs' empty worksheets, which it replaces with the streamed ones; zip64
  records are written where sizes or offsets need them.
"""

from __future__ import annotations

import os
import re
import signal
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

try:  # ISA-L's deflate: same format, several times faster
    from isal import isal_zlib as _deflate

    COMPRESSOR = "isal"
except ImportError:  # pragma: no cover - depends on the environment
    _deflate = zlib
    COMPRESSOR = "zlib"

LEVEL = 1  # measured: level 1 is 4x faster than 6 for 10 % more bytes (BENCHMARKS.md)

# ---- numbers as fixed-width text -----------------------------------------------------------

CELL = b"<c><v>0000000000E-00</v></c>"  # the template; 28 bytes = 7 uint32 words
CELL_BYTES = len(CELL)
NUMBER_WIDTH = 14  # the text between <v> and </v>
_TEMPLATE = np.frombuffer(CELL, "<u4")
_P10 = 10.0 ** np.arange(0, 23)  # exact powers of ten
_MAGIC = np.float64(6755399441055744.0)  # 1.5 * 2**52: adding it rounds to an integer in the low bits
_MAGIC_BITS = _MAGIC.view(np.int64)


def _word(b: bytes) -> np.uint32:
    return np.frombuffer(b, "<u4")[0]


_EXP = np.array([_word(b"E-" + f"{i:02d}".encode()) for i in range(23)], np.uint32)
_POS, _NEG = _word(b"v>00"), _word(b"v>-0")


def _digits8(v: np.ndarray) -> np.ndarray:
    """v < 10**8 (uint64) -> uint64 holding its 8 ASCII digits, most significant in the lowest byte."""
    hi = (v * 109951163) >> 40  # v // 10000 (exact for v < 10**8)
    x = hi | ((v - hi * 10000) << 32)  # two 4-digit lanes
    h = ((x * 5243) >> 19) & 0x0000007F0000007F  # lane // 100
    y = h | ((x - h * 100) << 16)  # four 2-digit lanes
    t = ((y * 103) >> 10) & 0x000F000F000F000F  # lane // 10
    return t | ((y - t * 10) << 8) | 0x3030303030303030


def mantissa_exponent(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(m, k, ok): |x| == m / 10**k exactly as a decimal parser reads "mE-k", 10**8 <= m < 10**9.

    ``ok`` is False where that does not hold (zero, |x| >= 1e9 or below about 1e-14, non-finite,
    or a double that is not the nearest to any 9-digit decimal).
    """
    a = np.abs(np.asarray(x, dtype=np.float64))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        e = np.floor(np.log10(a))
        k = np.where(np.isfinite(e), 8 - e, 0).astype(np.int64)
    np.clip(k, 0, 22, out=k)
    p = _P10[k]
    m = (a * p + _MAGIC).view(np.int64) - _MAGIC_BITS
    big = np.flatnonzero(m >= 1_000_000_000)  # log10 rounded down near a power of ten
    if big.size:
        k[big] = np.maximum(k[big] - 1, 0)
        p[big] = _P10[k[big]]
        m[big] = (a[big] * p[big] + _MAGIC).view(np.int64) - _MAGIC_BITS
    with np.errstate(invalid="ignore"):
        ok = (m / p == a) & (m >= 100_000_000) & (m < 1_000_000_000)
    return m, k, ok


def number_text(v: float) -> bytes:
    """Exact text of one number for the slow path: '0' or Python's shortest round-trip repr."""
    v = float(v)
    if v == 0:
        return b"0"
    if v != v or v in (float("inf"), float("-inf")):
        raise ValueError(f"cannot write {v!r} as a worksheet number")
    text = repr(v)
    return (text[:-2] if text.endswith(".0") else text).encode()


def _padded(text: bytes) -> bytes | None:
    """text widened to NUMBER_WIDTH with leading zeros after the sign, or None if too long."""
    if len(text) > NUMBER_WIDTH:
        return None
    sign, digits = (b"-", text[1:]) if text.startswith(b"-") else (b"", text)
    return sign + b"0" * (NUMBER_WIDTH - len(text)) + digits


def number_cells(values: np.ndarray) -> bytes | None:
    """The <c><v>..</v></c> XML of values (row-major), CELL_BYTES per cell; None if a value needs more."""
    x = np.ascontiguousarray(values, dtype=np.float64).ravel()
    m, k, ok = mantissa_exponent(x)
    out = np.empty((x.size, 7), np.uint32)
    out[:] = _TEMPLATE
    mu = m.view(np.uint64)
    d0 = (mu * 1441151881) >> 57  # m // 10**8 (exact for m < 2**30)
    digits = _digits8(mu - d0 * 100_000_000).view(np.uint32).reshape(-1, 2)
    out[:, 1] = np.where(x < 0, _NEG, _POS) | ((d0.astype(np.uint32) + 48) << 24)
    out[:, 2:4] = digits
    out[:, 4] = _EXP[k]
    buf = out.view(np.uint8).reshape(-1, CELL_BYTES)
    for i in np.flatnonzero(~ok):  # rare: zero, huge, tiny, or not a 9-digit decimal's double
        text = _padded(number_text(x[i]))
        if text is None:
            return None
        buf[i, 6:20] = np.frombuffer(text, np.uint8)
    return buf.tobytes()


def rows_xml(values: np.ndarray, row0: int) -> bytes:
    """<row r=..>..</row> for a [rows, cols] block whose first row is sheet row row0 (0-based)."""
    values = np.asarray(values, dtype=np.float64)
    rows, cols = values.shape
    cells = number_cells(values)
    if cells is None:  # a value whose shortest text is longer than NUMBER_WIDTH: variable width
        return b"".join(
            b'<row r="%d">' % (row0 + i + 1)
            + b"".join(b"<c><v>" + number_text(v) + b"</v></c>" for v in values[i].tolist())
            + b"</row>"
            for i in range(rows)
        )
    view, width = memoryview(cells), cols * CELL_BYTES
    parts = []
    for i in range(rows):
        parts += (b'<row r="%d">' % (row0 + i + 1), view[i * width : (i + 1) * width], b"</row>")
    return b"".join(parts)


def col_letters(c: int) -> str:
    s, c = "", c + 1
    while c:
        c, r = divmod(c - 1, 26)
        s = chr(65 + r) + s
    return s


def sheet_parts(empty_sheet_xml: bytes, rows: int, cols: int) -> tuple[bytes, bytes]:
    """(prefix, suffix) around the rows, from xlsxwriter's XML of the same sheet left empty."""
    head, sep, tail = empty_sheet_xml.partition(b"<sheetData/>")
    if not sep:
        raise ValueError("expected an empty worksheet (<sheetData/>)")
    dim = f'<dimension ref="A1:{col_letters(cols - 1)}{rows}"/>'.encode()
    head, n = re.subn(rb"<dimension ref=\"[^\"]*\"/>", dim, head)
    if n != 1:
        raise ValueError("expected one <dimension> in the empty worksheet")
    return head + b"<sheetData>", b"</sheetData>" + tail


# ---- compute tabs: shared formulas merged into xlsxwriter's sheets ----------------------------


@dataclass
class FormulaBlock:
    """A region's cells, handed over by the writer instead of one xlsxwriter call per cell.

    ``formula(i, j)`` is the text (no '=') of data row i, column j; the cell is at sheet
    (top + i, left + j). ``rects`` are (i0, i1, j0, j1), ends exclusive: rectangles of cells
    expected to hold one formula up to relative references (a region, or one head of it).
    ``arrays`` are CSE array formulas (r0, c0, r1, c1, text) in sheet coordinates, ends
    inclusive; every cell of an array's range gets its cached value. ``values`` [rows,
    width] are the cached results: float64 (NaN: an empty cached value), or str objects for
    formulas that give text; ``style`` the cell format's xf index.
    """

    top: int
    left: int
    values: np.ndarray
    style: int
    rects: list[tuple[int, int, int, int]] = field(default_factory=list)
    formula: Callable[[int, int], str] | None = None
    arrays: list[tuple[int, int, int, int, str]] = field(default_factory=list)
    verify: str | None = None  # overrides the book's verify ("all": cells not generated as fills of one formula)


SAMPLE_CELLS = 64  # interior cells checked per rectangle (besides its edges and diagonal) when verify="sample"


def _checked_cells(i0: int, i1: int, j0: int, j1: int, verify: str) -> Iterator[tuple[int, int]]:
    """The cells whose text is compared with the master's, shifted: all, or edges + diagonal + a sample."""
    if verify == "all" or (i1 - i0) * (j1 - j0) <= 4 * SAMPLE_CELLS:
        yield from ((i, j) for i in range(i0, i1) for j in range(j0, j1))
        return
    for j in range(j0, j1):
        yield i0, j
        yield i1 - 1, j
    for i in range(i0, i1):
        yield i, j0
        yield i, j1 - 1
        yield i, j0 + (i - i0) * (j1 - j0) // (i1 - i0)
    rng = np.random.default_rng([i0, i1, j0, j1])
    yield from zip(rng.integers(i0, i1, SAMPLE_CELLS).tolist(), rng.integers(j0, j1, SAMPLE_CELLS).tolist())


def shared_groups(
    formula: Callable[[int, int], str], rect: tuple[int, int, int, int], top: int, left: int, verify: str = "sample"
) -> list[tuple[int, int, int, int, str, bool]]:
    """(i0, i1, j0, j1, master text, shared) groups covering rect, each cell's formula proved to be
    its master's filled the way a shared formula is (equal R1C1 forms, ``formula.to_r1c1``).

    A rectangle that does not hold (cells checked per ``verify``: "all" or "sample") is cut
    into the runs of equal R1C1 forms in each row, runs of the same columns and form in
    consecutive rows joined (a group of one cell is a plain formula).
    """
    from .engine.r1c1 import column_keys, to_r1c1

    i0, i1, j0, j1 = rect
    master = formula(i0, j0)
    if (i1 - i0) * (j1 - j0) == 1:
        return [(i0, i1, j0, j1, master, False)]
    if verify != "all" and (i1 - i0) * (j1 - j0) > 4 * SAMPLE_CELLS:
        # a cell holds the master filled to it iff both have one R1C1 form (the same offsets
        # and absolute parts); a sample of the cells is compared first
        key = to_r1c1(master, top + i0, left + j0)
        if all(
            to_r1c1(formula(i, j), top + i, left + j) == key
            for i, j in _checked_cells(i0, i1, j0, j1, verify)
            if (i, j) != (i0, j0)
        ):
            return [(i0, i1, j0, j1, master, True)]
    # every cell's R1C1 form, a column at a time (column_keys parses a filled column once)
    by_col = [column_keys([formula(i, j) for i in range(i0, i1)], top + i0, left + j) for j in range(j0, j1)]
    if all(k == by_col[0][0] for col in by_col for k in col):
        return [(i0, i1, j0, j1, master, True)]
    groups = []
    open_runs: dict[tuple[int, int, str], int] = {}  # (first col, end col, R1C1 form) -> first row
    for i in range(i0, i1 + 1):
        runs = []
        if i < i1:
            keys = [col[i - i0] for col in by_col]
            a = 0
            for b in range(1, len(keys) + 1):
                if b == len(keys) or keys[b] != keys[a]:
                    runs.append((j0 + a, j0 + b, keys[a]))
                    a = b
        for run in [r for r in open_runs if r not in runs]:  # runs that end above row i
            first = open_runs.pop(run)
            groups.append((first, i, run[0], run[1], formula(first, run[0]), (i - first) * (run[1] - run[0]) > 1))
        for run in runs:
            open_runs.setdefault(run, i)
    return sorted(groups)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def value_texts(values: np.ndarray) -> list[str]:
    """Cached-value texts, row-major: of float64 values Python's repr (exact), '' for NaN;
    of str values (formulas that give text) the text, escaped."""
    if values.dtype == object:
        return [_escape(t) for t in values.ravel().tolist()]
    flat = np.asarray(values, dtype=np.float64).ravel().tolist()
    if not flat:
        return []
    texts = repr(flat)[1:-1].split(", ")  # one C-level repr of the list: shortest round-trip texts
    if np.isnan(values).any():
        texts = ["" if t == "nan" else t for t in texts]
    return texts


def block_runs(block: FormulaBlock, verify: str, si: int) -> tuple[list[tuple[int, int, str]], int]:
    """(sheet row, first column, XML of consecutive cells) runs of a block's cells, and the next si."""
    runs = []
    s = block.style
    # a text result is typed t="str" (an empty one is not typed, as xlsxwriter writes it)
    typed = (lambda v: f' s="{s}" t="str"' if v else f' s="{s}"') if block.values.dtype == object else None
    for rect in block.rects if block.formula is not None else ():
        for i0, i1, j0, j1, text, shared in shared_groups(
            block.formula, rect, block.top, block.left, block.verify or verify
        ):
            texts = value_texts(block.values[i0:i1, j0:j1])
            attrs = [typed(v) for v in texts] if typed else [f' s="{s}"'] * len(texts)
            n = j1 - j0
            c0 = block.left + j0
            if not shared:
                r = block.top + i0
                runs.append(
                    (r, c0, f'<c r="{col_letters(c0)}{r + 1}"{attrs[0]}><f>{_escape(text)}</f><v>{texts[0]}</v></c>')
                )
                continue
            letters = [col_letters(c) for c in range(c0, c0 + n)]
            ref = f"{letters[0]}{block.top + i0 + 1}:{letters[-1]}{block.top + i1}"
            member = f'><f t="shared" si="{si}"/><v>'
            for k, i in enumerate(range(i0, i1)):
                r = block.top + i + 1
                row = [
                    f'<c r="{c}{r}"{a}{member}{v}</v></c>'
                    for c, a, v in zip(letters, attrs[k * n : (k + 1) * n], texts[k * n : (k + 1) * n])
                ]
                if k == 0:  # the master carries the text and the range
                    row[0] = (
                        f'<c r="{letters[0]}{r}"{attrs[0]}><f t="shared" ref="{ref}" si="{si}">'
                        f"{_escape(text)}</f><v>{texts[0]}</v></c>"
                    )
                runs.append((r - 1, c0, "".join(row)))
            si += 1
    for r0, c0, r1, c1, text in block.arrays:
        n = c1 - c0 + 1
        texts = value_texts(block.values[r0 - block.top : r1 - block.top + 1, c0 - block.left : c1 - block.left + 1])
        letters = [col_letters(c) for c in range(c0, c1 + 1)]
        ref = f"{letters[0]}{r0 + 1}:{letters[-1]}{r1 + 1}" if (r0, c0) != (r1, c1) else f"{letters[0]}{r0 + 1}"
        attrs = [typed(v) for v in texts] if typed else [f' s="{s}"'] * len(texts)
        for k, r in enumerate(range(r0 + 1, r1 + 2)):
            row = [
                f'<c r="{c}{r}"{a}><v>{v}</v></c>' if v else f'<c r="{c}{r}" s="{s}"/>'
                for c, a, v in zip(letters, attrs[k * n : (k + 1) * n], texts[k * n : (k + 1) * n])
            ]
            if k == 0:
                row[0] = (
                    f'<c r="{letters[0]}{r}"{attrs[0]}><f t="array" ref="{ref}">{_escape(text)}</f>'
                    f"<v>{texts[0]}</v></c>"
                )
            runs.append((r - 1, c0, "".join(row)))
    return runs, si


_ROW_RE = re.compile(rb'<row r="(\d+)"([^>]*?)(?:/>|>(.*?)</row>)', re.S)
_CELL_COL_RE = re.compile(rb'<c r="([A-Z]+)\d+"')
_SPANS_RE = re.compile(rb' spans="[^"]*"')


def _col_index(letters: bytes) -> int:
    n = 0
    for ch in letters:
        n = n * 26 + ch - 64
    return n - 1


def formula_sheet_xml(skeleton_xml: bytes, blocks: list[FormulaBlock], verify: str = "sample") -> bytes:
    """xlsxwriter's sheet XML with the blocks' cells merged in, row by row and in column order.

    Rows only the skeleton has are copied as they are; rows that gain cells lose their
    optional ``spans`` hint; the dimension grows to cover the new cells.
    """
    ours: dict[int, list[tuple[int, str]]] = {}
    si = 0
    for b in blocks:
        runs, si = block_runs(b, verify, si)
        for r, c, xml in runs:
            ours.setdefault(r, []).append((c, xml))
    head, sep, rest = skeleton_xml.partition(b"<sheetData>")
    if not sep:
        if b"<sheetData/>" not in skeleton_xml:
            raise ValueError("expected <sheetData> in the worksheet")
        head, _, tail = skeleton_xml.partition(b"<sheetData/>")
        body = b""
    else:
        body, sep, tail = rest.partition(b"</sheetData>")
        if not sep:
            raise ValueError("expected </sheetData> in the worksheet")
    out = []
    pos = 0
    pending = sorted(ours)
    k = 0
    max_r = max_c = -1

    def add_only_ours(before: int | None) -> None:
        nonlocal k
        while k < len(pending) and (before is None or pending[k] < before):
            r = pending[k]
            out.append(b'<row r="%d">' % (r + 1) + "".join(x for _, x in sorted(ours[r])).encode() + b"</row>")
            k += 1

    for m in _ROW_RE.finditer(body):
        r = int(m.group(1)) - 1
        add_only_ours(r)
        out.append(body[pos : m.start()])
        pos = m.end()
        if k < len(pending) and pending[k] == r:
            k += 1
            content = m.group(3) or b""
            starts = [(_col_index(c.group(1)), c.start()) for c in _CELL_COL_RE.finditer(content)]
            cells = [
                (c, content[a : (starts[n + 1][1] if n + 1 < len(starts) else len(content))])
                for n, (c, a) in enumerate(starts)
            ]
            merged = sorted(cells + [(c, x.encode()) for c, x in ours[r]], key=lambda cx: cx[0])
            out.append(
                b'<row r="%d"' % (r + 1)
                + _SPANS_RE.sub(b"", m.group(2))
                + b">"
                + b"".join(x for _, x in merged)
                + b"</row>"
            )
        else:
            out.append(m.group(0))
    add_only_ours(None)
    out.append(body[pos:])
    for b in blocks:
        max_r = max(max_r, b.top + b.values.shape[0] - 1)
        max_c = max(max_c, b.left + b.values.shape[1] - 1)
    head = _grow_dimension(head, max_r, max_c)
    return head + b"<sheetData>" + b"".join(out) + b"</sheetData>" + tail


def _grow_dimension(head: bytes, max_r: int, max_c: int) -> bytes:
    m = re.search(rb'<dimension ref="([A-Z]+)(\d+)(?::([A-Z]+)(\d+))?"/>', head)
    if m is None or max_r < 0:
        return head
    r0, c0 = int(m.group(2)) - 1, _col_index(m.group(1))
    r1, c1 = (int(m.group(4)) - 1, _col_index(m.group(3))) if m.group(3) else (r0, c0)
    r1, c1 = max(r1, max_r), max(c1, max_c)
    ref = (
        f"{col_letters(c0)}{r0 + 1}:{col_letters(c1)}{r1 + 1}" if (r0, c0) != (r1, c1) else f"{col_letters(c0)}{r0 + 1}"
    )
    return head[: m.start()] + f'<dimension ref="{ref}"/>'.encode() + head[m.end() :]


try:  # a worksheet whose write_formula skips xlsxwriter's _prepare_formula (30 regexes a call)
    from xlsxwriter.utility import xl_rowcol_to_cell
    from xlsxwriter.worksheet import CellArrayFormulaTuple as _CellArrayFormula
    from xlsxwriter.worksheet import CellFormulaTuple as _CellFormula
    from xlsxwriter.worksheet import Worksheet as _Worksheet
    from xlsxwriter.worksheet import convert_cell_args as _cell_args
    from xlsxwriter.worksheet import re_dynamic_function as _DYNAMIC
except ImportError:  # pragma: no cover - another xlsxwriter layout
    _Worksheet = None


if _Worksheet is not None:

    class FormulaSheet(_Worksheet):
        """xlsxwriter's worksheet with two additions for sheetgpt's compute tabs.

        * ``shared``: a list of FormulaBlock the writer fills instead of writing per-cell
          formulas; ``assemble`` merges them into this sheet's XML as shared formulas.
        * ``write_formula`` (and ``write_array_formula`` for one cell) stores formulas that are
          already in final form (no dynamic-array function to prefix) directly, as xlsxwriter
          itself would after its ``_prepare_formula``, which otherwise runs 30 regex
          substitutions per formula.
        """

        def __init__(self):
            super().__init__()
            self.shared: list[FormulaBlock] = []

        @_cell_args
        def write_formula(self, row, col, formula, cell_format=None, value=0):
            if (
                type(row) is not int
                or type(col) is not int
                or not isinstance(formula, str)
                or formula[:1] == "{"
                or formula[-1:] == "}"
                or self.constant_memory
                or "INGLE(" in formula
                or _DYNAMIC.search(formula)
            ):
                return super().write_formula(row, col, formula, cell_format, value)
            if self._check_dimensions(row, col):
                return -1
            if formula[:1] == "=":
                formula = formula[1:]
            if not formula:
                return super().write_formula(row, col, "", cell_format, value)
            self.table[row][col] = _CellFormula(formula, cell_format, value)
            return 0

        def _write_array_formula(
            self, first_row, first_col, last_row, last_col, formula, cell_format=None, value=0, atype="static"
        ):
            # a one-cell CSE formula in final form ({=...}, nothing to prefix): stored as
            # xlsxwriter stores it after _prepare_formula; anything else goes through it
            if (
                (first_row, first_col) != (last_row, last_col)
                or type(first_row) is not int
                or type(first_col) is not int
                or not isinstance(formula, str)
                or formula[:2] != "{="
                or formula[-1:] != "}"
                or self.constant_memory
                or "INGLE(" in formula
                or _DYNAMIC.search(formula)
            ):
                return super()._write_array_formula(
                    first_row, first_col, last_row, last_col, formula, cell_format, value, atype
                )
            if self._check_dimensions(first_row, first_col):
                return -1
            cell = xl_rowcol_to_cell(first_row, first_col)
            self.table[first_row][first_col] = _CellArrayFormula(formula[2:-1], cell_format, value, cell, atype)
            return 0

        # xlsxwriter's _write_rows and _calculate_spans visit every (row, column) of the used
        # rectangle: 50257 rows x 770 columns on the Embeddings and Logit lens tabs, 20 s. These
        # visit the cells there are, in the same order, and write the same XML.
        def _rows_to_write(self) -> list[int]:
            if self.dim_rowmin is None:
                return []
            rows = set(self.row_info) | set(self.comments) | {r for r, cells in self.table.items() if cells}
            return sorted(r for r in rows if self.dim_rowmin <= r <= self.dim_rowmax)

        def _calculate_spans(self) -> None:
            spans: dict[int, list[int]] = {}
            for row_num in self._rows_to_write():
                cols = [c for c in self.table.get(row_num, ()) if self.dim_colmin <= c <= self.dim_colmax]
                cols += [c for c in self.comments.get(row_num, ()) if self.dim_colmin <= c <= self.dim_colmax]
                if cols:
                    lo, hi = spans.setdefault(row_num // 16, [min(cols), max(cols)])
                    spans[row_num // 16] = [min(lo, *cols), max(hi, *cols)]
            self.row_spans = {k: f"{lo + 1}:{hi + 1}" for k, (lo, hi) in spans.items()}

        def _write_rows(self) -> None:
            self._calculate_spans()
            for row_num in self._rows_to_write():
                span = self.row_spans.get(row_num // 16)
                cells = self.table.get(row_num)
                if cells:
                    self._write_row(row_num, span, self.row_info.get(row_num))
                    for col_num in sorted(cells):
                        if self.dim_colmin <= col_num <= self.dim_colmax:
                            self._write_cell(row_num, col_num, cells[col_num])
                    self._xml_end_tag("row")
                else:
                    self._write_empty_row(row_num, span, self.row_info.get(row_num))


# ---- CRC and parallel deflate --------------------------------------------------------------


def _gf2_times(mat: list[int], vec: int) -> int:
    out, i = 0, 0
    while vec:
        if vec & 1:
            out ^= mat[i]
        vec >>= 1
        i += 1
    return out


def _gf2_square(mat: list[int]) -> list[int]:
    return [_gf2_times(mat, m) for m in mat]


def crc32_combine(crc1: int, crc2: int, len2: int) -> int:
    """CRC-32 of A+B from crc32(A), crc32(B) and len(B) (zlib's crc32_combine)."""
    if len2 <= 0:
        return crc1
    odd = [0xEDB88320] + [1 << i for i in range(31)]  # operator for one zero bit
    even = _gf2_square(odd)  # two zero bits
    odd = _gf2_square(even)  # four zero bits
    while True:  # apply len2 zero bytes to crc1
        even = _gf2_square(odd)
        if len2 & 1:
            crc1 = _gf2_times(even, crc1)
        len2 >>= 1
        if not len2:
            break
        odd = _gf2_square(even)
        if len2 & 1:
            crc1 = _gf2_times(odd, crc1)
        len2 >>= 1
        if not len2:
            break
    return crc1 ^ crc2


@dataclass
class Piece:
    """One deflated block of a member: raw deflate bytes, CRC-32 and length of what they hold."""

    member: str
    data: bytes
    crc: int
    size: int
    last: bool


@dataclass
class Task:
    member: str  # zip member name, e.g. xl/worksheets/sheet40.xml
    tab: str  # the weight tab (key into the worker's arrays), or the formula tab
    r0: int
    r1: int
    prefix: bytes
    suffix: bytes
    last: bool
    formulas: bool = False  # a compute tab: the skeleton's sheet merged with shared-formula cells


_ARRAYS: dict[str, np.ndarray] = {}  # set in the parent before the workers fork; read by them
_SHEETS: dict[str, tuple] = {}  # member -> (skeleton sheet XML, [FormulaBlock], verify); likewise


def deflate_piece(task: Task) -> Piece:
    if task.formulas:
        xml = formula_sheet_xml(*_SHEETS[task.member])
    else:
        values = _ARRAYS[task.tab]
        xml = task.prefix + rows_xml(values[task.r0 : task.r1], task.r0) + task.suffix
    c = _deflate.compressobj(LEVEL, _deflate.DEFLATED, -15, 9)
    data = c.compress(xml) + c.flush(_deflate.Z_FINISH if task.last else _deflate.Z_SYNC_FLUSH)
    return Piece(task.member, data, zlib.crc32(xml), len(xml), task.last)


def _worker_init() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides; it terminates us
    try:  # die with the parent, even if it is SIGKILLed
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:  # pragma: no cover - not Linux
        pass
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(1)


def plan(
    member: str, tab: str, shape: tuple[int, int], prefix: bytes, suffix: bytes, cells_per_piece: int = 1 << 19
) -> list[Task]:
    rows, cols = shape
    step = max(1, cells_per_piece // max(cols, 1))
    starts = list(range(0, rows, step))
    return [
        Task(
            member,
            tab,
            r0,
            min(r0 + step, rows),
            prefix if r0 == 0 else b"",
            suffix if r0 == starts[-1] else b"",
            r0 == starts[-1],
        )
        for r0 in starts
    ]


def deflate_all(
    tasks: list[Task],
    arrays: dict[str, np.ndarray],
    processes: int | None = None,
    sheets: dict[str, tuple] | None = None,
) -> Iterator[Piece]:
    """Deflated pieces of every task, in order; worker processes share ``arrays`` and ``sheets`` by fork."""
    import multiprocessing as mp

    _ARRAYS.clear()
    _ARRAYS.update(arrays)
    _SHEETS.clear()
    _SHEETS.update(sheets or {})
    processes = processes or max(1, min(os.cpu_count() or 1, 8))
    if processes == 1 or len(tasks) == 1:
        for t in tasks:
            yield deflate_piece(t)
        return
    pool = mp.get_context("fork").Pool(processes, initializer=_worker_init)
    try:
        yield from pool.imap(deflate_piece, tasks, chunksize=1)
        pool.close()
    finally:
        pool.terminate()
        pool.join()
        _ARRAYS.clear()
        _SHEETS.clear()


# ---- the zip ---------------------------------------------------------------------------------

_LOCAL = struct.Struct("<4sHHHHHIIIHH")
_CENTRAL = struct.Struct("<4sHHHHHHIIIHHHHHII")
_EOCD = struct.Struct("<4sHHHHIIH")
_ZIP64_EOCD = struct.Struct("<4sQHHIIQQQQ")
_ZIP64_LOC = struct.Struct("<4sIQI")
_U32 = 0xFFFFFFFF


@dataclass
class _Entry:
    name: bytes
    method: int
    dostime: int
    dosdate: int
    crc: int
    csize: int
    usize: int
    offset: int
    zip64_local: bool


class ZipOut:
    """A zip written front to back; members either copied raw or streamed as deflate pieces."""

    def __init__(self, fp):
        self.fp = fp
        self.entries: list[_Entry] = []

    def _local(self, e: _Entry) -> None:
        extra = b""
        csize, usize = e.csize, e.usize
        if e.zip64_local:
            extra = struct.pack("<HHQQ", 1, 16, e.usize, e.csize)
            csize = usize = _U32
        version = 45 if e.zip64_local else 20
        self.fp.write(
            _LOCAL.pack(
                b"PK\x03\x04", version, 0, e.method, e.dostime, e.dosdate, e.crc, csize, usize, len(e.name), len(extra)
            )
            + e.name
            + extra
        )

    def copy(self, src: zipfile.ZipFile, info: zipfile.ZipInfo) -> None:
        """Copy a member of src as it is stored (no recompression)."""
        src.fp.seek(info.header_offset)
        head = src.fp.read(30)
        name_len, extra_len = struct.unpack("<HH", head[26:30])
        src.fp.seek(info.header_offset + 30 + name_len + extra_len)
        dostime, dosdate = _dos(info.date_time)
        e = _Entry(
            info.filename.encode(),
            info.compress_type,
            dostime,
            dosdate,
            info.CRC,
            info.compress_size,
            info.file_size,
            self.fp.tell(),
            False,
        )
        e.zip64_local = max(e.csize, e.usize) >= _U32
        self._local(e)
        left = info.compress_size
        while left:
            block = src.fp.read(min(left, 1 << 24))
            if not block:
                raise zipfile.BadZipFile(f"{info.filename}: truncated")
            self.fp.write(block)
            left -= len(block)
        self.entries.append(e)

    def stream(self, name: str, pieces: Iterable[Piece], date_time, size_hint: int) -> None:
        """Write a deflated member from pieces (raw deflate, the last one finishing the stream)."""
        dostime, dosdate = _dos(date_time)
        e = _Entry(
            name.encode(), zipfile.ZIP_DEFLATED, dostime, dosdate, 0, 0, 0, self.fp.tell(), size_hint >= _U32 // 2
        )
        self._local(e)
        for p in pieces:
            self.fp.write(p.data)
            e.crc = crc32_combine(e.crc, p.crc, p.size)
            e.csize += len(p.data)
            e.usize += p.size
        if max(e.csize, e.usize) >= _U32 and not e.zip64_local:
            raise ValueError(f"{name}: {e.usize} bytes, more than the size hint allowed for")
        end = self.fp.tell()
        self.fp.seek(e.offset)
        self._local(e)  # now with the CRC and sizes
        self.fp.seek(end)
        self.entries.append(e)

    def close(self) -> None:
        start = self.fp.tell()
        for e in self.entries:
            extra_vals = []
            usize, csize, offset = e.usize, e.csize, e.offset
            if usize >= _U32:
                extra_vals.append(usize)
                usize = _U32
            if csize >= _U32:
                extra_vals.append(csize)
                csize = _U32
            if offset >= _U32:
                extra_vals.append(offset)
                offset = _U32
            extra = struct.pack(f"<HH{len(extra_vals)}Q", 1, 8 * len(extra_vals), *extra_vals) if extra_vals else b""
            version = 45 if extra_vals or e.zip64_local else 20
            self.fp.write(
                _CENTRAL.pack(
                    b"PK\x01\x02",
                    version,
                    version,
                    0,
                    e.method,
                    e.dostime,
                    e.dosdate,
                    e.crc,
                    csize,
                    usize,
                    len(e.name),
                    len(extra),
                    0,
                    0,
                    0,
                    0,
                    offset,
                )
                + e.name
                + extra
            )
        end = self.fp.tell()
        size, n = end - start, len(self.entries)
        if start >= _U32 or size >= _U32 or n >= 0xFFFF:
            self.fp.write(_ZIP64_EOCD.pack(b"PK\x06\x06", 44, 45, 45, 0, 0, n, n, size, start))
            self.fp.write(_ZIP64_LOC.pack(b"PK\x06\x07", 0, end, 1))
        self.fp.write(
            _EOCD.pack(b"PK\x05\x06", 0, 0, min(n, 0xFFFF), min(n, 0xFFFF), min(size, _U32), min(start, _U32), 0)
        )


def _dos(date_time) -> tuple[int, int]:
    y, mo, d, h, mi, s = date_time
    return (h << 11) | (mi << 5) | (s // 2), ((max(y, 1980) - 1980) << 9) | (mo << 5) | d


def assemble(
    skeleton: str,
    out_path: str,
    weights: dict[str, tuple[str, np.ndarray]],
    progress: Callable[[str], None] | None = None,
    processes: int | None = None,
    formulas: dict[str, tuple[str, list[FormulaBlock]]] | None = None,
    verify: str = "sample",
) -> int:
    """Write out_path: skeleton's members, the worksheets in ``weights`` filled from numpy.

    ``weights`` maps a member name (xl/worksheets/sheetN.xml, empty in the skeleton) to
    (tab name, [rows, cols] float64 values). ``formulas`` maps a member to (tab name,
    blocks of per-cell formulas) to merge into that sheet as shared formulas (``verify``:
    see ``shared_groups``). Returns the number of weight cells written.
    """
    formulas = formulas or {}
    with zipfile.ZipFile(skeleton) as src, open(out_path, "wb") as fp:
        infos = src.infolist()
        tasks, arrays, hints, sheets = [], {}, {}, {}
        for info in infos:
            if info.filename in formulas:
                tab, blocks = formulas[info.filename]
                sheets[info.filename] = (src.read(info), blocks, verify)
                tasks.append(Task(info.filename, tab, 0, 0, b"", b"", True, formulas=True))
                hints[info.filename] = 0
            elif info.filename in weights:
                tab, values = weights[info.filename]
                rows, cols = values.shape
                prefix, suffix = sheet_parts(src.read(info), rows, cols)
                arrays[tab] = values
                tasks += plan(info.filename, tab, (rows, cols), prefix, suffix)
                hints[info.filename] = len(prefix) + len(suffix) + rows * (cols * CELL_BYTES + 24)
        out = ZipOut(fp)
        pieces = deflate_all(tasks, arrays, processes, sheets)
        try:
            for info in infos:
                if info.filename not in weights and info.filename not in formulas:
                    out.copy(src, info)
                    continue
                out.stream(info.filename, _until_last(pieces, info.filename), info.date_time, hints[info.filename])
                if progress:
                    progress((weights.get(info.filename) or formulas[info.filename])[0])
            out.close()
        finally:
            pieces.close()
    return sum(v.size for _, v in weights.values())


def _until_last(pieces: Iterator[Piece], member: str) -> Iterator[Piece]:
    for p in pieces:
        if p.member != member:
            raise RuntimeError(f"deflated piece of {p.member} where {member} was expected")
        yield p
        if p.last:
            return
