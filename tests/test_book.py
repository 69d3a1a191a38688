"""The workbook computes GPT-2: recomputed by `formulas` and by LibreOffice, it equals the reference."""

from __future__ import annotations

import numpy as np
import openpyxl
import pytest
from xlsx_edit import set_value

from sheetgpt import a1
from sheetgpt.book.tabs import logits, predict
from sheetgpt.book.tabs import prompt as prompt_tab
from sheetgpt.book.writer import build_workbook
from sheetgpt.check import check_book
from sheetgpt.checkpoint import Model, load_model
from sheetgpt.engine import libreoffice
from sheetgpt.errors import SheetGPTError
from sheetgpt.reference import gpt2
from sheetgpt.tokenizer import Tokenizer
from sheetgpt.weight_text import stored_values


def _assert_all_pass(report):
    failed = [s for s in report.stages if not s.passed]
    assert not failed, [(s.stage, s.first_bad) for s in failed]
    assert len(report.stages) > 20


@pytest.mark.slow
def test_formulas_engine_reproduces_every_stage_of_a_micro_book(book):
    result = book("micro", "the cat sat on")
    report = check_book(result.path, engine="formulas", rtol=1e-9)
    _assert_all_pass(report)
    # every stage of the reference is in the book, not just a few
    assert {s.stage for s in report.stages} >= {
        "embed.h",
        "h.0.attn.weights",
        "h.0.res_2",
        "ln_f.out",
        "logits",
        "predict.probs",
    }


@pytest.mark.libreoffice
@pytest.mark.parametrize("shape", ["micro", "one-head", "odd"])
def test_libreoffice_reproduces_every_stage(book, shape):
    result = book(shape, "a quick test")
    report = check_book(result.path, engine="libreoffice", rtol=1e-9)
    _assert_all_pass(report)


@pytest.mark.libreoffice
def test_editing_a_token_in_libreoffice_gives_the_new_prompts_prediction(book, model_dir):
    result = book("one-head", "the cat sat")
    tok = Tokenizer.from_dir(model_dir("one-head"))
    model = load_model(model_dir("one-head"))
    new_ids = list(result.ids)
    new_ids[1] = tok.encode(" dog")[0] if len(tok.encode(" dog")) == 1 else 77
    new_text = tok.display(new_ids[1])
    assert new_ids != result.ids
    row = prompt_tab.TOP + 1  # token 1
    rc = libreoffice.recalculate(result.path, edits={(prompt_tab.NAME, a1.cell(row, prompt_tab.TEXT_COL)): new_text})
    stored = Model(model.config, {k: stored_values(v) for k, v in model.flat.items()}, model.path)
    want = gpt2(new_ids, stored.params, model.config)["logits"][-1]
    got_id = rc.numbers[prompt_tab.NAME][row, prompt_tab.ID_COL]
    assert got_id == new_ids[1]
    region = result.layout.region("logits")
    got_logits = rc.numbers[region.tab][region.top : region.bottom + 1, region.left]
    assert np.max(np.abs(got_logits - want)) <= 1e-9 * np.max(np.abs(want))
    top_token = rc.values[predict.NAME][result.layout.region("predict.probs").top, predict.TOKEN_COL]
    assert top_token == tok.display(int(np.argmax(want)))


@pytest.mark.libreoffice
def test_an_unknown_token_text_shows_a_message_not_a_cascade_of_errors(book):
    result = book("micro", "the cat sat")
    row, name = prompt_tab.TOP, prompt_tab.NAME  # token 0
    rc = libreoffice.recalculate(result.path, edits={(name, a1.cell(row, prompt_tab.TEXT_COL)): "no such token here"})
    assert rc.numbers[name][row, prompt_tab.ID_COL] == -1
    assert "not in the vocabulary" in rc.values[name][row, prompt_tab.NOTE_COL]
    assert not rc.errors[logits.NAME] and not rc.errors[predict.NAME]
    probs = result.layout.region("predict.probs")
    assert np.isfinite(rc.numbers[predict.NAME][probs.top, probs.left])


