"""What `sheetgpt check` prints: a short report that fits a CI log, the full table, or the verdict alone.

- ``summary`` (the default): one line per tab (its stages passed and failed, its worst relative
  error), every failing stage in full with its first wrong cell, the weight tabs that differ.
- ``format_table`` (``--verbose``): one line per stage, as before.
- ``verdict`` (``--quiet`` prints only this): PASS or FAIL and the counts; always the last line.

The JSON and JUnit reports are CheckReport.to_json / to_junit (check.py); nothing here changes them.
"""

from __future__ import annotations

import math

from .check import CheckReport, StageResult, failure_text


def _worst(stages: list[StageResult]) -> float:
    finite = [s.max_rel for s in stages if math.isfinite(s.max_rel)]
    if len(finite) < len(stages):
        return math.inf
    return max(finite, default=0.0)


def exercise_lines(report: CheckReport) -> list[str]:
    """An exercise book's grades: one line per exercise, its first wrong cell and diagnosis under it."""
    if not report.exercises:
        return []
    width = max(len(e["stage"]) for e in report.exercises)
    lines = [f"Exercises: {exercise_counts(report)}"]
    for e in report.exercises:
        status = {"pass": "pass", "fail": "FAIL"}.get(e["status"], e["status"])
        extra = f"  ({e['message']})" if e.get("message") else ""
        if e.get("follows"):
            extra = f"  (right for its inputs; its values are off because exercise {', '.join(e['follows'])} is)"
        lines.append(f"  {e['stage']:<{width}}  {status}{extra}")
        b = e.get("first_bad")
        if b:
            lines.append(
                f"      first wrong cell {b['cell']} = {b['formula']}: gives {b['got']!r}, expected {b['expected']!r}"
            )
        if e.get("diagnosis"):
            lines.append(f"      diagnosis: {e['diagnosis']}")
    return lines


def exercise_counts(report: CheckReport) -> str:
    n = len(report.exercises)
    by = {k: sum(e["status"] == k for e in report.exercises) for k in ("pass", "fail", "not done yet")}
    return f"{by['pass']} of {n} pass, {by['fail']} wrong, {by['not done yet']} not done yet"


def summary(report: CheckReport) -> str:
    """The exercises (if any), then one line per tab and each failing stage in full (stages that only
    follow from an exercise, one line per tab)."""
    tabs: dict[str, list[StageResult]] = {}
    for s in report.stages:
        tabs.setdefault(s.tab, []).append(s)
    width = max((len(t) for t in tabs), default=3)
    lines = exercise_lines(report)
    for tab, stages in tabs.items():
        failed = [s for s in stages if not s.passed]
        cells = sum(s.cells for s in stages)
        result = "pass" if not failed else f"FAIL {len(failed)} of {len(stages)}"
        lines.append(
            f"{tab:<{width}}  {len(stages) - len(failed):>3}/{len(stages):<3} stages pass  {cells:>11,} cells  "
            f"worst rel err {_worst(stages):.2g}  {result}"
        )
        follows: dict[str, list[str]] = {}
        for s in failed:  # each failing stage in full, under its tab; those an exercise explains, grouped
            if s.note.startswith("follows from exercise"):
                follows.setdefault(s.note, []).append(s.stage)
            elif not s.note.startswith("exercise:"):  # exercises are reported above
                lines.append("    " + failure_text(s))
        for note, names in follows.items():
            shown = ", ".join(names) if len(names) <= 3 else f"{names[0]} ... {names[-1]} ({len(names)} stages)"
            lines.append(f"    {shown}: {note}")
    if report.weights:
        bad = [w for w in report.weights if not w["passed"]]
        equal = f"{len(report.weights) - len(bad)}/{len(report.weights)}"
        lines.append(f"{'weights':<{width}}  {equal} tabs equal the checkpoint")
        lines.extend("    weights: " + w["message"] for w in bad)
    return "\n".join(lines)


def format_table(report: CheckReport) -> str:
    lines = [f"{'stage':<24} {'tab':<12} {'cells':>9} {'max abs err':>12} {'max rel err':>12}  result"]
    for s in report.stages:
        lines.append(
            f"{s.stage:<24} {s.tab:<12} {s.cells:>9,} {s.max_abs:>12.3g} {s.max_rel:>12.3g}  "
            f"{'pass' if s.passed else 'FAIL'}"
        )
        if not s.passed:
            lines.append("    " + failure_text(s))
    for w in report.weights:
        if not w["passed"]:
            lines.append("weights: " + w["message"])
    return "\n".join(lines)


def verdict(report: CheckReport) -> str:
    n_fail = sum(not s.passed for s in report.stages)
    n_cells = sum(s.cells for s in report.stages)
    worst = max((s.max_rel for s in report.stages if math.isfinite(s.max_rel)), default=0.0)
    w = ""
    if report.weights:
        bad = sum(not x["passed"] for x in report.weights)
        w = f"; weights: {len(report.weights) - bad}/{len(report.weights)} tabs equal the checkpoint"
    if report.exercises:
        w += f"; exercises: {exercise_counts(report)}"
    if not report.stages and not report.weights:
        return f"FAIL: nothing was compared (no stage, no weight tab; engine {report.engine})"
    if report.passed:
        return (
            f"PASS: {len(report.stages)} stages, {n_cells:,} cells match the float64 reference "
            f"(worst relative error {worst:.2g} <= {report.rtol:g}, engine {report.engine}){w}"
        )
    return (
        f"FAIL: {n_fail} of {len(report.stages)} stages differ from the float64 reference "
        f"(rtol {report.rtol:g}, engine {report.engine}){w}"
    )
