"""What a passing check report proved: each region the writer laid out, compared over all its cells."""

from __future__ import annotations

from sheetgpt.check import CACHED


def assert_proves_every_region(report, layout, cached: bool = True) -> None:
    """``report`` passed, and compared exactly the regions of ``layout`` (the writer's layout, from
    its BuildResult, not the checker's), each over rows x columns cells; ``cached``: also the values
    the file stores, one stage per tab that holds regions."""
    assert report.passed, [s for s in report.stages if not s.passed][:1]
    recomputed = [s for s in report.stages if s.stage != CACHED]
    assert sorted(s.stage for s in recomputed) == sorted(layout.regions)
    for s in recomputed:
        region = layout.regions[s.stage]
        assert (s.tab, s.cells) == (region.tab, region.rows * len(region.columns())), s.stage
    tabs = sorted(s.tab for s in report.stages if s.stage == CACHED)
    assert tabs == (sorted(t.name for t in layout.tabs if t.regions) if cached else [])
