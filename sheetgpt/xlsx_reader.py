"""Read an .xlsx workbook safely and fast: constants, formula text, nothing executed.

The workbook comes from a user, so every part is treated as hostile: the zip is read
member by member through ``zipfile`` streams with decompressed-size accounting, any XML
carrying a ``<!DOCTYPE`` is refused before it is parsed, and sheet sizes are checked
against Excel's limits. Cached values of formula cells are kept apart (``Sheet.cached``)
and never used as truth.

Sheet XML is scanned with compiled regular expressions over decompressed chunks that
end on a ``</row>`` boundary. Rows of purely numeric cells (weight tabs) take a fast
path: one ``findall`` per chunk and one numpy conversion of the value texts.
"""

from __future__ import annotations

import posixpath
import re
import zipfile
from dataclasses import dataclass, field

import numpy as np

from .errors import WorkbookError

MAX_ROWS = 1_048_576
MAX_COLS = 16_384
MAX_MEMBER_BYTES = 4 << 30  # decompressed size of one zip member
MAX_RATIO = 1000  # compression ratio allowed beyond RATIO_FREE_BYTES
RATIO_FREE_BYTES = 8 << 20
MAX_ROW_XML_BYTES = 64 << 20  # one <row> element (a full 16,384-column row is ~2 MB)
CHUNK = 8 << 20

ERROR_LITERALS = ("#NULL!", "#DIV/0!", "#VALUE!", "#REF!", "#NAME?", "#NUM!", "#N/A")


# ----------------------------------------------------------------------------- refs


def col_letter(c: int) -> str:
    """0-based column index -> letters (0 -> 'A', 27 -> 'AB')."""
    s = ""
    c += 1
    while c:
        c, r = divmod(c - 1, 26)
        s = chr(65 + r) + s
    return s


def col_index(letters: str) -> int:
    """Column letters -> 0-based index ('A' -> 0, 'AB' -> 27)."""
    n = 0
    for ch in letters.upper():
        n = n * 26 + (ord(ch) - 64)
    return n - 1


_REF_RE = re.compile(r"\$?([A-Za-z]{1,3})\$?([0-9]{1,7})")


def parse_ref(ref: str) -> tuple[int, int]:
    """'AB12' (or '$AB$12') -> 0-based (row, col) = (11, 27)."""
    m = _REF_RE.fullmatch(ref)
    if not m:
        raise WorkbookError(f"bad cell reference {ref!r}")
    return int(m.group(2)) - 1, col_index(m.group(1))


def parse_range(ref: str) -> tuple[int, int, int, int]:
    """'B5:E20' -> 0-based inclusive (r0, c0, r1, c1); a single cell is a 1x1 range."""
    a, _, b = ref.partition(":")
    r0, c0 = parse_ref(a)
    r1, c1 = parse_ref(b) if b else (r0, c0)
    return min(r0, r1), min(c0, c1), max(r0, r1), max(c0, c1)


def cell_name(row: int, col: int) -> str:
    """0-based (row, col) -> 'B5'."""
    return f"{col_letter(col)}{row + 1}"


# ----------------------------------------------------------------------------- model


@dataclass
class Sheet:
    """One worksheet. Rows and columns are 0-based.

    numbers: (rows int32[n], cols int32[n], values float64[n]) numeric constants
    strings: {(row, col): text} constant text (shared or inline strings)
    booleans / errors: {(row, col): bool | '#N/A'} constant booleans and error literals
    formulas: [(row, col, text_without_equals, array_ref | None)]; array_ref is the
        0-based inclusive (r0, c0, r1, c1) of a CSE array formula (given once, at its
        top-left cell); shared formulas are already expanded into each cell's own text
    cached: {(row, col): cached text from <v>} of formula cells (never trusted)
    dims: (n_rows, n_cols) = 1 + the largest row and column that hold anything
    """

    name: str
    numbers: tuple[np.ndarray, np.ndarray, np.ndarray]
    strings: dict = field(default_factory=dict)
    booleans: dict = field(default_factory=dict)
    errors: dict = field(default_factory=dict)
    formulas: list = field(default_factory=list)
    cached: dict = field(default_factory=dict)
    dims: tuple[int, int] = (0, 0)

    def dense(self) -> np.ndarray:
        """float64 [n_rows, n_cols] of the numeric constants, NaN elsewhere."""
        out = np.full(self.dims, np.nan)
        r, c, v = self.numbers
        out[r, c] = v
        return out

    @property
    def n_numbers(self) -> int:
        return len(self.numbers[2])