@pytest.mark.parametrize("prompt", ["=1+1", "+SUM(A1)", "-2", "@foo", "=HYPERLINK(1)"])
def test_prompt_text_is_always_written_as_text(tmp_path, model_dir, prompt):
    d = model_dir("micro")
    result = build_workbook(load_model(d), Tokenizer.from_dir(d), prompt, tmp_path / "b.xlsx")
    ws = openpyxl.load_workbook(result.path)[prompt_tab.NAME]
    cells = [ws.cell(prompt_tab.TOP + 1 + t, prompt_tab.TEXT_COL + 1) for t in range(len(result.ids))]  # 1-based
    assert all(c.data_type == "s" for c in cells)
    assert "".join(c.value for c in cells) == prompt


def test_prompt_longer_than_the_context_is_an_error(tmp_path, model_dir):
    d = model_dir("micro")
    model, tok = load_model(d), Tokenizer.from_dir(d)
    with pytest.raises(SheetGPTError, match="more than --context 3"):
        build_workbook(model, tok, "one two three four five", tmp_path / "b.xlsx", context=3)
    with pytest.raises(SheetGPTError, match="n_positions"):
        build_workbook(model, tok, "x" * 40, tmp_path / "b.xlsx")
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_context_pads_rows_and_predicts_after_the_last_prompt_token(tmp_path, model_dir):
    d = model_dir("micro")
    model, tok = load_model(d), Tokenizer.from_dir(d)
    result = build_workbook(model, tok, "the cat", tmp_path / "b.xlsx", context=8)
    n = len(tok.encode("the cat"))
    assert len(result.ids) == 8
    want = gpt2(result.ids[:n], model.params, model.config)["logits"][-1]
    got = result.trace["logits"][:, 0]
    assert np.allclose(got, want, rtol=0, atol=1e-4)  # float32 weights vs the book's 9-digit decimals
    _assert_all_pass(check_book(result.path, engine="formulas"))


def test_existing_output_is_not_overwritten_without_force(tmp_path, model_dir):
    d = model_dir("micro")
    model, tok = load_model(d), Tokenizer.from_dir(d)
    out = tmp_path / "b.xlsx"
    out.write_bytes(b"precious")
    with pytest.raises(SheetGPTError, match="--force"):
        build_workbook(model, tok, "hi", out)
    assert out.read_bytes() == b"precious"
    build_workbook(model, tok, "hi", out, force=True)
    assert out.read_bytes()[:2] == b"PK"


def test_weight_tabs_round_trip_the_float32_checkpoint(book, model_dir):
    result = book("one-head", "hello")
    model = load_model(model_dir("one-head"))
    wb = openpyxl.load_workbook(result.path, read_only=True)
    for name in ("wte", "h.1.attn.c_attn.w", "h.0.ln_2.b"):
        got = np.array([[c for c in row] for row in wb[name].iter_rows(values_only=True)], dtype=np.float64)
        want = model.flat[name].reshape(got.shape)
        assert np.array_equal(got.astype(np.float32), want), name


def test_a_typed_prompt_book_tokenizes_its_prompt_once(tmp_path, monkeypatch):
    """The Prompt value is made once and handed to every tab: one trace of the text, no other encode."""
    from sheetgpt.checkpoint import default_model_dir

    d = default_model_dir()
    model, tok = load_model(d), Tokenizer.from_dir(d)
    calls = []
    for name in ("encode", "trace", "pretokenize"):
        real = getattr(Tokenizer, name)
        monkeypatch.setattr(
            Tokenizer, name, lambda self, text, real=real, name=name: calls.append(name) or real(self, text)
        )
    result = build_workbook(model, tok, "Mike is quick. He moves", tmp_path / "b.xlsx", typed_prompt=True)
    assert result.layout.typed is not None
    assert calls == ["trace", "pretokenize"]  # trace pre-tokenizes the text, once


