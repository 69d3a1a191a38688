"""Helpers for tests that damage a workbook's sheet XML by hand."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path
from xml.sax.saxutils import escape, unescape

from sheetgpt.a1 import parse_cell as parse_ref
from sheetgpt.engine.r1c1 import shift_formula

_SHARED = re.compile(
    r'<c r="([A-Z]+\d+)"([^>]*)><f t="shared" ref="[^"]*" si="(\d+)">(.*?)</f>'  # a master
    r'|<c r="([A-Z]+\d+)"([^>]*)><f t="shared" si="(\d+)"/>'  # a follower
)


def unshare_formulas(xml: str) -> str:
    """Expand shared formulas into each cell's own <f>, as Excel reads them, so one cell can be edited."""
    masters: dict[str, tuple[int, int, str]] = {}

    def one(m: re.Match) -> str:
        if m.group(1):
            ref, attrs, si, text = m.group(1), m.group(2), m.group(3), unescape(m.group(4), {"&quot;": '"'})
            masters[si] = (*parse_ref(ref), text)
            return f'<c r="{ref}"{attrs}><f>{escape(text)}</f>'
        ref, attrs, si = m.group(5), m.group(6), m.group(7)
        r0, c0, text = masters[si]
        r, c = parse_ref(ref)
        return f'<c r="{ref}"{attrs}><f>{escape(shift_formula(text, r - r0, c - c0))}</f>'

    return _SHARED.sub(one, xml)


def set_value(src: Path, dst: Path, layout, tab: str, cell: str, value: str) -> None:
    """A copy of the book whose constant cell ``tab``!``cell`` holds ``value`` (nothing recalculated)."""
    member = f"xl/worksheets/sheet{[t.name for t in layout.tabs].index(tab) + 1}.xml"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename == member:
                xml, n = re.subn(
                    f'(<c r="{cell}"[^>]*>)<v>[^<]*</v>', lambda m: m.group(1) + f"<v>{value}</v>", data.decode()
                )
                assert n == 1, f"{tab}!{cell} not found once"
                data = xml.encode()
            zout.writestr(info, data)


def _sheet_part(parts: dict[str, bytes], tab: str) -> str:
    """The zip member of sheet ``tab``, by the workbook's relationships."""
    wb = parts["xl/workbook.xml"].decode()
    rid = re.search(rf'<sheet name="{re.escape(escape(tab))}" sheetId="\d+" r:id="(rId\d+)"', wb).group(1)
    rels = parts["xl/_rels/workbook.xml.rels"].decode()
    return "xl/" + re.search(rf'<Relationship Id="{rid}" Type="[^"]+" Target="([^"]+)"', rels).group(1)


def cell_xml(cell: str, style: str, kind: str, value) -> str:
    """One ``<c>`` element as an app saves what was typed: ``kind`` is number, text, bool, error,
    formula (no cached value: every engine computes it) or empty."""
    if kind == "number":
        return f'<c r="{cell}"{style}><v>{float(value)!r}</v></c>'
    if kind == "text":
        return f'<c r="{cell}"{style} t="inlineStr"><is><t xml:space="preserve">{escape(value)}</t></is></c>'
    if kind == "bool":
        return f'<c r="{cell}"{style} t="b"><v>{int(bool(value))}</v></c>'
    if kind == "error":
        return f'<c r="{cell}"{style} t="e"><v>{escape(value)}</v></c>'
    if kind == "formula":
        return f'<c r="{cell}"{style}><f>{escape(value.removeprefix("="))}</f></c>'
    assert kind == "empty", kind
    return f'<c r="{cell}"{style}/>'


def set_cell(src: Path, dst: Path, tab: str, cell: str, kind: str, value=None) -> Path:
    """A copy of the book whose cell ``tab``!``cell`` (which must exist) holds what ``cell_xml`` writes,
    with the cell's own style kept; nothing else changes."""
    with zipfile.ZipFile(src) as zin:
        parts = {i.filename: zin.read(i.filename) for i in zin.infolist()}
        infos = zin.infolist()
    member = _sheet_part(parts, tab)
    xml = parts[member].decode()
    pattern = re.compile(rf'<c r="{cell}"((?:\s+(?!r=)[a-z:]+="[^"]*")*)\s*(?:/>|>.*?</c>)', re.S)
    match = pattern.search(xml)
    assert match, f"{tab}!{cell} not found"
    style = re.search(r'\ss="\d+"', match.group(1))
    new = cell_xml(cell, style.group(0) if style else "", kind, value)
    parts[member] = (xml[: match.start()] + new + xml[match.end() :]).encode()
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in infos:
            zout.writestr(info, parts[info.filename])
    return dst


def drop_cached(path: Path) -> Path:
    """The book at ``path`` rewritten without any formula's cached value, as openpyxl saves one: an app
    then recalculates on load, and ``check`` proves only what an engine recomputes (no ``cached`` stage)."""
    with zipfile.ZipFile(path) as zin:
        infos = zin.infolist()
        parts = {i.filename: zin.read(i.filename) for i in infos}
    for name, data in parts.items():
        if name.startswith("xl/worksheets/"):
            data = re.sub(rb"(</f>|<f [^>]*/>)<v[^>]*>[^<]*</v>", rb"\1", data)
            # the other cells of a CSE range that gives text: their cached text, with no <f> of their own
            parts[name] = re.sub(rb'(<c [^>]*t="str"[^>]*>)<v[^>]*>[^<]*</v>', rb"\1", data)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in infos:
            zout.writestr(info, parts[info.filename])
    return path
