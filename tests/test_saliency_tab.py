"""The Saliency tab (in every book; `--no-saliency` leaves it out): the backward in formulas, proven by `check`.

The figures on the bundled model are the issue's independent measurement (Ecco's grad_x_input);
every other expectation comes from the float64 reference backward (sheetgpt/backward.py), which
tests/test_backward.py holds to torch autograd and finite differences.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from xlsx_edit import set_value

from sheetgpt import backward
from sheetgpt.book import limits
from sheetgpt.book.layout import BookOptions
from sheetgpt.book.tabs import layout as layout_of
from sheetgpt.book.tabs import prompt as prompt_tab
from sheetgpt.book.tabs import saliency, steering
from sheetgpt.book.writer import build_workbook
from sheetgpt.check import check_book
from sheetgpt.checkpoint import default_model_dir, load_model
from sheetgpt.cli import main
from sheetgpt.config import GPT2Config
from sheetgpt.engine import libreoffice as lo
from sheetgpt.engine.evaluator import evaluate
from sheetgpt.engine.reader import read_workbook
from sheetgpt.errors import SheetGPTError
from sheetgpt.prompt import Prompt
from sheetgpt.tokenizer import Tokenizer
from sheetgpt.weight_text import stored_values

FIXTURES = Path(__file__).parent / "fixtures"
MICRO = FIXTURES / "models" / "micro"
PROMPT = "Mike is quick. He moves"


def _build(model_dir, text: str, out: Path, context: int | None = None):
    model = load_model(model_dir)
    return build_workbook(model, Tokenizer.from_dir(model.path), text, out, context=context)


@pytest.fixture(scope="module")
def micro_book(tmp_path_factory):
    return _build(MICRO, "the cat", tmp_path_factory.mktemp("sal") / "micro.xlsx", context=8)


@pytest.fixture(scope="module")
def tiny_book(tmp_path_factory):
    return _build(default_model_dir(), PROMPT, tmp_path_factory.mktemp("sal") / "tiny.xlsx")


def backward_stages(report) -> dict:
    return {s.stage: s for s in report.stages if s.tab == saliency.NAME and s.stage != "cached"}


def test_check_proves_every_backward_stage(micro_book):
    report = check_book(micro_book.path)
    assert report.passed, [s for s in report.stages if not s.passed]
    stages = backward_stages(report)
    n_layer = load_model(MICRO).config.n_layer
    expected = {"dlogits", "dln_f.out", "dembed.h", "sal.score"} | {
        f"dh.{i}.{s}" for i in range(n_layer) for s in ("mlp.c_fc", "attn.scores", "attn.c_attn", "res_1", "ln_1.dvar")
    }
    assert expected <= set(stages)
    assert all(s.cells > 0 for s in stages.values())


def test_the_tab_shows_eccos_saliency_on_the_bundled_model(tiny_book):
    values = evaluate(read_workbook(tiny_book.path))
    layout = tiny_book.layout
    score = values.number_grid(layout.region("sal.score"))[:, 0]
    assert np.allclose(score, [0.187, 0.086, 0.322, 0.043, 0.239, 0.123], atol=1e-3)
    assert abs(1 / values.number_grid(layout.region("sal.sum"))[0, 0] - 0.593) < 1e-3
    report = check_book(tiny_book.path)
    assert report.passed and len(backward_stages(report)) == 12 + 16 * 2  # 16 stages per block


def test_editing_the_predicting_position_re_explains(micro_book, tmp_path):
    """Predict after position 1 instead: the recomputed tab explains that prediction (the reference's)."""
    moved = tmp_path / "moved.xlsx"
    cell = f"{chr(ord('A') + prompt_tab.PREDICT_AFTER[1])}{prompt_tab.PREDICT_AFTER[0] + 1}"
    set_value(micro_book.path, moved, micro_book.layout, prompt_tab.NAME, cell, "1")
    values = evaluate(read_workbook(moved))
    model = load_model(MICRO)
    params = {k: stored_values(v) for k, v in model.flat.items()}
    want = backward.saliency(micro_book.ids, params, model.config, t=1)
    got = values.number_grid(micro_book.layout.region("sal.score"))[:, 0]
    assert np.allclose(got, want["score"], rtol=0, atol=1e-12)
    assert got[:2].all() and not got[2:].any()
    stale = "cached"  # the file's cached values are the old prediction's: nothing was recalculated
    assert all(s.passed for s in check_book(moved).stages if s.stage != stale)


def _mutated(monkeypatch, stage: str, old: str, new: str):
    """The Saliency tab with one formula text changed in region ``stage`` (the reference stays right)."""
    original = saliency.tabs

    def tabs(layout, placed):
        out = original(layout, placed)
        for region in out[0].regions if out else []:
            if region.name != stage:
                continue
            if region.formula is not None:
                f = region.formula
                region.formula = lambda i, j, f=f: _sub(f(i, j), old, new)
            if region.array_fn is not None:
                a = region.array_fn
                region.array_fn = lambda a=a: [(*box[:4], _sub(box[4], old, new)) for box in a()]
        return out

    monkeypatch.setattr(saliency, "tabs", tabs)


def _sub(text: str, old: str, new: str) -> str:  # a mutant that matched nothing would pass the check: the test fails
    return re.sub(old, new, text)


@pytest.mark.parametrize(
    "stage,old,new",
    [
        ("dlogits", r"-1/", "+1/"),  # a wrong sign
        ("dh.0.res_1", r"^\((\w+\d+)-\$\w+\d+-", r"(\1-"),  # the layer-norm backward without its mean term
        ("dh.0.attn.c_attn", r"/SQRT\(4\)", ""),  # a forgotten 1/sqrt(hd) (micro: hd = 4)
        ("dh.0.attn.scores", r"-SUMPRODUCT\(.*\)\)$", ")"),  # softmax backward without its row sum
        ("sal.grad_x_input", r",Embed!\S+?,Embed!\S+?\)\)$", "))"),  # the gradient's norm, not grad x input
    ],
)
def test_check_names_a_wrong_backward_formula(monkeypatch, tmp_path, stage, old, new):
    _mutated(monkeypatch, stage, old, new)
    path = _build(MICRO, "the cat", tmp_path / "bad.xlsx", context=8).path
    monkeypatch.undo()
    report = check_book(path)
    failed = [s.stage for s in report.stages if not s.passed]
    assert not report.passed and failed[0] == stage, failed


def test_a_generating_steered_book_explains_its_prediction(tmp_path):
    """Generated rows and a steering vector are inputs like any other: the backward reads the forward's values."""
    model, tok = load_model(MICRO), Tokenizer.from_dir(MICRO)
    settings = steering.from_cli(("t", "c", 1.0, 0), tok.display_ids(), model.config.n_layer)
    result = build_workbook(model, tok, "the cat", tmp_path / "gen.xlsx", generate=2, steer=settings)
    report = check_book(result.path)
    assert report.passed, [s for s in report.stages if not s.passed]
    assert len(backward_stages(report)) == 12 + 16 * model.config.n_layer
    assert not result.trace["sal.score"][6:].any() and result.trace["sal.score"][:6].all()  # t = 5, the prompt's last


def test_every_book_has_the_tab_unless_no_saliency(tmp_path):
    """The default (no flag) has the Saliency tab; --no-saliency leaves it and its stages out."""
    for flag, present in (([], True), (["--no-saliency"], False)):
        out = tmp_path / f"b{len(flag)}.xlsx"
        args = ["build", "--model", str(MICRO), "--prompt", "the cat", "--context", "8", *flag, "-o", str(out)]
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, result.output
        assert (saliency.NAME in read_workbook(out).sheets) is present


def test_a_saliency_tab_past_the_last_row_is_refused_naming_no_saliency():
    """70 blocks of 1,000 token rows: each block tab fits, the Saliency tab's 16 regions per block do not."""
    config = GPT2Config(n_layer=70, n_head=1, n_embd=4, n_positions=1024, vocab_size=300)
    fake = Prompt("x", [], [0] * 1000, ["x"] * 1000, 1000, None)
    limits.check(layout_of(config, BookOptions(1000, switches=frozenset())), fake)  # fits without the tab
    with pytest.raises(SheetGPTError, match=r"the Saliency tab would need 1,134,118 rows.*pass --no-saliency"):
        limits.check(layout_of(config, BookOptions(1000, switches=frozenset({"saliency"}))), fake)


@pytest.mark.libreoffice
@pytest.mark.skipif(not lo.available(), reason="LibreOffice (soffice + python3-uno) not available")
def test_libreoffice_recomputes_the_backward(micro_book):
    report = check_book(micro_book.path, engine="libreoffice")
    assert report.passed and len(backward_stages(report)) > 20


@pytest.mark.gnumeric
def test_gnumeric_recomputes_the_backward(micro_book):
    import shutil

    if shutil.which("ssconvert") is None:
        pytest.skip("Gnumeric's ssconvert is not installed")
    report = check_book(micro_book.path, engine="gnumeric")
    assert report.passed and len(backward_stages(report)) > 20
