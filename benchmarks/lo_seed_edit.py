"""LibreOffice after a seed edit: seconds to recompute the default book once a new seed is typed into Sample!B8.

    python benchmarks/lo_seed_edit.py [--seeds 5]

Builds the bundled model's default book (a generating book, 24 rows) with the Sample tab set to sample
(`sheetgpt build --sample`), and in one soffice session (tests/lo_batch.py: type_texts) types each seed into
Sample!B8 as a person does and recalculates everything (calculateAll, as Ctrl+Shift+F9); prints the load
time and the recompute time per seed, and checks each continuation equals `sheetgpt predict --sample`'s.
The goal (issue 25): under 2 s per edit.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from sheetgpt import a1, sampling
from sheetgpt.book.tabs import prompt as prompt_tab
from sheetgpt.book.tabs import sample as sample_tab
from sheetgpt.book.writer import build_workbook
from sheetgpt.checkpoint import default_model_dir, load_model
from sheetgpt.cli_book import DEFAULT_GENERATE_ROWS, DEFAULT_PROMPT
from sheetgpt.cli_predict import continue_ids
from sheetgpt.reference import gpt2
from sheetgpt.tokenizer import Tokenizer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import lo_batch  # noqa: E402  (tests/lo_batch.py: one soffice session for many typed texts)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    args = ap.parse_args()
    d = default_model_dir()
    model, tok = load_model(d), Tokenizer.from_dir(d)
    ids = tok.encode(DEFAULT_PROMPT)
    generate = DEFAULT_GENERATE_ROWS - len(ids)
    with tempfile.TemporaryDirectory() as tmp:
        s = sampling.Settings("sample", 1.0, 0, 1.0, 0)
        book = build_workbook(model, tok, DEFAULT_PROMPT, Path(tmp) / "b.xlsx", generate=generate, sample_settings=s)
        T = book.layout.T
        rng = a1.span(prompt_tab.TOP, prompt_tab.ID_COL, prompt_tab.TOP + T - 1, prompt_tab.ID_COL)
        seeds = [str(7 * k + 1) for k in range(args.seeds)]
        cell = (sample_tab.NAME, a1.cell(sample_tab.SEED_ROW, sample_tab.VALUE_COL))
        typed = lo_batch.type_texts(
            book.path, cell, seeds, [(prompt_tab.NAME, rng)], number_format="General", timeout=3600
        )
        logits = gpt2(ids, model.params, model.config)["logits"][-1]
        for seed, (rows,) in zip(seeds, typed.results):
            want, _ = continue_ids(ids, model, logits, generate, sampling.Settings("sample", 1.0, 0, 1.0, int(seed)))
            got = [int(r[0]) for r in rows][len(ids) :]
            assert got == want, (seed, got, want)
        t = typed.timings
        size = book.path.stat().st_size / 1e6
        print(f"| default book, --sample | {T} | {size:.1f} | {t['load']:.1f} | {t['texts'] / len(seeds):.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