def test_a_new_tab_is_one_module_and_one_line_in_tabs(tmp_path, model_dir, monkeypatch):
    """A tab module added to TABS is laid out, written, listed on the Guide and left alone by check."""
    import types

    from sheetgpt.book import tabs as tab_modules
    from sheetgpt.book.layout import INPUT, Tab

    notes = types.ModuleType("notes")
    notes.tabs = lambda layout, placed: [Tab("Notes", INPUT)]
    notes.write = lambda out, tab: out.sheet(tab).write_string(0, 0, "a teacher's notes") or 0
    k = tab_modules.TABS.index(tab_modules.vocab)
    monkeypatch.setattr(tab_modules, "TABS", (*tab_modules.TABS[:k], notes, *tab_modules.TABS[k:]))
    d = model_dir("micro")
    result = build_workbook(load_model(d), Tokenizer.from_dir(d), "the cat sat", tmp_path / "b.xlsx")
    wb = openpyxl.load_workbook(result.path)
    assert wb.sheetnames.index("Notes") == wb.sheetnames.index("vocab") - 1
    assert wb["Notes"]["A1"].value == "a teacher's notes"
    assert any(c.value == "Notes" for row in wb["Guide"].iter_rows() for c in row)
    assert check_book(result.path).passed


def _toy_tab():
    """A tab module as a contributor would write it, with every part of the protocol (book/tabs/__init__.py):
    an editable factor (its inputs, given and read back), a region of formulas (its stage), a limit's advice
    and an exercise family."""
    import types

    from sheetgpt import a1
    from sheetgpt.book import cells, readback
    from sheetgpt.book.layout import COMPUTE, Region, Tab, stack

    toy = types.ModuleType("toy")
    toy.NAME, toy.FACTOR = "Toy", (2, 1)  # B3
    toy.TOO_BIG = "lower --context (the Toy tab)"
    toy.EXERCISES = {"toy": ("toy.scaled",)}

    def tabs(layout, placed):
        h = placed["embed.h"]
        region = Region("toy.scaled", toy.NAME, 0, layout.T, layout.config.n_embd)
        stack([region], 6)
        factor = a1.cell(*toy.FACTOR, True, True)
        region.formula = lambda i, j: f"{factor}*{h.at(i, j, toy.NAME)}"
        return [Tab(toy.NAME, COMPUTE, [region])]

    def write(out, tab):
        out.sheet(tab).write_string(toy.FACTOR[0], 0, "factor", out.fmt.label)
        out.sheet(tab).write_number(*toy.FACTOR, out.inputs["toy"], out.fmt.edit)
        return cells.write_compute_tab(out, tab)

    toy.tabs, toy.write = tabs, write
    toy.given = lambda build, inputs: 2.0
    toy.read_back = lambda book, layout, inputs: readback.number(book, toy.NAME, *toy.FACTOR, "factor")
    toy.stages = lambda inputs, trace: {"toy.scaled": inputs["toy"] * trace["embed.h"]}
    return toy


