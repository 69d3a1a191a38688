"""Render the docs from the CLI's own books: every PNG the README and docs/ show, and the README's text
samples, so that they cannot drift from what sheetgpt does.

    python scripts/render_docs.py            # rewrite docs/*.png, docs/renders.json and README's samples
    python scripts/render_docs.py --check    # render into a temp dir and compare; exit 1 on any drift

What it does, in order:
1. builds each book of BOOKS with the CLI (`python -m sheetgpt build ARGS -o WORK/NAME.xlsx`);
2. in one headless LibreOffice session (python3-uno; the UNO side is this same file, run by the system
   python as ``render_docs.py --uno REQUEST.json``), loads each book, recalculates it, and for each
   picture of PICTURES: types its edits (values, or formulas as a person types them), recalculates,
   exports its cell range to a one-page PDF (grid and row/column headers printed, natural size), reads
   the range's cell texts as LibreOffice shows them, and stores the book as .xlsx if the picture says so;
3. turns each PDF into an image (``pdftoppm -r 80``; poppler-utils), written as a PNG by ``write_png``
   (filter Up, so that ``read_png`` reads it back with numpy alone);
4. runs each SAMPLES command in the work directory (``python -m sheetgpt ...``) and puts its output in
   the README's ```` ``` ```` block that starts with ``$ sheetgpt ...`` (timings kept as printed);
   the facts ``_inline`` lists (a command and a formula the README quotes) are put in their places too.

``--check`` (tests/test_docs.py runs it in CI) writes nothing: it compares what it rendered with the
committed docs: each picture's cell texts exactly with docs/renders.json (what a reader reads: numbers,
tokens, labels and where they are), each PNG with the committed one within a tolerance (its size
exactly, at most PIXEL_TOLERANCE of its pixels visibly different: fonts and anti-aliasing may differ
between machines, a changed fill, border or column width does not pass), and the README's samples
and inline facts with the CLI's output, timings aside ("in 1.2 s" is compared as "in <t> s").

Adding a doc entry is one line:
- a picture: ``Picture("sample", "default", lambda L: ("Sample", "A1:" + a1(30, 11)))`` in PICTURES
  (png name in docs/, a book of BOOKS, its layout ``L`` -> (sheet, A1 range); ``L.book`` is the
  book's cells as read back; optional ``edits`` typed first,
  layout -> [(sheet, A1, value or {"formula": "=..."})], and ``save`` to store the edited book as
  WORK/<save> for a sample); reference the PNG from the README or docs/*.md;
- a book: ``"training": ["--train"]`` in BOOKS (the `sheetgpt build` arguments; the output is added);
- a text sample: ``Sample(["predict", "--prompt", "Hi"], "a comment")`` in SAMPLES, and a block in the
  README that starts with ``$ sheetgpt predict --prompt Hi`` (the script fills in the rest).
Then run ``python scripts/render_docs.py`` and commit docs/ and README.md.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DOCS = os.path.join(ROOT, "docs")
README = os.path.join(ROOT, "README.md")
RENDERS = os.path.join(DOCS, "renders.json")
MARGIN = 300  # page margin, 1/100 mm
DPI = 80
PIXEL_TOLERANCE = 0.01  # share of pixels allowed to differ by more than PIXEL_DELTA in a channel
PIXEL_DELTA = 48
SOURCE_DATE_EPOCH = "1764547200"  # 2025-12-01: the Guide's "built" cell, the same in every render


# ---------------------------------------------------------------- the UNO side (system python)


def uno_main(req_path):
    sys.path.insert(0, os.path.join(ROOT, "sheetgpt", "engine"))
    import lo_bridge as lb
    import uno

    with open(req_path, encoding="utf-8") as f:
        req = json.load(f)
    texts = {}
    with lb.soffice_session(req, time.monotonic() + 600, "sheetgpt_docs") as (_ctx, desktop, _mode):
        for book in req["books"]:
            doc = lb.load_document(desktop, book["book"])
            doc.calculateAll()
            styles = doc.StyleFamilies.getByName("PageStyles")
            for job in book["jobs"]:
                for sheet_name, ref, value in job["edits"]:  # typed first (the Steering tab after a flip)
                    cell = doc.Sheets.getByName(sheet_name).getCellRangeByName(ref)
                    if isinstance(value, dict):
                        lb.type_formula(doc, cell, value)
                    elif isinstance(value, str):
                        cell.setString(value)
                    else:
                        cell.setValue(value)
                if job["edits"]:
                    doc.calculateAll()
                sheet = doc.Sheets.getByName(job["sheet"])
                area = sheet.getCellRangeByName(job["range"])
                a = area.getRangeAddress()
                texts[job["png"]] = [
                    [sheet.getCellByPosition(c, r).getString() for c in range(a.StartColumn, a.EndColumn + 1)]
                    for r in range(a.StartRow, a.EndRow + 1)
                ]
                width = sum(sheet.Columns.getByIndex(c).Width for c in range(a.StartColumn, a.EndColumn + 1))
                height = sum(sheet.Rows.getByIndex(r).Height for r in range(a.StartRow, a.EndRow + 1))
                style = styles.getByName(sheet.PageStyle)
                style.HeaderIsOn = False
                style.FooterIsOn = False
                style.PrintGrid = True
                style.PrintHeaders = True  # column letters and row numbers: it looks like a spreadsheet
                style.PrintAnnotations = False
                style.ScaleToPagesX = 0
                style.ScaleToPagesY = 0
                style.PageScale = 100
                for side in ("LeftMargin", "RightMargin", "TopMargin", "BottomMargin"):
                    setattr(style, side, MARGIN)
                style.Width = width + 2 * MARGIN + 1200  # + the row-number column
                style.Height = height + 2 * MARGIN + 800  # + the column-letter row
                filter_data = uno.Any(
                    "[]com.sun.star.beans.PropertyValue",
                    (lb.prop("Selection", area), lb.prop("ExportNotes", False), lb.prop("ExportNotesInMargin", False)),
                )
                doc.storeToURL(
                    lb.file_url(job["pdf"]),
                    (lb.prop("FilterName", "calc_pdf_Export"), lb.prop("FilterData", filter_data)),
                )
                if job.get("save"):  # as a learner saves it from LibreOffice
                    doc.storeToURL(
                        lb.file_url(job["save"]),
                        (lb.prop("FilterName", "Calc MS Excel 2007 XML"), lb.prop("Overwrite", True)),
                    )
            doc.close(True)
    with open(req["texts"], "w", encoding="utf-8") as f:
        json.dump(texts, f)
    return 0


# ---------------------------------------------------------------- what the docs show


# Each book the pictures come from: `sheetgpt build` with these arguments (and -o WORK/<name>.xlsx).
EXERCISES = "h.0.ln_1.var,h.0.attn.weights,h.0.mlp.gelu"
BOOKS = {
    "default": [],
    "second": [],  # the default book again, for pictures whose edits must not meet the first one's
    "train": ["--train"],
    "exercise": ["--blocks", "1", "--exercise", EXERCISES],
}


@dataclass(frozen=True)
class Picture:
    png: str  # docs/<png>.png
    book: str  # a key of BOOKS
    cells: Callable  # layout -> (sheet, A1 range)
    edits: Callable = lambda layout: []  # layout -> [(sheet, A1, value or {"formula": "=..."})], typed first
    save: str = ""  # store the book after the edits as WORK/<save> (for SAMPLES)


@dataclass(frozen=True)
class Sample:
    args: list  # `sheetgpt` arguments, run in the work directory
    comment: str = ""  # shown after the command in the README
    lines: tuple = field(default=())  # (first, last) output lines shown, with "..." between; () for all


class _Lazy:
    """A module imported when an attribute is first read (the UNO side never reads one)."""

    def __init__(self, name):
        self.name = name

    def __getattr__(self, attr):
        import importlib

        return getattr(importlib.import_module(self.name), attr)


def a1(row, col):
    from sheetgpt.a1 import cell

    return cell(row, col)


def _guide(L):
    """The Guide down to its last link before the vocab tab's (the tabs a reader looks at)."""
    from sheetgpt.book.tabs import guide, vocab

    labels = {text: r for (r, c), text in L.book.sheets[guide.NAME].strings.items() if c == 0}
    return guide.NAME, "A1:" + a1(labels[vocab.NAME] - 1, 1)


