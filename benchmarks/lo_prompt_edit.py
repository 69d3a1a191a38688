"""LibreOffice after a prompt edit: seconds to recompute a typed-prompt book once a new text is typed into Prompt!B4.

    python benchmarks/lo_prompt_edit.py [--texts 5] [--full-size-blocks 2]

Builds the bundled model's default book (a generating book, as `sheetgpt build` writes it) and, with
--full-size-blocks N, a GPT-2-small-shaped book (random weights, benchmarks/full_size.py's model) cut to
N blocks, 16 token rows of which 8 generated. One soffice session per book (tests/lo_batch.py: recalculate_texts)
types each text into Prompt!B4 and recalculates everything (calculateAll, as Ctrl+Shift+F9); prints the
load time and the recompute time per text, and checks the continuation equals the reference's.
The goal (issue 16): under 10 s per edit for the default book.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from sheetgpt import a1
from sheetgpt.book.tabs import prompt as prompt_tab
from sheetgpt.book.writer import build_workbook
from sheetgpt.checkpoint import default_model_dir, load_model
from sheetgpt.cli_book import DEFAULT_GENERATE_ROWS, DEFAULT_PROMPT
from sheetgpt.reference import greedy_fill
from sheetgpt.tokenizer import Tokenizer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import lo_batch  # noqa: E402  (tests/lo_batch.py: one soffice session for many typed texts)

TEXTS = ["The cat is slow. It walks", "Anna is happy. She", "Tom is quiet. He speaks", "The dog runs", "He eats"]


def measure(label: str, model, tok, prompt: str, rows: int, generate: int, n_texts: int, tmp: Path) -> None:
    book = build_workbook(model, tok, prompt, tmp / "book.xlsx", typed_prompt=True, generate=generate, force=True)
    T = book.layout.T
    ids_range = a1.span(prompt_tab.TOP, prompt_tab.ID_COL, prompt_tab.TOP + T - 1, prompt_tab.ID_COL)
    texts = (TEXTS * n_texts)[:n_texts]
    cell = (prompt_tab.NAME, a1.cell(*prompt_tab.TYPED_TEXT))
    results, timings = lo_batch.recalculate_texts(book.path, cell, texts, [(prompt_tab.NAME, ids_range)], timeout=3600)
    for text, (ids_rows,) in zip(texts, results):
        ids = tok.encode(text)
        want = greedy_fill(ids + [0] * (T - len(ids)), [t >= len(ids) for t in range(T)], model.params, model.config)
        got = [int(r[0]) for r in ids_rows]
        assert got == want, (text, got, want)
    size = book.path.stat().st_size / 1e6
    print(
        f"| {label} | {T} ({generate} generated) | {size:.1f} | {timings['load']:.1f} | "
        f"{timings['texts'] / len(texts):.1f} | continuations equal the reference's for {len(texts)} texts |",
        flush=True,
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--texts", type=int, default=5)
    ap.add_argument("--full-size-blocks", type=int, default=None)
    args = ap.parse_args()
    print("| book | token rows | MB | load s | recompute s per edit (mean) | |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        d = default_model_dir()
        model, tok = load_model(d), Tokenizer.from_dir(d)
        n = len(tok.encode(DEFAULT_PROMPT))
        rows = DEFAULT_GENERATE_ROWS
        measure("bundled model, default book", model, tok, DEFAULT_PROMPT, rows, rows - n, args.texts, Path(tmp))
        if args.full_size_blocks:
            sys.path.insert(0, str(Path(__file__).parent))
            from full_size import model_dir, prompt_of

            d = model_dir()
            model = load_model(d).truncated(args.full_size_blocks)
            tok = Tokenizer.from_dir(d)
            label = f"GPT-2-small-shaped, --blocks {args.full_size_blocks}"
            measure(label, model, tok, prompt_of(tok, 8), 16, 8, args.texts, Path(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(main())
