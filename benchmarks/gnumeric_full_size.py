"""Gnumeric's ``ssconvert --recalc`` alone on the full-size book: does it fit in this machine's memory?

``sheetgpt check --engine gnumeric`` runs ``ssconvert --recalc in.xlsx out.xlsx`` beside its own reader
(``benchmarks/engines_full_size.py`` measures that). This runs ssconvert by itself, with nothing else of
ours in memory, and prints every 30 s its resident memory and how much of the book's zip it has touched
so far (the resident part of its read-only mapping of the file: Gnumeric maps the .xlsx and reads its
members in turn), then the end: finished (with the wall time and peak RSS), or stopped at ``--memory-cap``
GiB of RSS, before the machine's OOM killer would act.

Usage: python benchmarks/gnumeric_full_size.py [--book PATH] [--memory-cap 21.5] [--timeout 3600]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from engines_full_size import build_book  # noqa: E402
from full_size import rss as _rss  # noqa: E402


def _mapped_resident(pid: int, name: str) -> int:
    """Bytes of ``name``'s mapping resident in the process (what it has read of the file, at least)."""
    total, inside = 0, False
    try:
        with open(f"/proc/{pid}/smaps") as f:
            for line in f:
                if "-" in line.split(" ", 1)[0]:  # a mapping's header line
                    inside = line.rstrip().endswith(name)
                elif inside and line.startswith("Rss:"):
                    total += int(line.split()[1]) * 1024
    except OSError:
        pass
    return total


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--book", type=Path, default=None)
    ap.add_argument("--memory-cap", type=float, default=21.5, help="GiB of ssconvert's RSS at which it is stopped")
    ap.add_argument("--timeout", type=float, default=3600.0)
    args = ap.parse_args()
    book = (args.book or build_book()).resolve()
    exe = shutil.which("ssconvert")
    if exe is None:
        raise SystemExit("ssconvert is not installed: apt-get install gnumeric")
    size = book.stat().st_size
    print(f"book: {book} ({size / 1e9:.3f} GB); load average {os.getloadavg()[0]:.1f}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.xlsx"
        started, peak, stopped = time.perf_counter(), 0, ""
        proc = subprocess.Popen(
            [exe, "--recalc", str(book), str(out)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
            env={**os.environ, "HOME": tmp},
        )
        note = 30.0
        while proc.poll() is None:
            time.sleep(0.5)
            rss = _rss(proc.pid)
            peak = max(peak, rss)
            elapsed = time.perf_counter() - started
            if elapsed > note:
                note += 30.0
                read = _mapped_resident(proc.pid, book.name)
                print(
                    f"  {elapsed:5.0f} s: ssconvert {rss / 2**30:5.2f} GiB resident; "
                    f"{read / 1e9:.3f} of the book's {size / 1e9:.3f} GB touched",
                    flush=True,
                )
            if rss > args.memory_cap * 2**30:
                stopped = f"stopped at the {args.memory_cap:g} GiB cap"
            elif elapsed > args.timeout:
                stopped = f"stopped at the {args.timeout:.0f} s timeout"
            if stopped:
                read = _mapped_resident(proc.pid, book.name)
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                break
        elapsed = time.perf_counter() - started
        if stopped:
            verdict = f"{stopped} after {elapsed:.0f} s, {read / 1e9:.3f} of {size / 1e9:.3f} GB of the book touched"
        else:
            verdict = f"exit {proc.returncode} after {elapsed:.0f} s" + (
                f", wrote {out.stat().st_size / 1e9:.3f} GB" if out.exists() else ""
            )
        print(f"ssconvert --recalc: peak RSS {peak / 2**30:.2f} GiB; {verdict}", flush=True)


if __name__ == "__main__":
    main()