@dataclass
class Book:
    sheet_names: list[str]
    sheets: dict[str, Sheet]
    defined_names: dict[str, str]


# ----------------------------------------------------------------------------- zip


def _open_zip(path) -> zipfile.ZipFile:
    try:
        zf = zipfile.ZipFile(path)
    except FileNotFoundError:
        raise WorkbookError(f"{path}: no such file") from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as e:
        raise WorkbookError(f"{path}: not an .xlsx file (not a readable zip: {e})") from None
    for info in zf.infolist():
        if info.file_size > MAX_MEMBER_BYTES:
            raise WorkbookError(f"{path}: zip member {info.filename} declares {info.file_size} bytes (limit {MAX_MEMBER_BYTES}); refusing a possible zip bomb")
        if info.file_size > RATIO_FREE_BYTES and info.file_size > MAX_RATIO * max(info.compress_size, 1):
            raise WorkbookError(f"{path}: zip member {info.filename} has compression ratio > {MAX_RATIO}:1; refusing a possible zip bomb")
    return zf


def _stream(zf: zipfile.ZipFile, name: str, chunk: int = CHUNK):
    """Yield decompressed chunks of one member; refuse DOCTYPE and oversize output."""
    try:
        info = zf.getinfo(name)
    except KeyError:
        raise WorkbookError(f"{zf.filename}: missing part {name}") from None
    total = 0
    tail = b""
    try:
        with zf.open(info) as f:
            while True:
                data = f.read(chunk)
                if not data:
                    break
                total += len(data)
                if total > MAX_MEMBER_BYTES or (total > RATIO_FREE_BYTES and total > MAX_RATIO * max(info.compress_size, 1)):
                    raise WorkbookError(f"{zf.filename}: {name} decompresses beyond its limits; refusing a possible zip bomb")
                if total == len(data) and data[:2] in (b"\xff\xfe", b"\xfe\xff"):
                    raise WorkbookError(f"{zf.filename}: {name} is UTF-16 XML, which is not supported")
                probe = tail + data[:16]
                if b"<!DOCTYPE" in probe or b"<!DOCTYPE" in data or b"<!ENTITY" in data or b"<!ENTITY" in probe:
                    raise WorkbookError(f"{zf.filename}: {name} contains a DOCTYPE/ENTITY declaration; refusing it")
                tail = data[-16:]
                yield data
    except WorkbookError:
        raise
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, RuntimeError, NotImplementedError) as e:
        raise WorkbookError(f"{zf.filename}: corrupt zip member {name}: {e}") from None
    except Exception as e:  # zlib.error and friends
        raise WorkbookError(f"{zf.filename}: corrupt zip member {name}: {e}") from None


def _read_small(zf: zipfile.ZipFile, name: str, limit: int = 256 << 20) -> bytes:
    parts, n = [], 0
    for data in _stream(zf, name):
        n += len(data)
        if n > limit:
            raise WorkbookError(f"{zf.filename}: {name} is larger than {limit} bytes")
        parts.append(data)
    return b"".join(parts)


# ----------------------------------------------------------------------------- xml bits

_ENT_RE = re.compile(r"&(#x[0-9A-Fa-f]+|#[0-9]+|amp|lt|gt|quot|apos);")
_ENTS = {"amp": "&", "lt": "<", "gt": ">", "quot": '"', "apos": "'"}


def _unescape_ent(m: re.Match) -> str:
    e = m.group(1)
    if e[0] == "#":
        return chr(int(e[2:], 16) if e[1] in "xX" else int(e[1:]))
    return _ENTS[e]


def unescape(b: bytes | str) -> str:
    s = b.decode("utf-8", "replace") if isinstance(b, bytes) else b
    return _ENT_RE.sub(_unescape_ent, s) if "&" in s else s


_ATTR_RE = re.compile(rb"([\w:]+)\s*=\s*(?:\"([^\"]*)\"|'([^']*)')")


def _attrs(b: bytes) -> dict[bytes, bytes]:
    return {m[0].split(b":")[-1]: (m[1] if m[1] or not m[2] else m[2]) for m in _ATTR_RE.findall(b)}


