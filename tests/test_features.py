"""The Features tab (issue 27): a sparse autoencoder's features per token, a heat map of one, and steering
by a feature's decoder row, in formulas, proven by check.

The expected values are computed here with numpy from the SAE's own files (safetensors.numpy) and the
residual stream the engine recomputed on the block tab, not with sheetgpt.sae; continuations under feature
steering come from `sheetgpt predict --steer-feature --json` (the float64 reference).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from proved import assert_proves_every_region
from safetensors.numpy import load_file
from test_generate import CLI, PROMPT, ROWS, _ids_by_engine, predicted
from test_sae import _bad_cases
from xlsx_edit import set_cell, set_value

from sheetgpt import a1
from sheetgpt.book import writer
from sheetgpt.book.tabs import features, sae_weights, steering
from sheetgpt.book.writer import build_workbook
from sheetgpt.check import CACHED, check_book
from sheetgpt.checkpoint import default_model_dir, load_model
from sheetgpt.cli import main
from sheetgpt.engine.evaluator import evaluate
from sheetgpt.engine.reader import read_workbook
from sheetgpt.sae import default_sae_dir, load_sae
from sheetgpt.tokenizer import Tokenizer

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
FLIP = (144, 4.0, 1)  # feature 144 (' happy' after ' is') x 4 at block 1: ' quickly' -> ' happily' (README)
HEAT = 12  # the heat map's feature in the test book: ' He' after '.'


@pytest.fixture(scope="module")
def bundled():
    d = default_model_dir()
    return load_model(d), Tokenizer.from_dir(d)


def _build(bundled, out: Path, steer=None, feature=HEAT, **kw):
    model, tok = bundled
    sae = load_sae(None, model.config)
    settings = None
    if steer is not None:
        settings = steering.from_feature_cli(steer, tok.display_ids(), model.config.n_layer, sae.d_sae)
    return build_workbook(
        model, tok, PROMPT, out, typed_prompt=True, generate=ROWS - 6, steer=settings, sae=sae, feature=feature, **kw
    )


@pytest.fixture(scope="module")
def book(bundled, tmp_path_factory):
    return _build(bundled, tmp_path_factory.mktemp("features") / "f.xlsx")


@pytest.fixture(scope="module")
def steered(bundled, tmp_path_factory):
    return _build(bundled, tmp_path_factory.mktemp("features") / "steered.xlsx", steer=FLIP)


def _files():
    t = load_file(str(default_sae_dir() / "sae_weights.safetensors"))
    labels = json.loads((default_sae_dir() / "labels.json").read_text())["labels"]
    return {k: v.astype(np.float64) for k, v in t.items()}, labels


def _top_token(values) -> int:
    return int(np.argmax(values.numbers["Predict"][8 : 8 + 550, 2]))


@pytest.mark.slow
def test_the_engine_computes_the_encoder_top_features_error_and_heat_map(book):
    t, labels = _files()
    values = evaluate(read_workbook(book.path))
    grid = lambda name: values.number_grid(book.layout.region(name))  # noqa: E731
    x = grid("h.1.in")  # the SAE reads the input of block 1 (blocks.1.hook_resid_pre)
    pre = (x - t["b_dec"]) @ t["W_enc"] + t["b_enc"]
    f_want = np.where(pre > 0, pre, 0.0)
    f = grid("sae.f")
    scale = np.abs(f_want).max()
    assert np.abs(f - f_want).max() < 1e-7 * scale  # the book stores weights to 9 significant digits
    assert 0 < (f > 0).mean() < 0.2  # sparse: a few features per token
    order = np.argsort(-f, axis=1, kind="stable")[:, : features.K]  # ties: the first, as MATCH
    act = np.take_along_axis(f, order, axis=1)
    assert np.array_equal(grid("sae.act"), act)
    assert np.array_equal(grid("sae.id"), np.where(act > 0, order, -1))
    assert np.array_equal(grid("sae.heat")[:, 0], f[:, HEAT])
    x_hat = f @ t["W_dec"] + t["b_dec"]
    err = np.linalg.norm(x - x_hat, axis=1) / np.linalg.norm(x, axis=1)
    assert np.allclose(grid("sae.error")[:, 0], err, rtol=1e-6)
    assert 0 < err.mean() < 0.6
    # the label beside each top feature: labels.json's text for that feature, "" where none is active
    top = book.layout.region("sae.id")
    texts = values.text[features.NAME]
    for i in range(top.rows):
        for j in range(features.K):
            want = labels[order[i, j]] if act[i, j] > 0 else ""
            assert texts.get((top.top + i, top.right + 2 + j), "") == want, (i, j)
    status = texts[features.STATUS]
    assert status == f"heat map of feature {HEAT}: {labels[HEAT]}"


@pytest.mark.slow
def test_check_proves_every_region_of_the_features_book(book):
    report = check_book(book.path)
    assert_proves_every_region(report, book.layout)
    assert {s.tab for s in report.stages if s.stage.startswith("sae.")} == {features.NAME}


@pytest.mark.slow
def test_the_sae_weights_are_grey_weight_tabs(book):
    t, _ = _files()
    names = [tab.name for tab in book.layout.tabs]
    assert names[-5:] == [sae_weights.IDS, sae_weights.W_ENC, sae_weights.B_ENC, sae_weights.W_DEC, sae_weights.B_DEC]
    assert names.index(features.NAME) < names.index("Embeddings")
    wb = read_workbook(book.path)
    held = wb.sheets[sae_weights.W_ENC].dense()
    assert held.shape == (48, 192) and np.allclose(held, t["W_enc"], rtol=1e-8, atol=0)
    assert np.array_equal(wb.sheets[sae_weights.IDS].dense()[0], np.arange(192))
    with zipfile.ZipFile(book.path) as z:
        member = f"xl/worksheets/sheet{names.index(sae_weights.W_DEC) + 1}.xml"
        assert "<f>" not in z.read(member).decode()[:100000]  # numbers, not formulas


@pytest.mark.slow
def test_the_heat_map_is_a_colour_scale(book):
    heat = book.layout.region("sae.heat")
    member = f"xl/worksheets/sheet{[t.name for t in book.layout.tabs].index(features.NAME) + 1}.xml"
    xml = zipfile.ZipFile(book.path).read(member).decode()
    span = a1.span(heat.top, heat.left, heat.bottom, heat.right, (False, False), (False, False))
    assert re.search(f'<conditionalFormatting sqref="{span}"><cfRule type="colorScale"', xml)


@pytest.mark.slow
@pytest.mark.parametrize("typed", ["192", "-1", "text"])
def test_a_bad_feature_number_shows_one_message_and_changes_nothing_else(book, tmp_path, typed):
    bad = tmp_path / "bad.xlsx"
    cell = a1.cell(*features.FEATURE)
    if typed == "text":
        set_cell(book.path, bad, features.NAME, cell, "text", "she")
    else:
        set_value(book.path, bad, book.layout, features.NAME, cell, typed)
    before, after = evaluate(read_workbook(book.path)), evaluate(read_workbook(bad))
    status = after.text[features.NAME][features.STATUS]
    assert status == "type a feature number from 0 to 191 (a whole number); the heat map is off"
    assert not after.number_grid(book.layout.region("sae.heat")).any()
    for name, region in book.layout.regions.items():
        if name not in ("sae.heat", "sae.col"):
            assert np.array_equal(before.number_grid(region), after.number_grid(region), equal_nan=True), name
    assert not any(after.errors[t.name] for t in book.layout.tabs if t.regions)
    report = check_book(bad)  # the check reads the value back: heat map off
    failed = [s.stage for s in report.stages if not s.passed and not s.stage.startswith(CACHED)]
    assert not failed, failed


def _mutant(monkeypatch, bundled, out: Path, which: str):
    original = features.tabs

    def mutated(layout, placed):
        tabs = original(layout, placed)
        regions = {r.name: r for r in tabs[0].regions} if tabs else {}
        if which == "sign" and regions:  # ReLU(-(x - b_dec) W_enc + b_enc)
            f, pre = regions["sae.f"], regions["sae.pre"]
            f.formula = lambda i, j: f"MAX(0,-{pre.at(i, j, features.NAME)}+'sae.b_enc'!{a1.cell(0, j, True)})"
        if which == "b_dec" and regions:  # x W_enc: b_dec left out
            x = features.x_region(layout, placed)
            regions["sae.centered"].formula = lambda i, j: x.at(i, j, features.NAME)
        return tabs

    monkeypatch.setattr(features, "tabs", mutated)
    result = _build(bundled, out)
    monkeypatch.setattr(features, "tabs", original)
    return result


@pytest.mark.slow
@pytest.mark.parametrize(("which", "stage"), [("sign", "sae.f"), ("b_dec", "sae.centered")])
def test_check_catches_a_wrong_encoder(monkeypatch, bundled, tmp_path, which, stage):
    result = _mutant(monkeypatch, bundled, tmp_path / "mutant.xlsx", which)
    report = check_book(result.path)
    assert not report.passed
    failed = [s.stage for s in report.stages if not s.passed and not s.stage.startswith(CACHED)]
    assert stage in failed, failed
    assert "h.1.in" not in failed and "logits" not in failed  # the model itself is right


def predicted_feature_steered(text: str, n: int, steer) -> list[int]:
    args = [*CLI, "predict", "--prompt", text, "-n", str(n), "--no-stop", "--json", "--steer-feature", *map(str, steer)]
    return json.loads(subprocess.run(args, capture_output=True, text=True, check=True).stdout)["continuation_ids"]


@pytest.mark.slow
def test_steering_by_a_feature_flips_quickly_to_happily_and_checks(steered, bundled):
    _, tok = bundled
    t, _ = _files()
    values = evaluate(read_workbook(steered.path))
    assert tok.display(_top_token(values)) == " happily"  # unsteered: " quickly" (p 0.59)
    vector = values.number_grid(steered.layout.region("steer.vector"))[0]
    assert np.allclose(vector, FLIP[1] * t["W_dec"][FLIP[0]], rtol=1e-8, atol=1e-9)
    ids = _ids_by_engine(steered.path, ROWS)
    assert ids[6:] == predicted_feature_steered(PROMPT, ROWS - 6, FLIP)
    assert ids[6:] != predicted(PROMPT, ROWS - 6)
    assert "happily" in tok.decode(ids[6:]) and "quickly" not in tok.decode(ids[6:])
    status = values.text[steering.NAME][(steering.STATUS_ROW, steering.VALUE_COL)]
    assert status == "On: 4 x W_dec[feature 144] is added to every row at the input of block 1"
    assert_proves_every_region(check_book(steered.path), steered.layout)


@pytest.mark.slow
@pytest.mark.parametrize("typed", ["999", "text"])
def test_a_bad_steering_feature_turns_steering_off_with_one_message(steered, bundled, tmp_path, typed):
    _, tok = bundled
    bad = tmp_path / "bad.xlsx"
    cell = a1.cell(steering.FEATURE_ROW, steering.VALUE_COL)
    if typed == "text":
        set_cell(steered.path, bad, steering.NAME, cell, "text", "happy")
    else:
        set_value(steered.path, bad, steered.layout, steering.NAME, cell, typed)
    values = evaluate(read_workbook(bad))
    status = values.text[steering.NAME][(steering.STATUS_ROW, steering.VALUE_COL)]
    assert status.startswith("Steering off: the feature must be one of the SAE's feature numbers")
    assert tok.display(_top_token(values)) == " quickly"
    assert _ids_by_engine(bad, ROWS)[6:] == predicted(PROMPT, ROWS - 6)
    report = check_book(bad)
    failed = [s.stage for s in report.stages if not s.passed and not s.stage.startswith(CACHED)]
    assert not failed, failed


@pytest.mark.slow
def test_minus_one_steers_along_the_token_direction(bundled, tmp_path):
    """In a book with an SAE, feature -1 keeps the token direction wte[A] - wte[B] (--steer)."""
    model, tok = bundled
    s = steering.from_cli((" slow", " quick", 1.0, 0), tok.display_ids(), model.config.n_layer)
    assert s.feature == steering.NO_FEATURE
    result = build_workbook(
        model,
        tok,
        PROMPT,
        tmp_path / "tokens.xlsx",
        typed_prompt=True,
        generate=4,
        steer=s,
        sae=load_sae(None, model.config),
    )
    values = evaluate(read_workbook(result.path))
    assert tok.display(_top_token(values)) == " slowly"
    assert values.number_grid(result.layout.region("steer.col"))[0, 0] == -1


def _one_line_error(args) -> str:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


@pytest.mark.parametrize("case", ["width", "hook", "missing", "nan"])
def test_build_refuses_a_bad_sae_in_one_line(tmp_path, case):
    _, make, expected = next(c for c in _bad_cases(tmp_path) if c[0] == case)
    make(tmp_path / "sae")
    line = _one_line_error(["build", "--sae", str(tmp_path / "sae"), "-o", str(tmp_path / "b.xlsx")])
    assert expected in line, line
    assert not (tmp_path / "b.xlsx").exists()


def test_build_refuses_bad_feature_options_in_one_line(tmp_path):
    out = ["-o", str(tmp_path / "b.xlsx")]
    assert "--feature must be a feature number from 0 to 191" in _one_line_error(
        ["build", "--features", "--feature", "192", *out]
    )
    assert "need --features or --sae" in _one_line_error(["build", "--no-features", "--feature", "3", *out])
    assert "K must be a feature number from 0 to 191" in _one_line_error(
        ["build", "--features", "--steer-feature", "500", "1", "1", *out]
    )
    assert "not both" in _one_line_error(
        ["build", "--features", "--steer-feature", "5", "1", "1", "--steer", " slow", " quick", "1", "0", *out]
    )
    assert not (tmp_path / "b.xlsx").exists()


@pytest.mark.slow
def test_a_wide_sae_is_capped_by_sae_features(bundled, tmp_path):
    """A 20,000-feature SAE (more columns than a sheet has) is refused with the fix; --sae-features 16 keeps
    the 16 features most active on the prompt (computed here with numpy), and the book checks."""
    sae_dir = tmp_path / "wide"
    subprocess.run(
        [
            sys.executable,
            str(SCRIPTS / "make_random_sae.py"),
            str(sae_dir),
            "--d-in",
            "48",
            "--d-sae",
            "20000",
            "--hook",
            "blocks.1.hook_resid_pre",
        ],
        check=True,
        capture_output=True,
    )
    line = _one_line_error(["build", "--sae", str(sae_dir), "--prompt", PROMPT, "-o", str(tmp_path / "w.xlsx")])
    assert "20,002 columns" in line and "--sae-features N" in line, line
    model, tok = bundled
    sae = load_sae(sae_dir, model.config)
    result = build_workbook(model, tok, PROMPT, tmp_path / "capped.xlsx", typed_prompt=True, sae=sae, sae_features=16)
    t = load_file(str(sae_dir / "sae_weights.safetensors"))
    values = evaluate(read_workbook(result.path))
    # not generating or steered: h.1's input is h.0.res_2; the prompt's 6 rows (the rest: room to type)
    x = values.number_grid(result.layout.region("h.0.res_2"))[:6]
    pre = (x - t["b_dec"].astype(np.float64)) @ t["W_enc"].astype(np.float64) + t["b_enc"]
    best = np.argsort(-pre.max(axis=0), kind="stable")[:16]
    feature = int(np.argmax(pre[len(x) - 1]))  # the heat map's default: most active at the predicting position
    want = sorted(set(best[:15].tolist()) | {feature}) if feature not in best else sorted(best.tolist())
    held = read_workbook(result.path).sheets[sae_weights.IDS].dense()[0]
    assert held.tolist() == want
    assert result.layout.sae == (1, 16)
    assert_proves_every_region(check_book(result.path), result.layout)


def test_the_random_sae_script_writes_the_published_gpt2_small_layout(tmp_path):
    from sheetgpt.config import GPT2Config

    subprocess.run(
        [sys.executable, str(SCRIPTS / "make_random_sae.py"), str(tmp_path / "s"), "--d-sae", "64"], check=True
    )
    sae = load_sae(tmp_path / "s", GPT2Config())
    assert (sae.d_in, sae.d_sae, sae.block) == (768, 64, 8)
    assert np.allclose(np.linalg.norm(sae.W_dec, axis=1), 1.0, atol=1e-6)


@pytest.mark.parametrize(
    "engine",
    [
        pytest.param("libreoffice", marks=pytest.mark.libreoffice),
        pytest.param("gnumeric", marks=pytest.mark.gnumeric),
        pytest.param("ironcalc", marks=pytest.mark.ironcalc),
    ],
)
def test_every_engine_proves_the_features_tab_and_feature_steering(steered, engine):
    report = check_book(steered.path, engine=engine)
    assert_proves_every_region(report, steered.layout)
    assert {"sae.f", "sae.id", "sae.heat", "sae.error", "steer.col", "steer.vector"} <= {s.stage for s in report.stages}


def test_writer_keeps_the_chosen_features(bundled):
    """--sae-features keeps the heat map's and the steering's features whatever their activation."""
    model, tok = bundled
    from sheetgpt.prompt import make_prompt

    sae = load_sae(None, model.config)
    prompt = make_prompt(PROMPT, tok, model.config.n_positions)
    s = steering.from_feature_cli((191, 1.0, 1), tok.display_ids(), 2, sae.d_sae)
    held, feature = writer._book_sae(model, prompt, sae, 190, 8, s)
    assert feature == 190 and {190, 191} <= set(held.feature_ids.tolist()) and held.d_sae == 8
