"""Build a GPT-2-small-shaped book (random weights, 16-token prompt): wall time, peak memory, size.

Also, in the same run, the baseline: xlsxwriter cell by cell (write_row) on one weight tab;
with --check, then `sheetgpt check` on the book (wall time and peak memory of its process tree).
Usage: python benchmarks/full_size.py [--blocks N] [--tokens T] [--generate G] [--width D] [--skip-baseline] [--check]
(--generate G: the book's T rows are a prompt of T - G tokens and G rows the formulas fill with its
greedy continuation, as `sheetgpt build --generate G`.)
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from sheetgpt.book.writer import build_workbook
from sheetgpt.book.xlsx import deflate
from sheetgpt.checkpoint import load_model
from sheetgpt.random_model import SHAPES, make_random_model
from sheetgpt.tokenizer import Tokenizer
from sheetgpt.weight_text import stored_values

BENCH = Path("output/bench")


def model_dir(width: int = 768, blocks: int = 12) -> Path:
    """A random seed-0 model of GPT-2 small's vocabulary and positions (cached): n_embd ``width``
    (heads of 64), ``blocks`` blocks; the defaults are GPT-2 small itself."""
    if (width, blocks) == (768, 12):
        d, config = BENCH / "gpt2-small-random", SHAPES["gpt2-small"]
    else:
        d = BENCH / f"random-d{width}-L{blocks}"
        config = dataclasses.replace(SHAPES["gpt2-small"], n_embd=width, n_layer=blocks, n_head=width // 64)
    if not (d / "model.safetensors").exists():
        make_random_model(d, config, seed=0)
    return d


def prompt_of(tokenizer: Tokenizer, n: int) -> str:
    """A text of exactly n tokens (decoded from the first n tokens of a longer text)."""
    ids = tokenizer.encode("Mike is quick. He moves fast and the cat sat on the mat while it rained " * 8)[:n]
    text = tokenizer.decode(ids)
    assert len(tokenizer.encode(text)) == n, "prompt does not re-encode to n tokens"
    return text


def rss(pid: int) -> int:
    """Resident bytes of process pid now (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


class MemoryWatch:
    """Peaks of the summed RSS and the summed PSS (proportional set size: a page shared by n
    processes counts 1/n in each, so forked workers' shared pages are counted once) of a
    process (default: this one) and its descendants, sampled every 50 ms."""

    def __init__(self, pid: int | None = None):
        self.pid = pid or os.getpid()
        self.peak = 0
        self.peak_pss = 0
        self.peak_by_name: dict[str, int] = {}  # the largest RSS any one process of each command name reached
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _rss(self, pid: int) -> int:
        return rss(pid)

    def largest(self) -> str:
        """The process (by command name) whose RSS peaked highest, and that peak."""
        name, peak = max(self.peak_by_name.items(), key=lambda kv: kv[1], default=("-", 0))
        return f"{name} {peak / 2**30:.2f} GiB"

    def _pss(self, pid: int) -> int:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                return next(int(line.split()[1]) * 1024 for line in f if line.startswith("Pss:"))
        except (OSError, StopIteration):
            return 0

    def _name(self, pid: int) -> str:
        try:
            with open(f"/proc/{pid}/comm") as f:
                return f.read().strip()
        except OSError:
            return "?"

    def _children(self, pid: int) -> list[int]:
        """Children started by any thread of pid (each thread's own list: /proc/pid/task/tid/children)."""
        kids = []
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            return []
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/children") as f:
                    kids.extend(int(c) for c in f.read().split())
            except OSError:
                pass
        return kids

    def _run(self):
        while not self._stop.wait(0.05):
            pids = [self.pid]
            for p in pids:  # grows as it goes: descendants of any depth
                pids.extend(self._children(p))
            rss = {p: self._rss(p) for p in pids}
            self.peak = max(self.peak, sum(rss.values()))
            for p, r in rss.items():
                name = self._name(p)
                self.peak_by_name[name] = max(self.peak_by_name.get(name, 0), r)
            self.peak_pss = max(self.peak_pss, sum(self._pss(p) for p in pids))

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()


def baseline_one_tab(values: np.ndarray, path: Path) -> tuple[float, int]:
    import xlsxwriter

    started = time.perf_counter()
    wb = xlsxwriter.Workbook(str(path))
    ws = wb.add_worksheet("h.0.mlp.c_fc.w")
    for r, row in enumerate(values.tolist()):
        ws.write_row(r, 0, row)
    wb.close()
    return time.perf_counter() - started, values.size


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--blocks", type=int, default=None)
    ap.add_argument("--tokens", type=int, default=16, help="token rows of the book")
    ap.add_argument("--generate", type=int, default=0, help="of those rows, how many are generated (greedy)")
    ap.add_argument("--width", type=int, default=768, help="n_embd of the random model (heads of 64)")
    ap.add_argument("--skip-baseline", action="store_true")
    ap.add_argument(
        "--check", action="store_true", help="then run `sheetgpt check` on the book, in a process of its own"
    )
    args = ap.parse_args()
    d = model_dir(args.width, 12 if args.width == 768 else args.blocks or 12)
    print(f"nproc {os.cpu_count()}, compressor {deflate.COMPRESSOR} level {deflate.LEVEL}", flush=True)
    t0 = time.perf_counter()
    model = load_model(d)
    if args.blocks is not None:
        model = model.truncated(args.blocks)
    tokenizer = Tokenizer.from_dir(d)
    load_s = time.perf_counter() - t0
    out = BENCH / f"gpt2-d{args.width}-{args.blocks or 12}b-{args.tokens}t-{args.generate}g.xlsx"
    prompt = prompt_of(tokenizer, args.tokens - args.generate)
    with MemoryWatch() as mem:
        result = build_workbook(model, tokenizer, prompt, out, force=True, generate=args.generate)
    size = out.stat().st_size
    self_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    child_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
    print(f"parameters: {sum(v.size for v in model.flat.values()):,}")
    print(f"load model: {load_s:.1f} s")
    print(f"build: {result.seconds:.1f} s wall, {result.cells:,} cells, {result.cells / result.seconds:,.0f} cells/s")
    print(
        f"peak memory: {mem.peak_pss / 2**30:.2f} GiB summed PSS, {mem.peak / 2**30:.2f} GiB summed RSS (sampled); "
        f"max RSS self {self_rss:.2f} GiB, largest child {child_rss:.2f} GiB"
    )
    print(f"file: {size / 1e9:.3f} GB ({out})")
    if not args.skip_baseline:
        values = stored_values(model.flat["h.0.mlp.c_fc.w"])
        secs, n = baseline_one_tab(values, BENCH / "baseline-one-tab.xlsx")
        weight_cells = sum(v.size for v in model.flat.values())
        print(
            f"baseline xlsxwriter write_row, one 768x3072 tab: {secs:.1f} s, {n / secs:,.0f} cells/s; "
            f"whole book's {weight_cells:,} weights at that rate: {weight_cells / (n / secs):.0f} s"
        )
        print(f"speed-up (book cells/s over baseline cells/s): {(result.cells / result.seconds) / (n / secs):.1f}x")
    if args.check:
        del model, result
        check_book(out)


def check_book(book: Path) -> None:
    """`sheetgpt check BOOK` as a user runs it: wall time (Python's start included) and the
    peak summed PSS of its process tree (the check and its reader workers)."""
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "sheetgpt", "check", str(book)], stdout=subprocess.PIPE, text=True)
    with MemoryWatch(proc.pid) as mem:
        out, _ = proc.communicate()
    seconds = time.perf_counter() - started
    verdict = out.strip().splitlines()[-1] if out.strip() else f"exit {proc.returncode}"
    print(f"check: {seconds:.1f} s wall, peak {mem.peak_pss / 2**30:.2f} GiB summed PSS; {verdict}")


if __name__ == "__main__":
    sys.exit(main())
