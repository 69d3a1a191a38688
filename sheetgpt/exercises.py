"""Exercise books: which stages can be blanked for a learner to fill, the families of them, and the
hint each one shows (the cells its formulas read, as A1 ranges: never the formula itself).

``sheetgpt build --exercise STAGES`` writes the regions of ``resolve(layout, STAGES)`` with empty,
input-coloured cells and a title that marks them (``write_blank_region``) and lists them on the Guide
(``write_guide``); ``sheetgpt check`` finds them again by their titles (``read_back``) and grades them
(``sheetgpt.grade``). What a region reads comes from its own formulas (``reads``), so nothing here
re-states a formula.

The tabs whose regions can be exercises, and the families, come from the tab modules: a module with
``EXERCISES`` (``{family: stage names without the block prefix}``) offers its regions, and a family is
the union of its stages over the modules that name it, in book order (``families``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np

from . import a1
from .book.layout import Layout, Region
from .engine.parser import Ref, parse, walk
from .errors import SheetGPTError

if TYPE_CHECKING:
    from .book.output import BookWriter
    from .engine.reader import Book


def families(modules: Iterable[ModuleType]) -> dict[str, tuple[str, ...]]:
    """Family -> stage names without the block prefix ("ln_1.var" stands for h.0.ln_1.var, h.1.ln_1.var,
    ...): each module's ``EXERCISES`` joined, families in the order the modules first name them."""
    out: dict[str, tuple[str, ...]] = {}
    for module in modules:
        for family, stages in getattr(module, "EXERCISES", {}).items():
            out[family] = out.get(family, ()) + tuple(s for s in stages if s not in out.get(family, ()))
    return out


GUIDE_TITLE = "Exercises"  # the Guide's section title
MARK = "EXERCISE: fill the yellow cells"  # the end of an exercise region's title: check finds the exercises by it


def short_name(stage: str) -> str:
    """h.3.attn.scores -> attn.scores, dh.3.attn.scores -> dattn.scores (the Saliency tab's); others as they are."""
    return re.sub(r"^(d?)h\.\d+\.", r"\1", stage)


def exercisable(layout: Layout) -> list[Region]:
    """The regions that can be exercises, in book order (a module's ``EXERCISABLE``, where it has one:
    the names of its regions that can be, the others being cells without a frame)."""
    return [
        r
        for t in layout.compute_tabs()
        if hasattr(t.module, "EXERCISES")
        for r in t.regions
        if r.name in getattr(t.module, "EXERCISABLE", (r.name,))
    ]


def resolve(layout: Layout, spec: str) -> list[str]:
    """Stage names (in book order) for a comma-separated list of stage names and families.

    Unknown words raise one SheetGPTError listing what is valid.
    """
    regions = exercisable(layout)
    names = {r.name for r in regions}
    family = families(layout.modules)
    wanted: set[str] = set()
    unknown = []
    for word in (w.strip() for w in spec.split(",")):
        if not word:
            continue
        if word in names:
            wanted.add(word)
        elif word in family:
            wanted |= {r.name for r in regions if short_name(r.name) in family[word]}
        else:
            unknown.append(word)
    if unknown or not wanted:
        n = layout.config.n_layer
        block = "h.0." if n == 1 else f"h.N. (N = 0..{n - 1})"
        shorts = [
            s if s == r.name else ("d" + block + s[1:] if r.name.startswith("dh.") else block + s)
            for r in regions
            for s in [short_name(r.name)]
        ]
        raise SheetGPTError(
            f"--exercise: unknown stage {', '.join(repr(w) for w in unknown) or '(none given)'}; "
            f"give stage names ({', '.join(dict.fromkeys(shorts))}) or families ({', '.join(family)})"
        )
    return [r.name for r in regions if r.name in wanted]


# ---------------------------------------------------------------------------- what a region reads


@dataclass(frozen=True)
class Read:
    """A rectangle a region's formulas read: (sheet, r0, c0, r1, c1), 0-based, ends inclusive;
    ``region`` is the stage it lies in, if any."""

    sheet: str
    r0: int
    c0: int
    r1: int
    c1: int
    region: str | None = None

    @property
    def a1(self) -> str:
        return a1.sheet_prefix(self.sheet) + a1.span(self.r0, self.c0, self.r1, self.c1, (False, False), (False, False))


