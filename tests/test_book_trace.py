"""One trace: the writer caches the values of ``book.trace.book_trace`` and the checker proves against the
same function, so the checker's trace of a fresh book is the writer's, bit for bit."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from sheetgpt import check
from sheetgpt.book import trace, writer
from sheetgpt.book.tabs import steering
from sheetgpt.book.writer import build_workbook
from sheetgpt.checkpoint import default_model_dir, load_model
from sheetgpt.engine.reader import read_workbook
from sheetgpt.tokenizer import Tokenizer

PACKAGE = Path(__file__).resolve().parent.parent / "sheetgpt"

# name -> (model: None for the bundled one, else a random shape; prompt; build options)
KINDS = {
    "generate, typed, steered": (None, "Mike is quick. He moves", {"typed_prompt": True, "generate": 6, "steer": 1}),
    "token rows, logits all": (None, "Mike is quick. He moves", {"typed_prompt": False, "logits_all": True}),
    "exercise": (None, "Mike is quick. He moves", {"typed_prompt": False, "exercise": "softmax,gelu"}),
    "random micro, padded": ("micro", "the cat", {"context": 16}),
}


def _same(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b, equal_nan=a.dtype.kind == "f")


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_the_checkers_trace_of_a_fresh_book_is_the_writers_bit_for_bit(kind, tmp_path, model_dir):
    spec, prompt, options = KINDS[kind]
    options = dict(options)
    d = default_model_dir() if spec is None else model_dir(spec)
    model, tok = load_model(d), Tokenizer.from_dir(d)
    if options.pop("steer", None):
        options["steer"] = steering.from_cli((" slow", " quick", 1.0, 0), tok.display_ids(), model.config.n_layer)
    built = build_workbook(model, tok, prompt, tmp_path / "b.xlsx", **options)
    inputs = check.read_inputs(read_workbook(built.path))
    assert set(inputs) == set(built.inputs)  # the same tabs give inputs, written or read back
    got = trace.book_trace(inputs)
    assert sorted(got) == sorted(built.trace)
    differ = [name for name in built.trace if not _same(got[name], built.trace[name])]
    assert not differ, f"{kind}: the checker's trace differs from the writer's in {differ[:5]}"
    if "steer" in options:  # the steering is on, so the proof is not of an unsteered pass
        assert np.abs(built.trace["steer.add"]).max() > 0


def test_writer_and_checker_call_the_one_trace_function():
    assert writer.book_trace is trace.book_trace
    assert check.book_trace is trace.book_trace


def test_nothing_else_runs_the_books_forward_pass():
    """Only book/trace.py strings the reference's steps together for a book (cli_predict runs the
    forward pass for the predict command, not for a book)."""
    steps = {"greedy_fill", "sampling.fill", "with_selected_position", "with_generation_stages", "with_teaching_stages"}
    callers = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                name = getattr(node.func, "id", getattr(node.func, "attr", None))
                if name == "fill" and getattr(node.func, "value", None) is not None:
                    name = f"{getattr(node.func.value, 'id', '')}.fill"  # sampling.fill, the continuation
                if name in steps:
                    callers.add(str(path.relative_to(PACKAGE)))
    assert callers <= {"book/trace.py", "reference.py"}, callers
