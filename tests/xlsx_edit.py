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
