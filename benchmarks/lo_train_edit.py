"""LibreOffice after a learning-rate edit: seconds to recompute the bundled model's training book.

    python benchmarks/lo_train_edit.py

Builds `sheetgpt build --train` (the bundled model, "Mike is quick. He moves"), then in one soffice
session (tests/lo_batch.py: type_texts) types each learning rate into Train!B5 as a person does and
recalculates everything (calculateAll, as Ctrl+Shift+F9: a full recalculation, more than the edit
needs), and reads the target's probability after the step. Prints the load time, the recompute time
per edit, and checks each probability against the issue's figures. The goal (issue 26): at most 5 s per edit.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from sheetgpt import a1
from sheetgpt.book.tabs import train
from sheetgpt.book.writer import build_workbook
from sheetgpt.checkpoint import default_model_dir, load_model
from sheetgpt.cli_book import DEFAULT_PROMPT
from sheetgpt.tokenizer import Tokenizer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import lo_batch  # noqa: E402

EXPECTED = {"0.001": 0.617, "0.01": 0.796, "0.05": 0.995, "0.005": 0.705}  # the issue's, independently measured


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        d = default_model_dir()
        model = load_model(d)
        out = Path(tmp) / "train.xlsx"
        book = build_workbook(model, Tokenizer.from_dir(d), DEFAULT_PROMPT, out, tabs={"train": True})
        p_after = book.layout.region("nll.p_after")
        lrs = list(EXPECTED)
        got = lo_batch.type_texts(
            book.path,
            (train.NAME, a1.cell(train.LR_ROW, train.VALUE_COL)),
            lrs,
            [(train.NAME, a1.cell(p_after.top, p_after.left))],
            number_format="General",
        )
        probs = [r[0][0][0] for r in got.results]
        for lr, p in zip(lrs, probs):
            assert abs(p - EXPECTED[lr]) < 1e-3, (lr, p)
        size = book.path.stat().st_size / 1e6
        print(
            f"training book {size:.1f} MB: load {got.timings['load']:.1f} s, recompute per learning-rate edit "
            f"{got.timings['texts'] / len(lrs):.2f} s (mean of {len(lrs)}: {', '.join(lrs)}); "
            f"p after {', '.join(f'{p:.3f}' for p in probs)}, as the issue's"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