_SHEET_TAG_RE = re.compile(rb"<(?:\w+:)?sheet\b([^>]*)/?>")
_DEFNAME_RE = re.compile(rb"<(?:\w+:)?definedName\b([^>]*)>(.*?)</(?:\w+:)?definedName>", re.S)
_REL_RE = re.compile(rb"<(?:\w+:)?Relationship\b([^>]*)/?>")
_SI_RE = re.compile(rb"<(?:\w+:)?si\b[^>]*?(?:/>|>(.*?)</(?:\w+:)?si>)", re.S)
_T_RE = re.compile(rb"<(?:\w+:)?t\b[^>]*?(?:/>|>(.*?)</(?:\w+:)?t>)", re.S)
_RPH_RE = re.compile(rb"<(?:\w+:)?rPh\b.*?</(?:\w+:)?rPh>", re.S)


def _text_of(inner: bytes) -> str:
    """Concatenated <t> texts of an <si> or <is>, phonetic runs dropped."""
    if b"<rPh" in inner or b":rPh" in inner:
        inner = _RPH_RE.sub(b"", inner)
    return unescape(b"".join(m or b"" for m in _T_RE.findall(inner)))


def _shared_strings(zf: zipfile.ZipFile, name: str | None) -> list[str]:
    if not name or name not in zf.namelist():
        return []
    out: list[str] = []
    buf = b""
    for data in _stream(zf, name):
        buf += data
        cut = buf.rfind(b"</si>")
        cut2 = buf.rfind(b"/>")
        # process everything up to the last complete <si> element
        end = max(cut + 5 if cut >= 0 else -1, -1)
        if end <= 0:
            if len(buf) > MAX_ROW_XML_BYTES:
                raise WorkbookError(f"{zf.filename}: a shared string is larger than {MAX_ROW_XML_BYTES} bytes")
            continue
        del cut2
        out.extend(_text_of(m or b"") for m in _SI_RE.findall(buf, 0, end))
        buf = buf[end:]
    out.extend(_text_of(m or b"") for m in _SI_RE.findall(buf))
    return out


def _resolve(base_dir: str, target: str) -> str:
    if target.startswith("/"):
        return target.lstrip("/")
    return posixpath.normpath(posixpath.join(base_dir, target))


# ----------------------------------------------------------------------------- sheet XML

_LETTERS: dict[bytes, int] = {}


def _col_of(letters: bytes) -> int:
    c = _LETTERS.get(letters)
    if c is None:
        c = col_index(letters.decode())
        if len(_LETTERS) < 100_000:
            _LETTERS[letters] = c
    return c


# numeric fast path: every cell starts with r="..", has no t= and is either empty or <v>x</v>
_FAST_R_RE = re.compile(rb'<c r="([A-Z]{1,3}[0-9]{1,7})"[^>/]*>')
_FAST_V_RE = re.compile(rb"<v>([^<]*)</v>")
_ROW_RE = re.compile(rb"<(?:\w+:)?row\b([^>]*?)(/?)>")
_CELL_RE = re.compile(rb"<(?:\w+:)?c\b([^>]*?)(?:/>|>(.*?)</(?:\w+:)?c>)", re.S)
_V_RE = re.compile(rb"<(?:\w+:)?v\b[^>]*?(?:/>|>([^<]*)</(?:\w+:)?v>)")
_F_RE = re.compile(rb"<(?:\w+:)?f\b([^>]*?)(?:/>|>([^<]*)</(?:\w+:)?f>)")
_IS_RE = re.compile(rb"<(?:\w+:)?is\b[^>]*>(.*?)</(?:\w+:)?is>", re.S)
_NUM_RE = re.compile(rb"\s*[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\s*")
_DIM_RE = re.compile(rb"<(?:\w+:)?dimension\b([^>]*)/?>")
_CELLREF_RE = re.compile(rb"([A-Za-z]{1,4})([0-9]{1,8})")


def _number(text: bytes, where: str) -> float:
    if not _NUM_RE.fullmatch(text):
        raise WorkbookError(f"{where}: {text[:40]!r} is not a number")
    return float(text)