def test_a_tab_with_inputs_stages_limits_and_exercises_is_one_module_and_one_line(tmp_path, model_dir, monkeypatch):
    """The registry is all the package needs: a toy tab registered in TABS is written with its cached values,
    read back and proven by check (its own stage too), named by the limits and offered as an exercise."""
    from sheetgpt import exercises
    from sheetgpt.book import limits
    from sheetgpt.book import tabs as tab_modules
    from sheetgpt.book.layout import COMPUTE, Region, Tab
    from sheetgpt.book.trace import book_trace
    from sheetgpt.check import read_inputs
    from sheetgpt.engine.reader import read_workbook
    from sheetgpt.errors import SheetGPTError
    from sheetgpt.prompt import make_prompt

    toy = _toy_tab()
    k = tab_modules.TABS.index(tab_modules.predict)
    monkeypatch.setattr(tab_modules, "TABS", (*tab_modules.TABS[:k], toy, *tab_modules.TABS[k:]))
    d = model_dir("micro")
    model, tok = load_model(d), Tokenizer.from_dir(d)
    result = build_workbook(model, tok, "the cat sat", tmp_path / "b.xlsx")
    assert np.array_equal(result.trace["toy.scaled"], 2.0 * result.trace["embed.h"])
    inputs = read_inputs(read_workbook(result.path))
    assert inputs["toy"] == 2.0
    assert np.array_equal(book_trace(inputs)["toy.scaled"], result.trace["toy.scaled"])
    report = check_book(result.path)
    toy_stages = [s for s in report.stages if s.tab == "Toy"]
    assert [s.stage for s in toy_stages] == ["toy.scaled", "cached"] and all(s.passed for s in toy_stages)
    assert report.passed

    # the factor as a learner edits it: check reads it back and proves the recomputed tab against it
    edited = tmp_path / "edited.xlsx"
    set_value(result.path, edited, result.layout, "Toy", "B3", "3")
    report = check_book(edited)
    assert next(s for s in report.stages if s.stage == "toy.scaled").passed
    assert next(s for s in report.stages if s.tab == "Toy" and s.stage == "cached").passed is False  # stale cache

    # its exercise family, and the limits' advice
    assert exercises.resolve(result.layout, "toy") == ["toy.scaled"]
    assert "toy" in exercises.families(tab_modules.TABS)
    wide = _toy_tab()
    wide.tabs = lambda layout, placed: [Tab("Toy", COMPUTE, [Region("toy.wide", "Toy", 5, 1, 20_000)])]
    monkeypatch.setattr(tab_modules, "TABS", (*tab_modules.TABS[:k], wide, *tab_modules.TABS[k + 1 :]))
    with pytest.raises(SheetGPTError, match=r"the Toy tab would need 20,002 columns .*lower --context \(the Toy tab\)"):
        limits.check(tab_modules.layout(model.config, result.layout.options), make_prompt("the cat sat", tok, 1024))


def test_a_switched_tab_gets_its_flag_guide_row_and_read_back_from_its_switch(tmp_path, model_dir, monkeypatch):
    """A tab module with a SWITCH (as Saliency and Train have) needs nothing else: `build` grows its
    --NAME/--no-NAME flag, the book has the tab only when on, the Guide's configuration table records it
    and check reads the book's options back from there."""
    from click.testing import CliRunner

    from sheetgpt.book import tabs as tab_modules
    from sheetgpt.book.layout import Switch
    from sheetgpt.cli import main

    toy = _toy_tab()
    toy.SWITCH = Switch("toy", "toy tab", default=False, help="The Toy tab: the embeddings times a factor.")
    toy_tabs = toy.tabs
    toy.tabs = lambda layout, placed: toy_tabs(layout, placed) if layout.has("toy") else []
    k = tab_modules.TABS.index(tab_modules.predict)
    monkeypatch.setattr(tab_modules, "TABS", (*tab_modules.TABS[:k], toy, *tab_modules.TABS[k:]))
    d = str(model_dir("micro"))
    runner = CliRunner()
    assert "--toy / --no-toy" in runner.invoke(main, ["build", "--help"]).output
    books = {}
    for flag in ("--toy", "--no-toy"):
        out = tmp_path / f"{flag}.xlsx"
        run = runner.invoke(main, ["build", "--model", d, "--prompt", "the cat sat", "-o", str(out), flag])
        assert run.exit_code == 0, run.output
        books[flag] = openpyxl.load_workbook(out)
        report = check_book(out)
        assert report.passed and any(s.tab == "Toy" for s in report.stages) == (flag == "--toy")
    assert "Toy" in books["--toy"].sheetnames and "Toy" not in books["--no-toy"].sheetnames
    guide = {r[0]: r[1] for r in books["--toy"]["Guide"].iter_rows(max_col=2, values_only=True) if r[0]}
    assert guide["toy tab"] == 1
    assert not any(r[0] == "toy tab" for r in books["--no-toy"]["Guide"].iter_rows(max_col=1, values_only=True))
    with pytest.raises(ValueError, match="no tab is switched by"):
        build_workbook(load_model(d), Tokenizer.from_dir(d), "the cat", tmp_path / "x.xlsx", tabs={"toi": True})
