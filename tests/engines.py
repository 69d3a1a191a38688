"""The spreadsheet apps some tests run, in one place: each one's pytest mark and how to tell it is installed.

A test that runs LibreOffice, Gnumeric or IronCalc carries its mark (``@pytest.mark.libreoffice``,
``@pytest.mark.gnumeric``, ``@pytest.mark.ironcalc``; as a parameter:
``pytest.param("gnumeric", marks=pytest.mark.gnumeric)``) and nothing else: conftest.py registers the
marks, skips a marked test where the app is missing (by the engine module's own ``available()``),
fails the run instead where CI requires the app (``SHEETGPT_REQUIRE_<ENGINE>=1``), and marks the
test ``slow``. The apps are the engine registry's backends that are not in-process.
"""

from __future__ import annotations

from collections.abc import Callable

from sheetgpt.engine.registry import BACKENDS

IN_PROCESS = {"fast", "formulas"}  # always there: no mark, never skipped

# mark name (= engine name) -> (is it installed?, what it needs, for the skip reason); from the registry
EXTERNAL: dict[str, tuple[Callable[[], bool], str]] = {
    entry.name: (entry.load().available, entry.load().MISSING) for entry in BACKENDS if entry.name not in IN_PROCESS
}


def required_by(name: str) -> str:
    """The environment variable that, set to 1, turns a missing ``name`` into a failed run (CI)."""
    return f"SHEETGPT_REQUIRE_{name.upper()}"


# what an app's process looks like on a command line -> the mark a test that starts it must carry
PROGRAMS = {
    "soffice": "libreoffice",
    "soffice.bin": "libreoffice",
    "libreoffice": "libreoffice",
    "lo_bridge.py": "libreoffice",
    "ssconvert": "gnumeric",
}


def engine_started_by(args) -> str | None:
    """The mark of the app a command line runs (its program, LibreOffice's UNO bridge script, or
    ``sheetgpt check --engine NAME``), or None."""
    words = [str(a) for a in ([args] if isinstance(args, (str, bytes)) else args or [])]
    for i, word in enumerate(words):
        name = PROGRAMS.get(word.rsplit("/", 1)[-1])
        if name is not None:
            return name
        if word == "--engine" and i + 1 < len(words) and words[i + 1] in EXTERNAL:
            return words[i + 1]
    return None
