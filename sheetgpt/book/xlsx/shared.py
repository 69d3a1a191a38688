"""Shared formulas: a region's per-cell formulas grouped into rectangles of one R1C1 form, as cell XML."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from ... import a1
from ...engine.r1c1 import column_keys, to_r1c1


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
    its master's filled the way a shared formula is (equal R1C1 forms, ``engine.r1c1.to_r1c1``).

    A rectangle that does not hold (cells checked per ``verify``: "all" or "sample") is cut
    into the runs of equal R1C1 forms in each row, runs of the same columns and form in
    consecutive rows joined (a group of one cell is a plain formula).
    """
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


class CellError(str):
    """An error value as a cached result ('#N/A'), written with t="e"."""


EMPTY_TEXT = "<v></v>"  # with t="str": a formula whose result is empty text, as Excel writes it


def value_texts(values: np.ndarray) -> tuple[list[str], list[str] | None]:
    """Cached values as ``<v>`` elements, row-major ('' for none), and each cell's type attribute
    (None: all numbers).

    Of float64 values Python's repr (exact); NaN is the sheet's blank, a formula that gives empty
    text (the reference's NaN: a masked attention score), written as Excel writes it, ``t="str"``
    and an empty ``<v></v>``. Of object values (formulas whose results are not all numbers): a float
    as its repr (NaN as empty text), a str as the text (t="str"; one that starts or ends with white
    space keeps it with xml:space="preserve", which LibreOffice needs to keep ' quickly' when it
    re-saves a book), a bool as 1/0 (t="b"), a ``CellError`` as its code (t="e"), None as no value
    (a formula not computed: downstream of an exercise's blanks)."""
    if values.dtype == object:
        texts, types = [], []
        for v in values.ravel().tolist():
            if isinstance(v, CellError):
                texts.append(f"<v>{_escape(v)}</v>")
                types.append(' t="e"')
            elif isinstance(v, str):
                edge = v[:1].isspace() or v[-1:].isspace()
                texts.append(f'<v xml:space="preserve">{_escape(v)}</v>' if edge else f"<v>{_escape(v)}</v>")
                types.append(' t="str"')
            elif isinstance(v, bool):
                texts.append("<v>1</v>" if v else "<v>0</v>")
                types.append(' t="b"')
            elif v is None:
                texts.append("")
                types.append("")
            elif v != v:
                texts.append(EMPTY_TEXT)
                types.append(' t="str"')
            else:
                t = repr(float(v))
                texts.append(f"<v>{t[:-2] if t.endswith('.0') else t}</v>")
                types.append("")
        return texts, types
    flat = np.asarray(values, dtype=np.float64).ravel().tolist()
    if not flat:
        return [], None
    texts = repr(flat)[1:-1].split(", ")  # one C-level repr of the list: shortest round-trip texts
    if "nan" not in texts:
        return [f"<v>{t}</v>" for t in texts], None
    types = [' t="str"' if t == "nan" else "" for t in texts]
    return [EMPTY_TEXT if t == "nan" else f"<v>{t}</v>" for t in texts], types


def block_runs(block: FormulaBlock, verify: str, si: int) -> tuple[list[tuple[int, int, str]], int]:
    """(sheet row, first column, XML of consecutive cells) runs of a block's cells, and the next si."""
    runs = []
    s = block.style
    for rect in block.rects if block.formula is not None else ():
        for i0, i1, j0, j1, text, shared in shared_groups(
            block.formula, rect, block.top, block.left, block.verify or verify
        ):
            texts, types = value_texts(block.values[i0:i1, j0:j1])
            attrs = [f' s="{s}"{t}' for t in types] if types else [f' s="{s}"'] * len(texts)
            n = j1 - j0
            c0 = block.left + j0
            if not shared:
                r = block.top + i0
                runs.append(
                    (r, c0, f'<c r="{a1.col_name(c0)}{r + 1}"{attrs[0]}><f>{_escape(text)}</f>{texts[0]}</c>')
                )
                continue
            letters = [a1.col_name(c) for c in range(c0, c0 + n)]
            ref = f"{letters[0]}{block.top + i0 + 1}:{letters[-1]}{block.top + i1}"
            member = f'><f t="shared" si="{si}"/>'
            for k, i in enumerate(range(i0, i1)):
                r = block.top + i + 1
                row = [
                    f'<c r="{c}{r}"{a}{member}{v}</c>'
                    for c, a, v in zip(letters, attrs[k * n : (k + 1) * n], texts[k * n : (k + 1) * n])
                ]
                if k == 0:  # the master carries the text and the range
                    row[0] = (
                        f'<c r="{letters[0]}{r}"{attrs[0]}><f t="shared" ref="{ref}" si="{si}">'
                        f"{_escape(text)}</f>{texts[0]}</c>"
                    )
                runs.append((r - 1, c0, "".join(row)))
            si += 1
    for r0, c0, r1, c1, text in block.arrays:
        n = c1 - c0 + 1
        texts, types = value_texts(
            block.values[r0 - block.top : r1 - block.top + 1, c0 - block.left : c1 - block.left + 1]
        )
        letters = [a1.col_name(c) for c in range(c0, c1 + 1)]
        ref = f"{letters[0]}{r0 + 1}:{letters[-1]}{r1 + 1}" if (r0, c0) != (r1, c1) else f"{letters[0]}{r0 + 1}"
        attrs = [f' s="{s}"{t}' for t in types] if types else [f' s="{s}"'] * len(texts)
        for k, r in enumerate(range(r0 + 1, r1 + 2)):
            row = [
                f'<c r="{c}{r}"{a}>{v}</c>' if v else f'<c r="{c}{r}" s="{s}"/>'
                for c, a, v in zip(letters, attrs[k * n : (k + 1) * n], texts[k * n : (k + 1) * n])
            ]
            if k == 0:
                row[0] = (
                    f'<c r="{letters[0]}{r}"{attrs[0]}><f t="array" ref="{ref}">{_escape(text)}</f>'
                    f"{texts[0]}</c>"
                )
            runs.append((r - 1, c0, "".join(row)))
    return runs, si