def _sample_formulas(region: Region) -> list[list[tuple[str, int, int]]]:
    """The region's formulas as groups of (text, row, col): per head (or the whole region) its corner
    cells, whose references bound those of every cell in between; each CSE array alone."""
    groups = []
    if region.formula is not None:
        heads = range(region.heads) if region.heads else [None]
        for h in heads:
            j0 = 0 if h is None else region.head_left(h) - region.left
            j1 = region.cols - 1 if h is None else j0 + region.block_cols - 1
            corners = {(i, j) for i in (0, region.rows - 1) for j in (j0, j1)}
            groups.append([(region.formula(i, j), region.top + i, region.left + j) for i, j in sorted(corners)])
    for r0, c0, _r1, _c1, text in region.arrays:
        groups.append([(text, r0, c0)])
    return groups


def reads(layout: Layout, region: Region) -> list[Read]:
    """The rectangles the region's formulas read, each reference of the formula bounded over the
    region's cells, labelled with the stage they lie in; in the order the formula names them."""
    out: list[Read] = []
    for group in _sample_formulas(region):
        boxes: dict[int, list[int]] = {}
        sheets: dict[int, str] = {}
        for text, row, col in group:
            refs = [n for n in walk(parse(text, row, col)) if type(n) is Ref]
            for k, ref in enumerate(refs):
                r0 = ref.r0 if ref.r0_abs else row + ref.r0
                r1 = ref.r1 if ref.r1_abs else row + ref.r1
                c0 = ref.c0 if ref.c0_abs else col + ref.c0
                c1 = ref.c1 if ref.c1_abs else col + ref.c1
                box = [min(r0, r1), min(c0, c1), max(r0, r1), max(c0, c1)]
                old = boxes.get(k)
                boxes[k] = box if old is None else [*map(min, old[:2], box[:2]), *map(max, old[2:], box[2:])]
                sheets[k] = ref.sheet or region.tab
        for k, (r0, c0, r1, c1) in boxes.items():
            read = Read(sheets[k], r0, c0, r1, c1, _owner(layout, sheets[k], r0, c0, r1, c1))
            if read not in out:
                out.append(read)
    return out


def _owner(layout: Layout, sheet: str, r0: int, c0: int, r1: int, c1: int) -> str | None:
    for r in layout.regions.values():
        if r.tab == sheet and r.top <= r0 and r1 <= r.bottom and r.left <= c0 and c1 <= r.right:
            return r.name
    return None


def _label(layout: Layout, region: Region, read: Read) -> str:
    if read.region is not None:
        return read.region
    if read.sheet != region.tab:
        return read.sheet  # a weight tab, the Prompt
    if read.c0 == read.c1 == 0:
        return "positions"
    if read.r0 == read.r1 and read.r0 < region.top:
        return "key positions"
    return "cells"


def hint(layout: Layout, region: Region) -> str:
    """'use embed.h 'Embed'!C21:J28; h.0.ln_1.mean C36:C43': the cells to read, no formula."""
    parts = []
    for read in reads(layout, region):
        where = read.a1 if read.sheet != region.tab else a1.span(read.r0, read.c0, read.r1, read.c1, (0, 0), (0, 0))
        parts.append(f"{_label(layout, region, read)} {where}")
    return "; ".join(parts)


def task(region: Region) -> str:
    n = region.rows * len(region.columns())
    shape = f"{region.rows} x {region.cols}"
    if region.heads:
        shape = f"{region.heads} heads of {region.rows} x {region.block_cols}"
    return f"fill the {n:,} yellow cells ({shape}) with formulas"


def read_graph(layout: Layout) -> dict[str, set[str]]:
    """Each stage of the book -> the stages its formulas read directly."""
    return {r.name: {x.region for x in reads(layout, r)} - {None, r.name} for r in layout.regions.values()}


def downstream(layout: Layout, stages: list[str], graph: dict[str, set[str]] | None = None) -> set[str]:
    """Every stage that reads, directly or through others, one of ``stages`` (not the stages themselves)."""
    graph = read_graph(layout) if graph is None else graph
    bad, out = set(stages), set()
    changed = True
    while changed:
        changed = False
        for name, deps in graph.items():
            if name not in bad and deps & bad:
                bad.add(name)
                out.add(name)
                changed = True
    return out


