"""XML as a conforming parser sees it, or a refusal: the XML declaration (UTF-8 only), markup the
reader does not interpret (comments, CDATA, declarations, processing instructions), entity and
character references, attributes, and the namespaces a part's root binds.
"""

from __future__ import annotations

import re

from ..errors import WorkbookError

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


def decode(b: bytes) -> str:
    """XML text as a parser reads it: UTF-8, its line ends (CR LF, CR) made LF."""
    try:
        s = b.decode("utf-8")
    except UnicodeDecodeError:
        raise WorkbookError(f"XML text {b[:40]!r} is not UTF-8; refusing it") from None
    return s.replace("\r\n", "\n").replace("\r", "\n") if "\r" in s else s


def unescape(b: bytes | str) -> str:
    s = decode(b) if isinstance(b, bytes) else b
    return _ENT_RE.sub(_unescape_ent, s) if "&" in s else s


_ATTR_RE = re.compile(rb"([\w:.-]+)\s*=\s*(?:\"([^\"]*)\"|'([^']*)')")


def xml_attrs(b: bytes) -> dict[bytes, bytes]:
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
