"""Deflate worksheets in parallel worker processes, and join the pieces' CRCs.

Blocks of rows are deflated in worker processes, each as raw deflate ending in a
``Z_SYNC_FLUSH`` (so the pieces join into one stream; the last piece ends the stream), and
their CRCs are joined with ``crc32_combine``. ISA-L (``isal``) is used when installed, about
4x faster than zlib at level 1 here; zlib otherwise.
"""

from __future__ import annotations

import os
import signal
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ...errors import SheetGPTError
from .number_text import rows_xml
from .sheet_xml import formula_sheet_xml

try:  # ISA-L's deflate: same format, several times faster
    from isal import isal_zlib as _deflate

    COMPRESSOR = "isal"
except ImportError:  # pragma: no cover - depends on the environment
    _deflate = zlib
    COMPRESSOR = "zlib"

LEVEL = 1  # measured: level 1 is 4x faster than 6 for 10 % more bytes (BENCHMARKS.md)


def _gf2_times(mat: list[int], vec: int) -> int:
    out, i = 0, 0
    while vec:
        if vec & 1:
            out ^= mat[i]
        vec >>= 1
        i += 1
    return out


def _gf2_square(mat: list[int]) -> list[int]:
    return [_gf2_times(mat, m) for m in mat]


def crc32_combine(crc1: int, crc2: int, len2: int) -> int:
    """CRC-32 of A+B from crc32(A), crc32(B) and len(B) (zlib's crc32_combine)."""
    if len2 <= 0:
        return crc1
    odd = [0xEDB88320] + [1 << i for i in range(31)]  # operator for one zero bit
    even = _gf2_square(odd)  # two zero bits
    odd = _gf2_square(even)  # four zero bits
    while True:  # apply len2 zero bytes to crc1
        even = _gf2_square(odd)
        if len2 & 1:
            crc1 = _gf2_times(even, crc1)
        len2 >>= 1
        if not len2:
            break
        odd = _gf2_square(even)
        if len2 & 1:
            crc1 = _gf2_times(odd, crc1)
        len2 >>= 1
        if not len2:
            break
    return crc1 ^ crc2


@dataclass
class Piece:
    """One deflated block of a member: raw deflate bytes, CRC-32 and length of what they hold."""

    member: str
    data: bytes
    crc: int
    size: int
    last: bool


@dataclass
class Task:
    member: str  # zip member name, e.g. xl/worksheets/sheet40.xml
    tab: str  # the weight tab (key into the worker's arrays), or the formula tab
    r0: int
    r1: int
    prefix: bytes
    suffix: bytes
    last: bool
    formulas: bool = False  # a compute tab: the skeleton's sheet merged with shared-formula cells


_ARRAYS: dict[str, np.ndarray] = {}  # set in the parent before the workers fork; read by them
_SHEETS: dict[str, tuple] = {}  # member -> (skeleton sheet XML, [FormulaBlock], verify); likewise


def deflate_piece(task: Task) -> Piece:
    if task.formulas:
        xml = formula_sheet_xml(*_SHEETS[task.member])
    else:
        xml = task.prefix + rows_xml(_ARRAYS[task.tab][task.r0 : task.r1], task.r0) + task.suffix
    c = _deflate.compressobj(LEVEL, _deflate.DEFLATED, -15, 9)
    data = c.compress(xml) + c.flush(_deflate.Z_FINISH if task.last else _deflate.Z_SYNC_FLUSH)
    return Piece(task.member, data, zlib.crc32(xml), len(xml), task.last)


def _worker_init() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides; it terminates us
    try:  # die with the parent, even if it is SIGKILLed
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:  # pragma: no cover - not Linux
        pass
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(1)