class _SheetParser:
    def __init__(self, book_name: str, name: str, sst: list[str]):
        self.where = f"{book_name} sheet {name!r}"
        self.name = name
        self.sst = sst
        self.rows: list[np.ndarray] = []
        self.cols: list[np.ndarray] = []
        self.vals: list[np.ndarray] = []
        self.strings: dict = {}
        self.booleans: dict = {}
        self.errors: dict = {}
        self.formulas: list = []
        self.cached: dict = {}
        self.shared: dict[bytes, tuple[int, int, str]] = {}
        self.row = -1  # current row (0-based)
        self.col = -1  # last column seen in the current row
        self.max_r = -1
        self.max_c = -1
        self.pending_r: list[int] = []
        self.pending_c: list[int] = []
        self.pending_v: list[bytes] = []

    # -- fast path: a chunk of complete rows where every cell is numeric with r=
    def fast(self, buf: bytes) -> bool:
        if b" t=" in buf or b"<f" in buf or b"<is" in buf or b"_" in buf or b"&" in buf or b"'" in buf:
            return False
        n = buf.count(b"<c")
        if n == 0:
            self._rows_only(buf)
            return True
        refs = _FAST_R_RE.findall(buf)
        if len(refs) != n:
            return False
        vals = _FAST_V_RE.findall(buf)
        if len(vals) != n or buf.count(b"</v></c>") != n:
            return False
        try:
            v = np.array(vals, dtype=np.float64)
        except ValueError:
            return False
        if not np.isfinite(v).all():
            return False
        # 'AB12' -> (row 11, col 27), vectorized over the byte matrix of the refs
        m = np.array(refs).view(np.uint8).reshape(n, -1).astype(np.int64)
        is_l = m >= 65
        is_d = (m >= 48) & (m <= 57)
        rows = np.zeros(n, np.int64)
        cols = np.zeros(n, np.int64)
        for k in range(m.shape[1]):
            cols = np.where(is_l[:, k], cols * 26 + m[:, k] - 64, cols)
            rows = np.where(is_d[:, k], rows * 10 + m[:, k] - 48, rows)
        rows -= 1
        cols -= 1
        if rows.max() >= MAX_ROWS or cols.max() >= MAX_COLS:
            self._limits(int(rows.max()), int(cols.max()))
        # cells must be in strictly increasing (row, col) order, as the format requires
        key = rows * MAX_COLS + cols
        if (n > 1 and not (np.diff(key) > 0).all()) or (rows < 0).any():
            return False
        if self.row >= 0 and key[0] <= self.row * MAX_COLS + self.col:
            return False
        self.rows.append(rows.astype(np.int32))
        self.cols.append(cols.astype(np.int32))
        self.vals.append(v)
        self.row, self.col = int(rows[-1]), int(cols[-1])
        self.max_r = max(self.max_r, self.row)
        self.max_c = max(self.max_c, int(cols.max()))
        return True

    def _rows_only(self, buf: bytes, cells_seen: bool = False) -> None:
        """Track explicit row numbers (for dims and the 'next row' rule)."""
        for attrs, _ in _ROW_RE.findall(buf):
            a = _attrs(attrs)
            if b"r" in a:
                r = int(a[b"r"]) - 1
                self._limits(r, 0)
                if not cells_seen:
                    self.row, self.col = r, -1
                self.max_r = max(self.max_r, r)
            elif not cells_seen:
                self.row, self.col = self.row + 1, -1

    def _limits(self, r: int, c: int) -> None:
        if r >= MAX_ROWS or r < 0:
            raise WorkbookError(f"{self.where}: row {r + 1} is beyond Excel's {MAX_ROWS} rows")
        if c >= MAX_COLS or c < 0:
            raise WorkbookError(f"{self.where}: column {c + 1} is beyond Excel's {MAX_COLS} columns")

    # -- general path
    def slow(self, buf: bytes) -> None:
        pos = 0
        for m in _ROW_RE.finditer(buf):
            self._cells(buf[pos:m.start()])
            a = _attrs(m.group(1))
            if b"r" in a:
                try:
                    r = int(a[b"r"]) - 1
                except ValueError:
                    raise WorkbookError(f"{self.where}: bad row number {a[b'r'][:20]!r}") from None
            else:
                r = self.row + 1
            self._limits(r, 0)
            self.row, self.col = r, -1
            self.max_r = max(self.max_r, r)
            pos = m.end()
        self._cells(buf[pos:])
        self._flush()

    def _cells(self, seg: bytes) -> None:
        if b"<" not in seg:
            return
        for attrs, inner in _CELL_RE.findall(seg):
            a = _attrs(attrs)
            ref = a.get(b"r")
            if ref:
                m = _CELLREF_RE.fullmatch(ref)
                if not m:
                    raise WorkbookError(f"{self.where}: bad cell reference {ref[:20]!r}")
                r, c = int(m.group(2)) - 1, col_index(m.group(1).decode())
                self._limits(r, c)
                if r != self.row:
                    self.row = r
            else:
                r, c = self.row, self.col + 1
                self._limits(max(r, 0), c)
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
                self._formula(r, c, _attrs(fm.group(1)), fm.group(2), where)
                if v is not None:
                    self.cached[(r, c)] = unescape(v)
                continue
            if t == b"n":
                if v is not None and v.strip():
                    self.pending_r.append(r)
                    self.pending_c.append(c)
                    self.pending_v.append(v)
            elif t == b"s":
                try:
                    self.strings[(r, c)] = self.sst[int(v)]
                except (TypeError, ValueError, IndexError):
                    raise WorkbookError(f"{where}: bad shared string index {v!r}") from None
            elif t == b"inlineStr":
                im = _IS_RE.search(inner)
                self.strings[(r, c)] = _text_of(im.group(1)) if im else ""
            elif t == b"b":
                self.booleans[(r, c)] = v is not None and v.strip() in (b"1", b"true")
            elif t == b"e":
                self.errors[(r, c)] = unescape(v or b"#VALUE!").strip()
            elif t == b"str":
                # cached formula text without a formula: not a constant we trust
                self.cached[(r, c)] = unescape(v or b"")
            elif t == b"d":
                raise WorkbookError(f"{where}: ISO date cells (t=\"d\") are not supported")
            else:
                raise WorkbookError(f"{where}: unknown cell type {t[:20]!r}")

    def _formula(self, r: int, c: int, fa: dict, text: bytes | None, where: str) -> None:
        kind = fa.get(b"t", b"normal")
        ftext = unescape(text or b"").strip()
        if ftext.startswith("="):
            ftext = ftext[1:]
        if kind == b"shared":
            si = fa.get(b"si")
            if ftext:
                self.shared[si] = (r, c, ftext)
            else:
                if si not in self.shared:
                    raise WorkbookError(f"{where}: shared formula si={si!r} has no master")
                from .formula import shift_formula

                r0, c0, master = self.shared[si]
                ftext = shift_formula(master, r - r0, c - c0)
            self.formulas.append((r, c, ftext, None))
        elif kind == b"array":
            ref = fa.get(b"ref", b"")
            try:
                rng = parse_range(ref.decode()) if ref else (r, c, r, c)
            except WorkbookError:
                raise WorkbookError(f"{where}: bad array range {ref[:30]!r}") from None
            self._limits(rng[2], rng[3])
            self.max_r = max(self.max_r, rng[2])
            self.max_c = max(self.max_c, rng[3])
            self.formulas.append((r, c, ftext, rng))
        elif kind == b"normal":
            if not ftext:
                raise WorkbookError(f"{where}: empty formula")
            self.formulas.append((r, c, ftext, None))
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
        self.rows.append(np.array(self.pending_r, dtype=np.int32))
        self.cols.append(np.array(self.pending_c, dtype=np.int32))
        self.vals.append(v)
        self.pending_r, self.pending_c, self.pending_v = [], [], []

    def finish(self, dim: tuple[int, int] | None) -> Sheet:
        self._flush()
        if self.rows:
            rows = np.concatenate(self.rows)
            cols = np.concatenate(self.cols)
            vals = np.concatenate(self.vals)
        else:
            rows = np.zeros(0, np.int32)
            cols = np.zeros(0, np.int32)
            vals = np.zeros(0)
        for d in (self.strings, self.booleans, self.errors, self.cached):
            for r, c in d:
                self.max_r, self.max_c = max(self.max_r, r), max(self.max_c, c)
        for r, c, _, _ in self.formulas:
            self.max_r, self.max_c = max(self.max_r, r), max(self.max_c, c)
        return Sheet(
            name=self.name,
            numbers=(rows, cols, vals),
            strings=self.strings,
            booleans=self.booleans,
            errors=self.errors,
            formulas=self.formulas,
            cached=self.cached,
            dims=(self.max_r + 1, self.max_c + 1),
        )


