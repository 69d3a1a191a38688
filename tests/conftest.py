"""Shared fixtures: random GPT-2-shaped models (made on the fly, seeded) and books built from them."""

from __future__ import annotations

import os
import sys

import pytest
from engines import EXTERNAL, engine_started_by, required_by

from sheetgpt.book.writer import build_workbook
from sheetgpt.checkpoint import load_model
from sheetgpt.random_model import SHAPES, make_random_model
from sheetgpt.tokenizer import Tokenizer


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    """model_dir(shape, seed=0, **kwargs) -> a random model directory (cached per session)."""
    cache = {}

    def make(shape: str, seed: int = 0, **kwargs):
        key = (shape, seed, tuple(sorted(kwargs.items())))
        if key not in cache:
            cache[key] = make_random_model(tmp_path_factory.mktemp(f"model-{shape}"), SHAPES[shape], seed, **kwargs)
        return cache[key]

    return make


@pytest.fixture(scope="session")
def book(tmp_path_factory, model_dir):
    """book(shape, prompt, **build_kwargs) -> BuildResult of a freshly built workbook (cached per session)."""
    cache = {}

    def make(shape: str, prompt: str = "the cat sat", seed: int = 0, **kwargs):
        key = (shape, prompt, seed, repr(sorted(kwargs.items())))  # repr: values may be dicts (tabs=...)
        if key not in cache:
            d = model_dir(shape, seed)
            model = load_model(d)
            if "blocks" in kwargs:
                model = model.truncated(kwargs.pop("blocks"))
            out = tmp_path_factory.mktemp("books") / f"{shape}.xlsx"
            cache[key] = build_workbook(model, Tokenizer.from_dir(d), prompt, out, **kwargs)
        return cache[key]

    return make


def pytest_configure(config):
    for name, (_, needs) in EXTERNAL.items():
        text = f"{name}: runs {name}; skipped where it is missing ({needs}; tests/engines.py)"
        config.addinivalue_line("markers", text)


@pytest.hookimpl(tryfirst=True)  # before -m deselects: the slow mark added here counts
def pytest_collection_modifyitems(config, items):
    """Each test marked with an app (tests/engines.py) is slow, and skipped where the app is missing;
    in CI (SHEETGPT_REQUIRE_LIBREOFFICE=1, SHEETGPT_REQUIRE_GNUMERIC=1) a missing app fails the run."""
    for name, (available, needs) in EXTERNAL.items():
        marked = [item for item in items if item.get_closest_marker(name)]
        for item in marked:
            item.add_marker(pytest.mark.slow)
        required = os.environ.get(required_by(name)) == "1"
        if (marked or required) and not available():
            if required:
                raise pytest.UsageError(f"{required_by(name)}=1 but {needs}")
            for item in marked:
                item.add_marker(pytest.mark.skip(reason=needs))


_MARKS: list[set[str]] = []  # the app marks of the test running now (empty between tests)


def _refuse_unmarked_apps(event: str, args: tuple) -> None:
    """A test that starts LibreOffice or Gnumeric without carrying its mark fails at once: the fast
    loop (-m "not slow") must never start one."""
    if event == "subprocess.Popen" and _MARKS:
        name = engine_started_by(args[1])
        if name is not None and name not in _MARKS[-1]:
            raise RuntimeError(f"this test runs {name} but is not marked @pytest.mark.{name} (tests/engines.py)")


sys.addaudithook(_refuse_unmarked_apps)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    _MARKS.append({name for name in EXTERNAL if item.get_closest_marker(name)})
    try:
        yield
    finally:
        _MARKS.pop()