def plan(
    member: str, tab: str, shape: tuple[int, int], prefix: bytes, suffix: bytes, cells_per_piece: int = 1 << 19
) -> list[Task]:
    rows, cols = shape
    step = max(1, cells_per_piece // max(cols, 1))
    starts = list(range(0, rows, step))
    return [
        Task(
            member,
            tab,
            r0,
            min(r0 + step, rows),
            prefix if r0 == 0 else b"",
            suffix if r0 == starts[-1] else b"",
            r0 == starts[-1],
        )
        for r0 in starts
    ]


def deflate_all(
    tasks: list[Task],
    arrays: dict[str, np.ndarray],
    processes: int | None = None,
    sheets: dict[str, tuple] | None = None,
) -> Iterator[Piece]:
    """Deflated pieces of every task, in order; worker processes share ``arrays`` and ``sheets`` by fork."""
    _ARRAYS.clear()
    _ARRAYS.update(arrays)
    _SHEETS.clear()
    _SHEETS.update(sheets or {})
    processes = processes or max(1, min(os.cpu_count() or 1, 8))
    try:
        if processes == 1 or len(tasks) == 1:
            for t in tasks:
                yield deflate_piece(t)
        else:
            yield from _in_workers(tasks, min(processes, len(tasks)))
    finally:
        _ARRAYS.clear()
        _SHEETS.clear()


def _in_workers(tasks: list[Task], n: int) -> Iterator[Piece]:
    """The pieces of ``tasks`` from n forked workers, in order. Each worker has a pipe of its own and
    is sent the next task's number as soon as it returns a piece, so no lock is shared: a worker killed
    at any moment (an interrupted build kills them) cannot leave one held. (multiprocessing.Pool shares
    its result queue's lock, and Pool.terminate() SIGTERMs workers that may hold it: an interrupted
    build then hung for ever in Pool.terminate(), waiting for that lock.)"""
    import multiprocessing as mp
    from multiprocessing.connection import wait

    ctx = mp.get_context("fork")
    workers, conns = [], []
    try:
        for _ in range(n):
            mine, theirs = ctx.Pipe(duplex=True)
            w = ctx.Process(target=_worker, args=(theirs, tasks), daemon=True)
            w.start()
            theirs.close()
            workers.append(w)
            conns.append(mine)
        sent, done, ready = 0, 0, {}
        outstanding = dict.fromkeys(conns, 0)
        ahead = 4 * n  # pieces done before the one the caller waits for, at most (bounded memory)

        def feed() -> None:  # two tasks each (a worker never waits for its next number), round-robin
            nonlocal sent
            for _ in range(2):
                for conn in conns:
                    if outstanding[conn] < 2 and sent < len(tasks) and sent - done < ahead:
                        try:
                            conn.send(sent)
                        except OSError:  # a dead worker (BrokenPipeError): collect() says so
                            continue
                        sent, outstanding[conn] = sent + 1, outstanding[conn] + 1

        died = SheetGPTError(
            "a worker process that compresses the book's tabs died (killed, or out of memory); "
            "nothing was written: free some memory and build again"
        )

        def collect(timeout: float | None) -> None:
            busy = [c for c in conns if outstanding[c]]
            if not busy and timeout is None:  # nothing sent could be: every worker refused its number
                raise died
            for conn in wait(busy, timeout):
                try:
                    i, piece, error = conn.recv()
                except (EOFError, ConnectionError):  # killed (the OOM killer, a user): the build stops
                    raise died from None
                outstanding[conn] -= 1
                if error is not None:
                    raise RuntimeError(f"deflating {tasks[i].member}: {error}")
                ready[i] = piece
            feed()

        feed()
        while done < len(tasks):
            if done in ready:
                collect(0)  # whatever else is done: the workers go on while the caller writes
                yield ready.pop(done)
                done += 1
                feed()
            else:
                collect(None)
    finally:
        for w in workers:  # done or interrupted: stop them at once (nothing they hold can block us)
            w.kill()
        for w in workers:
            w.join()
        for conn in conns:
            conn.close()


def _worker(conn, tasks: list[Task]) -> None:
    _worker_init()
    while True:
        try:
            i = conn.recv()
        except EOFError:  # the parent closed its end
            return
        try:
            conn.send((i, deflate_piece(tasks[i]), None))
        except Exception as exc:  # the parent raises it, naming the member
            conn.send((i, None, f"{type(exc).__name__}: {exc}"))
