"""`sheetgpt check` output for a CI log: one line per tab by default, --verbose per stage, --quiet the verdict.

A failing report is made for real: --rtol 1e-300 fails every stage whose recomputed values are
not bit-identical to the reference (a few ulps apart), so the stages that fail are the checker's.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from sheetgpt.check import CheckReport, StageResult
from sheetgpt.cli import main
from sheetgpt.report import format_table, summary, verdict


@pytest.fixture(scope="module")
def small(book):
    return Path(book("micro", "ab").path)


def check(*args):
    result = CliRunner().invoke(main, ["check", *map(str, args)])
    return result.exit_code, result.stdout.splitlines()


def test_default_is_one_line_per_tab_and_the_verdict_last(small):
    code, lines = check(small)
    assert code == 0
    verbose = check(small, "--verbose")[1]
    stage_lines = [x for x in verbose[1:-1] if not x.startswith(" ")]
    assert len(lines) < len(verbose)
    assert lines[-1].startswith("PASS: ") and lines[-1] == lines[-1].strip()
    body = lines[:-1]
    assert all(" pass" in x and "stages pass" in x for x in body)
    assert len(body) == len({x.split("  ")[0].strip() for x in body})  # one line per tab
    n_stages = sum(int(x.split("/")[1].split()[0]) for x in body)
    assert n_stages == len(stage_lines)


def test_quiet_prints_the_verdict_alone(small):
    code, lines = check(small, "--quiet")
    assert code == 0
    assert len(lines) == 1 and lines[0].startswith("PASS: ") and "formula cells in" in lines[0]


def test_verbose_is_the_per_stage_table(small):
    code, lines = check(small, "--verbose")
    assert code == 0
    assert lines[0].split() == ["stage", "tab", "cells", "max", "abs", "err", "max", "rel", "err", "result"]
    assert all(x.endswith(" pass") for x in lines[1:-1])
    assert lines[-1].startswith("PASS: ")


def test_a_failing_check_shows_every_failing_stage_in_full(small):
    code, lines = check(small, "--rtol", "1e-300")
    verbose = check(small, "--rtol", "1e-300", "--verbose")[1]
    assert code == 1
    failing_v = [x.strip() for x in verbose if "first wrong cell" in x]
    failing = [x.strip() for x in lines if "first wrong cell" in x]
    assert failing and failing == failing_v  # each in full, the same text as the table's
    assert any("FAIL" in x and "stages pass" in x for x in lines)
    assert lines[-1].startswith("FAIL: ")
    quiet = check(small, "--rtol", "1e-300", "--quiet")
    assert quiet[0] == 1 and len(quiet[1]) == 1 and quiet[1][0].startswith("FAIL: ")


def test_json_and_junit_do_not_depend_on_the_output_mode(small, tmp_path):
    reports = {}
    for mode in ("", "--quiet", "--verbose"):
        j, x = tmp_path / f"r{mode}.json", tmp_path / f"r{mode}.xml"
        args = [small, "--json", j, "--junit", x] + ([mode] if mode else [])
        assert check(*args)[0] == 0
        data = json.loads(j.read_text())
        data.pop("seconds")
        reports[mode] = (data, re.sub(r'(<testsuite [^>]*) time="[^"]*"', r"\1", x.read_text()))
    assert reports[""] == reports["--quiet"] == reports["--verbose"]


def test_verbose_and_quiet_together_are_refused(small):
    code, _ = check(small, "--quiet", "--verbose")
    assert code == 2


def test_summary_groups_stages_by_tab_and_reports_the_worst_error():
    r = CheckReport("b.xlsx", "fast", 1e-9)
    r.stages = [
        StageResult("wte.rows", "Embed", 10, 0.0, 1e-16, True),
        StageResult("h.0.ln_1.mean", "Block 0", 4, 0.5, 0.25, False, {"cell": "'Block 0'!C8", "formula": "=X"}),
        StageResult("h.0.ln_1.var", "Block 0", 4, 0.0, 2e-16, True),
        StageResult("h.0.attn.w", "Block 0", 4, float("inf"), float("inf"), False, {"cell": "'Block 0'!D9"}),
    ]
    r.weights = [{"param": "wte", "passed": False, "message": "wte: 'wte'!A1 holds 1.0, the checkpoint 2.0"}]
    lines = summary(r).splitlines()
    assert lines[0].split()[:4] == ["Embed", "1/1", "stages", "pass"] and lines[0].endswith("pass")
    assert lines[1].startswith("Block 0") and "1/3" in lines[1] and "worst rel err inf" in lines[1]
    assert lines[1].endswith("FAIL 2 of 3")
    assert lines[2].strip().startswith("h.0.ln_1.mean: first wrong cell 'Block 0'!C8 = =X")
    assert lines[3].strip().startswith("h.0.attn.w: first wrong cell 'Block 0'!D9")
    assert "0/1 tabs equal the checkpoint" in lines[4]
    assert lines[5].strip() == "weights: wte: 'wte'!A1 holds 1.0, the checkpoint 2.0"
    assert len(format_table(r).splitlines()) == 1 + 4 + 2 + 1
    assert verdict(r).startswith("FAIL: 2 of 4 stages")


def test_a_report_that_compared_nothing_is_not_a_pass():
    empty = CheckReport("b.xlsx", "fast", 1e-9)
    assert not empty.passed and json.loads(empty.to_json())["passed"] is False
    assert verdict(empty) == "FAIL: nothing was compared (no stage, no weight tab; engine fast)"
    weights_only = CheckReport("b.xlsx", "fast", 1e-9, weights=[{"param": "wte", "passed": True, "message": ""}])
    assert weights_only.passed


def test_the_cli_says_nothing_was_compared_in_one_line_and_exits_1(small, monkeypatch):
    import sheetgpt.check

    monkeypatch.setattr(sheetgpt.check, "check_book", lambda path, **_: CheckReport(str(path), "fast", 1e-9))
    code, lines = check(small, "--quiet")
    assert code == 1
    assert len(lines) == 1 and lines[0].startswith("FAIL: nothing was compared"), lines
