"""`sheetgpt check` proves a book, and catches every kind of damage at the right stage and cell.

Three engines (ours, `formulas`, LibreOffice) recompute EVERY formula cell of books of three
shapes, and each equals the float64 reference and the others. Then a good book is damaged in
one place (a weight, a formula, a deleted row) and the check must fail naming the first stage
and the first cell that the damage reaches.
"""

from __future__ import annotations

import functools
import json
import re
import shutil
import time
import zipfile
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
import openpyxl
import pytest
from click.testing import CliRunner
from xlsx_edit import unshare_formulas

from sheetgpt.a1 import cell as cell_name
from sheetgpt.book.layout import Layout
from sheetgpt.book.tabs import block, embed, final_norm, guide, logits, predict, prompt, vocab
from sheetgpt.book.trace import book_trace
from sheetgpt.check import check_book, read_inputs
from sheetgpt.checkpoint import load_model
from sheetgpt.cli import main
from sheetgpt.engine import formulas_engine, recompute
from sheetgpt.engine.reader import read_workbook
from sheetgpt.random_model import random_params, write_checkpoint, write_tokenizer

RTOL = 1e-9
PROMPTS = {"micro": "the cat sat", "one-head": "a quick test", "odd": "hello there"}


# ------------------------------------------------------------------ every formula cell, every engine


def forward_tabs(layout: Layout) -> set[str]:
    """The tabs of the forward pass itself (teaching tabs come and go; these are the proof)."""
    blocks = {block.name(i) for i in range(layout.config.n_layer)}
    return {guide.NAME, prompt.NAME, embed.NAME, final_norm.NAME, logits.NAME, predict.NAME} | blocks


def expected_cells(path: Path) -> dict[tuple[str, int, int], tuple[object, float]]:
    """{(sheet, row, col): (value, tolerance)} for every formula cell of the forward pass.

    Stage cells come from the float64 reference (tolerance RTOL x the stage's largest
    magnitude; masked scores are ""). The rest are worked out here, independently of the
    formulas: token labels repeat the prompt's texts, the top-k table ranks the reference's
    probabilities, the Guide shows the top token and the recalculation sentinel 2.
    """
    book = read_workbook(path)
    inputs = read_inputs(book)
    layout, trace, T = inputs.layout, book_trace(inputs), inputs.layout.T
    forward = forward_tabs(layout)
    shown = [book.sheets[vocab.NAME].strings[(i, vocab.DISPLAY_COL)] for i in range(layout.config.vocab_size)]
    want = {}
    for tab in layout.compute_tabs():
        for region in tab.regions:
            if region.name not in trace:
                assert tab.name not in forward, region.name
                continue
            grid = region.grid(trace[region.name])
            scale = float(np.nanmax(np.abs(grid))) or 1.0
            for i in range(region.rows):
                for j in region.columns():
                    v = grid[i, j]
                    want[(tab.name, region.top + i, region.left + j)] = ("" if np.isnan(v) else float(v), RTOL * scale)
            if tab.name not in forward:
                continue
            if region.rows == T and tab.name != prompt.NAME:  # pos | token label | numbers
                for i in range(T):
                    want[(tab.name, region.top + i, 1)] = (inputs["prompt"].texts[i], 0.0)
            for h in range(region.heads):  # key-token labels above each head's matrix
                for k in range(T):
                    want[(tab.name, region.top - 2, region.head_left(h) + k)] = (inputs["prompt"].texts[k], 0.0)
    for t in range(T):
        note = "" if t <= inputs["prompt"].predict_after else "(after the predicting position: ignored)"
        want[(prompt.NAME, prompt.TOP + t, prompt.NOTE_COL)] = (note, 0.0)
    probs = trace["predict.probs"][:, 0]
    order = np.argsort(-probs, kind="stable")
    top = layout.region("predict.probs").top
    for k in range(min(predict.TOP_K, len(probs))):
        want[(predict.NAME, top + k, predict.PROB_COL)] = (float(probs[order[k]]), RTOL)
        want[(predict.NAME, top + k, predict.ID_COL)] = (float(order[k]), 0.0)
        want[(predict.NAME, top + k, predict.TOKEN_COL)] = (shown[order[k]], 0.0)
    want[(guide.NAME, guide.PREDICTED_ROW, 1)] = (shown[order[0]], 0.0)
    want[(guide.NAME, guide.SENTINEL_ROW, 1)] = (2.0, 0.0)
    # the editable cells' "used" values and status messages (sheetgpt/book/editable.py): as built, every
    # value follows its rule, so the typed values are used and no message is shown
    want[(predict.NAME, *predict.STATUS)] = ("Softmax of the logits, with a temperature you can edit (yellow).", 0.0)
    want[(predict.NAME, *predict.TEMPERATURE_USED)] = (float(inputs["predict"]), 0.0)
    want[(prompt.NAME, *prompt.AFTER_STATUS)] = ("", 0.0)
    want[(prompt.NAME, *prompt.AFTER_USED)] = (float(inputs["prompt"].predict_after), 0.0)
    # the prompt the book reads now: the Prompt tab's text so far, the Guide's copy of it
    so_far = "".join(inputs["prompt"].texts[: inputs["prompt"].predict_after + 1])
    for t in range(T if not layout.typed else 0):
        want[(prompt.NAME, prompt.TOP + t, prompt.SO_FAR_COL)] = ("".join(inputs["prompt"].texts[: t + 1]), 0.0)
    guide_prompt = [r for (r, c), s in book.sheets[guide.NAME].strings.items() if c == 0 and s == "Prompt"]
    typed_text = book.sheets[prompt.NAME].strings.get(prompt.TYPED_TEXT, "")
    want[(guide.NAME, guide_prompt[0], 1)] = (typed_text if layout.typed else so_far, 0.0)
    return want