def _attention(L):
    from sheetgpt.book.tabs import block

    last = L.config.n_layer - 1  # the bundled model finds the antecedent in its last block
    w = L.regions[f"h.{last}.attn.weights"]
    return block.name(last), a1(w.top - 5, 0) + ":" + a1(w.bottom, min(w.right, 2 + 2 * (L.T + 1) - 2))


def _steer_flip(L):  # the README's flip: " slow", " quick", strength 1, block 0
    from sheetgpt.book.tabs import steering as s

    rows = (s.A_ROW, s.B_ROW, s.STRENGTH_ROW, s.BLOCK_ROW)
    return [(s.NAME, a1(r, s.VALUE_COL), v) for r, v in zip(rows, (" slow", " quick", 1.0, 0))]


def _exercise_region(L):
    r = L.region("h.0.ln_1.var")
    return r.tab, a1(r.title_row - 1, 0) + ":" + a1(r.bottom + 1, 15)


def _learner(L):
    """What the README's learner types: VAR.P of its row of embed.h into each cell of h.0.ln_1.var
    (right), each attention weight as its exponential over its column's sum (the wrong axis);
    h.0.mlp.gelu left undone."""
    from sheetgpt.a1 import span

    var, x = L.region("h.0.ln_1.var"), L.region("embed.h")
    exp, w = L.region("h.0.attn.exp"), L.region("h.0.attn.weights")
    typed = [(var.tab, a1(var.top + i, var.left), {"formula": f"=VAR.P({x.row(i, var.tab)})"}) for i in range(var.rows)]
    for j in exp.columns():
        c = exp.left + j
        column = span(exp.top, c, exp.bottom, c, (True, True), (True, True))
        typed += [
            (w.tab, a1(w.top + i, c), {"formula": f"={a1(exp.top + i, c)}/SUM({column})"}) for i in range(exp.rows)
        ]
    return typed


