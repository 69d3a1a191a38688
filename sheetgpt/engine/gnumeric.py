"""Gnumeric as an engine: ``ssconvert --recalc`` recomputes the book, we read back what it wrote.

Every run:

* works on a temporary copy of the book with the LibreOffice engine's **sentinel sheet** injected
  (``A1 = 1/7``, cached value in the file a wrong ``-1``): the values read back must hold exactly
  ``1/7`` there, else ``WorkbookError("recalculation not proven ...")``;
* runs ``ssconvert --recalc in.xlsx out.xlsx`` in its own process group (killed as a group on
  timeout), with a fresh ``HOME`` and ``TMPDIR`` inside a throw-away directory, so no user
  configuration or plugin state is read and nothing is left behind;
* reads the converted .xlsx with ``engine.reader`` (bounded, no entity expansion) and returns its
  constants and cached formula results (``engine.cached.file_values``).

Why .xlsx as the way back: Gnumeric 1.12.55 writes every number of an .xlsx with 21 significant
digits (``0.479888643111645625192``), more than the 17 a float64 needs to round-trip, so values
come back as the exact doubles Gnumeric computed. Its .gnumeric XML does the same, but would need
a second reader.

Gnumeric 1.12.55 drops ``<c>`` elements that have no ``r`` attribute and gives ``#VALUE!`` for
SUMPRODUCT over a function of a range in a plain cell; the books sheetgpt writes avoid both.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time

from ..errors import SheetGPTError, WorkbookError
from .cached import file_values
from .libreoffice import SENTINEL_CELL, SENTINEL_SHEET, SENTINEL_VALUE, inject_sentinel
from .reader import read_workbook
from .values import Values

MISSING = "Gnumeric's ssconvert is not installed: apt-get install gnumeric"
SENTINEL = True
TYPED_EDITS = False


def find_ssconvert() -> str | None:
    """Path of ``ssconvert`` (``SHEETGPT_SSCONVERT`` overrides), or None."""
    env = os.environ.get("SHEETGPT_SSCONVERT")
    if env and os.access(env, os.X_OK):
        return env
    return shutil.which("ssconvert")


def available() -> bool:
    return find_ssconvert() is not None


def version() -> str | None:
    """``ssconvert --version``'s version ('1.12.55'), or None."""
    exe = find_ssconvert()
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.split("'")[1] if out.count("'") >= 2 else None


def _run(cmd: list[str], env: dict, cwd: str, timeout: float) -> subprocess.CompletedProcess:
    """Run ``cmd`` in its own process group; on timeout kill the whole group."""
    with subprocess.Popen(
        cmd,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    ) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise WorkbookError(
                f"Gnumeric did not finish within {timeout:g} s; raise --timeout or use --engine fast"
            ) from None
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def recompute(path, book=None, *, progress=None, timeout: float = 1800, notice=None, edits=None) -> Values:
    """The backend protocol (``registry.Backend``): :func:`recalculate`; ``book`` is not needed."""
    if edits:
        raise WorkbookError("--engine gnumeric takes no edits; use --engine libreoffice or ironcalc")
    return recalculate(path, timeout=timeout)


def recalculate(path: str | os.PathLike, *, timeout: float = 1800) -> Values:
    """Every formula of the book at ``path`` recomputed by Gnumeric (``ssconvert --recalc``)."""
    exe = find_ssconvert()
    if exe is None:
        raise SheetGPTError(MISSING)
    started = time.perf_counter()
    work = tempfile.mkdtemp(prefix="sheetgpt-gnumeric-")
    try:
        src, dst = os.path.join(work, "in.xlsx"), os.path.join(work, "out.xlsx")
        inject_sentinel(path, src)
        home = os.path.join(work, "home")
        os.mkdir(home)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": home,
            "TMPDIR": work,
            "XDG_CONFIG_HOME": os.path.join(home, ".config"),
            "XDG_CACHE_HOME": os.path.join(home, ".cache"),
            "XDG_DATA_HOME": os.path.join(home, ".local", "share"),
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
        }
        proc = _run([exe, "--recalc", src, dst], env, work, timeout)
        converted = time.perf_counter()
        if proc.returncode != 0 or not os.path.exists(dst):
            tail = (proc.stderr or b"").decode("utf-8", "replace").strip().splitlines()[-1:] or ["no message"]
            raise WorkbookError(f"{path}: Gnumeric could not recalculate the book (exit {proc.returncode}: {tail[0]})")
        book = read_workbook(dst)
        if SENTINEL_SHEET not in book.sheets:
            raise WorkbookError(f"{path}: recalculation not proven: Gnumeric dropped the sentinel sheet")
        sentinel = file_values(book, [SENTINEL_SHEET]).value(SENTINEL_SHEET, SENTINEL_CELL)
        if sentinel != SENTINEL_VALUE:
            raise WorkbookError(f"{path}: recalculation not proven: Gnumeric's sentinel reads {sentinel!r}, not 1/7")
        names = [n for n in book.sheet_names if n != SENTINEL_SHEET and n in book.sheets]
        values = file_values(book, names)
        values.sentinel = sentinel
        values.timings = {"recalc": converted - started, "total": time.perf_counter() - started}
        return values
    finally:
        shutil.rmtree(work, ignore_errors=True)
