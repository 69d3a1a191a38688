"""Two commits side by side: the full-size build and check of each, interleaved in one run.

Each revision is checked out (detached) under output/bench/rev-<sha>, and its own code builds and
checks the same GPT-2-small-shaped book (random seed-0 weights, a 16-token prompt, token rows) in
fresh processes, as a user runs them: old, new, old, new, ... Interleaving spreads the shared
machine's slow phases over both. Prints each run, then medians and the ratio new / old, of the
wall time and of the CPU time (user + system) of the process tree: on a machine others are
using, the CPU time is the steadier measure of the work each revision does.

    python benchmarks/side_by_side.py --old 5b932f1 --new HEAD --repeat 3
    python benchmarks/side_by_side.py --old 211ef51 --steps build --also "--no-saliency"

``--steps build``: the builds only. ``--also ARGS``: a third row in the same run, the new revision with
these extra build options (what one tab costs, say).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from full_size import BENCH, MemoryWatch, model_dir, prompt_of  # noqa: E402

from sheetgpt.tokenizer import Tokenizer  # noqa: E402


def checkout(rev: str) -> tuple[str, Path]:
    git = ["git", "rev-parse", "--short", rev]
    sha = subprocess.run(git, capture_output=True, text=True, check=True).stdout.strip()
    where = (BENCH / f"rev-{sha}").resolve()
    if not where.exists():
        subprocess.run(["git", "worktree", "add", "--detach", str(where), sha], check=True, capture_output=True)
    return sha, where


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def timed(cmd: list[str], cwd: Path) -> tuple[float, float, float, str]:
    """(wall seconds, CPU seconds, peak summed PSS in GiB of the process tree, last line of its output)."""
    cpu0 = _cpu()
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    with MemoryWatch(proc.pid) as mem:
        out, _ = proc.communicate()
    if proc.returncode not in (0,):
        raise SystemExit(f"{' '.join(cmd)} in {cwd}: exit {proc.returncode}\n{out}")
    wall = time.perf_counter() - started
    return wall, _cpu() - cpu0, mem.peak_pss / 2**30, (out.strip().splitlines() or [""])[-1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--old", required=True, help="the revision before the change")
    ap.add_argument("--new", default="HEAD", help="the revision after it")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--steps", default="build,check", help="build,check (default) or build")
    ap.add_argument("--also", default=None, help="extra build options for a third row: the new revision with them")
    args = ap.parse_args()
    steps = args.steps.split(",")
    d = model_dir().resolve()
    prompt = prompt_of(Tokenizer.from_dir(d), 16)
    (old_sha, old_where), (new_sha, new_where) = checkout(args.old), checkout(args.new)
    revs = {old_sha: (old_where, []), new_sha: (new_where, [])}
    if args.also:
        revs[f"{new_sha} {args.also}"] = (new_where, args.also.split())
    runs: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
    for k in range(args.repeat):
        for sha, (where, extra) in revs.items():
            book = (BENCH / f"side-{sha.replace(' ', '_')}.xlsx").resolve()
            build = [sys.executable, "-m", "sheetgpt", "build", "--model", str(d), "--prompt", prompt]
            build += ["--no-typed-prompt", *extra, "-o", str(book), "--force"]
            check = [sys.executable, "-m", "sheetgpt", "check", str(book)]
            for step, cmd in (("build", build), ("check", check)):
                if step not in steps:
                    continue
                secs, cpu, gib, last = timed(cmd, where)
                runs.setdefault((sha, step), []).append((secs, cpu, gib))
                line = f"run {k + 1} {sha} {step}: {secs:.1f} s wall, {cpu:.1f} s CPU, {gib:.2f} GiB; {last[:90]}"
                print(line, flush=True)
            book.unlink()
    old, *news = list(revs)
    for step in steps:
        for new in news:
            o, n = (list(zip(*runs[(rev, step)])) for rev in (old, new))
            (wo, co, mo), (wn, cn, mn) = ([statistics.median(x) for x in r] for r in (o, n))
            print(
                f"{step} medians: {old} {wo:.1f} s wall, {co:.1f} s CPU, {mo:.2f} GiB; {new} {wn:.1f} s wall, "
                f"{cn:.1f} s CPU, {mn:.2f} GiB; new/old: wall {wn / wo:.3f}, CPU {cn / co:.3f}"
            )


if __name__ == "__main__":
    main()
