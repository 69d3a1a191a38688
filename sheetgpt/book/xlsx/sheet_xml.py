"""A worksheet's XML around its rows: the empty weight tab's frame, and compute tabs with shared formulas merged in."""

from __future__ import annotations

import re

from ... import a1
from .shared import FormulaBlock, block_runs


def sheet_parts(empty_sheet_xml: bytes, rows: int, cols: int) -> tuple[bytes, bytes]:
    """(prefix, suffix) around the rows, from xlsxwriter's XML of the same sheet left empty."""
    head, sep, tail = empty_sheet_xml.partition(b"<sheetData/>")
    if not sep:
        raise ValueError("expected an empty worksheet (<sheetData/>)")
    dim = f'<dimension ref="A1:{a1.col_name(cols - 1)}{rows}"/>'.encode()
    head, n = re.subn(rb"<dimension ref=\"[^\"]*\"/>", dim, head)
    if n != 1:
        raise ValueError("expected one <dimension> in the empty worksheet")
    return head + b"<sheetData>", b"</sheetData>" + tail


_ROW_RE = re.compile(rb'<row r="(\d+)"([^>]*?)(?:/>|>(.*?)</row>)', re.S)
_CELL_COL_RE = re.compile(rb'<c r="([A-Z]+)\d+"')
_SPANS_RE = re.compile(rb' spans="[^"]*"')


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
            starts = [(a1.col_index(c.group(1).decode()), c.start()) for c in _CELL_COL_RE.finditer(content)]
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
    r0, c0 = int(m.group(2)) - 1, a1.col_index(m.group(1).decode())
    r1, c1 = (int(m.group(4)) - 1, a1.col_index(m.group(3).decode())) if m.group(3) else (r0, c0)
    r1, c1 = max(r1, max_r), max(c1, max_c)
    ref = (
        f"{a1.col_name(c0)}{r0 + 1}:{a1.col_name(c1)}{r1 + 1}" if (r0, c0) != (r1, c1) else f"{a1.col_name(c0)}{r0 + 1}"
    )
    return head[: m.start()] + f'<dimension ref="{ref}"/>'.encode() + head[m.end() :]