def formula_cells(path: Path) -> set[tuple[str, int, int]]:
    cells = set()
    for name, sheet in read_workbook(path).sheets.items():
        for r, c, _, ref in sheet.formulas:
            r0, c0, r1, c1 = ref or (r, c, r, c)
            cells |= {(name, rr, cc) for rr in range(r0, r1 + 1) for cc in range(c0, c1 + 1)}
    return cells


@functools.cache
def recomputed(path: Path, engine: str) -> dict[tuple[str, int, int], object]:
    """Every formula cell's value from one engine: float, text, error text, or None (empty)."""
    values = recompute(engine, path, read_workbook(path))
    return {cell: values.describe(*cell) for cell in formula_cells(path)}


def mismatches(got: dict, want: dict) -> list:
    bad = []
    for cell, (value, tol) in want.items():
        x = got[cell]
        if isinstance(value, str) or isinstance(x, str) or x is None or value is None:
            ok = x == value
        else:
            ok = abs(x - value) <= tol
        if not ok:
            bad.append((cell, x, value))
    return bad


def assert_every_cell(result, engines: list[str]) -> None:
    """Each engine equals the reference on every forward-pass formula cell (and every stage region
    of the other tabs), and the engines equal each other on every formula cell of the book."""
    path = Path(result.path)
    want = expected_cells(path)
    cells = formula_cells(path)
    forward = forward_tabs(read_inputs(read_workbook(path)).layout)
    assert {c for c in cells if c[0] in forward} <= set(want), "a forward-pass formula cell with no expectation"
    assert set(want) <= cells, "an expected value where the book has no formula"
    got = {engine: recomputed(path, engine) for engine in engines}
    for engine in engines:
        bad = mismatches(got[engine], want)
        assert not bad, (engine, len(bad), bad[:5])
    # with each other, cell by cell over every formula cell, far tighter than the reference tolerance
    first = got[engines[0]]
    for other in engines[1:]:
        between = {}
        for cell in cells:
            x = first[cell]
            tol = want[cell][1] / 1000 if cell in want else 1e-12 * abs(x) if isinstance(x, float) else 0.0
            between[cell] = (x, tol)
        bad = mismatches(got[other], between)
        assert not bad, (engines[0], other, len(bad), bad[:5])


@pytest.fixture(scope="module")
def books(book):
    return {shape: book(shape, prompt) for shape, prompt in PROMPTS.items()}


@pytest.mark.slow
def test_fast_and_formulas_engines_equal_the_reference_on_every_formula_cell(books):
    assert_every_cell(books["micro"], ["fast", "formulas"])


@pytest.mark.parametrize("shape", ["one-head", "odd"])
def test_fast_engine_equals_the_reference_on_every_formula_cell(books, shape):
    assert_every_cell(books[shape], ["fast"])


@pytest.mark.libreoffice
@pytest.mark.parametrize("shape", ["micro", "one-head", "odd"])
def test_libreoffice_equals_the_reference_and_the_other_engines_on_every_formula_cell(books, shape):
    engines = ["libreoffice", "fast"] + (["formulas"] if shape == "micro" else [])
    assert_every_cell(books[shape], engines)


