"""Issue 28, point 3: a value typed into a yellow (editable) cell gives one verdict, the same in every engine.

Each case edits one editable cell of a book (a number, a text, a boolean, an error, a formula, a value
out of range or near a whole number), as an app saves it (no cached values: an app recalculates), then
checks the book. The rule (``sheetgpt/book/editable.py``, docs/robustness.md): a usable value is used
(a formula by its value), anything else shows one message in the tab's status cell and the tab falls
back; the reference follows the same rule, so the check passes (exit 0) in fast, LibreOffice, Gnumeric
and IronCalc, and every engine shows the same message. The expected messages are written out here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from xlsx_edit import drop_cached, set_cell

from sheetgpt import check as check_module
from sheetgpt.book import editable
from sheetgpt.book.tabs import steering
from sheetgpt.book.writer import build_workbook
from sheetgpt.checkpoint import load_model
from sheetgpt.cli import main
from sheetgpt.tokenizer import Tokenizer

OFF_STRENGTH = "Steering off: the strength must be a number from -1000 to 1000"
OFF_BLOCK = "Steering off: block L must be a whole number from 0 to 1"
ON = "On: 1 x (wte[A] - wte[B]) is added to every row at the input of block "
TEMP_OK = "Softmax of the logits, with a temperature you can edit (yellow)."
TEMP_OFF = "The temperature (C3) must be a number from 0.001 to 1000000: using 1."
NEURONS_OFF = "B3 must be a whole number from 0 to 1: showing block 1"


def _after_off(book) -> str:
    last = "the text's last token" if book.layout.typed else "the last row"
    return f"C3 must be a whole number from 0 to {book.layout.T - 1}: predicting after {last} instead"


STATUS = {  # tab -> the cell that shows its message
    "Steering": "B8",
    "Prompt": "D3",
    "Predict": "A2",
    "Neurons": "C3",
}

# (id, book, tab, cell, kind, value, expected message (None: the tab's own; a callable: of the book))
CASES = [
    (
        "strength formula",
        "typed",
        "Steering",
        "B6",
        "formula",
        "=1/2",
        "On: 0.5 x (wte[A] - wte[B]) is added to every row at the input of block 1",
    ),
    ("strength text", "typed", "Steering", "B6", "text", "1", OFF_STRENGTH),
    ("strength 1e200", "typed", "Steering", "B6", "number", 1e200, OFF_STRENGTH),
    ("strength -1e200", "rows", "Steering", "B6", "number", -1e200, OFF_STRENGTH),
    ("strength TRUE", "typed", "Steering", "B6", "bool", True, ON + "1"),  # TRUE is 1, as in the sheet's arithmetic
    ("strength formula TRUE", "rows", "Steering", "B6", "formula", "=TRUE()", ON + "1"),
    ("block FALSE", "typed", "Steering", "B7", "bool", False, ON + "0"),
    ("strength error", "typed", "Steering", "B6", "error", "#DIV/0!", OFF_STRENGTH),
    ("strength empty", "typed", "Steering", "B6", "empty", None, OFF_STRENGTH),
    ("strength formula error", "rows", "Steering", "B6", "formula", "=1/0", OFF_STRENGTH),
    ("token A number", "typed", "Steering", "B4", "number", 5, ON + "1"),
    ("token A formula", "rows", "Steering", "B4", "formula", '="c"', ON + "1"),
    (
        "token A formula error",
        "typed",
        "Steering",
        "B4",
        "formula",
        "=1/0",
        "Steering off: token A (an error value) is not in the vocabulary; copy a token text from the vocab tab",
    ),
    (
        "token B TRUE",
        "typed",
        "Steering",
        "B5",
        "bool",
        True,
        "Steering off: token B (TRUE) is not in the vocabulary; copy a token text from the vocab tab",
    ),
    ("block near 1", "typed", "Steering", "B7", "number", 1.0000000000000002, ON + "1"),
    ("block near 0", "rows", "Steering", "B7", "number", -1e-300, ON + "0"),
    ("block formula", "typed", "Steering", "B7", "formula", "=2-1", ON + "1"),
    ("block half", "typed", "Steering", "B7", "number", 0.5, OFF_BLOCK),
    ("block out of range", "rows", "Steering", "B7", "number", 2, OFF_BLOCK),
    ("block text", "typed", "Steering", "B7", "text", "1", OFF_BLOCK),
    ("after text (typed)", "typed", "Prompt", "C3", "text", "1", _after_off),
    ("after text (rows)", "rows", "Prompt", "C3", "text", "1", _after_off),
    ("after formula (typed)", "typed", "Prompt", "C3", "formula", "=0", ""),
    ("after formula (rows)", "rows", "Prompt", "C3", "formula", "=1/0", _after_off),
    ("after near 0 (rows)", "rows", "Prompt", "C3", "number", 1e-12, ""),
    ("after out of range (typed)", "typed", "Prompt", "C3", "number", 99, _after_off),
    ("after 1e200 (rows)", "rows", "Prompt", "C3", "number", 1e200, _after_off),
    ("temperature text", "typed", "Predict", "C3", "text", "2", TEMP_OFF),
    ("temperature 0", "rows", "Predict", "C3", "number", 0, TEMP_OFF),
    ("temperature formula", "typed", "Predict", "C3", "formula", "=1/2", TEMP_OK),
    ("temperature 1e-310", "typed", "Predict", "C3", "number", 1e-310, TEMP_OFF),
    ("neurons block out of range", "typed", "Neurons", "B3", "number", 7, NEURONS_OFF),
    ("neurons block formula", "rows", "Neurons", "B3", "formula", "=1/0", NEURONS_OFF),
    ("neurons block near 0", "typed", "Neurons", "B3", "number", 0.9999999999 - 1, "the MLP neurons of block 0"),
    ("embeddings token number", "typed", "Embeddings", "B6", "number", 5, None),
    ("embeddings token formula", "rows", "Embeddings", "B6", "formula", '="c"', None),
]
FAST_LOOP = {"strength formula", "after text (rows)"}  # the rest are slow: about 3 s each
# the cases every external engine recomputes (a bounded set: about 20 s each in LibreOffice)
ENGINE_CASES = [
    "strength formula",
    "strength 1e200",
    "strength formula TRUE",
    "token A number",
    "token A formula error",
    "block near 1",
    "block half",
    "after text (typed)",
    "after formula (rows)",
    "temperature text",
    "neurons block out of range",
]
ENGINES = [
    pytest.param("libreoffice", marks=pytest.mark.libreoffice),
    pytest.param("gnumeric", marks=pytest.mark.gnumeric),
    pytest.param("ironcalc", marks=pytest.mark.ironcalc),
]
BY_ID = {c[0]: c for c in CASES}


def build_books(d: Path, out: Path) -> dict:
    """A typed-prompt and a token-row book of the 2-block model in ``d``, generating, steered with A 'a',
    B 'b', strength 1 at block 1 (also the hostile-input sweep's books)."""
    model, tok = load_model(d), Tokenizer.from_dir(d)
    settings = steering.from_cli(("a", "b", 1.0, 1), tok.display_ids(), model.config.n_layer)
    return {
        kind: build_workbook(model, tok, "ab cab", out / f"{kind}.xlsx", typed_prompt=typed, generate=2, steer=settings)
        for kind, typed in (("typed", True), ("rows", False))
    }


@pytest.fixture(scope="module")
def books(model_dir, tmp_path_factory):
    return build_books(model_dir("one-head"), tmp_path_factory.mktemp("editable"))


def _edited(books, case, tmp_path) -> tuple[Path, object]:
    _, kind, tab, cell, how, value, _ = case
    book = books[kind]
    return drop_cached(set_cell(book.path, tmp_path / "edited.xlsx", tab, cell, how, value)), book


def run_check(path: Path, engine: str, tmp_path: Path, monkeypatch) -> tuple[int, dict, object]:
    """``sheetgpt check --engine ENGINE --json``: (exit code, the report, the recomputed values)."""
    seen = {}
    real = check_module.recompute

    def spy(*args, **kwargs):
        seen["values"] = real(*args, **kwargs)
        return seen["values"]

    report = tmp_path / f"{engine}.json"
    with monkeypatch.context() as m:
        m.setattr(check_module, "recompute", spy)
        result = CliRunner().invoke(main, ["check", str(path), "--engine", engine, "--json", str(report), "-q"])
    assert result.exit_code in (0, 1), (result.exit_code, result.output, result.exception)
    return result.exit_code, json.loads(report.read_text()), seen["values"]


def _status(values, case, book):
    tab = case[2]
    if tab not in STATUS:
        return None
    return values.value(tab, STATUS[tab])


def _expected(case, book):
    want = case[6]
    return want(book) if callable(want) else want


def _verdict(code: int, report: dict) -> tuple:
    return code, sorted(s["stage"] for s in report["stages"] if not s["passed"])


@pytest.mark.parametrize(
    "name", [pytest.param(c[0], marks=() if c[0] in FAST_LOOP else pytest.mark.slow) for c in CASES]
)
def test_an_edited_cell_passes_with_its_message(books, tmp_path, monkeypatch, name):
    case = BY_ID[name]
    path, book = _edited(books, case, tmp_path)
    code, report, values = run_check(path, "fast", tmp_path, monkeypatch)
    assert _verdict(code, report) == (0, []), name
    if case[2] in STATUS:
        assert _status(values, case, book) == _expected(case, book)


@pytest.mark.parametrize("name", ENGINE_CASES)
@pytest.mark.parametrize("engine", ENGINES)
def test_every_engine_gives_the_same_verdict_and_message(books, tmp_path, monkeypatch, name, engine):
    case = BY_ID[name]
    path, book = _edited(books, case, tmp_path)
    fast = run_check(path, "fast", tmp_path, monkeypatch)
    other = run_check(path, engine, tmp_path, monkeypatch)
    assert _verdict(*other[:2]) == _verdict(*fast[:2]) == (0, []), (name, engine)
    assert _status(other[2], case, book) == _status(fast[2], case, book) == _expected(case, book)


# ------------------------------------------------------------------ the rule: the sheet and the reference agree

RULES = {
    "whole 0..1": editable.Number(0, 1, whole=True),
    "strength": editable.Number(-1000.0, 1000.0),
    "temperature": editable.Number(0.001, 1e6),
}
# (how the cell is written, its value) and what each rule uses (None: the tab falls back); written out by hand
RULE_CASES = [
    (("number", 1.0), (1.0, 1.0, 1.0)),
    (("number", 1.0000000000000002), (1.0, 1.0000000000000002, 1.0000000000000002)),
    (("number", 0.9999999999), (1.0, 0.9999999999, 0.9999999999)),
    (("number", 0.999999998), (None, 0.999999998, 0.999999998)),
    (("number", -1e-300), (0.0, -1e-300, None)),
    (("number", 0.5), (None, 0.5, 0.5)),
    (("number", 1.5), (None, 1.5, 1.5)),
    (("number", 2.0), (None, 2.0, 2.0)),
    (("number", 1e200), (None, None, None)),
    (("number", -1000.0), (None, -1000.0, None)),
    (("number", 1000.0000001), (None, None, 1000.0000001)),
    (("number", 1e-310), (0.0, 1e-310, None)),
    (("number", 0.0), (0.0, 0.0, None)),
    (("text", "1"), (None, None, None)),
    (("text", ""), (None, None, None)),
    (("bool", True), (1.0, 1.0, 1.0)),
    (("bool", False), (0.0, 0.0, None)),
    (("error", "#N/A"), (None, None, None)),
    (("empty", None), (None, None, None)),
    (("formula", "=1/2"), (None, 0.5, 0.5)),
    (("formula", "=TRUE()"), (1.0, 1.0, 1.0)),
    (("formula", "=1/0"), (None, None, None)),
    (("formula", '="1"'), (None, None, None)),
    (("formula", "=2^1023*4"), (None, None, None)),
]


def _rule_book(path: Path) -> Path:
    """Column A: each case's cell; then per rule: ok (0/1) and the number used, by the rule's own formulas."""
    import xlsxwriter

    wb = xlsxwriter.Workbook(str(path))
    ws = wb.add_worksheet("Rules")
    for i, ((how, value), _) in enumerate(RULE_CASES):
        if how == "number":
            ws.write_number(i, 0, value)
        elif how == "text":
            ws.write_string(i, 0, value)
        elif how == "bool":
            ws.write_boolean(i, 0, value)
        elif how == "error":
            ws.write_formula(i, 0, "=NA()")
        elif how == "formula":
            ws.write_formula(i, 0, value)
        cell = f"$A{i + 1}"
        for k, rule in enumerate(RULES.values()):
            ok = rule.ok_formula(cell)
            ws.write_formula(i, 1 + 2 * k, "=" + ok)
            ws.write_formula(i, 2 + 2 * k, f'=IF({ok}=1,{rule.used_formula(cell)},"off")', None, "")
    wb.close()
    for i, ((how, value), _) in enumerate(RULE_CASES):  # every digit (xlsxwriter writes 16 significant ones)
        if how == "number":
            set_cell(path, path.with_suffix(".tmp"), "Rules", f"A{i + 1}", how, value).replace(path)
    return path


def _sheet_rule(path: Path, engine: str) -> list[tuple]:
    from sheetgpt.engine import recompute
    from sheetgpt.engine.reader import read_workbook

    values = recompute(engine, path, read_workbook(path))
    out = []
    for i in range(len(RULE_CASES)):
        used = [values.describe("Rules", i, 2 + 2 * k) for k in range(len(RULES))]
        out.append(tuple(None if u == "off" else u for u in used))
    return out


def test_the_reference_side_of_the_rule():
    for (how, value), want in RULE_CASES:
        held = {"error": editable.Error("#N/A"), "empty": None, "formula": editable.FORMULA}.get(how, value)
        if how == "formula":
            continue  # a formula's value comes from the engine: the sheet side below
        assert tuple(rule.usable(held) for rule in RULES.values()) == want, (how, value)


@pytest.mark.parametrize("engine", ["fast", *ENGINES])
def test_the_sheet_side_of_the_rule_equals_the_reference_side(tmp_path, engine):
    """The rule's formulas (``ok_formula``, ``used_formula``) give, in every engine, what ``usable`` gives."""
    got = _sheet_rule(_rule_book(tmp_path / "rules.xlsx"), engine)
    assert got == [want for _, want in RULE_CASES], engine


def test_fast_engine_islogical_and_round_of_huge_numbers(tmp_path):
    import xlsxwriter

    from sheetgpt.engine.evaluator import evaluate
    from sheetgpt.engine.reader import read_workbook

    path = tmp_path / "f.xlsx"
    wb = xlsxwriter.Workbook(str(path))
    ws = wb.add_worksheet("S")
    ws.write_boolean("A1", True)
    ws.write_number("A2", 1)
    ws.write_string("A3", "TRUE")
    ws.write_formula("B1", "=ISLOGICAL(A1)*100+ISLOGICAL(A2)*10+ISLOGICAL(A3)")
    ws.write_formula("B2", "=ROUND(1E200,0)")
    ws.write_formula("B3", "=ROUND(-123456789012345678,-2)")
    wb.close()
    values = evaluate(read_workbook(path))
    assert [values.describe("S", r, 1) for r in range(3)] == [100.0, 1e200, -1.23456789012346e17]  # 15 digits, as Excel


@pytest.mark.libreoffice
def test_values_typed_in_libreoffice_follow_the_rule(books):
    """Typed as a person types them (LibreOffice's input parser, UNO FormulaLocal), not written into the
    file: the Steering tab's message for each. In the Text-format token cell `=" slow"` stays a text."""
    import lo_batch

    path = books["typed"].path
    strength = ["=1/2", "1e200", "abc", "TRUE", "=1/0", "1000", "-1000.5"]
    typed = lo_batch.type_texts(path, ("Steering", "B6"), strength, [("Steering", "B8")], number_format="General")
    assert [r[0][0][0] for r in typed.results] == [
        "On: 0.5 x (wte[A] - wte[B]) is added to every row at the input of block 1",
        OFF_STRENGTH,
        OFF_STRENGTH,
        ON + "1",  # TRUE is 1 (in LibreOffice a boolean is the number 1 anyway)
        OFF_STRENGTH,
        "On: 1000 x (wte[A] - wte[B]) is added to every row at the input of block 1",
        OFF_STRENGTH,
    ]
    tokens = ["5", '=" slow"', "c"]
    typed = lo_batch.type_texts(path, ("Steering", "B4"), tokens, [("Steering", "B8")])
    assert typed.kinds == ["TEXT", "TEXT", "TEXT"]
    assert [r[0][0][0] for r in typed.results] == [
        ON + "1",
        'Steering off: token A (=" slow") is not in the vocabulary; copy a token text from the vocab tab',
        ON + "1",
    ]