def upstream(graph: dict[str, set[str]], stage: str) -> set[str]:
    """Every stage that ``stage`` reads, directly or through others."""
    seen: set[str] = set()
    todo = [stage]
    while todo:
        for name in graph.get(todo.pop(), ()):
            if name not in seen:
                seen.add(name)
                todo.append(name)
    return seen


# ---------------------------------------------------------------------------- the book


def write_blank_region(out: BookWriter, ws, region: Region) -> None:
    """The region's cells empty and input-coloured; its title marks it an exercise; the explanation
    row says what to compute and which cells to use."""
    fmt = out.fmt.exercise(region.number_format)
    for i in range(region.rows):
        for j in region.columns():
            ws.write_blank(region.top + i, region.left + j, None, fmt)
    layout = out.layout
    ws.write_string(region.title_row, 0, f"{region.step} · {region.text['title']} · {MARK}", out.fmt.title)
    ws.write_string(
        region.explain_row,
        0,
        f"{region.text['explain']}  To do: {task(region)}.  Use: {hint(layout, region)}.",
        out.fmt.note,
    )


def cold_text(region: Region) -> str:
    """What a cell that waits on exercise ``region`` caches before the learner starts (its title)."""
    return f'fill exercise "{region.step} · {region.text["title"]}" first'


def blanks(layout: Layout, names: list[str]) -> list[tuple[str, int, int, int, int]]:
    """The exercise regions' cells, as ``engine.reach`` sources: (tab, r0, c0, r1, c1), in book order."""
    return [(r.tab, r.top, r.left, r.bottom, r.right) for r in map(layout.region, names)]


def guarded(out: BookWriter, formula: str, value):
    """``formula`` (no '=') and its cached ``value`` as an exercise book shows them: until every
    exercise region holds its numbers, the text "fill the exercises first: ..." (written and cached
    so), then the formula's own value. An ordinary book: both as they are."""
    if not out.exercises:
        return formula, value
    ranges, n = [], 0
    for name in out.exercises:
        r = out.layout.region(name)
        ranges.append(a1.sheet_prefix(r.tab) + r.absolute)
        n += int(np.isfinite(r.grid(out.trace[name])[:, r.columns()]).sum())  # masked cells stay blank
    names = ", ".join(out.exercises[:3]) + (", ..." if len(out.exercises) > 3 else "")
    text = f"fill the exercises first: {names}"
    return f'IF(COUNT({",".join(ranges)})<{n},"{text}",{formula})', text


def write_guide(out: BookWriter, ws, row: int) -> int:
    """The Guide's list of exercises from ``row``: each a link to its region, with what to do; returns
    the next free row."""
    fmt, layout = out.fmt, out.layout
    ws.write_string(row, 0, GUIDE_TITLE, fmt.title)
    ws.write_string(
        row, 1, "Fill the yellow cells of each region with formulas, then run: sheetgpt grade BOOK.xlsx", fmt.note
    )
    for k, name in enumerate(out.exercises, start=1):
        r = layout.region(name)
        target = f"internal:{a1.sheet_prefix(r.tab)}{a1.cell(r.top, r.left)}"
        ws.write_url(row + k, 0, target, fmt.link, name)
        ws.write_string(row + k, 1, f"{r.tab}: {r.text['title']}: {task(r)}; use {hint(layout, r)}", fmt.label)
    return row + len(out.exercises) + 2


def read_back(book: Book, layout: Layout) -> list[str]:
    """The book's exercises (none for an ordinary book), as stage names in book order: the regions
    whose title marks them an exercise (``MARK``), as ``write_blank_region`` wrote them. The Guide's
    list is for the learner and is not read: editing it changes no grade."""
    out = []
    for region in exercisable(layout):
        sheet = book.sheets.get(region.tab)
        title = sheet.strings.get((region.title_row, 0), "") if sheet is not None else ""
        if isinstance(title, str) and title.endswith(MARK):
            out.append(region.name)
    return out
