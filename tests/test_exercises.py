"""Exercise books: `build --exercise`, and `check`/`grade` as the grader of a book a learner filled in.

The learner's formulas are typed through LibreOffice (its own Excel-syntax formula parser, as a
person types them) and the book is saved by LibreOffice, then graded; one soffice session per book.
The expected grades (pass, the diagnosis of each known mistake) follow from the formulas typed here,
not from the grader: each wrong formula is one textbook mistake.
"""

from __future__ import annotations

import subprocess

import pytest
from click.testing import CliRunner

from sheetgpt import a1, exercises
from sheetgpt.book.layout import weight_range
from sheetgpt.check import check_book
from sheetgpt.cli import main
from sheetgpt.engine import libreoffice as lo
from sheetgpt.errors import SheetGPTError

TAB = "Block 0"
WRONG = "h.0.ln_1.var,h.0.ln_1.norm,h.0.ln_1.out,h.0.attn.scores,h.0.attn.masked,h.0.attn.weights,h.0.mlp.c_fc,"
WRONG += "h.0.mlp.gelu,h.0.res_1,h.0.ln_2.mean"
RIGHT = "h.0.ln_1.var,h.0.ln_1.norm,h.0.attn.scores,h.0.attn.masked,h.0.attn.weights,h.0.mlp.c_fc,h.0.mlp.gelu,"
RIGHT += "h.0.res_1"


def grades(report) -> dict[str, dict]:
    return {e["stage"]: e for e in report.exercises}


# ------------------------------------------------------------------ building


def test_resolve_names_and_families(book):
    layout = book("micro").layout
    assert exercises.resolve(layout, "softmax") == ["h.0.attn.exp", "h.0.attn.weights"]
    assert exercises.resolve(layout, "variance, gelu") == ["h.0.ln_1.var", "h.0.ln_2.var", "h.0.mlp.gelu", "ln_f.var"]
    with pytest.raises(SheetGPTError, match=r"unknown stage 'h.0.ln_3.var'.*h\.0\.ln_1\.var.*families \(embedding"):
        exercises.resolve(layout, "gelu,h.0.ln_3.var")


def test_unknown_stage_exits_2_in_one_line(model_dir, tmp_path):
    r = CliRunner().invoke(
        main,
        [
            "build",
            "--model",
            str(model_dir("micro")),
            "--prompt",
            "the cat",
            "--exercise",
            "softmx",
            "-o",
            str(tmp_path / "x.xlsx"),
        ],
    )
    assert r.exit_code == 2
    assert len(r.output.strip().splitlines()) == 1 and "unknown stage 'softmx'" in r.output
    assert not (tmp_path / "x.xlsx").exists()


def test_an_exercise_book_blanks_hints_lists_and_is_not_done(book):
    built = book("micro", exercise="h.0.ln_1.var,softmax")
    import openpyxl

    wb = openpyxl.load_workbook(built.path)
    ws, layout = wb[TAB], built.layout
    var = layout.region("h.0.ln_1.var")
    for i in range(var.rows):
        cell = ws.cell(var.top + i + 1, var.left + 1)
        assert cell.value is None and cell.fill.fgColor.rgb.endswith("FFF2CC")
    explain = ws.cell(var.explain_row + 1, 1).value
    x = layout.region("embed.h")
    assert f"embed.h Embed!{a1.span(x.top, x.left, x.bottom, x.right, (0, 0), (0, 0))}" in explain
    assert "VAR.S" not in explain and "=" not in explain.split("Use:")[1]  # cells to use, no formula
    guide = [row for row in wb["Guide"].iter_rows(values_only=True) if row[0]]
    names = [row[0] for row in guide]
    k = names.index("Exercises")
    assert names[k + 1 : k + 4] == ["h.0.ln_1.var", "h.0.attn.exp", "h.0.attn.weights"]
    # downstream stages keep their formulas, cached as a message (none claims a prediction yet)
    norm = layout.region("h.0.ln_1.norm")
    assert str(ws.cell(norm.top + 1, norm.left + 1).value).startswith("=")
    cached = openpyxl.load_workbook(built.path, data_only=True)
    shown = cached[TAB].cell(norm.top + 1, norm.left + 1).value
    assert shown == 'fill exercise "Block 0 · step 2 · Layer norm 1: variance" first'
    assert cached["Embed"].cell(x.top + 1, x.left + 1).value is not None  # upstream keeps its values

    report = check_book(built.path)
    g = grades(report)
    assert {s: e["status"] for s, e in g.items()} == dict.fromkeys(g, "not done yet")
    assert g["h.0.ln_1.var"]["message"] == f"0 of {var.rows} cells filled"
    notes = {s.stage: s.note for s in report.stages}
    assert notes["h.0.ln_1.norm"] == "follows from exercise h.0.ln_1.var"
    assert notes["h.0.attn.merged"] == "follows from exercise h.0.ln_1.var, h.0.attn.exp, h.0.attn.weights"
    assert notes["embed.h"] == "" and not report.passed