def _tab(module, rng):
    """(the tab module's NAME, rng(layout)): a picture of one range of one tab."""

    def cells(L):
        import importlib

        return importlib.import_module("sheetgpt.book.tabs." + module).NAME, rng(L)

    return cells


def _top(region, cols):
    """A1 down to the bottom row of ``region``, ``cols`` columns wide."""
    return lambda L: "A1:" + a1(L.regions[region].bottom, cols - 1)


def _below(region, rows, cols):
    """A1 down to ``rows`` rows below the top row of ``region``, ``cols`` columns wide."""
    return lambda L: "A1:" + a1(L.regions[region].top + rows, cols - 1)


def _sample(seed, first=False):
    """The Sample tab's settings typed: sampling with ``seed`` (first: steering off again, sample mode)."""

    def edits(L):
        from sheetgpt.book.tabs import sample as s
        from sheetgpt.book.tabs import steering as st

        out = [(st.NAME, a1(st.STRENGTH_ROW, st.VALUE_COL), 0.0), (s.NAME, a1(s.MODE_ROW, s.VALUE_COL), "sample")]
        return [*(out if first else []), (s.NAME, a1(s.SEED_ROW, s.VALUE_COL), seed)]

    return edits


def _story(L):  # the Prompt tab's rows: the prompt and its continuation
    return "A1:" + a1(pc.TOP + L.T - 1, pc.SO_FAR_COL)


