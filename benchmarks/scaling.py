"""Build and check time, file size and peak memory against parameter count and prompt length.

Each point is a fresh ``benchmarks/full_size.py`` process (random seed-0 models with GPT-2
small's vocabulary, cached in output/bench/), so its memory is its own.
Usage: python benchmarks/scaling.py   (prints a Markdown table)
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

# (n_embd, blocks, tokens): parameter count at 16 tokens, then prompt length at GPT-2 small's size
POINTS = [(256, 4, 16), (512, 8, 16), (768, 6, 16), (768, 12, 16), (768, 12, 8), (768, 12, 32), (768, 12, 64)]


def run(width: int, blocks: int, tokens: int) -> dict:
    cmd = [
        sys.executable,
        os.path.join(os.path.dirname(__file__), "full_size.py"),
        "--skip-baseline",
        "--check",
        "--width",
        str(width),
        "--blocks",
        str(blocks),
        "--tokens",
        str(tokens),
    ]
    with open("/proc/loadavg") as f:
        load = f.read().split()[0]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    num = lambda pattern: float(re.search(pattern, out).group(1).replace(",", ""))  # noqa: E731
    return dict(
        width=width,
        blocks=blocks,
        tokens=tokens,
        load=load,
        params=int(num(r"parameters: ([\d,]+)")),
        cells=int(num(r"s wall, ([\d,]+) cells")),
        seconds=num(r"build: ([\d.]+) s wall"),
        gb=num(r"file: ([\d.]+) GB"),
        pss=num(r"([\d.]+) GiB summed PSS, "),
        check=num(r"check: ([\d.]+) s wall"),
        check_pss=num(r"check: .*peak ([\d.]+) GiB"),
        passed="PASS" in re.search(r"check: .*", out).group(0),
    )


def main() -> None:
    print(
        "| n_embd | blocks | tokens | parameters | cells | build s | build cells/s | build peak PSS GiB | file GB "
        "| check s | check peak PSS GiB | check | load at start |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for point in POINTS:
        r = run(*point)
        print(
            f"| {r['width']} | {r['blocks']} | {r['tokens']} | {r['params'] / 1e6:.1f} M | {r['cells'] / 1e6:.1f} M | "
            f"{r['seconds']:.1f} | {r['cells'] / r['seconds'] / 1e6:.2f} M | {r['pss']:.2f} | {r['gb']:.3f} | "
            f"{r['check']:.1f} | {r['check_pss']:.2f} | {'PASS' if r['passed'] else 'FAIL'} | {r['load']} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
