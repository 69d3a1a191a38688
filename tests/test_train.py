"""The training book (`sheetgpt build --train`): one step of gradient descent in formulas, proven by `check`.

The bundled model's figures are the issue's independent measurement (one plain SGD step on the NLL of
' quickly' after "Mike is quick. He moves": p 0.593 before; after, 0.617 / 0.705 / 0.796 / 0.995 at
lr 0.001 / 0.005 / 0.01 / 0.05; ' swiftly' 0.267 -> 0.487 at 0.005, and it becomes the argmax). Every
other expectation comes from the float64 reference backward (sheetgpt/backward.py), which
tests/test_backward.py holds to torch autograd and finite differences.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from xlsx_edit import set_value

from sheetgpt import a1
from sheetgpt.book.tabs import train, train_weights
from sheetgpt.book.writer import build_workbook
from sheetgpt.check import check_book
from sheetgpt.checkpoint import default_model_dir, load_model, param_shapes
from sheetgpt.cli import main
from sheetgpt.engine.evaluator import evaluate
from sheetgpt.engine.reader import read_workbook

sys.path.insert(0, str(Path(__file__).parent))
from sheetgpt.tokenizer import Tokenizer  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures"
MICRO = FIXTURES / "models" / "micro"
PROMPT = "Mike is quick. He moves"
SLOW = pytest.mark.slow
TARGET = a1.cell(train.TARGET_ROW, train.VALUE_COL)  # B4
LR = a1.cell(train.LR_ROW, train.VALUE_COL)  # B5


def _build(model_dir, text: str, out: Path, **kw):
    model = load_model(model_dir)
    return build_workbook(model, Tokenizer.from_dir(model.path), text, out, **{"tabs": {"train": True}, **kw})


@pytest.fixture(scope="module")
def tiny_book(tmp_path_factory):
    return _build(default_model_dir(), PROMPT, tmp_path_factory.mktemp("train") / "tiny.xlsx")


@pytest.fixture(scope="module")
def micro_book(tmp_path_factory):
    return _build(MICRO, "the cat", tmp_path_factory.mktemp("train") / "micro.xlsx")


def one(values, layout, name: str) -> float:
    return float(values.number_grid(layout.region(name))[0, 0])


def lr_edited(book, tmp_path: Path, value: str) -> Path:
    """A copy of the book whose learning-rate cell holds ``value`` (nothing recalculated in the file)."""
    out = tmp_path / f"lr{value}.xlsx"
    set_value(book.path, out, book.layout, train.NAME, LR, value)
    return out


@pytest.mark.slow
def test_the_canonical_step_on_the_bundled_model(tiny_book):
    """' quickly' 0.593 -> 0.705 at lr 0.005 (the issue's figures), recomputed from the formulas."""
    values = evaluate(read_workbook(tiny_book.path))
    layout = tiny_book.layout
    assert tiny_book.inputs["train"] == train.TrainCells(" quickly", 0.005)
    assert abs(one(values, layout, "nll.p_before") - 0.593) < 1e-3
    assert abs(one(values, layout, "nll.p_after") - 0.705) < 1e-3
    loss = one(values, layout, "nll.loss")
    assert abs(loss + np.log(one(values, layout, "nll.p_before"))) < 1e-12  # LN(S) - (logit - M) = -ln p
    assert int(values.number_grid(layout.region("nll.top_id"))[0, 0]) == one(values, layout, "nll.k") == 417
    norms = dict(zip(param_shapes(tiny_book.layout.config), values.number_grid(layout.region("nll.grad_norms"))[:, 0]))
    assert max(norms, key=norms.get) == "wte"


@pytest.mark.slow
def test_check_proves_every_stage_of_the_step(tiny_book):
    report = check_book(tiny_book.path)
    assert report.passed, [s for s in report.stages if not s.passed]
    names = {s.stage for s in report.stages}
    params = list(param_shapes(tiny_book.layout.config))
    assert {f"grad.{p}" for p in params} <= names and {f"new.{p}" for p in params} <= names
    assert {"nll.dlogits", "nll.dembed.h", "nll.dh.0.attn.scores", "nll.dh.1.mlp.c_fc", "nll.loss"} <= names
    assert {"new.embed.h", "new.h.1.res_2", "new.ln_f.last", "new.logits", "nll.p_after", "nll.top_id"} <= names


@pytest.mark.slow
@pytest.mark.parametrize("lr,p_after", [("0.001", 0.617), ("0.01", 0.796), ("0.05", 0.995)])
def test_editing_the_learning_rate_and_recalculating_redoes_the_step(tiny_book, tmp_path, lr, p_after):
    path = lr_edited(tiny_book, tmp_path, lr)
    values = evaluate(read_workbook(path))
    layout = tiny_book.layout
    assert abs(one(values, layout, "nll.p_after") - p_after) < 1e-3
    report = check_book(path)  # the reference redoes the step for the edited cell
    assert all(s.passed for s in report.stages if s.stage != "cached"), [s for s in report.stages if not s.passed]


@pytest.mark.slow
def test_another_target_swiftly_becomes_the_argmax(tmp_path):
    book = _build(default_model_dir(), PROMPT, tmp_path / "swiftly.xlsx", tabs={"train": train.TrainCells(" swiftly")})
    values = evaluate(read_workbook(book.path))
    layout = book.layout
    assert abs(one(values, layout, "nll.p_before") - 0.267) < 1e-3
    assert abs(one(values, layout, "nll.p_after") - 0.487) < 1e-3
    assert int(values.number_grid(layout.region("nll.top_id"))[0, 0]) == one(values, layout, "nll.k") == 504


@pytest.mark.parametrize(
    "cells,message",
    [
        (train.TrainCells(" zzz"), "Step off: the target ( zzz) is not in the vocabulary"),
        pytest.param(
            train.TrainCells("t", -0.5), "Step off: the learning rate must be a number, 0 or more", marks=SLOW
        ),
        pytest.param(
            train.TrainCells("t", "fast"), "Step off: the learning rate must be a number, 0 or more", marks=SLOW
        ),
    ],
)
def test_a_bad_value_shows_one_message_and_changes_nothing(tmp_path, cells, message):
    """The step is off: the updated parameters are the parameters, the forward pass after it is the one before."""
    book = _build(MICRO, "the cat", tmp_path / "bad.xlsx", tabs={"train": cells})
    values = evaluate(read_workbook(book.path))
    layout = book.layout
    status = values.value(train.NAME, a1.cell(train.STATUS_ROW, train.VALUE_COL))
    assert isinstance(status, str) and status.startswith(message), status
    assert one(values, layout, "nll.ok") == 0 and one(values, layout, "nll.lr") == 0
    assert one(values, layout, "nll.p_after") == one(values, layout, "nll.p_before")
    assert np.array_equal(values.number_grid(layout.region("new.wte")), book.inputs["weights"]["wte"])
    assert check_book(book.path).passed


def _mutated(monkeypatch, module, stage: str, old: str, new: str):
    """``module``'s tabs with one formula text changed in region ``stage`` (the reference stays right)."""
    original = module.tabs

    def tabs(layout, placed):
        out = original(layout, placed)
        hits = 0
        for tab in out:
            for region in tab.regions:
                if region.name != stage:
                    continue
                if region.formula is not None:
                    f = region.formula
                    region.formula = lambda i, j, f=f: re.sub(old, new, f(i, j))
                    hits += re.search(old, f(0, 0)) is not None
                if region.array_fn is not None:
                    a = region.array_fn
                    region.array_fn = lambda a=a: [(*box[:4], re.sub(old, new, box[4])) for box in a()]
                    hits += any(re.search(old, box[4]) for box in a())
        assert not out or hits, f"the mutant matched nothing in {stage}"
        return out

    monkeypatch.setattr(module, "tabs", tabs)


@pytest.mark.parametrize(
    "module,stage,old,new,downstream_only",
    [
        # the layer-norm backward without its mean term (a dropped term)
        pytest.param(train, "nll.dh.0.res_1", r"^\((\w+\d+)-\$\w+\d+-", r"(\1-", True, marks=SLOW),
        pytest.param(train, "nll.dlogits", r"-IF\(", "+IF(", True, marks=SLOW),  # a wrong sign: P + onehot
        (train, "nll.dh.0.attn.c_attn", r"/SQRT\(\d+\)", "", True),  # a forgotten 1/sqrt(hd)
        pytest.param(  # a dropped factor: the sum of d out, not of d out x normalized
            train_weights, "grad.h.0.ln_1.g", r"SUMPRODUCT\(([^,]+),[^)]+\)", r"SUM(\1)", False, marks=SLOW
        ),
        (train_weights, "new.wte", r"-Train!", "+Train!", False),  # a wrong sign: W + lr dW
    ],
)
def test_check_names_a_wrong_step_formula(monkeypatch, tmp_path, module, stage, old, new, downstream_only):
    _mutated(monkeypatch, module, stage, old, new)
    path = _build(MICRO, "the cat", tmp_path / "bad.xlsx").path
    monkeypatch.undo()
    report = check_book(path)
    failed = [s.stage for s in report.stages if not s.passed]
    assert not report.passed and stage in failed, failed
    if downstream_only:  # the Train tab's backward comes first in the report: the mutant is named first
        assert failed[0] == stage, failed
    else:  # only the Train tab's after-the-step cells (which read the tabs later in the book) come before it
        before = failed[: failed.index(stage)]
        assert set(before) <= {"nll.grad_norms", "nll.max_after", "nll.sum_after", "nll.p_after", "nll.top_logit",
                               "nll.top_id", "nll.top_prob"}, failed  # fmt: skip


def test_build_train_from_the_command_line(tmp_path):
    out = tmp_path / "t.xlsx"
    result = CliRunner().invoke(
        main, ["build", "--train", "--model", str(MICRO), "--prompt", "the cat", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    sheets = read_workbook(out).sheets
    assert {train.NAME, "d wte", "new wte", "Logits after", "Block 0 after"} <= set(sheets)


@pytest.mark.parametrize("extra", [["--generate", "2"], ["--steer", "t", "c", "1", "0"]])
def test_a_training_book_refuses_generate_and_steer(tmp_path, extra):
    out = tmp_path / "t.xlsx"
    args = ["build", "--train", "--model", str(MICRO), "--prompt", "the cat", *extra, "-o", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert len([x for x in result.output.splitlines() if x.strip()]) == 1, result.output
    assert not out.exists()


def test_books_without_the_flag_have_no_training_tabs(tmp_path):
    model = load_model(MICRO)
    book = build_workbook(model, Tokenizer.from_dir(MICRO), "the cat", tmp_path / "p.xlsx", context=8)
    names = [t.name for t in book.layout.tabs]
    assert train.NAME not in names and "d wte" not in names and "nll.loss" not in book.trace


@pytest.mark.libreoffice
def test_libreoffice_proves_the_step(micro_book):
    report = check_book(micro_book.path, engine="libreoffice")
    assert report.passed, [s for s in report.stages if not s.passed]


@pytest.mark.libreoffice
def test_libreoffice_redoes_the_step_when_the_learning_rate_is_typed(tiny_book):
    """Type 0.01 into the learning rate in LibreOffice and recalculate: ' quickly' 0.796 (the issue's figure)."""
    import lo_batch

    p_after = tiny_book.layout.region("nll.p_after")
    ranges = [(train.NAME, a1.cell(p_after.top, p_after.left))]
    got = lo_batch.type_texts(tiny_book.path, (train.NAME, LR), ["0.01", "0.05"], ranges, number_format="General")
    assert [round(r[0][0][0], 3) for r in got.results] == [0.796, 0.995]
    target = lo_batch.type_texts(tiny_book.path, (train.NAME, TARGET), [" swiftly"], ranges)
    assert round(target.results[0][0][0][0], 3) == 0.487


@pytest.mark.gnumeric
def test_gnumeric_proves_the_step(micro_book):
    report = check_book(micro_book.path, engine="gnumeric")
    assert report.passed, [s for s in report.stages if not s.passed]


@pytest.mark.ironcalc
def test_ironcalc_proves_the_step(micro_book):
    report = check_book(micro_book.path, engine="ironcalc")
    assert report.passed, [s for s in report.stages if not s.passed]