def _sample_view(L):
    view = L.regions["sample.view"]
    return "A1:" + a1(view.top + 11, view.right + 1)


HEAT_FEATURE = 12  # ' He' after '.': the heat map lights up each ' He' after a full stop (README)
FEATURE_FLIP = (144, 4.0, 1)  # ' happy' after ' is', x 4 at block 1: ' quickly' -> ' happily' (README)


def _heat(L):  # the Features tab's heat map on feature 12
    from sheetgpt.book.tabs import features as f

    return [(f.NAME, a1(*f.FEATURE), HEAT_FEATURE)]


def _feature_flip(L):  # the Steering tab's feature cell, strength and block
    from sheetgpt.book.tabs import steering as s

    rows = (s.FEATURE_ROW, s.STRENGTH_ROW, s.BLOCK_ROW)
    return [(s.NAME, a1(r, s.VALUE_COL), v) for r, v in zip(rows, FEATURE_FLIP)]


def _top_features(L):
    top, act = L.regions["sae.id"], L.regions["sae.act"]
    from sheetgpt.book.tabs import features as f

    return a1(act.title_row, 0) + ":" + a1(top.bottom, top.right + 1 + f.K)


def _train_cells(L):  # the Train tab's cells, the new top 5 and the first gradient norms
    from sheetgpt.book.tabs import train

    return "A1:" + a1(train.NORMS_ROW + 5, 4)


def _swiftly(L):  # the target " swiftly" typed into the Train tab
    from sheetgpt.book.tabs import train

    return [(train.NAME, a1(train.TARGET_ROW, train.VALUE_COL), " swiftly")]


pc = _Lazy("sheetgpt.book.prompt_cells")  # row and column constants, imported when first read
sal = _Lazy("sheetgpt.book.tabs.saliency")
st = _Lazy("sheetgpt.book.tabs.steering")

PICTURES = [
    Picture("guide", "default", _guide),
    Picture("generate", "default", _tab("prompt", _story)),
    Picture(
        "block0", "default", lambda L: (L.region("h.0.ln_1.norm").tab, "A1:" + a1(L.region("h.0.ln_1.norm").bottom, 11))
    ),
    Picture("attention", "default", _attention),
    Picture("predict", "default", _tab("predict", _below("predict.probs", 30, 14))),
    Picture("logit_lens", "default", _tab("logit_lens", _top("lens.out", 10))),
    Picture("embeddings", "default", _tab("embeddings", _top("emb.near.query", 12))),
    Picture("neurons", "default", _tab("neurons", _top("neurons.heat", 7))),
    Picture("steering", "default", _tab("steering", _top("steer.add", 10)), _steer_flip),  # these two change the book
    Picture("steering_predict", "default", _tab("predict", _below("predict.probs", 11, 14))),
    Picture("sample", "default", _tab("sample", _sample_view), _sample(6, first=True)),  # these change the book too
    Picture("sample_seed6", "default", _tab("prompt", _story)),
    Picture("sample_seed2", "default", _tab("prompt", _story), _sample(2)),
    Picture("saliency", "second", _tab("saliency", lambda L: "A1:" + a1(sal.SUMMARY_TOP + L.T - 1, 7))),
    Picture("features", "second", _tab("features", _top_features), _heat),
    Picture("features_heat", "second", _tab("features", _top("sae.heat", 7))),
    Picture("features_steering", "second", _tab("steering", lambda L: "A1:" + a1(st.FEATURE_ROW, 9)), _feature_flip),
    Picture("features_steering_prompt", "second", _tab("prompt", _story)),
    Picture("train", "train", _tab("train", _train_cells)),
    Picture("train_swiftly", "train", _tab("train", _train_cells), _swiftly),
    Picture("exercise_before", "exercise", _exercise_region),
    Picture("exercise_after", "exercise", _exercise_region, _learner, save="filled.xlsx"),
]

