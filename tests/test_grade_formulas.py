"""Grading what a learner may type: the book's own stage names, whole columns, and broken formulas.

The learner's formulas are written with openpyxl (no cached values: every engine must compute them).
Each broken formula is one kind of mistake; its grade is a FAIL naming the cell, while the other
exercises are graded as usual and nothing outside the exercises changes.
"""

from __future__ import annotations

import re

import openpyxl
import pytest
from click.testing import CliRunner

from sheetgpt.check import check_book
from sheetgpt.cli import main
from sheetgpt.engine import libreoffice as lo

SPEC = "h.0.ln_1.var,h.0.ln_2.mean,h.0.mlp.gelu"
needs_lo = pytest.mark.libreoffice  # tests/engines.py: skipped where missing, slow, required in CI
needs_gnumeric = pytest.mark.gnumeric


@pytest.fixture(scope="module")
def built(book):
    return book("micro", exercise=SPEC)


def fill(built, dst, forms: dict, edit=None):
    """A copy of the exercise book with ``forms[stage](i, j)`` typed into each cell of each stage."""
    wb = openpyxl.load_workbook(built.path)
    for stage, f in forms.items():
        r = built.layout.region(stage)
        for i in range(r.rows):
            for j in r.columns():
                text = f(i, j)
                if text is not None:
                    wb[r.tab].cell(r.top + i + 1, r.left + j + 1).value = text
    if edit:
        edit(wb)
    wb.save(dst)
    return dst


def right(built) -> dict:
    """Right formulas for the three exercises, in A1 ranges (mean: reads res_1; GELU: the tanh form)."""
    R = built.layout.region
    x, res1, fc = R("embed.h"), R("h.0.res_1"), R("h.0.mlp.c_fc")
    return {
        "h.0.ln_1.var": lambda i, j: f"=_xlfn.VAR.P({x.row(i, 'Block 0')})",
        "h.0.ln_2.mean": lambda i, j: f"=AVERAGE({res1.row(i, 'Block 0')})",
        "h.0.mlp.gelu": lambda i, j: (lambda v: f"=0.5*{v}*(1+TANH(SQRT(2/PI())*({v}+0.044715*{v}^3)))")(
            fc.at(i, j, "Block 0")
        ),
    }


def grades(report) -> dict[str, dict]:
    return {e["stage"]: e for e in report.exercises}


# ------------------------------------------------------------------ the book's own stage names


def by_name(i: int) -> str:
    """Row i's population variance of embed.h through the book's names, in formulas every engine
    computes (Gnumeric has no INDEX(range, r, 0))."""
    row = f"(ROW(embed.h)-ROW(INDEX(embed.h,1,1))={i})"
    return f"=SUMPRODUCT({row}*(embed.h-INDEX(h.0.ln_1.mean,{i + 1}))^2)/COLUMNS(embed.h)"


@pytest.fixture(scope="module")
def named(built, tmp_path_factory):
    forms = right(built)
    forms["h.0.ln_1.var"] = lambda i, j: by_name(i)
    forms["h.0.ln_2.mean"] = lambda i, j: f"=AVERAGE(INDEX(h.0.res_1,{i + 1},0))"
    return fill(built, tmp_path_factory.mktemp("named") / "named.xlsx", forms)


def test_stage_names_in_formulas_pass_in_the_fast_engine(named):
    report = check_book(named)
    assert {s: e["status"] for s, e in grades(report).items()} == dict.fromkeys(SPEC.split(","), "pass")
    assert report.passed


@needs_lo
def test_stage_names_in_formulas_pass_in_libreoffice(named):
    report = check_book(named, engine="libreoffice")
    assert {s: e["status"] for s, e in grades(report).items()} == dict.fromkeys(SPEC.split(","), "pass")
    assert report.passed


