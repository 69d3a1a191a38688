"""A guard: books built from fixed inputs are byte-identical to the committed hashes, part by part.

The hashes in tests/fixtures/book_hashes.json were recorded before the code was reorganised
(issue 14) and must not move when code moves. A change that means to alter the books updates
them in the same commit and says why:

    SHEETGPT_UPDATE_HASHES=1 python -m pytest -q tests/test_byte_identity.py

docProps/core.xml holds the file's creation time and is left out; the Guide's "built" cell is
fixed through SOURCE_DATE_EPOCH.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from pathlib import Path

import pytest

from sheetgpt.book.writer import build_workbook
from sheetgpt.checkpoint import load_model
from sheetgpt.random_model import SHAPES, make_random_model
from sheetgpt.tokenizer import Tokenizer

HASHES = Path(__file__).parent / "fixtures" / "book_hashes.json"
FIXTURES = Path(__file__).parent / "fixtures" / "models"
SKIPPED = {"docProps/core.xml"}
EPOCH = "1700000000"

# name -> (model: None for the bundled one, a fixture folder, or a random shape; prompt; build options)
BOOKS = {
    # the CLI's default book: 24 token rows, the prompt's 6 and 18 generated (issue 16)
    "default": (None, "Mike is quick. He moves", {"typed_prompt": None, "generate": 18}),
    "no-typed-prompt": (None, "Mike is quick. He moves", {"typed_prompt": False}),
    "micro": ("random:micro", "the cat sat on", {}),
    "odd": ("fixture:odd", "a quick test", {"context": 11, "logits_all": True}),
}


def _model_dir(spec: str | None, tmp_path: Path) -> Path | None:
    if spec is None:
        return None
    kind, name = spec.split(":")
    if kind == "fixture":
        return FIXTURES / name
    return make_random_model(tmp_path / name, SHAPES[name], 0)


def part_hashes(path: Path) -> dict[str, str]:
    with zipfile.ZipFile(path) as zf:
        return {n: hashlib.sha256(zf.read(n)).hexdigest() for n in sorted(zf.namelist()) if n not in SKIPPED}


@pytest.mark.parametrize("name", sorted(BOOKS))
def test_every_part_of_the_book_hashes_as_recorded(name, tmp_path, monkeypatch):
    spec, prompt, options = BOOKS[name]
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    d = _model_dir(spec, tmp_path)
    model = load_model(d)
    result = build_workbook(
        model,
        Tokenizer.from_dir(model.path),
        prompt,
        tmp_path / f"{name}.xlsx",
        source=f"fixed source for {name}",
        **options,
    )
    got = part_hashes(result.path)
    recorded = json.loads(HASHES.read_text()) if HASHES.exists() else {}
    if os.environ.get("SHEETGPT_UPDATE_HASHES") == "1":
        recorded[name] = got
        HASHES.write_text(json.dumps(recorded, indent=1, sort_keys=True) + "\n")
        pytest.skip("hashes updated")
    assert name in recorded, f"no hashes recorded for {name}: run with SHEETGPT_UPDATE_HASHES=1"
    changed = sorted(n for n in set(got) | set(recorded[name]) if got.get(n) != recorded[name].get(n))
    assert not changed, f"{name}: these parts changed: {changed}"
