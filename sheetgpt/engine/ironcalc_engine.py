"""IronCalc as an engine: its Python package loads the book, recomputes every formula, and we read
back every cell through its API.

IronCalc (https://www.ironcalc.com) is a spreadsheet engine written in Rust for Excel
compatibility; ``pip install 'sheetgpt[ironcalc]'`` installs its Python package. Every run:

* works on a temporary copy of the book with the LibreOffice engine's **sentinel sheet** injected
  (``A1 = 1/7``, cached value in the file a wrong ``-1``). IronCalc loads cached values, so right
  after loading the sentinel reads -1 (``Values.sentinel_on_load``); after ``evaluate()`` it must
  read exactly 1/7, else ``WorkbookError("recalculation not proven ...")``;
* applies ``edits`` between loading and evaluating: ``{"type": text}`` goes through
  ``set_user_input`` (IronCalc's parser of what a person types), as do ``{"formula": text}`` and
  a plain number; a plain ``str`` is set as text, ``None`` clears the cell;
* runs in a forked child process, so ``timeout`` holds (the child is killed), a Rust panic is one
  line, and IronCalc's messages on stdout ("Unexpected type (empty) in ...", one per formula cell
  the file stores without a value) never reach the terminal.

Values come back as IronCalc computed them: numbers as float64, booleans as 1/0, text as
``str`` (a formula giving ``""`` gives ``""``), errors by their Excel names (``"#N/A"``).

IronCalc 0.9 reads no ``<c>`` element without an ``r`` attribute ("Missing "r" XML attribute");
every book sheetgpt writes at teaching size has them. See docs/compat.md for what else differs.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from ..a1 import parse_cell
from ..errors import SheetGPTError, WorkbookError
from .libreoffice import SENTINEL_CELL, SENTINEL_SHEET, SENTINEL_VALUE, inject_sentinel
from .values import Values

SENTINEL = True  # the backend protocol (registry.Backend)
TYPED_EDITS = True
MISSING = "IronCalc is not installed: pip install 'sheetgpt[ironcalc]'"
LOCALE, TIMEZONE = "en", "UTC"


def available() -> bool:
    import importlib.util

    return importlib.util.find_spec("ironcalc") is not None


def version() -> str | None:
    try:
        import ironcalc
    except ImportError:
        return None
    return getattr(ironcalc, "__version__", None)


def recompute(path, book=None, *, progress=None, timeout: float = 1800, notice=None, edits=None) -> Values:
    """The backend protocol (``registry.Backend``): :func:`recalculate`, with the sheets of ``book``
    that hold no formula (and no edit) taken from the book as read (see :func:`recalculate`)."""
    return recalculate(path, edits=edits, timeout=timeout, book=book)


def _check_edits(edits: dict) -> list[tuple[str, str, object]]:
    out = []
    for (sheet, addr), v in edits.items():
        if isinstance(v, dict):
            if len(v) != 1 or next(iter(v)) not in ("type", "formula") or not isinstance(next(iter(v.values())), str):
                raise WorkbookError(f"edit {sheet}!{addr}: IronCalc takes {{'type': text}} or {{'formula': text}}")
        elif v is not None and not isinstance(v, (str, int, float)):
            raise WorkbookError(f"edit {sheet}!{addr}: value must be str, number or None, not {type(v).__name__}")
        out.append((sheet, addr, v))
    return out


def recalculate(path: str | os.PathLike, *, edits: dict | None = None, timeout: float = 1800, book=None) -> Values:
    """Every formula of the book at ``path`` recomputed by IronCalc, after ``edits`` (``{(sheet, "B4"): value}``).

    With ``book`` (the same file as ``engine.reader`` read it), a sheet that holds no formula and no
    edit is not read back from IronCalc: recalculation cannot change a constant, and reading the
    124 M weights of a full-size book one call each (IronCalc's API has no bulk read) takes minutes
    and, through ``get_all_cells``, over 10 GB of Python tuples. Its values are the book's, as read;
    every formula that reads them is IronCalc's, so a constant IronCalc read wrongly still fails.
    """
    if not available():
        raise SheetGPTError(MISSING)
    path = Path(path)
    if not path.exists():
        raise WorkbookError(f"{path}: no such file")
    todo = _check_edits(edits or {})
    edited = {sheet for sheet, _, _ in todo}
    constant = [] if book is None else [n for n, sh in book.sheets.items() if not len(sh.formulas) and n not in edited]
    started = time.perf_counter()
    work = tempfile.mkdtemp(prefix="sheetgpt-ironcalc-")
    try:
        src = os.path.join(work, "in.xlsx")
        inject_sentinel(path, src)
        result = _in_child(src, todo, timeout, frozenset(constant))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if isinstance(result, str):
        raise WorkbookError(f"{path}: {result}")
    values = result
    if values.sentinel != SENTINEL_VALUE:
        raise WorkbookError(f"{path}: recalculation not proven: IronCalc's sentinel reads {values.sentinel!r}, not 1/7")
    for name in constant:
        _from_book(values, book.sheets[name])
    values.timings["total"] = time.perf_counter() - started
    return values


def _from_book(values: Values, sheet) -> None:
    """A sheet without formulas as the book holds it (numbers, booleans as 1/0, text, error literals)."""
    grid = sheet.dense()
    if sheet.booleans:
        grid = grid.copy()
        for (r, c), b in sheet.booleans.items():
            grid[r, c] = 1.0 if b else 0.0
    values.numbers[sheet.name], values.text[sheet.name] = grid, dict(sheet.strings)
    values.errors[sheet.name] = dict(sheet.errors)


def _in_child(src: str, edits: list, timeout: float, skip: frozenset = frozenset()) -> Values | str:
    """:func:`_run` in a forked process: its Values, or a one-line message of what went wrong."""
    ctx = multiprocessing.get_context("fork")
    receive, send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_child, args=(src, edits, skip, send), daemon=True)
    child.start()
    send.close()
    try:
        if not receive.poll(timeout):
            raise WorkbookError(f"IronCalc did not finish within {timeout:g} s; raise --timeout or use --engine fast")
        try:
            return receive.recv()
        except EOFError:
            child.join(10)
            return f"IronCalc stopped without an answer (exit {child.exitcode}); the book may be too large for memory"
    finally:
        receive.close()
        if child.is_alive():
            child.kill()
        child.join(10)


def _child(src: str, edits: list, skip: frozenset, send) -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)  # IronCalc prints one line per formula cell stored without a value,
    os.dup2(devnull, 2)  # and a Rust panic its backtrace: the exception below says it in one line
    try:
        out: Values | str = _run(src, edits, skip)
    except BaseException as e:  # pyo3 panics are BaseException; the parent wants one line
        out = f"IronCalc could not recompute the book ({' '.join(f'{type(e).__name__}: {e}'.split())[:300]})"
    send.send(out)
    send.close()
    os._exit(0)


def _run(src: str, edits: list, skip: frozenset = frozenset()) -> Values | str:
    import ironcalc

    t0 = time.perf_counter()
    try:
        model = ironcalc.load_from_xlsx(src, LOCALE, TIMEZONE)
    except Exception as e:
        return f"IronCalc could not read the book ({' '.join(str(e).split())[:300]})"
    names = [p["name"] for p in model.get_worksheets_properties()]
    if SENTINEL_SHEET not in names:
        return "recalculation not proven: IronCalc dropped the sentinel sheet"
    index = {n: i for i, n in enumerate(names)}
    sr, sc = parse_cell(SENTINEL_CELL)
    on_load = model.get_cell_value(index[SENTINEL_SHEET], sr + 1, sc + 1)
    for sheet, addr, v in edits:
        if sheet not in index:
            return f"edit {sheet}!{addr}: no sheet named {sheet!r}"
        r, c = parse_cell(addr)
        i, r, c = index[sheet], r + 1, c + 1
        if v is None:
            model.clear_cell_contents(i, r, c)
        elif isinstance(v, dict):
            model.set_user_input(i, r, c, next(iter(v.values())))
        elif isinstance(v, str):
            model.update_cell_with_text(i, r, c, v)
        else:
            model.update_cell_with_number(i, r, c, float(v))
    t1 = time.perf_counter()
    model.evaluate()
    t2 = time.perf_counter()
    values = _read(model, names, skip)
    values.sentinel = values.numbers.pop(SENTINEL_SHEET)[sr, sc]
    values.text.pop(SENTINEL_SHEET)
    values.errors.pop(SENTINEL_SHEET)
    values.sentinel = float(values.sentinel)
    values.sentinel_on_load = on_load
    values.timings = {"load": t1 - t0, "recalc": t2 - t1, "read": time.perf_counter() - t2}
    return values


def _read(model, names: list[str], skip: frozenset = frozenset()) -> Values:
    """Every non-empty cell of every sheet but ``skip``, as IronCalc holds it after ``evaluate()``
    (each sheet's used rectangle, one ``get_cell_value`` a cell: about 0.25 us; None is empty)."""
    import ironcalc

    error = ironcalc.CellType.ErrorValue
    numbers, text, errors = {}, {}, {}
    for i, name in enumerate(names):
        if name in skip:
            continue
        r0, r1, c0, c1 = model.get_sheet_dimensions(i)  # 1-based, inclusive
        grid = np.full((r1, c1), np.nan)
        t: dict = {}
        e: dict = {}
        get = model.get_cell_value
        for r in range(r0, r1 + 1):
            for c in range(c0, c1 + 1):
                v = get(i, r, c)
                if v is None:
                    continue
                if isinstance(v, bool):
                    grid[r - 1, c - 1] = 1.0 if v else 0.0
                elif isinstance(v, (int, float)):
                    grid[r - 1, c - 1] = v
                elif model.get_cell_type(i, r, c) == error:
                    e[(r - 1, c - 1)] = v
                else:
                    t[(r - 1, c - 1)] = v
        numbers[name], text[name], errors[name] = grid, t, e
    return Values(numbers, text, errors)