@needs_gnumeric
def test_stage_names_pass_in_gnumeric(built, tmp_path):
    forms = right(built)
    forms["h.0.ln_1.var"] = lambda i, j: by_name(i)
    report = check_book(fill(built, tmp_path / "g.xlsx", forms), engine="gnumeric")
    assert {s: e["status"] for s, e in grades(report).items()} == dict.fromkeys(SPEC.split(","), "pass")


@needs_lo
@pytest.mark.ironcalc
def test_stage_names_compute_in_ironcalc(built, tmp_path):
    """IronCalc reads the book as LibreOffice saves it (not openpyxl's files): the names typed there."""
    import ironcalc

    from sheetgpt import a1

    R = built.layout.region
    var, mean = R("h.0.ln_1.var"), R("h.0.ln_2.mean")
    # (IronCalc 0.9 gives #VALUE! for by_name's array arithmetic on ROW(range): names through INDEX here)
    edits = {
        ("Block 0", a1.cell(var.top + i, var.left)): {"formula": f"=VAR.P(INDEX(embed.h,{i + 1},0))"}
        for i in range(var.rows)
    }
    for i in range(mean.rows):
        edits[("Block 0", a1.cell(mean.top + i, mean.left))] = {"formula": f"=AVERAGE(INDEX(h.0.res_1,{i + 1},0))"}
    saved = tmp_path / "typed.xlsx"
    lo.recalculate(built.path, edits=edits, save_as=saved, sheets=["Guide"])
    model = ironcalc.load_from_xlsx(str(saved), "en", "UTC")
    model.evaluate()
    sheet = [t.name for t in built.layout.tabs].index("Block 0")
    report = check_book(saved)
    g = grades(report)
    assert g["h.0.ln_1.var"]["status"] == g["h.0.ln_2.mean"]["status"] == "pass"
    from sheetgpt.engine.evaluator import evaluate
    from sheetgpt.engine.reader import read_workbook

    values = evaluate(read_workbook(saved))
    for r in (var, mean):
        for i in range(r.rows):
            got = model.get_cell_value(sheet, r.top + i + 1, r.left + 1)
            assert float(got) == pytest.approx(values.numbers["Block 0"][r.top + i, r.left], rel=1e-12), (r.name, i)


def test_whole_columns_in_a_formula(built, tmp_path):
    """SUM(Embed!A:A)-style references: bounded by the sheet, the same value as the range."""
    x = built.layout.region("embed.h")
    col = lambda j: openpyxl.utils.get_column_letter(x.left + j + 1)  # noqa: E731
    forms = right(built)
    # AVERAGE of a row through whole columns: SUMPRODUCT over the columns of embed.h, row i picked by ROW()
    forms["h.0.ln_2.mean"] = None
    forms = {k: v for k, v in forms.items() if v is not None}
    forms["h.0.ln_1.var"] = lambda i, j: (
        f"=SUMPRODUCT((ROW(Embed!{col(0)}:{col(x.cols - 1)})={x.top + i + 1})*"
        f"(Embed!{col(0)}:{col(x.cols - 1)}-AVERAGE({x.row(i, 'Block 0')}))^2)/{x.cols}"
    )
    report = check_book(fill(built, tmp_path / "cols.xlsx", forms))
    g = grades(report)
    assert g["h.0.ln_1.var"]["status"] == "pass", g["h.0.ln_1.var"]
    assert g["h.0.mlp.gelu"]["status"] == "pass"


# ------------------------------------------------------------------ broken formulas: a FAIL, not an unusable book


def broken(built, tmp_path, name: str, var_formula, edit=None) -> tuple[int, str, dict]:
    forms = right(built)
    forms["h.0.ln_1.var"] = var_formula
    path = fill(built, tmp_path / f"{name}.xlsx", forms, edit)
    r = CliRunner().invoke(main, ["grade", str(path)])
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    return r.exit_code, r.output, grades(check_book(path))


