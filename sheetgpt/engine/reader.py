"""Read an .xlsx workbook safely and fast: constants, formula text, nothing executed.

The workbook comes from a user, so every part is treated as hostile: the zip's members are
counted and their declared sizes bounded (one by one and in total, duplicates refused), each
is read through a ``zipfile`` stream with decompressed-size accounting, any XML carrying a
``<!DOCTYPE`` is refused before it is parsed, and sheet sizes are checked against Excel's
limits. Cached values of formula cells are kept apart (``Sheet.cached``) and never used as truth.

The reader sees what a conforming XML parser sees, or refuses: markup it does not interpret
(comments, CDATA sections, processing instructions, a declared encoding other than UTF-8,
namespace declarations inside ``<sheetData>``, elements of a foreign namespace there, a
worksheet whose default namespace is not SpreadsheetML's) is refused with one line, as are
character and entity references that XML does not allow.

Sheet XML is scanned with compiled regular expressions over decompressed chunks that
end on a ``</row>`` boundary. Rows of purely numeric cells (weight tabs) take a fast
path: one ``findall`` per chunk and one numpy conversion of the value texts.
"""

from __future__ import annotations

import os
import posixpath
import re
import zipfile
from dataclasses import dataclass

import numpy as np

from ..a1 import MAX_COLS, MAX_FORMULA_CHARS, MAX_ROWS, col_index, parse_range
from ..a1 import cell as cell_name
from ..errors import WorkbookError
from .r1c1 import shift_formula

MAX_MEMBERS = 10_000  # zip members (a GPT-2-small book has about 170)
MAX_MEMBER_BYTES = 4 << 30  # decompressed size of one zip member
MAX_TOTAL_BYTES = 16 << 30  # decompressed size of all members (a GPT-2-small book: about 4 GB)
MAX_RATIO = 1000  # compression ratio allowed beyond RATIO_FREE_BYTES
RATIO_FREE_BYTES = 8 << 20
MAX_ROW_XML_BYTES = 64 << 20  # one <row> element (a full 16,384-column row is ~2 MB)
CHUNK = 8 << 20
WORKERS = max(1, min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)))
# Decompressed sheet XML above which sheets are read by forked processes: from about 2 MB
# (a teaching book) the second core saves more than starting a worker costs (a 7 MB book:
# 0.235 s -> 0.17 s; 10 MB: 0.40 s -> 0.28 s). Not where fork is missing (Windows).
PARALLEL_BYTES = 2 << 20

# ----------------------------------------------------------------------------- model