SAMPLES = [
    Sample(
        ["grade", "filled.xlsx"],
        "the book above, filled in LibreOffice",
    ),
]


def _inline(L_of):
    """Facts the README quotes: (text before, the fact, text after)."""
    L = L_of("exercise")
    var, x = L.region("h.0.ln_1.var"), L.region("embed.h")
    return [
        ("come from `sheetgpt build ", shlex.join(BOOKS["exercise"]), "`"),
        ("a learner typed `", f"=VAR.P({x.row(0, var.tab)})", "` and the rows below"),
    ]


# ---------------------------------------------------------------- building, rendering, comparing


def cli(args, cwd):
    env = {**os.environ, "SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH, "PYTHONPATH": ROOT, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "sheetgpt", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


def build_books(work):
    from pathlib import Path

    from sheetgpt.book.tabs import read_layout
    from sheetgpt.engine.reader import read_workbook

    layouts = {}
    for name, args in BOOKS.items():
        r = cli(["build", *args, "-o", name + ".xlsx"], work)
        if r.returncode != 0:
            raise SystemExit(f"sheetgpt build {shlex.join(args)} failed: {r.stderr.strip()}")
        book = read_workbook(Path(work) / (name + ".xlsx"))
        layouts[name] = Built(read_layout(book), book)
    return layouts


class Built:
    """A book as the pictures see it: its layout's attributes (``L.regions``, ``L.T``...) and ``L.book``,
    the cells as read back (``sheetgpt.engine.book.Book``)."""

    def __init__(self, layout, book):
        self.layout, self.book = layout, book

    def __getattr__(self, name):
        return getattr(self.layout, name)


def render(work, layouts):
    """Every picture as WORK/png/<name>.png; returns {name: cell texts}."""
    from sheetgpt.engine.libreoffice import SYSTEM_PYTHON, find_soffice

    os.makedirs(os.path.join(work, "png"), exist_ok=True)
    books = []
    for name in BOOKS:
        jobs = []
        for p in (p for p in PICTURES if p.book == name):
            sheet, rng = p.cells(layouts[name])
            jobs.append(
                {
                    "png": p.png,
                    "sheet": sheet,
                    "range": rng,
                    "edits": [list(e) for e in p.edits(layouts[name])],
                    "pdf": os.path.join(work, p.png + ".pdf"),
                    "save": os.path.join(work, p.save) if p.save else "",
                }
            )
        if jobs:
            books.append({"book": os.path.join(work, name + ".xlsx"), "jobs": jobs})
    req = {
        "soffice": find_soffice(),
        "profile": os.path.join(work, "profile"),
        "books": books,
        "texts": os.path.join(work, "texts.json"),
    }
    req_path = os.path.join(work, "request.json")
    with open(req_path, "w", encoding="utf-8") as f:
        json.dump(req, f)
    subprocess.run(
        [SYSTEM_PYTHON, os.path.abspath(__file__), "--uno", req_path], check=True, timeout=900, start_new_session=True
    )
    for book in books:
        for job in book["jobs"]:
            stem = os.path.join(work, "png", job["png"])
            subprocess.run(
                ["pdftoppm", "-r", str(DPI), "-singlefile", "-f", "1", "-l", "1", job["pdf"], stem], check=True
            )
            write_png(stem + ".png", read_ppm(stem + ".ppm"))
    with open(req["texts"], encoding="utf-8") as f:
        texts = json.load(f)
    where = {job["png"]: f"{job['sheet']}!{job['range']}" for book in books for job in book["jobs"]}
    return {p.png: {"book": p.book, "cells": where[p.png], "texts": texts[p.png]} for p in PICTURES}


def sample_blocks(work):
    """{first line of the README block: the whole block} for each SAMPLES command, as the CLI prints now."""
    out = {}
    for s in SAMPLES:
        r = cli(s.args, work)
        lines = r.stdout.rstrip("\n").splitlines()
        if s.lines:
            first, last = s.lines
            lines = lines[:first] + ["..."] + lines[last:]
        head = "$ sheetgpt " + shlex.join(s.args)
        out[head] = "\n".join([head + (f"      # {s.comment}" if s.comment else ""), *lines]) + "\n"
    return out


def with_samples(readme, blocks, facts):
    for head, block in blocks.items():
        start = readme.find("```\n" + head)
        if start < 0:
            raise SystemExit(f"README.md has no ``` block starting with {head!r}")
        start += 4
        end = readme.index("```", start)
        readme = readme[:start] + block + readme[end:]
    for before, fact, after in facts:
        pattern = re.compile(re.escape(before) + r"[^`\n]*" + re.escape(after))
        if not pattern.search(readme):
            raise SystemExit(f"README.md has no {before}...{after}")
        readme = pattern.sub(lambda _m, f=fact: before + f + after, readme)  # noqa: B023
    return readme


def timeless(text):
    return re.sub(r"\d+(\.\d+)? s\b", "<t> s", text)


def read_ppm(path):
    """A binary PPM (P6, 8 bits; what ``pdftoppm`` writes without -png) as a [height, width, 3] uint8 array."""
    import numpy as np

    data = open(path, "rb").read()
    fields, pos = [], 0
    while len(fields) < 4:  # magic, width, height, maxval, separated by whitespace
        while data[pos : pos + 1].isspace():
            pos += 1
        end = pos
        while not data[end : end + 1].isspace():
            end += 1
        fields.append(data[pos:end])
        pos = end
    if fields[0] != b"P6" or fields[3] != b"255":
        raise ValueError(f"{path}: not an 8-bit binary PPM")
    width, height = int(fields[1]), int(fields[2])
    return np.frombuffer(data, dtype=np.uint8, count=width * height * 3, offset=pos + 1).reshape(height, width, 3)


def write_png(path, pixels):
    """[height, width, 3] uint8 as an RGB PNG, every row filtered "Up" (its difference from the row above:
    small for a spreadsheet's rows, and undone by one cumulative sum in read_png)."""
    import numpy as np

    height, width, _ = pixels.shape
    rows = pixels.reshape(height, width * 3).astype(np.int16)
    up = (rows - np.vstack([np.zeros((1, width * 3), np.int16), rows[:-1]])) % 256
    raw = np.hstack([np.full((height, 1), 2, np.uint8), up.astype(np.uint8)]).tobytes()

    def chunk(kind, body):
        return len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")

    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    with open(path, "wb") as f:
        f.write(
            b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
        )


def read_png(path):
    """A PNG as write_png writes it (8-bit RGB, filters None or Up) as a [height, width, 3] uint8 array."""
    import numpy as np

    data = open(path, "rb").read()
    pos, idat, header = 8, b"", None
    while pos < len(data):
        n = int.from_bytes(data[pos : pos + 4], "big")
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + n]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    width, height = int.from_bytes(header[0:4], "big"), int.from_bytes(header[4:8], "big")
    if tuple(header[8:13]) != (8, 2, 0, 0, 0):
        raise ValueError(f"{path}: not an 8-bit RGB PNG as scripts/render_docs.py writes")
    raw = np.frombuffer(zlib.decompress(idat), dtype=np.uint8).reshape(height, 1 + width * 3)
    filters, rows = raw[:, 0], raw[:, 1:]
    if not set(np.unique(filters)) <= {0, 2}:
        raise ValueError(f"{path}: PNG filters {sorted(set(filters))}; write_png uses None and Up only")
    # an Up row adds the row above (uint8 sums wrap mod 256, as PNG's do); a None row starts afresh
    starts = [*np.flatnonzero(filters == 0), height]
    out = np.cumsum(rows[: starts[0]], axis=0, dtype=np.uint8)
    parts = [out] + [np.cumsum(rows[a:b], axis=0, dtype=np.uint8) for a, b in zip(starts, starts[1:])]
    return np.vstack(parts).reshape(height, width, 3)


