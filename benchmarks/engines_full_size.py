"""`sheetgpt check --engine E` of one full-size book, for every engine of the registry: one table.

Builds (or reuses) the GPT-2-small-shaped book of ``benchmarks/full_size.py`` (random seed-0 weights,
16 token rows), then runs ``sheetgpt check --engine E BOOK`` for each engine in a process of its own,
one after the other, and prints per engine: wall time, CPU time (user + system of the whole process
tree, the engine's own processes included), peak summed PSS, and the check's last line (its verdict).

An engine that would not fit is stopped, not allowed to push the machine into swap or the OOM killer:
``--memory-cap`` (GiB of summed PSS of the check's process tree: the summed RSS counts the pages forked
reader processes share with their parent once per process, and stopped LibreOffice at 19.5 GiB "RSS"
with 11.9 GiB of PSS) and ``--timeout`` (seconds). A stopped
engine's row says which limit it reached, at which memory and after how long.

Usage: python benchmarks/engines_full_size.py [--engines fast,ironcalc,libreoffice,gnumeric]
       [--book PATH] [--memory-cap 16] [--timeout 3600]
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from full_size import BENCH, MemoryWatch, model_dir, prompt_of  # noqa: E402


def build_book() -> Path:
    from sheetgpt.book.writer import build_workbook
    from sheetgpt.checkpoint import load_model
    from sheetgpt.tokenizer import Tokenizer

    d = model_dir()
    out = BENCH / "gpt2-d768-12b-16t-0g.xlsx"
    if not out.exists():
        tokenizer = Tokenizer.from_dir(d)
        build_workbook(load_model(d), tokenizer, prompt_of(tokenizer, 16), out, force=True)
    return out


def run(engine: str, book: Path, cap_gib: float, timeout: float) -> dict:
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "sheetgpt", "check", "--engine", engine, str(book)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,  # the whole tree (soffice, ssconvert) is stopped at once if it must be
    )
    stopped = ""
    next_note = 60.0
    with MemoryWatch(proc.pid) as mem:
        while True:
            time.sleep(0.5)
            if proc.poll() is not None:
                break
            if time.perf_counter() - started > next_note:  # how the memory grows, on stderr
                next_note += 60.0
                print(
                    f"  {engine}: {time.perf_counter() - started:.0f} s, peak summed RSS {mem.peak / 2**30:.2f} GiB,"
                    f" largest process {mem.largest()}",
                    file=sys.stderr,
                    flush=True,
                )
            if mem.peak_pss > cap_gib * 2**30:  # PSS: forked readers' shared pages counted once (RSS overcounts)
                stopped = f"stopped at the {cap_gib:g} GiB memory cap"
            elif time.perf_counter() - started > timeout:
                stopped = f"stopped at the {timeout:.0f} s timeout"
            if stopped:  # the whole tree: an engine may start its app in a session of its own (ssconvert)
                tree = [proc.pid]
                for p in tree:
                    tree.extend(mem._children(p))
                for p in reversed(tree):
                    try:
                        os.kill(p, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                proc.wait()
                break
    seconds = time.perf_counter() - started
    out = proc.stdout.read()
    # The CPU time of the process tree: RUSAGE_CHILDREN grows by each reaped child's whole tree.
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    verdict = stopped or (out.strip().splitlines()[-1] if out.strip() else f"exit {proc.returncode}")
    return {
        "engine": engine,
        "wall": seconds,
        "cpu_total": cpu.ru_utime + cpu.ru_stime,
        "pss": mem.peak_pss,
        "rss": mem.peak,
        "verdict": verdict,
        "largest": mem.largest(),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--engines", default="fast,ironcalc,libreoffice,gnumeric")
    ap.add_argument("--book", type=Path, default=None)
    ap.add_argument("--memory-cap", type=float, default=16.0, help="GiB of summed PSS at which an engine is stopped")
    ap.add_argument("--timeout", type=float, default=3600.0)
    args = ap.parse_args()
    book = args.book or build_book()
    print(f"book: {book} ({book.stat().st_size / 1e9:.3f} GB); load average {os.getloadavg()[0]:.1f}", flush=True)
    print("| engine | wall | CPU (process tree) | peak summed PSS | peak summed RSS | largest process | result |")
    print("|---|---|---|---|---|---|---|", flush=True)
    cpu_before = 0.0
    for engine in args.engines.split(","):
        row = run(engine, book, args.memory_cap, args.timeout)
        cpu = row["cpu_total"] - cpu_before
        cpu_before = row["cpu_total"]
        print(
            f"| {engine} | {row['wall']:.0f} s | {cpu:.0f} s | {row['pss'] / 2**30:.2f} GiB | "
            f"{row['rss'] / 2**30:.2f} GiB | {row['largest']} | {row['verdict']} |  (load {os.getloadavg()[0]:.1f})",
            flush=True,
        )


if __name__ == "__main__":
    sys.exit(main())