# ------------------------------------------------------------------ damage, caught at the right place


def sheet_part(z: zipfile.ZipFile, name: str) -> str:
    """The zip member holding the sheet called name (workbook.xml + its relationships)."""
    wb = z.read("xl/workbook.xml").decode()
    rid = re.search(rf'<sheet name="{re.escape(name)}" sheetId="\d+" r:id="(rId\d+)"', wb).group(1)
    rels = z.read("xl/_rels/workbook.xml.rels").decode()
    return "xl/" + re.search(rf'<Relationship Id="{rid}" Type="[^"]+" Target="([^"]+)"', rels).group(1)


def edit_sheet_xml(src: Path, dst: Path, sheet: str, edit) -> Path:
    """Copy src to dst with edit(xml_text) -> xml_text applied to one sheet's XML; the edit must change it."""
    with zipfile.ZipFile(src) as z:
        part = sheet_part(z, sheet)
        members = [(i, z.read(i.filename)) for i in z.infolist()]
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as out:
        for info, data in members:
            if info.filename == part:
                new = edit(unshare_formulas(data.decode())).encode()
                assert new != data, f"the edit did not change {sheet!r}"
                data = new
            out.writestr(info.filename, data)
    return dst


def edit_with_openpyxl(src: Path, dst: Path, edit) -> Path:
    wb = openpyxl.load_workbook(src)
    edit(wb)
    wb.save(dst)
    return dst


def run_check(*args) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["check", *map(str, args)])
    assert not isinstance(result.exception, (AssertionError, KeyError, TypeError, ValueError)), result.exception
    return result.exit_code, result.stdout, result.stderr


def assert_caught(path: Path, stage: str, cell: str, *, formula_has: str | None = None, model=None) -> dict:
    """check fails, and its first failing stage and first wrong cell are these; the CLI says so too."""
    report = check_book(path, model=load_model(model) if model else None)
    failed = [s for s in report.stages if not s.passed]
    assert failed, "the damage went unnoticed"
    first = failed[0]
    assert (first.stage, first.first_bad["cell"]) == (stage, cell), first
    if formula_has is not None:
        assert formula_has in first.first_bad["formula"], first.first_bad
    args = [path] + (["--model", model] if model else [])
    code, out, err = run_check(*args)
    assert code == 1, (out, err)
    line = next(x for x in out.splitlines() if "first wrong cell" in x)
    assert line.strip().startswith(f"{stage}: first wrong cell {cell} = "), line
    assert "recomputed" in line and "expected" in line
    assert out.strip().splitlines()[-1].startswith("FAIL")
    return first.first_bad


@pytest.fixture(scope="module")
def good(book, tmp_path_factory):
    """A good one-head book (2 blocks, 12 tokens), copied so that edits never touch the shared one."""
    result = book("one-head", "a quick test")
    path = tmp_path_factory.mktemp("good") / "good.xlsx"
    shutil.copy(result.path, path)
    return path, result.layout


def where(layout: Layout, stage: str, i: int, j: int) -> str:
    region = layout.regions[stage]
    return f"'{region.tab}'!{cell_name(region.top + i, region.left + j)}"


def test_an_untouched_book_passes_and_so_does_one_resaved_by_openpyxl(good, tmp_path):
    path, _ = good
    code, out, err = run_check(path)
    assert code == 0 and out.strip().splitlines()[-1].startswith("PASS"), (out, err)
    # openpyxl drops cached values and charts on the way; the formulas and constants must survive,
    # or the openpyxl-based damage below would prove nothing
    resaved = edit_with_openpyxl(path, tmp_path / "resaved.xlsx", lambda wb: None)
    assert check_book(resaved).passed


def test_a_shifted_average_range_fails_the_layer_norm_mean(good, tmp_path):
    path, layout = good
    src = layout.regions["h.0.ln_1.mean"].formula(3, 0)  # AVERAGE(Embed!$C41:$N41), 12 columns
    assert src.startswith("AVERAGE(Embed!$C") and ":$N" in src
    dst = src.replace("!$C", "!$D").replace(":$N", ":$O")  # one column to the right

    def edit(xml):
        assert xml.count(f"<f>{src}</f>") == 1
        return xml.replace(f"<f>{src}</f>", f"<f>{dst}</f>")

    bad = assert_caught(
        edit_sheet_xml(path, tmp_path / "b.xlsx", block.name(0), edit),
        "h.0.ln_1.mean",
        where(layout, "h.0.ln_1.mean", 3, 0),
    )
    assert bad["formula"] == "=" + dst


