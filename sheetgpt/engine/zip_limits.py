"""The zip of an .xlsx, held to bounds: members counted, names unique, declared and actual
decompressed sizes limited (one by one, by ratio and in total), DOCTYPE/ENTITY refused in the stream.

The limits are module constants so a test can lower them; every reader of a part goes through
``stream`` (chunks) or ``read_small`` (one bounded member, its markup checked).
"""

from __future__ import annotations

import zipfile

from ..errors import WorkbookError
from .markup import refuse_markup, xml_start

try:  # ISA-L's inflate: the same format, about 1.7x faster than zlib on weight-tab XML
    from isal import isal_zlib as _inflate
except ImportError:  # pragma: no cover - depends on the environment
    _inflate = None

MAX_MEMBERS = 10_000  # zip members (a GPT-2-small book has about 170)
MAX_MEMBER_BYTES = 4 << 30  # decompressed size of one zip member
MAX_TOTAL_BYTES = 16 << 30  # decompressed size of all members (a GPT-2-small book: about 4 GB)
MAX_RATIO = 1000  # compression ratio allowed beyond RATIO_FREE_BYTES
RATIO_FREE_BYTES = 8 << 20
MAX_ROW_XML_BYTES = 64 << 20  # one <row> element (a full 16,384-column row is ~2 MB)
CHUNK = 8 << 20


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


def stream(zf: zipfile.ZipFile, name: str, chunk: int | None = None):
    """Yield decompressed chunks of one member; refuse DOCTYPE and oversize output."""
    try:
        info = zf.getinfo(name)
    except KeyError:
        raise WorkbookError(f"{zf.filename}: missing part {name}") from None
    total = 0
    tail = b""
    try:
        with zf.open(info) as f:
            _faster_inflate(f, info)
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
                if (b"!" in data or b"!" in probe) and (  # both start "<!": one fast byte search first
                    b"<!DOCTYPE" in probe or b"<!DOCTYPE" in data or b"<!ENTITY" in data or b"<!ENTITY" in probe
                ):
                    raise WorkbookError(f"{zf.filename}: {name} contains a DOCTYPE/ENTITY declaration; refusing it")
                tail = data[-16:]
                yield data
    except WorkbookError:
        raise
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, RuntimeError, NotImplementedError) as e:
        raise WorkbookError(f"{zf.filename}: corrupt zip member {name}: {e}") from None
    except Exception as e:  # zlib.error and friends
        raise WorkbookError(f"{zf.filename}: corrupt zip member {name}: {e}") from None


def _faster_inflate(f, info: zipfile.ZipInfo) -> None:
    """Let ISA-L inflate a deflated member that ``f`` (zipfile's reader, nothing read yet) streams:
    zipfile still reads the compressed bytes, checks their CRC and bounds the output."""
    if _inflate is not None and info.compress_type == zipfile.ZIP_DEFLATED and hasattr(f, "_decompressor"):
        f._decompressor = _inflate.decompressobj(-15)


def read_small(zf: zipfile.ZipFile, name: str, limit: int = 256 << 20) -> bytes:
    """One whole member, at most ``limit`` bytes decompressed, its markup checked (``refuse_markup``)."""
    parts, n = [], 0
    for data in stream(zf, name):
        n += len(data)
        if n > limit:
            raise WorkbookError(f"{zf.filename}: {name} is larger than {limit} bytes")
        parts.append(data)
    data = b"".join(parts)
    refuse_markup(data, xml_start(data, f"{zf.filename}: {name}"), f"{zf.filename}: {name}")
    return data
