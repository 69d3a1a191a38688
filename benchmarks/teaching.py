"""Teaching-size books: `sheetgpt build` and `sheetgpt check` wall times, as a user runs them.

    python benchmarks/teaching.py [--repeat 5]

Each variant is built and then checked in fresh processes (Python's start and imports
included), ``--repeat`` times; prints the median and the slowest of each, and the book's
size. The goal (issue 5): under 2 s each. Most of a typed-prompt book's formulas are its BPE
tab (24,516 cells for 16 rows, 44,966 for 32: merge rounds that read the round before);
`--no-typed-prompt` books have none.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sheetgpt.random_model import SHAPES, make_random_model

# (label, extra `sheetgpt build` arguments); "{micro}" is a random micro-shaped checkpoint
VARIANTS = [
    ("bundled model, defaults (typed prompt, 24 rows: 6 prompt + 18 generated, 2 blocks)", []),
    ("bundled model, --generate 0 (typed prompt, 16 rows, no generation)", ["--generate", "0"]),
    ("bundled model, --generate 42 (48 rows: its whole context)", ["--generate", "42"]),
    ("bundled model, token rows (--no-typed-prompt; 24 rows, generating)", ["--no-typed-prompt"]),
    (
        "bundled model, --blocks 1 --context 8 --no-typed-prompt",
        ["--blocks", "1", "--context", "8", "--no-typed-prompt"],
    ),
    ("bundled model, 32 typed-prompt rows (--context 32)", ["--context", "32"]),
    ("random micro model (tests' shape), 8 tokens", ["--model", "{micro}", "--prompt", "Hello world"]),
    (
        "random 'wide' model (3 blocks, n_embd 96, vocab 1021), 16 typed-prompt rows",
        ["--model", "{wide}", "--prompt", "Hello world"],
    ),
    (
        "the same, 64 typed-prompt rows (its n_positions; 4x the bundled book's formulas)",
        ["--model", "{wide}", "--prompt", "Hello world", "--context", "64"],
    ),
]


def timed(args: list[str]) -> float:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "sheetgpt", *args], capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"sheetgpt {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()[-400:]}")
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--only", type=int, nargs="*", default=None, help="run only these variants (0-based)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        micro, wide = Path(tmp) / "micro", Path(tmp) / "wide"
        make_random_model(micro, SHAPES["micro"], 0)
        make_random_model(wide, SHAPES["wide"], 0)
        print("| book | size MB | build s, median (slowest) | check s, median (slowest) |")
        print("|---|---|---|---|")
        for k, (label, extra) in enumerate(VARIANTS):
            if args.only is not None and k not in args.only:
                continue
            book = Path(tmp) / "book.xlsx"
            build_args = ["build", *[a.format(micro=micro, wide=wide) for a in extra], "-o", str(book), "--force"]
            builds, checks = [], []
            for _ in range(args.repeat):
                builds.append(timed(build_args))
                checks.append(timed(["check", str(book)]))
            print(
                f"| {label} | {book.stat().st_size / 1e6:.2f} | {statistics.median(builds):.2f} ({max(builds):.2f}) | "
                f"{statistics.median(checks):.2f} ({max(checks):.2f}) |",
                flush=True,
            )


if __name__ == "__main__":
    main()