def png_drift(new, old):
    """'' when the two pictures look the same (PIXEL_TOLERANCE), else what differs."""
    import numpy as np

    a, b = read_png(new), read_png(old)
    if a.shape != b.shape:
        return f"size {a.shape[1]}x{a.shape[0]}, committed {b.shape[1]}x{b.shape[0]}"
    share = float((np.abs(a.astype(np.int16) - b).max(axis=2) > PIXEL_DELTA).mean())
    return f"{share:.1%} of its pixels differ" if share > PIXEL_TOLERANCE else ""


def compare(renders, fresh, readme, wanted, docs=DOCS):
    """What differs between the fresh renders (texts ``renders``, PNGs in ``fresh``) and the committed docs
    (renders.json and the PNGs in ``docs``), and between the README and ``wanted``, timings aside."""
    with open(os.path.join(docs, "renders.json"), encoding="utf-8") as f:
        committed = json.load(f)
    drift = []
    for name, r in renders.items():
        if name not in committed:
            drift.append(f"docs/{name}.png: not in docs/renders.json")
            continue
        if r != committed[name]:
            drift.append(f"docs/{name}.png: the cells {r['cells']} show other texts than docs/renders.json says")
        if not os.path.exists(os.path.join(docs, name + ".png")):
            drift.append(f"docs/{name}.png: missing")
        elif why := png_drift(os.path.join(fresh, name + ".png"), os.path.join(docs, name + ".png")):
            drift.append(f"docs/{name}.png: {why}")
    if timeless(wanted) != timeless(readme):
        drift.append("README.md: a text sample or a quoted fact differs from what the CLI prints now")
    return drift