def assert_fails_alone(code, out, g, got: str, diagnosis: str | None):
    assert code == 1, out
    assert "Exercises: 2 of 3 pass, 1 wrong, 0 not done yet" in out
    e = g["h.0.ln_1.var"]
    assert e["status"] == "fail" and e["first_bad"]["cell"] == "'Block 0'!C19", e
    assert e["first_bad"]["got"] == got, e
    assert "first wrong cell 'Block 0'!C19" in out
    if diagnosis:
        assert diagnosis in e.get("diagnosis", ""), e
    assert g["h.0.ln_2.mean"]["status"] == "pass", g["h.0.ln_2.mean"]  # right for its inputs, or right
    assert g["h.0.mlp.gelu"]["status"] == "pass"


def test_libreoffice_intersection_syntax_is_diagnosed(built, tmp_path):
    x = built.layout.region("embed.h")
    # what LibreOffice's default syntax saves for =VAR.P(Embed!$C45:$AX45): '!' became intersection
    row = lambda i: x.row(i, "Block 0").replace("Embed!", "embed ")  # noqa: E731
    code, out, g = broken(built, tmp_path, "intersection", lambda i, j: f"=_xlfn.VAR.P({row(i)})")
    assert_fails_alone(code, out, g, "#NAME?", "`!` read as the intersection operator")
    assert "write `$Embed.$C" in g["h.0.ln_1.var"]["diagnosis"]


def test_an_unknown_name_fails(built, tmp_path):
    code, out, g = broken(built, tmp_path, "name", lambda i, j: "=_xlfn.VAR.P(embed.x)")
    assert_fails_alone(code, out, g, "#NAME?", "unknown name 'embed.x'")


def test_an_unknown_function_fails(built, tmp_path):
    x = built.layout.region("embed.h")
    code, out, g = broken(built, tmp_path, "function", lambda i, j: f"=VARIANCE({x.row(i, 'Block 0')})")
    assert_fails_alone(code, out, g, "#NAME?", "unsupported function VARIANCE")


def test_a_ref_error_fails(built, tmp_path):
    code, out, g = broken(built, tmp_path, "ref", lambda i, j: "=_xlfn.VAR.P(#REF!)")
    assert_fails_alone(code, out, g, "#REF!", None)


def test_a_value_error_fails(built, tmp_path):
    x = built.layout.region("embed.h")
    code, out, g = broken(built, tmp_path, "value", lambda i, j: f'=_xlfn.VAR.P({x.row(i, "Block 0")})+"x"')
    assert_fails_alone(code, out, g, "#VALUE!", None)


def test_a_circular_reference_names_the_learners_cell(built, tmp_path):
    out_ = built.layout.region("h.0.res_2")  # a later stage, which reads the exercise: a cycle through it
    code, out, g = broken(
        built,
        tmp_path,
        "cycle",
        lambda i, j: f"=_xlfn.VAR.P('Block 0'!{openpyxl.utils.get_column_letter(out_.left + 1)}{out_.top + i + 1})",
    )
    e = g["h.0.ln_1.var"]
    assert code == 1 and e["status"] == "fail", out
    assert e["first_bad"]["cell"].startswith("'Block 0'!C") and "circular reference" in e["diagnosis"], e
    assert e.get("message") == "circular reference"


def test_a_reference_outside_the_books_data_fails(built, tmp_path):
    code, out, g = broken(built, tmp_path, "outside", lambda i, j: f"=_xlfn.VAR.P(Embed!C{500 + i}:J{500 + i})")
    assert_fails_alone(code, out, g, "#DIV/0!", "beyond the cells the book holds")


def test_broken_formulas_outside_exercises_are_refused_as_before(built, tmp_path):
    def edit(wb):
        wb["Block 0"].cell(built.layout.region("h.0.attn.c_proj").top + 1, 3).value = "=VARIANCE(1)"

    path = fill(built, tmp_path / "outside.xlsx", right(built), edit)
    r = CliRunner().invoke(main, ["grade", str(path)])
    assert r.exit_code == 2 and "unsupported function VARIANCE" in r.output, r.output