def test_sum_instead_of_average_fails_the_second_layer_norm_mean(good, tmp_path):
    path, layout = good

    def edit(wb):
        region = layout.regions["h.1.ln_2.mean"]
        cell = wb[block.name(1)].cell(region.top + 1 + 5, region.left + 1)
        assert cell.value.startswith("=AVERAGE(")
        cell.value = cell.value.replace("AVERAGE", "SUM")

    assert_caught(
        edit_with_openpyxl(path, tmp_path / "b.xlsx", edit),
        "h.1.ln_2.mean",
        where(layout, "h.1.ln_2.mean", 5, 0),
        formula_has="=SUM(",
    )


def test_a_dropped_bias_fails_the_attention_projection(good, tmp_path):
    path, layout = good
    bias = "+'h.0.attn.c_attn.b'!$A$1:$AJ$1"

    def edit(xml):
        assert xml.count(bias) == 1
        return xml.replace(bias, "")

    assert_caught(
        edit_sheet_xml(path, tmp_path / "b.xlsx", block.name(0), edit),
        "h.0.attn.c_attn",
        where(layout, "h.0.attn.c_attn", 0, 0),
        formula_has="{=MMULT(",
    )


def test_a_mask_that_hides_the_diagonal_fails_at_the_first_token(good, tmp_path):
    path, layout = good

    def edit(xml):  # '>' is '&gt;' in the XML: every mask cell of block 1 now also hides key == query
        new, n = re.subn(r"<f>IF\(([A-Z]+\$\d+)&gt;", r"<f>IF(\1&gt;=", xml)
        assert n == layout.T * layout.T
        return new

    bad = assert_caught(
        edit_sheet_xml(path, tmp_path / "b.xlsx", block.name(1), edit),
        "h.1.attn.masked",
        where(layout, "h.1.attn.masked", 0, 0),
        formula_has=">=",
    )
    assert bad["got"] == "" and isinstance(bad["expected"], float)


def test_a_removed_mask_lets_a_token_see_the_future(good, tmp_path):
    path, layout = good

    def edit(xml):  # IF(C$104>$A105,"",C87) -> C87
        new, n = re.subn(r'<f>IF\([A-Z]+\$\d+&gt;\$A\d+,(?:&quot;|")(?:&quot;|"),([A-Z]+\d+)\)</f>', r"<f>\1</f>", xml)
        assert n == layout.T * layout.T
        return new

    bad = assert_caught(
        edit_sheet_xml(path, tmp_path / "b.xlsx", block.name(0), edit),
        "h.0.attn.masked",
        where(layout, "h.0.attn.masked", 0, 1),
    )
    assert bad["expected"] == "blank (masked)" and isinstance(bad["got"], float)


def test_a_deleted_row_of_a_block_tab_fails_where_the_rows_shift(good, tmp_path):
    path, layout = good
    res_1 = layout.regions["h.0.res_1"]
    edited = edit_with_openpyxl(path, tmp_path / "b.xlsx", lambda wb: wb[block.name(0)].delete_rows(res_1.top + 1 + 4))
    assert_caught(edited, "h.0.res_1", where(layout, "h.0.res_1", 4, 0))


@pytest.mark.slow
def test_a_changed_weight_fails_the_first_stage_that_uses_it_against_the_checkpoint(good, tmp_path, model_dir):
    path, layout = good

    def edit(wb):  # h.0.ln_1.g[3]: the norm itself is unchanged, the scaled output is not
        cell = wb["h.0.ln_1.g"].cell(1, 4)
        cell.value = cell.value + 0.25

    edited = edit_with_openpyxl(path, tmp_path / "b.xlsx", edit)
    # Without a checkpoint the book is self-consistent: its formulas compute its own weights.
    assert check_book(edited).passed
    # With one, the reference is the checkpoint's forward pass: the first stage using g fails.
    assert_caught(edited, "h.0.ln_1.out", where(layout, "h.0.ln_1.out", 0, 3), model=model_dir("one-head"))
    report = check_book(edited, model=load_model(model_dir("one-head")))
    bad = [w for w in report.weights if not w["passed"]]
    assert [w["param"] for w in bad] == ["h.0.ln_1.g"] and "'h.0.ln_1.g'!D1" in bad[0]["message"]
    passed = {s.stage for s in report.stages if s.passed}
    assert {"embed.h", "h.0.ln_1.mean", "h.0.ln_1.var", "h.0.ln_1.norm"} <= passed


