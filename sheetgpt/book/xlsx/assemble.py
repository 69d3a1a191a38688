"""The book's zip: xlsxwriter's members copied as they are, weight tabs streamed from numpy, formulas merged in.

``assemble`` copies every member of xlsxwriter's book as it is (raw, not recompressed),
except the weight tabs' empty worksheets, which it replaces with streamed ones, and the
compute tabs' worksheets, into which it merges their shared formulas.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Iterator

import numpy as np

from .deflate import Piece, Task, deflate_all, plan
from .number_text import ADDRESS_BYTES, CELL_BYTES
from .shared import FormulaBlock
from .sheet_xml import sheet_parts
from .zip64 import ZipOut


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
                hints[info.filename] = len(prefix) + len(suffix) + rows * (cols * (CELL_BYTES + ADDRESS_BYTES) + 32)
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