# ------------------------------------------------------------------ fair, engine-independent grades


def one_error(built, tmp_path, gelu=None):
    forms = right(built)
    var = forms["h.0.ln_1.var"]
    forms["h.0.ln_1.var"] = lambda i, j: "=1/0" if i == 2 else var(i, j)
    if gelu:
        forms["h.0.mlp.gelu"] = lambda i, j: gelu
    return fill(built, tmp_path / f"div0{gelu is not None}.xlsx", forms)


def test_a_wrong_formula_after_an_error_is_still_wrong(built, tmp_path):
    """Its inputs are errors, so the math gives nothing to compare: a cell that passes no error on
    (=TRUE(), =0) is wrong, with no diagnosis matched on errors."""
    for gelu in ("=TRUE()", "=0"):
        g = grades(check_book(one_error(built, tmp_path, gelu)))
        assert g["h.0.mlp.gelu"]["status"] == "fail" and "diagnosis" not in g["h.0.mlp.gelu"], g["h.0.mlp.gelu"]
        assert g["h.0.ln_2.mean"]["status"] == "pass"


def test_an_error_in_one_cell_does_not_fail_the_exercises_after_it(built, tmp_path):
    g = grades(check_book(one_error(built, tmp_path)))
    assert g["h.0.ln_1.var"]["status"] == "fail"
    assert g["h.0.ln_1.var"]["first_bad"]["cell"] == "'Block 0'!C21"
    assert g["h.0.ln_2.mean"]["status"] == "pass" and g["h.0.ln_2.mean"]["follows"] == ["h.0.ln_1.var"]
    assert g["h.0.mlp.gelu"]["status"] == "pass" and g["h.0.mlp.gelu"]["follows"] == ["h.0.ln_1.var"]


@needs_lo
def test_an_error_in_one_cell_grades_the_same_in_libreoffice(built, tmp_path):
    for gelu in (None, "=TRUE()"):
        path = one_error(built, tmp_path, gelu)
        fast, office = check_book(path), check_book(path, engine="libreoffice")
        assert [(e["stage"], e["status"], e.get("follows")) for e in fast.exercises] == [
            (e["stage"], e["status"], e.get("follows")) for e in office.exercises
        ]


def test_true_is_not_a_number_in_an_exercise(built, tmp_path):
    forms = right(built)
    var = forms["h.0.ln_1.var"]
    forms["h.0.ln_1.var"] = lambda i, j: "=TRUE()" if i == 0 else var(i, j)
    r = CliRunner().invoke(main, ["grade", str(fill(built, tmp_path / "true.xlsx", forms))])
    assert r.exit_code == 1 and re.search(r"h\.0\.ln_1\.var +FAIL", r.output), r.output
    assert "RuntimeWarning" not in r.output


def test_the_guides_list_does_not_change_the_grade(built, tmp_path):
    def edit(wb):
        ws = wb["Guide"]
        for row in ws.iter_rows():
            if row[0].value in ("h.0.mlp.gelu", "h.0.ln_2.mean"):
                row[0].value = None
            elif row[0].value == "Exercises":
                ws.cell(row[0].row + 3, 1).value = "h.0.attn.scores"  # a stage that is no exercise

    path = fill(built, tmp_path / "guide.xlsx", right(built), edit)
    r = CliRunner().invoke(main, ["grade", str(path)])
    assert r.exit_code == 0 and "Exercises: 3 of 3 pass, 0 wrong, 0 not done yet" in r.output, r.output


# ------------------------------------------------------------------ one graph, one math