# ------------------------------------------------------------------ --model, --json, --junit, engines


def test_a_book_passes_against_its_own_checkpoint(good, model_dir):
    path, _ = good
    code, out, err = run_check(path, "--model", model_dir("one-head"))
    assert code == 0, (out, err)
    assert "weights: 28/28 tabs equal the checkpoint" in out


def test_a_checkpoint_with_one_weight_changed_is_named_with_its_cell(good, model_dir, tmp_path):
    path, layout = good
    d = model_dir("one-head")
    params = random_params(layout.config, 0)
    params["h.1.mlp.c_fc.w"][2, 7] += np.float32(0.5)
    other = write_checkpoint(tmp_path / "changed", layout.config, params)
    write_tokenizer(other, layout.config.vocab_size)
    assert load_model(d).flat["h.1.mlp.c_fc.w"][2, 7] != params["h.1.mlp.c_fc.w"][2, 7]
    code, out, err = run_check(path, "--model", other)
    assert code == 1, (out, err)
    assert "weights: h.1.mlp.c_fc.w: 'h.1.mlp.c_fc.w'!H3 holds" in out and "(1 cells differ)" in out
    assert "h.1.mlp.c_fc: first wrong cell" in out
    assert "weights: 27/28 tabs equal the checkpoint" in out


def test_json_and_junit_reports_parse_and_agree_with_the_verdict(good, tmp_path):
    path, layout = good
    for book, code in (
        (path, 0),
        (
            edit_sheet_xml(
                path, tmp_path / "bad.xlsx", block.name(0), lambda x: x.replace("+'h.0.attn.c_attn.b'!$A$1:$AJ$1", "")
            ),
            1,
        ),
    ):
        j, x = tmp_path / f"r{code}.json", tmp_path / f"r{code}.xml"
        got, out, err = run_check(book, "--json", j, "--junit", x)
        assert got == code, (out, err)
        data = json.loads(j.read_text())
        assert data["passed"] is (code == 0) and data["engine"] == "fast"
        assert len([s for s in data["stages"] if s["stage"] != "cached"]) == len(list(layout.regions))
        assert [s["tab"] for s in data["stages"] if s["stage"] == "cached"] == [t.name for t in layout.compute_tabs()]
        suite = ElementTree.parse(x).getroot()
        failures = suite.findall("testcase/failure")
        assert int(suite.get("failures")) == len(failures) == sum(not s["passed"] for s in data["stages"])
        assert int(suite.get("tests")) == len(suite.findall("testcase")) == len(data["stages"])
        if code:
            first = next(s for s in data["stages"] if not s["passed"])
            assert first["stage"] == "h.0.attn.c_attn" and first["first_bad"]["cell"] == where(
                layout, "h.0.attn.c_attn", 0, 0
            )
            assert failures[0].get("message").startswith("h.0.attn.c_attn: first wrong cell")


def test_existing_reports_are_not_overwritten_without_force(good, tmp_path):
    path, _ = good
    j, x = tmp_path / "r.json", tmp_path / "r.xml"
    j.write_text("precious")
    x.write_text("precious too")
    for option, target in (("--json", j), ("--junit", x)):
        code, out, err = run_check(path, option, target)
        assert code == 2 and "exists; pass --force" in err and len(err.strip().splitlines()) == 1
        assert out == ""  # refused before checking
    assert j.read_text() == "precious" and x.read_text() == "precious too"
    code, _, _ = run_check(path, "--json", j, "--junit", x, "--force")
    assert code == 0 and json.loads(j.read_text())["passed"] and ElementTree.parse(x).getroot().get("failures") == "0"


@pytest.mark.slow
def test_the_formulas_engine_refuses_a_book_estimated_past_its_bound_and_names_the_engines_to_use(book, monkeypatch):
    path = book("odd", "the cat sat on the mat, and then it ran").path
    n, seconds, _ = formulas_engine.estimate(read_workbook(path))
    assert n > 60_000 and seconds > 100  # minutes: refused only because the bound is lowered
    monkeypatch.setattr(formulas_engine, "MAX_SECONDS", 60)
    started = time.perf_counter()
    code, out, err = run_check(path, "--engine", "formulas")
    assert code == 2 and out == "" and time.perf_counter() - started < 10
    assert len(err.strip().splitlines()) == 1
    assert f"{n:,} cells, about {seconds / 60:.1f} min" in err and "past its limits (1 min, 8 GB)" in err
    assert "use --engine fast, libreoffice or gnumeric" in err
