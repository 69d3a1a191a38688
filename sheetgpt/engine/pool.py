"""Sheets read by forked worker processes, largest first: decompression and number parsing are CPU
bound, so from a few MB of sheet XML a second core saves more than starting a worker costs.

The shared strings reach the workers as an argument of the pool's initializer, never through a
global of the parent: with the fork start method they are inherited, not pickled.
"""

from __future__ import annotations

import os

from .book import Sheet
from .sheet_parser import read_sheet
from .zip_limits import open_zip

WORKERS = max(1, min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)))
# Decompressed sheet XML above which sheets are read by forked processes: from about 2 MB
# (a teaching book) the second core saves more than starting a worker costs (a 7 MB book:
# 0.235 s -> 0.17 s; 10 MB: 0.40 s -> 0.28 s). Not where fork is missing (Windows).
PARALLEL_BYTES = 2 << 20

_worker_sst: list[str] = []  # set in each worker process by _init_worker, never in the parent


def _init_worker(sst: list[str]) -> None:
    global _worker_sst
    _worker_sst = sst


def can_fork() -> bool:
    import multiprocessing

    return "fork" in multiprocessing.get_all_start_methods()


def _read_one(path, part: str, name: str) -> tuple[str, Sheet, int]:
    with open_zip(path) as zf:
        return name, read_sheet(zf, part, name, _worker_sst), zf.getinfo(part).file_size


def read_parallel(path, todo, sst, workers: int, progress) -> dict[str, Sheet]:
    """Sheets read by ``workers`` forked processes, largest first (decompression and the
    number parsing are CPU bound; each worker opens the zip itself)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    with open_zip(path) as zf:
        sizes = {part: zf.getinfo(part).file_size for _, part in todo}
    total = sum(sizes.values())
    out: dict[str, Sheet] = {}
    done = 0
    ctx = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(sst,)) as pool:
        futures = [pool.submit(_read_one, str(path), part, nm) for nm, part in sorted(todo, key=lambda t: -sizes[t[1]])]
        try:
            for fut in as_completed(futures):
                nm, sheet, n = fut.result()
                out[nm] = sheet
                done += n
                if progress:
                    progress(done, total)
        except BaseException:
            for f in futures:
                f.cancel()
            raise
    return out