def test_a_stage_reads_what_the_books_formulas_read(book):
    """In a book with a Steering tab a block's layer norm and first residual read the steered input
    (h.0.in), not embed.h: the grade takes each stage's inputs from the formulas (exercises.read_graph)."""
    from sheetgpt import exercises, grade
    from sheetgpt.engine.evaluator import evaluate
    from sheetgpt.engine.reader import read_workbook

    built = book("micro", exercise="h.0.ln_1.mean", generate=2)
    layout = built.layout
    values = evaluate(read_workbook(built.path))
    graph = exercises.read_graph(layout)
    weights = {}

    def inputs(name):
        return grade.Inputs(layout, values, weights, name, graph)

    assert inputs("h.0.ln_1.mean").reads() == ["h.0.in"]
    assert inputs("h.0.res_1").reads() == ["h.0.attn.c_proj", "h.0.in"]
    steered = inputs("h.0.ln_1.var").input()
    assert steered.shape == (layout.T, layout.config.n_embd)
    assert (steered == inputs("h.0.res_1").input()).all()
    want = values.number_grid(layout.region("h.0.in"))
    assert (steered == want).all()


# ------------------------------------------------------------------ an exercise book opened cold


FILL_FIRST = "fill the exercises first: h.0.ln_1.var, h.0.ln_2.mean, h.0.mlp.gelu"  # after recalculating
COLD = 'fill exercise "Block 0 · step 2 · Layer norm 1: variance" first'  # cached: before recalculating


def test_the_guide_says_fill_first_until_the_exercises_are_done(built, book, tmp_path):
    cold = openpyxl.load_workbook(built.path, data_only=True)["Guide"]
    assert cold["B7"].value == COLD  # cached so: what any viewer shows before recalculating
    report = check_book(built.path)
    guide = [s for s in report.stages if s.tab == "Guide"]
    assert [(s.stage, s.passed) for s in guide] == [("cached", True)] and guide[0].cells >= 1
    half = right(built)
    del half["h.0.mlp.gelu"]
    from sheetgpt.engine.evaluator import evaluate
    from sheetgpt.engine.reader import read_workbook

    partly = evaluate(read_workbook(fill(built, tmp_path / "half.xlsx", half)))
    assert partly.value("Guide", "B7") == FILL_FIRST
    done = fill(built, tmp_path / "done.xlsx", right(built))
    plain = openpyxl.load_workbook(book("micro").path, data_only=True)["Guide"]["B7"].value
    assert evaluate(read_workbook(done)).value("Guide", "B7") == plain  # the normal book's prediction
    assert [s.stage for s in check_book(done).stages if s.tab == "Guide"] == []  # filled: nothing cold to prove


@needs_lo
def test_libreoffice_shows_the_cold_guide_as_cached(built):
    report = check_book(built.path, engine="libreoffice")
    assert [(s.stage, s.passed) for s in report.stages if s.tab == "Guide"] == [("cached", True)]


def test_a_circular_reference_through_another_tab_fails_the_exercise(book, tmp_path):
    built = book("micro", exercise="embed.h")
    R = built.layout.region
    wte, wpe, mean = R("embed.wte"), R("embed.wpe"), R("h.0.ln_1.mean")
    forms = {"embed.h": lambda i, j: f"={wte.at(i, j, 'Embed')}+{wpe.at(i, j, 'Embed')}"}
    first = forms["embed.h"]
    # row 0 adds Block 0's layer-norm mean of row 0, which reads this row: a cycle through two tabs
    forms["embed.h"] = lambda i, j: (
        first(i, j)
        + (f"+'Block 0'!{openpyxl.utils.get_column_letter(mean.left + 1)}{mean.top + 1}" if (i, j) == (0, 0) else "")
    )
    path = fill(built, tmp_path / "cycle2.xlsx", forms)
    r = CliRunner().invoke(main, ["grade", str(path)])
    assert r.exit_code == 1, r.output
    e = grades(check_book(path))["embed.h"]
    assert e["status"] == "fail" and e["first_bad"]["cell"].startswith("'Embed'!"), e
    assert e["message"] == "circular reference" and "circular reference" in e["diagnosis"]
