"""Exercise families for the backward pass (the Saliency tab's stages): blank, fill right, fill wrong.

The learner's formulas are written with openpyxl (no cached values: the engine computes them). The
right ones are the book's own formulas (which check proves against the float64 reference backward);
each wrong one is a classic mistake, and grade must name it.
"""

from __future__ import annotations

import re

import openpyxl
import pytest
from openpyxl.worksheet.formula import ArrayFormula

from sheetgpt import a1, exercises
from sheetgpt.book.tabs import saliency
from sheetgpt.check import check_book

SLOW = pytest.mark.slow  # the loop keeps one mistake (the layer norm's); the others run in the whole suite
SPEC = "layer_norm_backward,gelu_backward,attention_backward"
# each exercise and the exercises computed from it (a wrong one makes them fail too, or pass as "follows")
AFTER = {
    "dh.0.res_2": {"dh.0.mlp.c_fc", "dh.0.res_1", "dh.0.attn.weights", "dh.0.attn.scores", "dh.0.attn.c_attn"},
    "dh.0.mlp.c_fc": {"dh.0.res_1", "dh.0.attn.weights", "dh.0.attn.scores", "dh.0.attn.c_attn"},
    "dh.0.res_1": {"dh.0.attn.weights", "dh.0.attn.scores", "dh.0.attn.c_attn"},
    "dh.0.attn.scores": {"dh.0.attn.c_attn"},
    "dh.0.attn.c_attn": set(),
}
STAGES = ["dh.0.res_2", "dh.0.mlp.c_fc", "dh.0.res_1", "dh.0.attn.weights", "dh.0.attn.scores", "dh.0.attn.c_attn"]


@pytest.fixture(scope="module")
def built(book):
    return book("micro", exercise=SPEC)


def fill(built, dst, wrong: dict | None = None):
    """A copy of the exercise book with every exercise filled with the book's own formulas, except the
    stages in ``wrong``: {stage: function(text, i, j) -> the mistaken text} (i, j: the cell, None in an array)."""
    wrong = wrong or {}
    wb = openpyxl.load_workbook(built.path)
    for stage in built.exercises:
        r = built.layout.region(stage)
        change = wrong.get(stage, lambda text, i, j: text)
        ws = wb[r.tab]
        if r.formula is not None:
            for i in range(r.rows):
                for j in r.columns():
                    ws.cell(r.top + i + 1, r.left + j + 1).value = "=" + change(r.formula(i, j), i, j)
        for r0, c0, r1, c1, text in r.arrays:
            ref = f"{a1.cell(r0, c0)}:{a1.cell(r1, c1)}"
            ws[a1.cell(r0, c0)] = ArrayFormula(ref, "=" + change(text, None, None))
    wb.save(dst)
    return dst


def grades(report) -> dict[str, dict]:
    return {e["stage"]: e for e in report.exercises}


def test_the_families_blank_the_backward_stages(built):
    assert built.exercises == ["dh.0.res_2", "dh.0.mlp.c_fc", "dh.0.res_1", "dh.0.attn.weights",
                               "dh.0.attn.scores", "dh.0.attn.c_attn", "dembed.h"]  # fmt: skip
    families = exercises.families([saliency])
    assert set(families) == {"softmax_backward", "layer_norm_backward", "gelu_backward", "attention_backward"}
    report = check_book(built.path)
    assert {e["status"] for e in report.exercises} == {"not done yet"}


def test_the_books_own_formulas_pass(built, tmp_path):
    report = check_book(fill(built, tmp_path / "right.xlsx"))
    assert all(e["status"] == "pass" for e in report.exercises), report.exercises
    assert report.passed


def erf_gelu_prime(built):
    """d GELU x the erf GELU's derivative PHI(x) + x phi(x), x the forward's GELU input at the same cell."""
    dgelu, fc = built.layout.region("dh.0.mlp.gelu"), built.layout.region("h.0.mlp.c_fc")

    def change(text, i, j):
        x = fc.at(i, j, saliency.NAME)
        return f"{dgelu.at(i, j, saliency.NAME)}*(0.5*(1+ERF({x}/SQRT(2)))+{x}*EXP(-({x}^2)/2)/SQRT(2*PI()))"

    return change


MISTAKES = [
    (  # the layer-norm backward without its mean terms: dnorm / SQRT(var + eps) + residual
        "dh.0.res_1",
        lambda t, i, j: re.sub(r"^\(([A-Z]+\d+)-\$[A-Z]+\d+-.*?\*\$[A-Z]+\d+\)", r"(\1)", t),
        "without its mean terms",
    ),
    pytest.param("dh.0.mlp.c_fc", None, "erf GELU's derivative", marks=SLOW),  # erf_gelu_prime
    pytest.param(
        "dh.0.attn.scores", lambda t, i, j: re.sub(r"-SUMPRODUCT\(.*\)\)$", ")", t), "without its row sum", marks=SLOW
    ),
    pytest.param(
        "dh.0.attn.c_attn", lambda t, i, j: re.sub(r"/SQRT\(\d+\)$", "", t), "forgotten 1/sqrt(head_dim)", marks=SLOW
    ),
]


@pytest.mark.parametrize(
    "stage,change,diagnosis", MISTAKES, ids=["dh.0.res_1", "dh.0.mlp.c_fc", "dh.0.attn.scores", "dh.0.attn.c_attn"]
)
def test_a_classic_mistake_is_named(built, tmp_path, stage, change, diagnosis):
    change = change or erf_gelu_prime(built)
    report = check_book(fill(built, tmp_path / "wrong.xlsx", {stage: change}))
    g = grades(report)
    assert g[stage]["status"] == "fail", g[stage]
    assert diagnosis in g[stage].get("diagnosis", ""), g[stage]
    assert all(g[s]["status"] == "pass" for s in STAGES if s not in exercises_after(stage))


def exercises_after(stage: str) -> set[str]:
    return {stage} | AFTER[stage] | {"dembed.h"}


@pytest.mark.parametrize("wrong", [False, True])
def test_the_cross_entropy_gradient_on_the_train_tab(book, tmp_path, wrong):
    """`--train --exercise crossentropy_backward` blanks the Train tab's d logits: P - onehot(target) passes,
    onehot(target) - P (dp/p, the gradient of LN(p)) is named."""
    built = book("micro", exercise="crossentropy_backward", tabs={"train": True})
    assert built.exercises == ["nll.dlogits"]
    flip = {"nll.dlogits": lambda t, i, j: re.sub(r"^(.*)-(IF\(.*\))$", r"\2-(\1)", t)} if wrong else {}
    report = check_book(fill(built, tmp_path / "ce.xlsx", flip))
    (g,) = report.exercises
    if not wrong:
        assert g["status"] == "pass" and report.passed, g
    else:
        assert g["status"] == "fail" and "dp/p" in g.get("diagnosis", ""), g