def test_grade_lists_an_undone_exercise_and_exits_1(book):
    built = book("micro", exercise="gelu")
    r = CliRunner().invoke(main, ["grade", str(built.path)])
    assert r.exit_code == 1
    assert "Exercises: 0 of 1 pass, 0 wrong, 1 not done yet" in r.output
    assert "h.0.mlp.gelu  not done yet" in r.output


# ------------------------------------------------------------------ a learner's formulas, typed in LibreOffice


def _cells(region, j_cols=None):
    for i in range(region.rows):
        for j in j_cols if j_cols is not None else region.columns():
            yield i, j, a1.cell(region.top + i, region.left + j)


def _typed(layout, styles: dict[str, str]) -> dict:
    """The formulas a learner types: for each stage, the style named in ``styles``."""
    R = layout.region
    x, mean, var, norm = R("embed.h"), R("h.0.ln_1.mean"), R("h.0.ln_1.var"), R("h.0.ln_1.norm")
    qkv, scores, masked, exp = R("h.0.attn.c_attn"), R("h.0.attn.scores"), R("h.0.attn.masked"), R("h.0.attn.exp")
    ln2, fc, gelu, proj = R("h.0.ln_2.out"), R("h.0.mlp.c_fc"), R("h.0.mlp.gelu"), R("h.0.attn.c_proj")
    c, T = layout.config, layout.T
    d, hd, eps = c.n_embd, c.head_dim, f"{c.layer_norm_epsilon:G}"
    edits: dict = {}

    def put(region, text_of, arrays=None):
        for i, j, at in _cells(region):
            edits[(TAB, at)] = {"formula": "=" + text_of(i, j)}

    def qk(h: int, which: int) -> str:
        return qkv.block(TAB, j0=which * d + h * hd, j1=which * d + (h + 1) * hd - 1)

    def col(j):  # head regions share columns
        return masked.left + j

    style = styles.get
    if style("var") == "var.s":
        put(var, lambda i, j: f"VAR.S({x.row(i, TAB)})")
    elif style("var") == "mixed":  # a different function in each row, each the population variance
        forms = [
            "VAR.P({r})",
            "VARP({r})",
            "STDEV.P({r})^2",
            "SUMPRODUCT(({r}-AVERAGE({r}))^2)/COUNT({r})",
            "POWER(STDEVP({r}),2)",
            "SUMSQ({r})/COLUMNS({r})-AVERAGE({r})^2",
        ]
        put(var, lambda i, j: forms[i % len(forms)].format(r=x.row(i, TAB)))
    if style("norm") == "eps outside":
        put(norm, lambda i, j: f"({x.at(i, j, TAB)}-{mean.at(i, 0, TAB)})/(SQRT({var.at(i, 0, TAB)})+{eps})")
    elif style("norm") == "right":
        put(
            norm,
            lambda i, j: f"({x.at(i, j, TAB)}-{mean.at(i, 0, TAB, col_abs=True)})/POWER({var.at(i, 0, TAB)}+{eps},0.5)",
        )
    if style("out") == "no bias":
        put(R("h.0.ln_1.out"), lambda i, j: f"{norm.at(i, j, TAB)}*'h.0.ln_1.g'!{a1.cell(0, j, True)}")
    if style("scores") in ("no scale", "right"):
        scale = "" if style("scores") == "no scale" else f"/SQRT({hd})"
        for h in range(c.n_head):
            r0, c0 = scores.top, scores.head_left(h)
            rng = a1.span(r0, c0, r0 + T - 1, c0 + T - 1, (False, False), (False, False))
            if style("scores") == "right" and h == 0:  # head 0 cell by cell, the others as CSE arrays
                for i in range(T):
                    for k in range(T):
                        q_row = qkv.row(i, TAB, j0=h * hd, j1=(h + 1) * hd - 1)
                        k_row = qkv.row(k, TAB, j0=d + h * hd, j1=d + (h + 1) * hd - 1)
                        edits[(TAB, a1.cell(r0 + i, c0 + k))] = {"formula": f"=SUMPRODUCT({q_row},{k_row}){scale}"}
            else:
                edits[(TAB, rng)] = {"array": f"=MMULT({qk(h, 0)},TRANSPOSE({qk(h, 1)})){scale}"}
    if style("masked") in ("sees next", "right"):
        plus = "+1" if style("masked") == "sees next" else ""
        if style("masked") == "right":  # ROW/COLUMN arithmetic instead of the header row
            for h in range(c.n_head):
                c0 = masked.head_left(h)
                for i in range(T):
                    for k in range(T):
                        at = a1.cell(masked.top + i, c0 + k)
                        key = f"(COLUMN()-COLUMN(${a1.col_name(c0)}$1))"
                        query = f"(ROW()-{masked.top + 1})"
                        edits[(TAB, at)] = {"formula": f'=IF({key}>{query},"",{a1.cell(scores.top + i, c0 + k)})'}
        else:
            for i, j, at in _cells(masked):
                key, pos = a1.cell(masked.header_row, col(j), True), a1.cell(masked.top + i, 0, col_abs=True)
                edits[(TAB, at)] = {"formula": f'=IF({key}>{pos}{plus},"",{a1.cell(scores.top + i, col(j))})'}
    if style("weights") in ("columns", "right"):
        for i, j, _at in _cells(exp):
            h0 = exp.head_left(j // (T + 1))
            e = a1.cell(exp.top + i, col(j))
            if style("weights") == "columns":
                edits[(TAB, a1.cell(R("h.0.attn.weights").top + i, col(j)))] = {
                    "formula": f"={e}/SUM({a1.span(exp.top, col(j), exp.bottom, col(j))})"
                }
            else:
                rng = a1.span(exp.top + i, h0, exp.top + i, h0 + T - 1, (False, False), (True, True))
                edits[(TAB, a1.cell(R("h.0.attn.weights").top + i, col(j)))] = {"formula": f"={e}/SUM({rng})"}
    if style("c_fc") in ("no bias", "right"):
        w, b = weight_range(c, "h.0.mlp.c_fc.w"), weight_range(c, "h.0.mlp.c_fc.b")
        rng = a1.span(fc.top, fc.left, fc.bottom, fc.right, (False, False), (False, False))
        edits[(TAB, rng)] = {"array": f"=MMULT({ln2.block(TAB)},{w})" + ("" if style("c_fc") == "no bias" else f"+{b}")}
    if style("gelu") == "erf":
        put(gelu, lambda i, j: f"0.5*{fc.at(i, j, TAB)}*(1+ERF({fc.at(i, j, TAB)}/SQRT(2)))")
    elif style("gelu") == "right":
        put(
            gelu,
            lambda i, j: (lambda v: f"0.5*{v}*(1+TANH(SQRT(2/PI())*({v}+0.044715*POWER({v},3))))")(fc.at(i, j, TAB)),
        )
    if style("res_1") == "no residual":
        put(R("h.0.res_1"), lambda i, j: proj.at(i, j, TAB))
    elif style("res_1") == "right":
        put(R("h.0.res_1"), lambda i, j: f"Embed!{a1.cell(x.top + i, x.left + j)}+{proj.at(i, j, TAB)}")
    return edits


@pytest.fixture(scope="module")
def typed_books(tmp_path_factory, model_dir):
    """Two exercise books filled in LibreOffice and saved by it: one with a textbook mistake in each
    exercise (and one left undone), one solved in several styles."""
    from sheetgpt.book.writer import build_workbook
    from sheetgpt.checkpoint import load_model
    from sheetgpt.tokenizer import Tokenizer

    d = model_dir("micro")
    model, tok = load_model(d), Tokenizer.from_dir(d)
    out = {}
    tmp = tmp_path_factory.mktemp("exercise")
    for key, spec, styles in (
        (
            "wrong",
            WRONG,
            {
                "var": "var.s",
                "norm": "eps outside",
                "out": "no bias",
                "scores": "no scale",
                "masked": "sees next",
                "weights": "columns",
                "c_fc": "no bias",
                "gelu": "erf",
                "res_1": "no residual",
            },
        ),
        (
            "right",
            RIGHT,
            {
                "var": "mixed",
                "norm": "right",
                "scores": "right",
                "masked": "right",
                "weights": "right",
                "c_fc": "right",
                "gelu": "right",
                "res_1": "right",
            },
        ),
    ):
        built = build_workbook(model, tok, "the cat sat on", tmp / f"{key}.xlsx", exercise=spec)
        saved = tmp / f"{key}-filled.xlsx"
        lo.recalculate(built.path, edits=_typed(built.layout, styles), save_as=saved, sheets=["Guide"])
        out[key] = (built, saved)
    return out


@pytest.mark.libreoffice
def test_each_known_mistake_typed_in_libreoffice_is_diagnosed(typed_books):
    built, saved = typed_books["wrong"]
    report = check_book(saved)
    g = grades(report)
    expect = {
        "h.0.ln_1.var": "sample variance (VAR.S",
        "h.0.ln_1.norm": "eps is added outside the square root",
        "h.0.ln_1.out": "a missing bias",
        "h.0.attn.scores": "a missing 1/sqrt(head_dim)",
        "h.0.attn.masked": "the mask lets a row see the next position",
        "h.0.attn.weights": "softmax over the wrong axis",
        "h.0.mlp.c_fc": "a missing bias",
        "h.0.mlp.gelu": "erf GELU",
        "h.0.res_1": "a missing residual",
    }
    for stage, text in expect.items():
        assert g[stage]["status"] == "fail", (stage, g[stage])
        assert g[stage].get("diagnosis", "").startswith(text), (stage, g[stage])
        bad = g[stage]["first_bad"]
        assert bad["cell"].startswith("'Block 0'!") and bad["formula"].startswith(("=", "{="))
        assert isinstance(bad["expected"], (float, str))
    assert g["h.0.ln_2.mean"]["status"] == "not done yet"
    notes = {s.stage: s.note for s in report.stages}
    assert notes["h.0.ln_2.norm"].startswith("follows from exercise") and "h.0.ln_2.mean" in notes["h.0.ln_2.norm"]
    assert notes["h.0.attn.exp"].startswith("follows from exercise h.0.ln_1.var")
    assert not report.passed


@pytest.mark.libreoffice
def test_a_right_solution_in_several_styles_passes(typed_books):
    built, saved = typed_books["right"]
    report = check_book(saved)
    g = grades(report)
    assert {s: e["status"] for s, e in g.items()} == dict.fromkeys(RIGHT.split(","), "pass")
    assert report.passed, [s for s in report.stages if not s.passed]


@pytest.mark.gnumeric
@pytest.mark.libreoffice
def test_books_resaved_by_gnumeric_grade_the_same(typed_books, tmp_path):
    for key in ("right", "wrong"):
        built, saved = typed_books[key]
        # (the book as sheetgpt writes it is read by Gnumeric once cells carry r attributes: issue 15)
        for src, name in ((saved, "filled"),):
            out = tmp_path / f"{key}-{name}-gnumeric.xlsx"
            subprocess.run(
                ["ssconvert", "--export-type=Gnumeric_Excel:xlsx2", str(src), str(out)],
                check=True,
                capture_output=True,
                timeout=300,
            )
            a, b = check_book(src), check_book(out)
            assert [(e["stage"], e["status"], e.get("diagnosis")) for e in a.exercises] == [
                (e["stage"], e["status"], e.get("diagnosis")) for e in b.exercises
            ], (key, name)
            assert [s.passed for s in a.stages] == [s.passed for s in b.stages]


def test_docs_list_the_families_the_tab_modules_declare():
    """docs/exercises.md's family table is the registry's: same families, same order, same stages."""
    import re
    from pathlib import Path

    from sheetgpt.book.tabs import TABS

    text = (Path(__file__).resolve().parent.parent / "docs" / "exercises.md").read_text(encoding="utf-8")
    section = text.split("## Families", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|")[1:3] for line in section.splitlines() if re.match(r"\| `", line)]
    documented = {re.findall(r"`([^`]+)`", name)[0]: tuple(re.findall(r"`([^`]+)`", stages)) for name, stages in rows}
    declared = exercises.families(TABS)
    assert list(documented) == list(declared)
    for family, stages in declared.items():
        assert documented[family] == stages, family
