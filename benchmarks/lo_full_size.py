"""LibreOffice on the full-size book: seconds to load it (with the forced-recalculation profile, so
the load includes the first full recalculation), to recalculate it again (calculateAll, as
Ctrl+Shift+F9), and the peak memory of the soffice process tree.

    python benchmarks/lo_full_size.py [--blocks N]

Builds (or reuses) benchmarks/full_size.py's GPT-2-small-shaped book (random seed-0 weights, a
16-token prompt, token rows) and reads back only the Guide tab, so the figures are LibreOffice's
own, not the cost of copying 128 M cells out through UNO. Memory: soffice.bin's peak RSS.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from full_size import BENCH, MemoryWatch, model_dir, prompt_of  # noqa: E402

from sheetgpt.book.writer import build_workbook  # noqa: E402
from sheetgpt.checkpoint import load_model  # noqa: E402
from sheetgpt.engine import libreoffice  # noqa: E402
from sheetgpt.tokenizer import Tokenizer  # noqa: E402


class SofficeMemory(MemoryWatch):
    """The peak RSS of every soffice.bin process, sampled every 0.5 s from /proc. (MemoryWatch's
    process-tree walk misses it: oosplash starts soffice.bin from a thread of its own.)"""

    def _run(self):
        page = os.sysconf("SC_PAGE_SIZE")
        while not self._stop.wait(0.5):
            total = 0
            for pid in filter(str.isdigit, os.listdir("/proc")):
                try:
                    with open(f"/proc/{pid}/comm") as f:
                        if f.read().strip() != "soffice.bin":
                            continue
                    with open(f"/proc/{pid}/statm") as f:
                        total += int(f.read().split()[1]) * page
                except OSError:
                    continue
            self.peak = max(self.peak, total)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--blocks", type=int, default=None, help="keep only the first N blocks (default: all 12)")
    args = ap.parse_args()
    d = model_dir()
    book = BENCH / f"lo-full-{args.blocks or 12}b.xlsx"
    if not book.exists():
        model = load_model(d)
        if args.blocks is not None:
            model = model.truncated(args.blocks)
        tokenizer = Tokenizer.from_dir(d)
        build_workbook(model, tokenizer, prompt_of(tokenizer, 16), book, typed_prompt=False)
    print(f"book: {book} ({book.stat().st_size / 1e9:.3f} GB)", flush=True)
    started = time.perf_counter()
    with SofficeMemory() as mem:
        values = libreoffice.recalculate(book, sheets=["Guide"], timeout=3600)
    t = values.timings
    print(
        f"LibreOffice: start {t.get('start', 0):.1f} s, load (with its recalculation) {t.get('load', 0):.1f} s, "
        f"calculateAll {t.get('calc', 0):.1f} s, read {t.get('read', 0):.1f} s; "
        f"{time.perf_counter() - started:.1f} s in all; soffice.bin peak RSS {mem.peak / 2**30:.2f} GiB"
    )


if __name__ == "__main__":
    main()
