"""The Sample tab (issue 25): the sheet samples each generated row as `sheetgpt predict --sample` does.

The expected ids come from `sheetgpt predict --sample ... --no-stop --json` (run in-process); the
sheet's ids are what an engine recomputes from the formulas (the fast engine; LibreOffice and
Gnumeric for a handful), never the file's cached values.
"""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

import lo_batch
import numpy as np
import pytest
from click.testing import CliRunner
from xlsx_edit import set_value

from sheetgpt import a1, sampling
from sheetgpt.book.tabs import prompt as prompt_tab
from sheetgpt.book.tabs import sample as sample_tab
from sheetgpt.book.writer import build_workbook
from sheetgpt.check import CACHED, check_book
from sheetgpt.checkpoint import default_model_dir, load_model
from sheetgpt.cli import main
from sheetgpt.engine import ironcalc_engine
from sheetgpt.engine import libreoffice as lo
from sheetgpt.engine.evaluator import evaluate
from sheetgpt.engine.reader import read_workbook
from sheetgpt.reference import greedy_fill
from sheetgpt.sampling import Settings
from sheetgpt.tokenizer import Tokenizer

PROMPT = "Mike is quick. He moves"  # 6 tokens
GENERATE = 4
CELLS = {
    "mode": (sample_tab.MODE_ROW, 1),
    "temperature": (sample_tab.TEMP_ROW, 1),
    "top_k": (sample_tab.TOP_K_ROW, 1),
    "top_p": (sample_tab.TOP_P_ROW, 1),
    "seed": (sample_tab.SEED_ROW, 1),
}