def main(argv):
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="compare with the committed docs; write nothing")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (its path is printed)")
    args = ap.parse_args(argv)
    work = tempfile.mkdtemp(prefix="sheetgpt_docs_")
    t0 = time.monotonic()
    layouts = build_books(work)
    t1 = time.monotonic()
    renders = render(work, layouts)
    t2 = time.monotonic()
    blocks = sample_blocks(work)
    t3 = time.monotonic()
    with open(README, encoding="utf-8") as f:
        readme = f.read()
    wanted = with_samples(readme, blocks, _inline(layouts.__getitem__))
    drift = []
    if args.check:
        drift = compare(renders, os.path.join(work, "png"), readme, wanted)
        for line in drift:
            print(line, file=sys.stderr)
        if drift:
            print(
                f"the docs are not current: run python scripts/render_docs.py (fresh renders in {work})",
                file=sys.stderr,
            )
            return 1
    else:
        for name in renders:
            shutil.copyfile(os.path.join(work, "png", name + ".png"), os.path.join(DOCS, name + ".png"))
            print(f"docs/{name}.png: {renders[name]['cells']}")
        with open(RENDERS, "w", encoding="utf-8") as f:
            json.dump(renders, f, indent=1, ensure_ascii=False)
            f.write("\n")
        if timeless(wanted) != timeless(readme):  # a new timing alone is not worth a diff
            with open(README, "w", encoding="utf-8") as f:
                f.write(wanted)
            print("README.md: samples updated")
    if not args.keep and not drift:
        shutil.rmtree(work, ignore_errors=True)
    print(
        f"rendered {len(renders)} pictures and {len(blocks)} samples in {time.monotonic() - t0:.0f} s "
        f"(books {t1 - t0:.0f} s, LibreOffice and pdftoppm {t2 - t1:.0f} s, samples {t3 - t2:.0f} s)"
    )
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--uno":
        sys.exit(uno_main(sys.argv[2]))
    sys.path.insert(0, ROOT)
    sys.exit(main(sys.argv[1:]))
