"""The Neurons tab (issue 16): each row's 5 most active MLP neurons in a chosen block, and a heatmap.

The expected neurons are found here with numpy's stable argsort on the GELU values the engine recomputed
(a different algorithm from the sheet's LARGE / MATCH); check_book proves the same against reference.py.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
from test_generate import PROMPT, ROWS
from xlsx_edit import set_value

from sheetgpt import a1
from sheetgpt.book.tabs import neurons
from sheetgpt.book.writer import build_workbook
from sheetgpt.check import CACHED, check_book
from sheetgpt.checkpoint import default_model_dir, load_model
from sheetgpt.engine.evaluator import evaluate
from sheetgpt.engine.reader import read_workbook
from sheetgpt.tokenizer import Tokenizer


@pytest.fixture(scope="module")
def book(tmp_path_factory):
    d = default_model_dir()
    model, tok = load_model(d), Tokenizer.from_dir(d)
    out = tmp_path_factory.mktemp("neurons") / "n.xlsx"
    return build_workbook(model, tok, PROMPT, out, typed_prompt=True, generate=ROWS - 6)


def _set_block(src: Path, dst: Path, layout, value: str) -> None:
    set_value(src, dst, layout, neurons.NAME, a1.cell(*neurons.BLOCK), value)


def _neurons_by_engine(path: Path, layout, block: int):
    values = evaluate(read_workbook(path))
    gelu = values.number_grid(layout.region(f"h.{block}.mlp.gelu"))
    act = values.number_grid(layout.region("neurons.act"))
    ids = values.number_grid(layout.region("neurons.id"))
    heat = values.number_grid(layout.region("neurons.heat"))
    return gelu, act, ids.astype(int), heat


@pytest.mark.parametrize("block", [1, 0])
@pytest.mark.slow
def test_top_neurons_and_heatmap_per_block(book, tmp_path, block):
    path = book.path
    if block != neurons.default_block(book.layout):
        path = tmp_path / "other.xlsx"
        _set_block(book.path, path, book.layout, str(block))
    gelu, act, ids, heat = _neurons_by_engine(path, book.layout, block)
    want = np.argsort(-gelu, axis=1, kind="stable")[:, : neurons.K]  # ties: the lower neuron first, as MATCH
    assert (ids == want).all()
    assert np.array_equal(act, np.take_along_axis(gelu, want, axis=1))
    t = 5  # the prompt's last token: the predicting position
    assert np.array_equal(heat, gelu[:, want[t]])
    report = check_book(path)
    # an edited block cell leaves the file's cached values stale (nothing recalculated it): only the
    # recomputed stages must pass then; the book as built passes its cached stages too
    failed = [s.stage for s in report.stages if not s.passed and (path == book.path or not s.stage.startswith(CACHED))]
    assert not failed, failed
    assert {"neurons.act", "neurons.id", "neurons.focus", "neurons.heat"} <= {s.stage for s in report.stages}


def test_the_heatmap_is_a_colour_scale(book):
    heat = book.layout.region("neurons.heat")
    member = f"xl/worksheets/sheet{[t.name for t in book.layout.tabs].index(neurons.NAME) + 1}.xml"
    xml = zipfile.ZipFile(book.path).read(member).decode()
    span = a1.span(heat.top, heat.left, heat.bottom, heat.right, (False, False), (False, False))
    assert re.search(f'<conditionalFormatting sqref="{span}"><cfRule type="colorScale"', xml)


@pytest.mark.slow
def test_a_block_out_of_range_shows_the_last_block_with_one_message(book, tmp_path):
    """book.editable's rule: the status cell says why, the tab shows the last block, and check passes."""
    bad = tmp_path / "bad.xlsx"
    _set_block(book.path, bad, book.layout, "5")
    values = evaluate(read_workbook(bad))
    assert values.value(neurons.NAME, "C3") == "B3 must be a whole number from 0 to 1: showing block 1"
    assert values.value(neurons.NAME, "B4") == 1.0
    report = check_book(bad)  # stale cached values aside (nothing recalculated the file), every stage passes
    failed = [s.stage for s in report.stages if not s.passed and not s.stage.startswith(CACHED)]
    assert not failed, failed