"""The shared-strings part (``xl/sharedStrings.xml``): one text per ``<si>``, read in bounded
chunks, its markup and namespaces checked as a conforming parser would read them."""

from __future__ import annotations

import re
import zipfile

from ..errors import WorkbookError
from . import zip_limits
from .markup import Namespaces, refuse_markup, unescape, xml_start
from .zip_limits import stream

_SI_RE = re.compile(rb"<(?:\w+:)?si\b[^>]*?(?:/>|>(.*?)</(?:\w+:)?si>)", re.S)
_T_RE = re.compile(rb"<(?:\w+:)?t\b[^>]*?(?:/>|>(.*?)</(?:\w+:)?t>)", re.S)
_RPH_RE = re.compile(rb"<(?:\w+:)?rPh\b.*?</(?:\w+:)?rPh>", re.S)


def text_of(inner: bytes) -> str:
    """Concatenated <t> texts of an <si> or <is>, phonetic runs dropped."""
    if b"<rPh" in inner or b":rPh" in inner:
        inner = _RPH_RE.sub(b"", inner)
    return unescape(b"".join(m or b"" for m in _T_RE.findall(inner)))


def read_shared_strings(zf: zipfile.ZipFile, name: str | None) -> list[str]:
    if not name or name not in zf.namelist():
        return []
    out: list[str] = []
    buf = b""
    where = f"{zf.filename}: {name}"
    foreign, start = None, 0
    for data in stream(zf, name):
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
            if len(buf) > zip_limits.MAX_ROW_XML_BYTES:
                raise WorkbookError(
                    f"{zf.filename}: a shared string is larger than {zip_limits.MAX_ROW_XML_BYTES} bytes"
                )
            continue
        _check_strings(buf, start, end, foreign, where)
        out.extend(text_of(m or b"") for m in _SI_RE.findall(buf, 0, end))
        buf, start = buf[end:], 0
    if foreign is not None:
        _check_strings(buf, start, len(buf), foreign, where)
    out.extend(text_of(m or b"") for m in _SI_RE.findall(buf))
    return out


def _check_strings(buf: bytes, start: int, end: int, foreign: re.Pattern, where: str) -> None:
    """Shared strings as a conforming parser reads them: no markup we do not read, no foreign elements."""
    refuse_markup(buf, start, where, end)
    m = foreign.search(buf, start, end)
    if m:
        tag = m.group().decode("utf-8", "replace")
        raise WorkbookError(f"{where}: an element of a foreign XML namespace ({tag}...); refusing it")
