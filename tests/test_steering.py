"""Activation steering (issue 16): strength x (wte[A] - wte[B]) added at the input of block L, in the book and
in `sheetgpt predict --steer`.

Expected continuations come from `sheetgpt predict --steer ... --json` (the float64 reference); the book's
values are what an engine recomputes from its formulas.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import lo_batch
import numpy as np
import pytest
from proved import assert_proves_every_region
from test_generate import CLI, PROMPT, ROWS, _ids_by_engine, predicted
from xlsx_edit import set_value

from sheetgpt import a1
from sheetgpt.book.tabs import steering
from sheetgpt.book.writer import build_workbook
from sheetgpt.check import CACHED, check_book
from sheetgpt.checkpoint import default_model_dir, load_model
from sheetgpt.engine.evaluator import evaluate
from sheetgpt.engine.reader import read_workbook
from sheetgpt.reference import gpt2
from sheetgpt.tokenizer import Tokenizer
from sheetgpt.weight_text import stored_values

FLIP = (" slow", " quick", 1.0, 0)  # documented in the README and the Steering tab's text


@pytest.fixture(scope="module")
def bundled():
    d = default_model_dir()
    return load_model(d), Tokenizer.from_dir(d)


def _build(bundled, out: Path, steer=None, generate=ROWS - 6):
    model, tok = bundled
    settings = None if steer is None else steering.from_cli(steer, tok.display_ids(), model.config.n_layer)
    return build_workbook(model, tok, PROMPT, out, typed_prompt=True, generate=generate, steer=settings)


@pytest.fixture(scope="module")
def steered(bundled, tmp_path_factory):
    return _build(bundled, tmp_path_factory.mktemp("steer") / "steered.xlsx", FLIP)


def predicted_steered(text: str, n: int, steer) -> list[int]:
    args = [*CLI, "predict", "--prompt", text, "-n", str(n), "--no-stop", "--json", "--steer", *map(str, steer)]
    return json.loads(subprocess.run(args, capture_output=True, text=True, check=True).stdout)["continuation_ids"]


def _top_token(values) -> int:
    probs = values.numbers["Predict"][8 : 8 + 550, 2]
    return int(np.argmax(probs))


@pytest.mark.slow
def test_a_steered_book_flips_quickly_to_slowly_and_checks(steered, bundled):
    _, tok = bundled
    values = evaluate(read_workbook(steered.path))
    assert tok.display(_top_token(values)) == " slowly"  # unsteered: " quickly" (p 0.59)
    ids = _ids_by_engine(steered.path, ROWS)
    assert ids[6:] == predicted_steered(PROMPT, ROWS - 6, FLIP)
    assert ids[6:] != predicted(PROMPT, ROWS - 6)
    report = check_book(steered.path)
    assert report.passed, [s for s in report.stages if not s.passed][:1]
    assert {"steer.ids", "steer.ok", "steer.vector", "steer.add", "h.0.in", "h.1.in"} <= {
        s.stage for s in report.stages
    }


@pytest.mark.slow
def test_strength_zero_changes_nothing(bundled, tmp_path):
    """The default book (strength 0) computes exactly the unsteered forward pass."""
    model, tok = bundled
    result = _build(bundled, tmp_path / "zero.xlsx")
    values = evaluate(read_workbook(result.path))
    stored = model.__class__(model.config, {n: stored_values(w) for n, w in model.flat.items()}, model.path)
    plain = gpt2(result.ids, stored.params, model.config)  # the book's weights, no steering at all
    got = values.number_grid(result.layout.region("logits.all"))
    assert np.allclose(got, plain["logits"].T, rtol=0, atol=1e-12 * np.abs(plain["logits"]).max())
    assert result.ids[6:] == predicted(PROMPT, ROWS - 6)
    assert check_book(result.path).passed


def _set_block(src: Path, dst: Path, layout, value: str) -> None:
    """A copy of the book with Steering!B7 (block L) holding ``value``."""
    set_value(src, dst, layout, steering.NAME, a1.cell(steering.BLOCK_ROW, steering.VALUE_COL), value)


@pytest.mark.slow
def test_a_block_out_of_range_turns_steering_off_with_one_message(steered, bundled, tmp_path):
    _, tok = bundled
    bad = tmp_path / "bad.xlsx"
    _set_block(steered.path, bad, steered.layout, "7")
    values = evaluate(read_workbook(bad))
    status = values.text[steering.NAME][(steering.STATUS_ROW, steering.VALUE_COL)]
    assert status == "Steering off: block L must be a whole number from 0 to 1"
    assert tok.display(_top_token(values)) == " quickly"  # the unsteered prediction, no errors downstream
    assert not any(values.errors[name] for name in ("Block 0", "Block 1", "Logits", "Predict"))
    assert _ids_by_engine(bad, ROWS)[6:] == predicted(PROMPT, ROWS - 6)
    report = check_book(bad)  # the check reads block 7 back and computes the unsteered reference
    recomputed = [s for s in report.stages if not s.stage.startswith(CACHED)]
    assert all(s.passed for s in recomputed), [s.stage for s in recomputed if not s.passed]


def test_cli_refuses_bad_steering_in_one_line(tmp_path):
    for args, words in (
        (["--steer", "slowish", " quick", "1", "0"], "not in the vocabulary"),
        (["--steer", " slow", " quick", "1", "2"], "block L must be from 0 to 1"),
    ):
        for cmd in (["build", "-o", str(tmp_path / "b.xlsx")], ["predict", "--prompt", PROMPT]):
            proc = subprocess.run([*CLI, *cmd, *args], capture_output=True, text=True)
            assert proc.returncode == 2, proc.stderr
            lines = proc.stderr.strip().splitlines()
            assert len(lines) == 1 and words in lines[0], proc.stderr
    assert not (tmp_path / "b.xlsx").exists()


@pytest.mark.libreoffice
def test_libreoffice_proves_the_steered_book(steered):
    assert_proves_every_region(check_book(steered.path, engine="libreoffice"), steered.layout)


@pytest.mark.libreoffice
def test_typed_steering_tokens_in_libreoffice(steered, bundled):
    """Token A typed into Steering!B4: a vocabulary token steers, anything else shows one message and steering off."""
    _, tok = bundled
    cell = (steering.NAME, a1.cell(steering.A_ROW, steering.VALUE_COL))
    status = a1.cell(steering.STATUS_ROW, steering.VALUE_COL)
    probs = a1.span(8, 2, 8 + tok.vocab_size - 1, 2)
    texts = [" slow", "slowish", " quick"]
    results, _ = lo_batch.recalculate_texts(
        steered.path, cell, texts, [(steering.NAME, status + ":" + status), ("Predict", probs)]
    )
    by_text = {t: (r[0][0][0], int(np.argmax([row[0] for row in r[1]]))) for t, r in zip(texts, results)}
    assert by_text[" slow"][0].startswith("On: 1 x") and tok.display(by_text[" slow"][1]) == " slowly"
    assert "token A (slowish) is not in the vocabulary" in by_text["slowish"][0]
    assert tok.display(by_text["slowish"][1]) == " quickly"
    assert tok.display(by_text[" quick"][1]) == " quickly"  # A = B: the vector is zero


@pytest.mark.slow
def test_steering_without_generation(bundled, tmp_path):
    """--steer with --generate 0: today's layout (whole-range products) plus the Steering and Neurons tabs."""
    _, tok = bundled
    result = _build(bundled, tmp_path / "s0.xlsx", FLIP, generate=0)
    assert not result.layout.generate and result.layout.steer
    assert tok.display(_top_token(evaluate(read_workbook(result.path)))) == " slowly"
    assert check_book(result.path).passed
