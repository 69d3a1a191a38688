"""Shared fixtures: random GPT-2-shaped models (made on the fly, seeded) and books built from them."""

from __future__ import annotations

import pytest

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
        key = (shape, prompt, seed, tuple(sorted(kwargs.items())))
        if key not in cache:
            d = model_dir(shape, seed)
            model = load_model(d)
            if "blocks" in kwargs:
                model = model.truncated(kwargs.pop("blocks"))
            out = tmp_path_factory.mktemp("books") / f"{shape}.xlsx"
            cache[key] = build_workbook(model, Tokenizer.from_dir(d), prompt, out, **kwargs)
        return cache[key]

    return make


def pytest_collection_modifyitems(config, items):
    """In CI (SHEETGPT_REQUIRE_LIBREOFFICE=1, SHEETGPT_REQUIRE_GNUMERIC=1, SHEETGPT_REQUIRE_IRONCALC=1)
    a missing engine fails the run instead of skipping: every engine of the registry but the
    in-process ones can be required so."""
    import os

    from sheetgpt.engine.registry import BACKENDS

    for entry in BACKENDS:
        if os.environ.get(f"SHEETGPT_REQUIRE_{entry.name.upper()}") == "1":
            module = entry.load()
            if not module.available():
                raise pytest.UsageError(f"SHEETGPT_REQUIRE_{entry.name.upper()}=1 but {module.MISSING}")