class Sheet:
    """One worksheet. Rows and columns are 0-based.

    numbers: (rows int32[n], cols int32[n], values float64[n]) numeric constants
    strings: {(row, col): text} constant text (shared or inline strings)
    booleans / errors: {(row, col): bool | '#N/A'} constant booleans and error literals
    formulas: [(row, col, text_without_equals, array_ref | None)]; array_ref is the
        0-based inclusive (r0, c0, r1, c1) of a CSE array formula (given once, at its
        top-left cell); shared formulas are expanded into each cell's own text when the
        list is iterated (the reader keeps them as one ``Formulas`` unit)
    cached: {(row, col): cached text from <v>} of formula cells (never trusted)
    cached_types: {(row, col): 'str' | 'b' | 'e' | ...} the t= of formula cells whose cached
        value is not a number (absent: a number)
    dims: (n_rows, n_cols) = 1 + the largest row and column that hold anything

    A mostly-numeric sheet (a weight tab) keeps its numbers as one float64 grid with NaN
    where there is no number (numbers are always finite, so this loses nothing);
    ``numbers`` is then derived on first use and ``dense()`` returns the grid read-only.
    """

    def __init__(
        self,
        name: str,
        numbers=None,
        strings=None,
        booleans=None,
        errors=None,
        formulas=None,
        cached=None,
        cached_types=None,
        dims: tuple[int, int] = (0, 0),
        grid: np.ndarray | None = None,
        has_gaps: bool = True,
    ):
        self.name = name
        self._numbers = numbers
        self._grid = grid
        self._has_gaps = has_gaps
        self.strings = {} if strings is None else strings
        self.booleans = {} if booleans is None else booleans
        self.errors = {} if errors is None else errors
        self.formulas = [] if formulas is None else formulas
        self.cached = {} if cached is None else cached
        self.cached_types = {} if cached_types is None else cached_types
        self.dims = dims

    @property
    def numbers(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self._numbers is None:
            g = self._grid
            if g is None:
                self._numbers = (np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(0))
            else:
                r, c = np.nonzero(~np.isnan(g))
                self._numbers = (r.astype(np.int32), c.astype(np.int32), g[r, c])
        return self._numbers

    @numbers.setter
    def numbers(self, value) -> None:
        self._numbers, self._grid = value, None

    def dense(self) -> np.ndarray:
        """float64 [n_rows, n_cols] of the numeric constants, NaN elsewhere."""
        if self._grid is not None and self._grid.shape == tuple(self.dims):
            view = self._grid.view()
            view.flags.writeable = False
            return view
        out = np.full(self.dims, np.nan)
        r, c, v = self.numbers
        out[r, c] = v
        return out

    @property
    def full_grid(self) -> np.ndarray | None:
        """The grid, if every cell of ``dims`` holds a number (else None); read-only."""
        g = self._grid
        if g is None or g.shape != tuple(self.dims) or self._has_gaps:
            return None
        return self.dense()

    @property
    def n_numbers(self) -> int:
        if self._numbers is None and self._grid is not None:
            return int(self._grid.size - np.isnan(self._grid).sum()) if self._has_gaps else self._grid.size
        return len(self.numbers[2])

    def __repr__(self) -> str:
        return f"Sheet({self.name!r}, dims={self.dims}, numbers={self.n_numbers}, formulas={len(self.formulas)})"


@dataclass
class Book:
    sheet_names: list[str]
    sheets: dict[str, Sheet]
    defined_names: dict[str, str]  # name -> its formula text; a sheet-scoped name is keyed 'Sheet!name'


# ----------------------------------------------------------------------------- zip


def open_zip(path) -> zipfile.ZipFile:
    """The zip at ``path``, once its members are few enough, unique (names compared without
    case, as in OPC) and declare bounded sizes (each, each one's ratio, and all together)."""
    try:
        zf = zipfile.ZipFile(path)
    except FileNotFoundError:
        raise WorkbookError(f"{path}: no such file") from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as e:
        raise WorkbookError(f"{path}: not an .xlsx file (not a readable zip: {e})") from None
    try:
        check_members(path, zf.infolist())
    except WorkbookError:
        zf.close()
        raise
    return zf


def check_members(path, infos: list[zipfile.ZipInfo]) -> None:
    """Refuse a zip of too many members, duplicate members, or declared sizes beyond the bounds."""
    if len(infos) > MAX_MEMBERS:
        raise WorkbookError(f"{path}: the zip has {len(infos):,} members (limit {MAX_MEMBERS:,}); not an .xlsx we read")
    seen: set[str] = set()
    for info in infos:
        if info.filename.lower() in seen:
            raise WorkbookError(f"{path}: zip member {info.filename} appears twice; refusing an ambiguous book")
        seen.add(info.filename.lower())
    total = sum(info.file_size for info in infos)
    if total > MAX_TOTAL_BYTES:
        raise WorkbookError(
            f"{path}: the zip's members declare {total:,} bytes in all (limit {MAX_TOTAL_BYTES:,}); "
            "refusing a possible zip bomb"
        )
    for info in infos:
        if info.file_size > MAX_MEMBER_BYTES:
            raise WorkbookError(
                f"{path}: zip member {info.filename} declares {info.file_size} bytes (limit {MAX_MEMBER_BYTES}); "
                "refusing a possible zip bomb"
            )
        if info.file_size > RATIO_FREE_BYTES and info.file_size > MAX_RATIO * max(info.compress_size, 1):
            raise WorkbookError(
                f"{path}: zip member {info.filename} has compression ratio > {MAX_RATIO}:1; "
                "refusing a possible zip bomb"
            )


def _stream(zf: zipfile.ZipFile, name: str, chunk: int | None = None):
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
                data = f.read(chunk or CHUNK)  # CHUNK read at call time
                if not data:
                    break
                total += len(data)
                if total > MAX_MEMBER_BYTES or (
                    total > RATIO_FREE_BYTES and total > MAX_RATIO * max(info.compress_size, 1)
                ):
                    raise WorkbookError(
                        f"{zf.filename}: {name} decompresses beyond its limits; refusing a possible zip bomb"
                    )
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


def read_small(zf: zipfile.ZipFile, name: str, limit: int = 256 << 20) -> bytes:
    """One whole member, at most ``limit`` bytes decompressed, its markup checked (``refuse_markup``)."""
    parts, n = [], 0
    for data in _stream(zf, name):
        n += len(data)
        if n > limit:
            raise WorkbookError(f"{zf.filename}: {name} is larger than {limit} bytes")
        parts.append(data)
    data = b"".join(parts)
    refuse_markup(data, xml_start(data, f"{zf.filename}: {name}"), f"{zf.filename}: {name}")
    return data


_XML_DECL = re.compile(rb"(?:\xef\xbb\xbf)?<\?xml\s[^?>]*\?>")
_ENCODING = re.compile(rb"""encoding\s*=\s*["']([^"']*)["']""")


def xml_start(data: bytes, where: str) -> int:
    """Where the document after its XML declaration (and byte-order mark) starts; a declared
    encoding other than UTF-8 is refused (the reader decodes UTF-8)."""
    m = _XML_DECL.match(data)
    if m is None:
        return 3 if data.startswith(b"\xef\xbb\xbf") else 0
    enc = _ENCODING.search(m.group())
    if enc and enc.group(1).lower() not in (b"utf-8", b"utf8"):
        name = enc.group(1)[:20].decode("ascii", "replace")
        raise WorkbookError(f"{where} declares the encoding {name!r}; only UTF-8 is read")
    return m.end()


def refuse_markup(data: bytes, start: int, where: str, end: int | None = None) -> None:
    """Refuse comments, CDATA sections, declarations and processing instructions in data[start:end]
    (in XML text a ``<`` is always escaped, so ``<!`` and ``<?`` can only be such markup)."""
    for needle in (b"<!", b"<?"):
        i = data.find(needle, start, end)
        if i >= 0:
            head = data[i : i + 9]
            if needle == b"<?":
                what = "a processing instruction"
            elif head.startswith(b"<!--"):
                what = "an XML comment"
            elif head.startswith(b"<![CDATA["):
                what = "a CDATA section"
            else:
                what = "a DOCTYPE/ENTITY declaration"
            raise WorkbookError(
                f"{where} contains {what}; refusing it (sheetgpt reads the XML Excel and LibreOffice write)"
            )


# ----------------------------------------------------------------------------- xml bits

_ENT_RE = re.compile(r"&(#x[0-9A-Fa-f]{1,16}|#[0-9]{1,16}|[A-Za-z_][\w.-]{0,30})?(;?)")
_ENTS = {"amp": "&", "lt": "<", "gt": ">", "quot": '"', "apos": "'"}


def _xml_char(cp: int) -> bool:
    """Whether XML 1.0 allows the character ``cp`` (its Char production)."""
    return cp in (0x9, 0xA, 0xD) or 0x20 <= cp <= 0xD7FF or 0xE000 <= cp <= 0xFFFD or 0x10000 <= cp <= 0x10FFFF


def _unescape_ent(m: re.Match) -> str:
    e = m.group(1)
    if e is None or not m.group(2) or (e[0] != "#" and e not in _ENTS):
        raise WorkbookError(f"XML text holds {m.group(0)[:40]!r}: a bare '&' or an undefined entity; refusing it")
    if e[0] == "#":
        cp = int(e[2:], 16) if e[1] in "xX" else int(e[1:])
        if not _xml_char(cp):
            raise WorkbookError(f"XML text holds the character reference &{e}; which is not an XML character")
        return chr(cp)
    return _ENTS[e]


def _decode(b: bytes) -> str:
    """XML text as a parser reads it: UTF-8, its line ends (CR LF, CR) made LF."""
    try:
        s = b.decode("utf-8")
    except UnicodeDecodeError:
        raise WorkbookError(f"XML text {b[:40]!r} is not UTF-8; refusing it") from None
    return s.replace("\r\n", "\n").replace("\r", "\n") if "\r" in s else s


def unescape(b: bytes | str) -> str:
    s = _decode(b) if isinstance(b, bytes) else b
    return _ENT_RE.sub(_unescape_ent, s) if "&" in s else s


_ATTR_RE = re.compile(rb"([\w:.-]+)\s*=\s*(?:\"([^\"]*)\"|'([^']*)')")


def _attrs(b: bytes) -> dict[bytes, bytes]:
    """Attributes by their names as written: SpreadsheetML's own are unprefixed; a prefixed one
    (``x14ac:dyDescent``, ``r:id``) belongs to the namespace its prefix is bound to."""
    return {m[0]: (m[1] if m[1] or not m[2] else m[2]) for m in _ATTR_RE.findall(b)}


SPREADSHEETML = (
    b"http://schemas.openxmlformats.org/spreadsheetml/2006/main",
    b"http://purl.oclc.org/ooxml/spreadsheetml/main",
)
RELATIONSHIPS = (
    b"http://schemas.openxmlformats.org/officeDocument/2006/relationships",
    b"http://purl.oclc.org/ooxml/officeDocument/relationships",
)
_ROOT_RE = re.compile(rb"<([A-Za-z_][\w.-]*:)?[A-Za-z_][\w.-]*((?:\s[^>]*)?)>")
_XMLNS_RE = re.compile(rb"""xmlns(?::([A-Za-z_][\w.-]*))?\s*=\s*(?:"([^"]*)"|'([^']*)')""")


class Namespaces:
    """The namespaces a part's root element binds: ``default`` (of unprefixed elements) and
    ``prefixes`` {prefix: namespace}."""

    def __init__(self, data: bytes, start: int, where: str):
        m = _ROOT_RE.search(data, start)
        if m is None:
            raise WorkbookError(f"{where} has no root element")
        decls = {p or None: a or b for p, a, b in _XMLNS_RE.findall(m.group(2))}
        self.default = decls.pop(None, None)
        self.prefixes = decls

    def bound_to(self, uris: tuple[bytes, ...]) -> list[bytes]:
        return [p for p, uri in self.prefixes.items() if uri in uris]

    def foreign_tag(self) -> re.Pattern:
        """Finds an element tag whose prefix is not bound to SpreadsheetML."""
        main = self.bound_to(SPREADSHEETML)
        allowed = b"(?!(?:" + b"|".join(re.escape(p) for p in main) + b"):)" if main else b""
        return re.compile(b"</?" + allowed + rb"[A-Za-z_][\w.-]*:")

    def require_spreadsheetml(self, where: str) -> None:
        if self.default not in SPREADSHEETML:
            uri = (self.default or b"none").decode("utf-8", "replace")[:80]
            raise WorkbookError(f"{where}: its default XML namespace is {uri!r}, not SpreadsheetML's; refusing it")


_SHEET_TAG_RE = re.compile(rb"<([\w.-]+:)?sheet\b([^>]*)/?>")
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
    where = f"{zf.filename}: {name}"
    foreign, start = None, 0
    for data in _stream(zf, name):
        buf += data
        if foreign is None:
            start = xml_start(buf, where)
            ns = Namespaces(buf, start, where)
            ns.require_spreadsheetml(where)
            foreign = ns.foreign_tag()
        cut = buf.rfind(b"</si>")
        # process everything up to the last complete <si> element
        end = cut + 5 if cut >= 0 else -1
        if end <= 0:
            if len(buf) > MAX_ROW_XML_BYTES:
                raise WorkbookError(f"{zf.filename}: a shared string is larger than {MAX_ROW_XML_BYTES} bytes")
            continue
        _check_strings(buf, start, end, foreign, where)
        out.extend(_text_of(m or b"") for m in _SI_RE.findall(buf, 0, end))
        buf, start = buf[end:], 0
    if foreign is not None:
        _check_strings(buf, start, len(buf), foreign, where)
    out.extend(_text_of(m or b"") for m in _SI_RE.findall(buf))
    return out


def _check_strings(buf: bytes, start: int, end: int, foreign: re.Pattern, where: str) -> None:
    """Shared strings as a conforming parser reads them: no markup we do not read, no foreign elements."""
    refuse_markup(buf, start, where, end)
    m = foreign.search(buf, start, end)
    if m:
        tag = m.group().decode("utf-8", "replace")
        raise WorkbookError(f"{where}: an element of a foreign XML namespace ({tag}...); refusing it")


def _resolve(base_dir: str, target: str) -> str:
    if target.startswith("/"):
        return target.lstrip("/")
    return posixpath.normpath(posixpath.join(base_dir, target))


# ----------------------------------------------------------------------------- sheet XML

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
# this order; <f> with t/ref/si); anything else takes the general path
_REG_CELL_RE = re.compile(
    rb'<c r="([A-Z]{1,3}[0-9]{1,7})"(?: s="[0-9]{1,5}")?(?: t="([a-zA-Z]{1,9})")?'
    rb'(?:/>|>(?:<f( t="(?:array|shared)"(?: ref="[A-Z0-9:]{2,20}")?(?: si="[0-9]{1,9}")?)?(?:/>|>([^<]*)</f>))?'
    rb"(?:<v>([^<]*)</v>)?</c>)"
)
# any tag but <row>, <c ...>, <f>, <v> and their ends: such a chunk takes the slow path
_OTHER_TAG_RE = re.compile(rb"<(?!c |/c>|v>|/v>|f[ >/]|/f>|row[ >/]|/row>)")
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


class Formulas:
    """The formula cells of one sheet, kept compact.

    plain cells: ``rows``/``cols`` (int arrays) and ``texts`` (list of str);
    ``arrays``: [(row, col, text, (r0, c0, r1, c1))] CSE formulas;
    ``shared``: [(master_row, master_col, master_text, rows, cols)] shared formulas, one
    entry per group with its member cells (the master included).
    Iterating yields ``(row, col, text, array_ref)`` per cell as ``Sheet.formulas`` always
    did, shared members expanded with ``shift_formula``.
    """

    def __init__(self):
        self._r: list = []  # ints or int arrays
        self._c: list = []
        self.texts: list[str] = []
        self.arrays: list = []
        self.shared: list = []
        self._by_si: dict = {}

    @property
    def rows(self) -> np.ndarray:
        self._pack()
        return self._r[0] if self._r else np.zeros(0, np.int64)

    @property
    def cols(self) -> np.ndarray:
        self._pack()
        return self._c[0] if self._c else np.zeros(0, np.int64)

    def _pack(self) -> None:
        if len(self._r) > 1 or (self._r and not isinstance(self._r[0], np.ndarray)):
            self._r = [np.concatenate([np.atleast_1d(np.asarray(x, np.int64)) for x in self._r])]
            self._c = [np.concatenate([np.atleast_1d(np.asarray(x, np.int64)) for x in self._c])]

    def add_plain(self, r, c, text: str) -> None:
        self._r.append(r)
        self._c.append(c)
        self.texts.append(text)

    def add_plain_many(self, rows: np.ndarray, cols: np.ndarray, texts: list[str]) -> None:
        if len(texts):
            self._r.append(rows.astype(np.int64))
            self._c.append(cols.astype(np.int64))
            self.texts.extend(texts)

    def add_shared_master(self, si, r: int, c: int, text: str) -> None:
        group = (r, c, text, [r], [c])
        self._by_si[si] = group
        self.shared.append(group)

    def add_shared_member(self, si, r: int, c: int) -> bool:
        return self.add_shared_members(si, [r], [c])

    def add_shared_members(self, si, rows: list[int], cols: list[int]) -> bool:
        group = self._by_si.get(si)
        if group is None:
            return False
        group[3].extend(rows)
        group[4].extend(cols)
        return True

    def __len__(self) -> int:
        return len(self.texts) + len(self.arrays) + sum(len(g[3]) for g in self.shared)

    def __iter__(self):
        rows, cols = self.rows, self.cols
        for r, c, t in zip(rows.tolist(), cols.tolist(), self.texts):
            yield (r, c, t, None)
        for r0, c0, text, rs, cs in self.shared:
            for r, c in zip(rs, cs):
                yield (r, c, text if (r, c) == (r0, c0) else shift_formula(text, r - r0, c - c0), None)
        yield from self.arrays

    def __getitem__(self, i):
        return list(self)[i]

    def __bool__(self) -> bool:
        return len(self) > 0


class _LazyDict(dict):
    """A dict filled on first use from columnar data (cached values of formula cells)."""

    def __init__(self, filled: dict | None = None, parts: list | None = None):
        super().__init__(filled or {})
        self._parts: list = parts or []

    def pending(self) -> bool:
        """Whether values are still waiting in columnar form (so that no key is listed yet)."""
        return bool(self._parts)

    def add_many(self, rows, cols, values: list) -> None:
        self._parts.append((rows, cols, values))

    def _fill(self) -> None:
        parts, self._parts = self._parts, []
        for rows, cols, values in parts:
            for r, c, v in zip(np.asarray(rows).tolist(), np.asarray(cols).tolist(), values):
                if v is not None:
                    dict.__setitem__(self, (r, c), unescape(v))

    def _filled(name):
        def method(self, *a, **k):
            if self._parts:
                self._fill()
            return getattr(dict, name)(self, *a, **k)

        return method

    for _m in (
        "__getitem__",
        "__contains__",
        "__iter__",
        "__len__",
        "get",
        "items",
        "keys",
        "values",
        "__eq__",
        "__repr__",
        "copy",
        "pop",
        "setdefault",
    ):
        locals()[_m] = _filled(_m)
    del _m, _filled

    def __reduce__(self):
        return (_LazyDict, (dict(dict.items(self)), self._parts))


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
        self.cached = _LazyDict()
        self.cached_types: dict = {}
        self.row = -1  # current row (0-based)
        self.col = -1  # last column seen in the current row
        self.max_r = -1
        self.max_c = -1
        self.pending_r: list[int] = []
        self.pending_c: list[int] = []
        self.pending_v: list[bytes] = []

    def chunk(self, buf: bytes) -> None:
        if not self.fast(buf) and not self.regular(buf):
            self.slow(buf)

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
            r = self._row_number(_attrs(attrs) if attrs else {}, r)
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
        for i, (_, t, fa, ftext, v) in enumerate(cells):
            if fa or ftext:
                if fa and not ftext and fa.startswith(b' t="shared" si="'):
                    members.append((fa[16:-1], i))
                    if t and t != b"n":
                        self.cached_types[(int(rows[i]), int(cols[i]))] = t.decode()
                    continue
                if fa:
                    self._add_members(members, rows, cols, cells)  # before a master: members keep their order
                    r, c = int(rows[i]), int(cols[i])
                    self._formula(r, c, _attrs(fa), ftext, f"{self.where} cell {cell_name(r, c)}")
                    if v:
                        self.cached[(r, c)] = unescape(v)
                    if t and t != b"n":
                        self.cached_types[(r, c)] = t.decode()
                    continue
                if t and t != b"n":
                    self.cached_types[(int(rows[i]), int(cols[i]))] = t.decode()
                f_i.append(i)
                f_t.append(ftext)
                f_v.append(v or None)
            elif not t or t == b"n":
                if v:
                    num_i.append(i)
                    num_v.append(v)
            elif t == b"s" or t == b"b" or t == b"e" or t == b"str" or t == b"inlineStr" or t == b"d":
                r, c = int(rows[i]), int(cols[i])
                self._typed(r, c, t, v or None, b"", f"{self.where} cell {cell_name(r, c)}")
            else:
                raise WorkbookError(
                    f"{self.where} cell {cell_name(int(rows[i]), int(cols[i]))}: unknown cell type {t[:20]!r}"
                )
        self._add_members(members, rows, cols, cells)
        if f_i:
            idx = np.array(f_i)
            texts = []
            plain = b"\r" not in buf  # else each text goes through _decode, which makes CR LF and CR an LF
            try:
                for k, ft in enumerate(f_t):
                    text = (unescape(ft) if b"&" in ft else ft.decode() if plain else _decode(ft)).strip()
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
        self.cached.add_many(rows[idx], cols[idx], [cells[i][4] or None for i in idx.tolist()])
        members.clear()

    def _rows_only(self, buf: bytes, cells_seen: bool = False) -> None:
        """Track explicit row numbers (for dims and the 'next row' rule)."""
        for attrs, _ in _ROW_RE.findall(buf):
            a = _attrs(attrs)
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
            r = self._row_number(_attrs(m.group(1)), self.row)
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
                self._formula(r, c, _attrs(fm.group(1)), fm.group(2), where)
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
            self.strings[(r, c)] = _text_of(im.group(1)) if im else ""
        elif t == b"b":
            self.booleans[(r, c)] = v is not None and v.strip() in (b"1", b"true")
        elif t == b"e":
            self.errors[(r, c)] = unescape(v or b"#VALUE!").strip()
        elif t == b"str":
            # cached formula text without a formula: not a constant we trust
            self.cached[(r, c)] = unescape(v or b"")
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
        self.rows.append(np.array(self.pending_r, dtype=np.int32))
        self.cols.append(np.array(self.pending_c, dtype=np.int32))
        self.vals.append(v)
        self.pending_r, self.pending_c, self.pending_v = [], [], []

    def finish(self) -> Sheet:
        self._flush()
        if self.rows:
            rows = np.concatenate(self.rows)
            cols = np.concatenate(self.cols)
            vals = np.concatenate(self.vals)
        else:
            rows = np.zeros(0, np.int32)
            cols = np.zeros(0, np.int32)
            vals = np.zeros(0)
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
        if len(vals) >= (dims[0] * dims[1]) // 2 and len(vals) > 0:
            grid = np.full(dims, np.nan)
            grid[rows, cols] = vals
            return Sheet(**parts, grid=grid, has_gaps=bool(np.isnan(grid).any()))
        return Sheet(**parts, numbers=(rows, cols, vals))


def _read_sheet(zf: zipfile.ZipFile, part: str, name: str, sst: list[str]) -> Sheet:
    where = f"{zf.filename}: {part}"
    p = None
    buf = b""
    state = 0  # 0: before <sheetData>, 1: inside, 2: after
    for data in _stream(zf, part):
        buf += data
        if state == 0:
            i = buf.find(b"sheetData")
            if i < 0:
                if len(buf) > MAX_ROW_XML_BYTES:
                    raise WorkbookError(
                        f"{zf.filename}: {part} has no <sheetData> in its first {MAX_ROW_XML_BYTES} bytes"
                    )
                continue
            j = buf.find(b">", i)
            if j < 0:
                continue
            p = _SheetParser(str(zf.filename), name, sst, _head_namespaces(buf, i, j, where))
            dm = _DIM_RE.search(buf, 0, i)
            if dm:
                ref = _attrs(dm.group(1)).get(b"ref", b"")
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
        end = buf.find(b"sheetData>")
        if end >= 0:
            body, buf, state = buf[: buf.rfind(b"<", 0, end)], b"", 2
        else:
            cut = _after_last_row_end(buf)
            if cut < 0:
                if len(buf) > MAX_ROW_XML_BYTES:
                    raise WorkbookError(f"{zf.filename}: {part} has a row longer than {MAX_ROW_XML_BYTES} bytes")
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


# ----------------------------------------------------------------------------- workbook


def read_workbook(path, sheets=None, progress=None) -> Book:
    """Read ``path`` (an .xlsx). ``sheets``: names to read (default all); others are
    listed in ``sheet_names`` but absent from ``sheets``. Big books are read by worker
    processes, a sheet at a time. ``progress(done, total)`` counts decompressed bytes."""
    zf = open_zip(path)
    with zf:
        names = set(zf.namelist())
        wb_part = "xl/workbook.xml"
        if "[Content_Types].xml" in names:
            ct = read_small(zf, "[Content_Types].xml", 16 << 20)
            m = re.search(
                rb'PartName="/?([^"]+)"\s+ContentType="application/vnd\.(?:ms-excel\.sheet\.macroEnabled\.main\+xml|openxmlformats-officedocument\.spreadsheetml\.sheet\.main\+xml)"',
                ct,
            )
            if m:
                wb_part = m.group(1).decode()
        if wb_part not in names:
            raise WorkbookError(f"{path}: not an .xlsx workbook (no {wb_part})")
        wb = read_small(zf, wb_part, 64 << 20)
        base = posixpath.dirname(wb_part)
        rels_part = posixpath.join(base, "_rels", posixpath.basename(wb_part) + ".rels")
        rels: dict[bytes, tuple[bytes, bytes]] = {}
        if rels_part in names:
            for attrs in _REL_RE.findall(read_small(zf, rels_part, 16 << 20)):
                a = _attrs(attrs)
                rels[a.get(b"Id", b"")] = (a.get(b"Target", b""), a.get(b"Type", b""))
        sst_part = None
        for target, typ in rels.values():
            if typ.endswith(b"/sharedStrings"):
                sst_part = _resolve(base, unescape(target))
        ns = Namespaces(wb, xml_start(wb, f"{path}: {wb_part}"), f"{path}: {wb_part}")
        ns.require_spreadsheetml(f"{path}: {wb_part}")
        main = ns.bound_to(SPREADSHEETML)
        rel_ids = [p + b":id" for p in ns.bound_to(RELATIONSHIPS)]
        order: list[tuple[str, str]] = []
        named: set[str] = set()  # lower-case, as Excel compares sheet names
        parts: set[str] = set()
        listed: list[str] = []  # every sheet, in order: a sheet-scoped name's localSheetId indexes it
        for prefix, attrs in _SHEET_TAG_RE.findall(wb):
            if prefix and prefix[:-1] not in main:
                continue  # an element of another namespace
            a = _attrs(attrs)
            nm = unescape(a.get(b"name", b""))
            listed.append(nm)
            rid = next((a[k] for k in rel_ids if k in a), None)
            if rid not in rels:
                raise WorkbookError(f"{path}: sheet {nm!r} has no relationship {rid!r}")
            if nm.lower() in named:
                raise WorkbookError(f"{path}: two sheets are named {nm!r}; refusing an ambiguous book")
            named.add(nm.lower())
            target, typ = rels[rid]
            if not typ.endswith(b"/worksheet"):
                continue  # chart sheets, dialog sheets: no cells
            part = _resolve(base, unescape(target))
            if part in parts:
                raise WorkbookError(f"{path}: two sheets are stored in one part, {part}; refusing an ambiguous book")
            parts.add(part)
            order.append((nm, part))
        if not order:
            raise WorkbookError(f"{path}: workbook has no worksheets")
        defined = {}
        for attrs, text in _DEFNAME_RE.findall(wb):
            a = _attrs(attrs)
            local = a.get(b"localSheetId", b"")
            scope = listed[int(local)] + "!" if local.isdigit() and int(local) < len(listed) else ""
            defined[scope + unescape(a.get(b"name", b""))] = unescape(text)  # sheet-scoped: 'Sheet!name'
        want = None if sheets is None else set(sheets)
        if want is not None:
            missing = want - {n for n, _ in order}
            if missing:
                raise WorkbookError(f"{path}: no sheet named {sorted(missing)[0]!r}")
        sst = _shared_strings(zf, sst_part) if any(want is None or n in want for n, _ in order) else []
        todo = []
        for nm, part in order:
            if want is not None and nm not in want:
                continue
            if part not in names:
                raise WorkbookError(f"{path}: sheet {nm!r}: missing part {part}")
            todo.append((nm, part))
        size = sum(zf.getinfo(part).file_size for _, part in todo)
        workers = min(WORKERS, len(todo))
        if workers > 1 and size >= PARALLEL_BYTES and _can_fork():
            out = read_parallel(path, todo, sst, workers, progress)
        else:
            out = {}
            for nm, part in todo:
                out[nm] = _read_sheet(zf, part, nm, sst)
                if progress:
                    progress(zf.getinfo(part).file_size, size)
        out = {nm: out[nm] for nm, _ in todo}
        return Book(sheet_names=[n for n, _ in order], sheets=out, defined_names=defined)


_SST: list[str] = []  # the shared strings, inherited by forked worker processes


def _can_fork() -> bool:
    import multiprocessing

    return "fork" in multiprocessing.get_all_start_methods()


def _read_one(path, part: str, name: str) -> tuple[str, Sheet, int]:
    with open_zip(path) as zf:
        return name, _read_sheet(zf, part, name, _SST), zf.getinfo(part).file_size


def read_parallel(path, todo, sst, workers: int, progress) -> dict[str, Sheet]:
    """Sheets read by ``workers`` forked processes, largest first (decompression and the
    number parsing are CPU bound; each worker opens the zip itself)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    global _SST
    with open_zip(path) as zf:
        sizes = {part: zf.getinfo(part).file_size for _, part in todo}
    total = sum(sizes.values())
    _SST = sst
    out: dict[str, Sheet] = {}
    done = 0
    try:
        ctx = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
            futures = [
                pool.submit(_read_one, str(path), part, nm) for nm, part in sorted(todo, key=lambda t: -sizes[t[1]])
            ]
            try:
                for fut in as_completed(futures):
                    nm, sheet, n = fut.result()
                    out[nm] = sheet
                    done += n
                    if progress:
                        progress(done, total)
            except BaseException:
                for f in futures:
                    f.cancel()
                raise
    finally:
        _SST = []
    return out