def predicted(s: Settings, n: int = GENERATE) -> list[int]:
    """`sheetgpt predict --sample ... --no-stop -n N --json`'s continuation ids."""
    args = ["predict", "--prompt", PROMPT, "-n", str(n), "--no-stop", "--json"]
    if s.mode == "sample":
        args += ["--sample", "--temperature", repr(s.temperature), "--top-k", str(s.top_k)]
        args += ["--top-p", repr(s.top_p), "--seed", str(s.seed)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["continuation_ids"]


@pytest.fixture(scope="module")
def bundled():
    d = default_model_dir()
    return load_model(d), Tokenizer.from_dir(d)


def _build(bundled, out: Path, s: Settings | None = None, generate: int = GENERATE):
    model, tok = bundled
    return build_workbook(model, tok, PROMPT, out, typed_prompt=False, generate=generate, sample_settings=s)


@pytest.fixture(scope="module")
def sampled(bundled, tmp_path_factory):
    return _build(bundled, tmp_path_factory.mktemp("sample") / "s.xlsx", Settings("sample", 1.0, 0, 1.0, 3))


def _ids(values, T: int) -> list[int]:
    col = values.numbers[prompt_tab.NAME][prompt_tab.TOP : prompt_tab.TOP + T, prompt_tab.ID_COL]
    return [int(x) for x in col]


def _set(book, edits: dict[str, object]) -> None:
    """Type values into the Sample tab's cells of a book in memory (a number, a text, None: empty)."""
    sheet = book.sheets[sample_tab.NAME]
    r_, c_, v_ = (np.array(a) for a in sheet.numbers)
    for key, value in edits.items():
        r, c = CELLS[key]
        keep = ~((r_ == r) & (c_ == c))
        r_, c_, v_ = r_[keep], c_[keep], v_[keep]
        sheet.strings.pop((r, c), None)
        if isinstance(value, str):
            sheet.strings[(r, c)] = value
        elif value is not None:
            r_, c_, v_ = np.append(r_, r), np.append(c_, c), np.append(v_, float(value))
    sheet.numbers = (r_.astype(np.int32), c_.astype(np.int32), v_)


def _status(values) -> str:
    return values.describe(sample_tab.NAME, sample_tab.STATUS_ROW, 1)


def test_the_default_book_is_greedy_as_before(bundled, tmp_path):
    model, tok = bundled
    book = _build(bundled, tmp_path / "g.xlsx")
    T = book.layout.T
    values = evaluate(read_workbook(book.path))
    ids = tok.encode(PROMPT)
    want = greedy_fill(ids + [0] * GENERATE, [t >= len(ids) for t in range(T)], model.params, model.config)
    assert _ids(values, T) == want == book.ids
    assert _status(values).startswith("Greedy: ")
    assert values.numbers[sample_tab.NAME][sample_tab.OK_ROW, 1] == 0


def test_a_sampled_book_equals_predict_and_checks(sampled):
    s = Settings("sample", 1.0, 0, 1.0, 3)
    values = evaluate(read_workbook(sampled.path))
    assert _ids(values, sampled.layout.T)[-GENERATE:] == predicted(s) == sampled.ids[-GENERATE:]
    assert _status(values).startswith("Sampling: ")
    report = check_book(sampled.path)
    assert report.passed and any(r.stage == "sample.next" for r in report.stages)
    assert predicted(s) != predicted(Settings())  # this seed's story is not the greedy one


def _settings(n: int) -> list[Settings]:
    """n settings: seeds, temperatures, top-k and top-p spread over their ranges (the edges included)."""
    rng = np.random.default_rng(25)
    fixed = [
        Settings("sample", 0.0, 0, 1.0, 1),  # greedy by temperature
        Settings("sample", 1.0, 1, 1.0, 2),  # greedy by top-k
        Settings("sample", 1e6, 0, 1.0, 3),  # uniform over the 64 candidates
        Settings("sample", 0.001, 0, 1.0, 4),
        Settings("sample", 1.0, 0, 0.01, 5),  # top-p: only the first candidate
        Settings("sample", 1.0, 200, 1.0, sampling.MAX_SEED),
    ]
    temps, ks, ps = [0.3, 0.7, 1.0, 1.5, 3.0, 10.0], [0, 2, 3, 5, 20, 64], [1.0, 0.99, 0.9, 0.7, 0.5]
    while len(fixed) < n:
        fixed.append(
            Settings(
                "sample",
                float(rng.choice(temps)),
                int(rng.choice(ks)),
                float(rng.choice(ps)),
                int(rng.integers(0, sampling.MAX_SEED + 1)),
            )
        )
    return fixed


@pytest.mark.slow
def test_the_sheet_samples_as_predict_does_for_52_settings(sampled):
    """The fast engine recomputes the book with each setting typed into the Sample tab."""
    book = read_workbook(sampled.path)
    T, seen = sampled.layout.T, set()
    for s in _settings(52):
        _set(book, {"temperature": s.temperature, "top_k": s.top_k, "top_p": s.top_p, "seed": s.seed})
        got = _ids(evaluate(book), T)[-GENERATE:]
        assert got == predicted(s), s
        seen.add(tuple(got))
    assert len(seen) >= 20  # the settings give many different stories


@pytest.mark.parametrize(
    "edits, why",
    [
        ({"temperature": "hot"}, "temperature"),
        pytest.param({"temperature": -1}, "temperature", marks=pytest.mark.slow),
        pytest.param({"top_k": 2.5}, "top_k", marks=pytest.mark.slow),
        ({"top_k": "many"}, "top_k"),
        pytest.param({"top_p": 0}, "top_p", marks=pytest.mark.slow),
        pytest.param({"top_p": 1.5}, "top_p", marks=pytest.mark.slow),
        pytest.param({"seed": 1.5}, "seed", marks=pytest.mark.slow),
        ({"seed": "lucky"}, "seed"),
        pytest.param({"seed": None}, "seed", marks=pytest.mark.slow),
        pytest.param({"mode": "random"}, "mode", marks=pytest.mark.slow),
    ],
)
def test_a_bad_value_shows_one_message_and_falls_back_to_greedy(sampled, edits, why):
    book = read_workbook(sampled.path)
    _set(book, edits)
    values = evaluate(book)
    assert _status(values) == sample_tab.FALLBACK + sampling.PROBLEMS[why]
    assert _ids(values, sampled.layout.T)[-GENERATE:] == predicted(Settings())
    assert values.numbers[sample_tab.NAME][sample_tab.OK_ROW, 1] == 0
    assert not values.errors.get(prompt_tab.NAME)  # nothing else changes: no error spreads


def test_empty_top_k_and_top_p_are_off(sampled):
    book = read_workbook(sampled.path)
    _set(book, {"top_k": None, "top_p": None})
    assert _ids(evaluate(book), sampled.layout.T)[-GENERATE:] == predicted(Settings("sample", 1.0, 0, 1.0, 3))


def test_check_reads_the_settings_back(sampled, tmp_path):
    """A seed changed without recalculating: the recomputed book is proven against the new seed's
    reference (the formula stages pass), and the stale cached values fail."""
    edited = tmp_path / "seed.xlsx"
    set_value(sampled.path, edited, sampled.layout, sample_tab.NAME, a1.cell(sample_tab.SEED_ROW, 1), "11")
    report = check_book(edited)
    stale = [r for r in report.stages if not r.passed]
    assert stale and all(r.stage == CACHED for r in stale)
    assert predicted(Settings("sample", 1.0, 0, 1.0, 11)) != predicted(Settings("sample", 1.0, 0, 1.0, 3))


def _typed_text(src: Path, dst: Path, layout, cell: str, text: str) -> None:
    """A copy of the book whose Sample!``cell`` holds the text ``text`` (an inline string)."""
    member = f"xl/worksheets/sheet{[t.name for t in layout.tabs].index(sample_tab.NAME) + 1}.xml"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename == member:
                xml, n = re.subn(
                    f'<c r="{cell}"( s="\\d+")?><v>[^<]*</v></c>',
                    lambda m: f'<c r="{cell}"{m.group(1) or ""} t="inlineStr"><is><t>{text}</t></is></c>',
                    data.decode(),
                )
                assert n == 1
                data = xml.encode()
            zout.writestr(info, data)


def test_check_proves_a_book_with_a_text_temperature(sampled, tmp_path):
    edited = tmp_path / "hot.xlsx"
    _typed_text(sampled.path, edited, sampled.layout, a1.cell(sample_tab.TEMP_ROW, 1), "hot")
    report = check_book(edited)
    failing = [r for r in report.stages if not r.passed]
    assert failing and all(r.stage == CACHED for r in failing)  # stale cached values only
    assert any(r.stage == "sample.ok" and r.passed for r in report.stages)


# ---- LibreOffice, Gnumeric and IronCalc ------------------------------------------------------------------


@pytest.mark.libreoffice
@pytest.mark.slow
def test_libreoffice_samples_as_predict_does_after_seed_edits(sampled):
    T = sampled.layout.T
    ids = a1.span(prompt_tab.TOP, prompt_tab.ID_COL, prompt_tab.TOP + T - 1, prompt_tab.ID_COL)
    seeds = ["0", "17", "4242", "999999"]
    typed = lo_batch.type_texts(
        sampled.path,
        (sample_tab.NAME, a1.cell(sample_tab.SEED_ROW, 1)),
        seeds,
        [(prompt_tab.NAME, ids)],
        number_format="General",
    )
    assert typed.kinds == ["VALUE"] * len(seeds)
    for seed, (rows,) in zip(seeds, typed.results):
        got = [int(r[0]) for r in rows][-GENERATE:]
        assert got == predicted(Settings("sample", 1.0, 0, 1.0, int(seed))), seed


@pytest.mark.libreoffice
@pytest.mark.slow
def test_a_seed_edited_and_saved_in_libreoffice_passes_check(sampled, tmp_path):
    saved = tmp_path / "lo.xlsx"
    cells = {
        (sample_tab.NAME, a1.cell(sample_tab.SEED_ROW, 1)): 77,
        (sample_tab.NAME, a1.cell(sample_tab.TEMP_ROW, 1)): 1.5,
        (sample_tab.NAME, a1.cell(sample_tab.TOP_P_ROW, 1)): 0.9,
    }
    lo.recalculate(sampled.path, edits=cells, sheets=[prompt_tab.NAME], save_as=saved)
    report = check_book(saved)
    assert report.passed, [r for r in report.stages if not r.passed][:1]
    ids = _ids(evaluate(read_workbook(saved)), sampled.layout.T)[-GENERATE:]
    assert ids == predicted(Settings("sample", 1.5, 0, 0.9, 77))


@pytest.mark.libreoffice
@pytest.mark.slow
def test_libreoffice_proves_a_sampled_book(bundled, tmp_path):
    book = _build(bundled, tmp_path / "k.xlsx", Settings("sample", 0.8, 5, 0.95, 123))
    report = check_book(book.path, engine="libreoffice")
    assert report.passed, [r for r in report.stages if not r.passed][:1]
    assert book.ids[-GENERATE:] == predicted(Settings("sample", 0.8, 5, 0.95, 123))


@pytest.mark.gnumeric
@pytest.mark.slow
@pytest.mark.parametrize("s", [Settings("sample", 1.0, 0, 1.0, 3), Settings("sample", 2.0, 3, 0.8, 31337)])
def test_gnumeric_proves_a_sampled_book(bundled, tmp_path, s):
    book = _build(bundled, tmp_path / "g.xlsx", s)
    report = check_book(book.path, engine="gnumeric")
    assert report.passed, [r for r in report.stages if not r.passed][:1]
    assert book.ids[-GENERATE:] == predicted(s)


def _tied_book(tmp_path):
    """A micro model whose tokens 10..199 share one embedding row: their logits tie exactly at every
    position, in the candidates and at the 64th."""
    from sheetgpt.random_model import SHAPES, random_params, write_checkpoint, write_tokenizer

    config = SHAPES["micro"]
    params = random_params(config, seed=2)
    params["wte"][10:200] = params["wte"][5]
    d = write_checkpoint(tmp_path / "m", config, params)
    write_tokenizer(d, config.vocab_size)
    model, tok = load_model(d), Tokenizer.from_dir(d)
    s = Settings("sample", 2.0, 0, 1.0, 9)
    return build_workbook(model, tok, "ab", tmp_path / "t.xlsx", typed_prompt=False, generate=5, sample_settings=s)


def test_ties_are_decided_as_the_reference_decides(tmp_path):
    """The tied book's ids (lower id first) and its samples are the reference's."""
    book = _tied_book(tmp_path)
    values = evaluate(read_workbook(book.path))
    ids = values.numbers[sample_tab.NAME]
    region = book.layout.region("sample.id")
    top = book.layout.region("sample.top")
    sheet_ids = ids[region.top : region.bottom + 1, region.left : region.right + 1]
    sheet_top = ids[top.top : top.bottom + 1, top.left : top.right + 1]
    assert (np.diff(sheet_top, axis=1) == 0).sum() >= 20  # the premise: many ties among the candidates
    assert np.array_equal(sheet_ids, book.trace["sample.id"])
    report = check_book(book.path)
    assert report.passed and any(r.stage == "sample.id" for r in report.stages)
    assert _ids(values, book.layout.T) == book.ids


@pytest.mark.ironcalc
def test_ironcalc_decides_ties_as_the_reference_decides(tmp_path):
    book = _tied_book(tmp_path)
    report = check_book(book.path, engine="ironcalc")
    assert report.passed, [r for r in report.stages if not r.passed][:1]
    assert any(r.stage == "sample.id" for r in report.stages)


@pytest.mark.ironcalc
@pytest.mark.parametrize("s", [Settings("sample", 1.0, 0, 1.0, 3), Settings("sample", 2.0, 3, 0.8, 31337)])
def test_ironcalc_proves_a_sampled_book(bundled, tmp_path, s):
    book = _build(bundled, tmp_path / "i.xlsx", s)
    report = check_book(book.path, engine="ironcalc")
    assert report.passed, [r for r in report.stages if not r.passed][:1]
    assert book.ids[-GENERATE:] == predicted(s)


@pytest.mark.ironcalc
def test_ironcalc_samples_as_predict_does_after_edits(sampled):
    """Settings typed through IronCalc's own input parser (set_user_input), then evaluate()."""
    T = sampled.layout.T
    cell = {key: (sample_tab.NAME, a1.cell(*rc)) for key, rc in CELLS.items()}
    for s in (
        Settings("sample", 1.0, 0, 1.0, 0),
        Settings("sample", 1.0, 0, 1.0, 999999),
        Settings("sample", 0.7, 5, 0.9, 4242),
        Settings("sample", 3.0, 20, 1.0, 17),
    ):
        edits = {cell[key]: {"type": str(getattr(s, key))} for key in ("temperature", "top_k", "top_p", "seed")}
        values = ironcalc_engine.recalculate(sampled.path, edits=edits)
        assert _ids(values, T)[-GENERATE:] == predicted(s), s
    values = ironcalc_engine.recalculate(sampled.path, edits={cell["temperature"]: {"type": "hot"}})
    assert _status(values) == sample_tab.FALLBACK + sampling.PROBLEMS["temperature"]
    assert _ids(values, T)[-GENERATE:] == predicted(Settings())