def _read_sheet(zf: zipfile.ZipFile, part: str, name: str, sst: list[str]) -> Sheet:
    p = _SheetParser(str(zf.filename), name, sst)
    buf = b""
    state = 0  # 0: before <sheetData>, 1: inside, 2: after
    dim = None
    for data in _stream(zf, part):
        buf += data
        if state == 0:
            i = buf.find(b"sheetData")
            if i < 0:
                if len(buf) > MAX_ROW_XML_BYTES:
                    raise WorkbookError(f"{zf.filename}: {part} has no <sheetData> in its first {MAX_ROW_XML_BYTES} bytes")
                continue
            dm = _DIM_RE.search(buf, 0, i)
            if dm:
                ref = _attrs(dm.group(1)).get(b"ref", b"")
                for m in _CELLREF_RE.finditer(ref):
                    p._limits(int(m.group(2)) - 1, col_index(m.group(1).decode()))
            j = buf.find(b">", i)
            if j < 0:
                continue
            if buf[j - 1 : j] == b"/":  # <sheetData/>
                state = 2
                buf = b""
                continue
            buf = buf[j + 1 :]
            state = 1
        if state != 1:
            continue
        end = buf.find(b"sheetData>")
        if end >= 0:
            body, buf, state = buf[: buf.rfind(b"<", 0, end)], b"", 2
        else:
            cut = buf.rfind(b"</row>")
            if cut < 0:
                if len(buf) > MAX_ROW_XML_BYTES:
                    raise WorkbookError(f"{zf.filename}: {part} has a row longer than {MAX_ROW_XML_BYTES} bytes")
                continue
            else:
                body, buf = buf[: cut + 6], buf[cut + 6 :]
        if not p.fast(body):
            p.slow(body)
    if state == 0:
        raise WorkbookError(f"{zf.filename}: {part} has no <sheetData>")
    if state == 1:
        raise WorkbookError(f"{zf.filename}: {part} is truncated (no </sheetData>)")
    return p.finish(dim)


# ----------------------------------------------------------------------------- workbook


def read_workbook(path, sheets=None) -> Book:
    """Read ``path`` (an .xlsx). ``sheets``: names to read (default all); others are
    listed in ``sheet_names`` but absent from ``sheets``."""
    zf = _open_zip(path)
    with zf:
        names = set(zf.namelist())
        wb_part = "xl/workbook.xml"
        if "[Content_Types].xml" in names:
            ct = _read_small(zf, "[Content_Types].xml", 16 << 20)
            m = re.search(rb'PartName="/?([^"]+)"\s+ContentType="application/vnd\.(?:ms-excel\.sheet\.macroEnabled\.main\+xml|openxmlformats-officedocument\.spreadsheetml\.sheet\.main\+xml)"', ct)
            if m:
                wb_part = m.group(1).decode()
        if wb_part not in names:
            raise WorkbookError(f"{path}: not an .xlsx workbook (no {wb_part})")
        wb = _read_small(zf, wb_part, 64 << 20)
        base = posixpath.dirname(wb_part)
        rels_part = posixpath.join(base, "_rels", posixpath.basename(wb_part) + ".rels")
        rels: dict[bytes, tuple[bytes, bytes]] = {}
        if rels_part in names:
            for attrs in _REL_RE.findall(_read_small(zf, rels_part, 16 << 20)):
                a = _attrs(attrs)
                rels[a.get(b"Id", b"")] = (a.get(b"Target", b""), a.get(b"Type", b""))
        sst_part = None
        for target, typ in rels.values():
            if typ.endswith(b"/sharedStrings"):
                sst_part = _resolve(base, unescape(target))
        order: list[tuple[str, str]] = []
        for attrs in _SHEET_TAG_RE.findall(wb):
            a = _attrs(attrs)
            nm = unescape(a.get(b"name", b""))
            rid = a.get(b"id")
            if rid not in rels:
                raise WorkbookError(f"{path}: sheet {nm!r} has no relationship {rid!r}")
            target, typ = rels[rid]
            if not typ.endswith(b"/worksheet"):
                continue  # chart sheets, dialog sheets: no cells
            order.append((nm, _resolve(base, unescape(target))))
        if not order:
            raise WorkbookError(f"{path}: workbook has no worksheets")
        defined = {}
        for attrs, text in _DEFNAME_RE.findall(wb):
            a = _attrs(attrs)
            defined[unescape(a.get(b"name", b""))] = unescape(text)
        want = None if sheets is None else set(sheets)
        if want is not None:
            missing = want - {n for n, _ in order}
            if missing:
                raise WorkbookError(f"{path}: no sheet named {sorted(missing)[0]!r}")
        sst = _shared_strings(zf, sst_part) if any(want is None or n in want for n, _ in order) else []
        out = {}
        for nm, part in order:
            if want is not None and nm not in want:
                continue
            if part not in names:
                raise WorkbookError(f"{path}: sheet {nm!r}: missing part {part}")
            out[nm] = _read_sheet(zf, part, nm, sst)
        return Book(sheet_names=[n for n, _ in order], sheets=out, defined_names=defined)
