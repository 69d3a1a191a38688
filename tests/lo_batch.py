"""LibreOffice sessions the tests (and benchmarks/lo_prompt_edit.py) use beyond ``libreoffice.recalculate``.

Typing many texts into one cell in ONE soffice session (``recalculate_texts``, ``type_texts``: the
UNO bridge's batch mode) and ``soffice --convert-to xlsx`` with the forced-recalculation profile
(``convert_with_recalc``). They drive the same bridge, profile and sentinel as the engine
(``sheetgpt.engine.libreoffice``); no command of sheetgpt needs them, so they live here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sheetgpt.engine import libreoffice as lo
from sheetgpt.errors import WorkbookError


def recalculate_texts(
    path: str | os.PathLike,
    cell: tuple[str, str],
    texts: list[str],
    ranges: list[tuple[str, str]],
    *,
    timeout: float = 600,
) -> tuple[list[list[list[list]]], dict]:
    """For each text: set ``cell`` (sheet, "B4") to it as TEXT, recalculate everything, read ``ranges``.

    One soffice session for all texts (start-up and load are paid once). Returns
    ``(results, timings)``: ``results[k][m]`` is range m's rows of values after text k (float,
    str, or an error's display text such as ``"#N/A"``). Recalculation is proven with the
    sentinel sheet after the first text.
    """
    batch = {"cell": list(cell), "texts": list(texts), "ranges": [list(r) for r in ranges]}
    res = _run_batch(path, batch, timeout)
    return res["results"], res.get("timings", {})


@dataclass
class TypedTexts:
    """What :func:`type_texts` measured, one entry per text."""

    results: list[list[list[list]]]  # per text, per range: rows of values after recalculation
    held: list[str]  # what the cell holds after typing (getString)
    kinds: list[str]  # TEXT, VALUE, FORMULA or EMPTY: what the cell holds, not what it shows
    input_line: list[tuple[str, str]]  # (getString, kind) after typing into the input line instead
    number_format: str  # the cell's number format code ("@" is Text)
    timings: dict


def type_texts(
    path: str | os.PathLike,
    cell: tuple[str, str],
    texts: list[str],
    ranges: list[tuple[str, str]],
    *,
    number_format: str = "@",
    timeout: float = 600,
) -> TypedTexts:
    """For each text: TYPE it into ``cell`` as a person does, recalculate everything, read ``ranges``.

    Unlike :func:`recalculate_texts` (which sets the text as text), each text goes through the
    cell's input parser with the cell's number format (UNO ``FormulaLocal``): in a General cell
    ``3/4`` becomes a date, in a Text cell it stays ``3/4``. As a witness that this is what typing
    does, each text is also entered through LibreOffice's input line (``.uno:EnterString``) into a
    scratch cell of format ``number_format``: compare ``input_line`` with ``held``/``kinds`` and
    ``number_format`` with the argument. One soffice session for everything; recalculation is
    proven with the sentinel sheet after the first text.
    """
    batch = {
        "cell": list(cell),
        "texts": list(texts),
        "ranges": [list(r) for r in ranges],
        "type": True,
        "number_format": number_format,
    }
    res = _run_batch(path, batch, timeout)
    return TypedTexts(
        results=res["results"],
        held=[s for s, _ in res["cells"]],
        kinds=[k for _, k in res["cells"]],
        input_line=[(s, k) for s, k in res["input_line"]],
        number_format=res["number_format"],
        timings=res.get("timings", {}),
    )


def _run_batch(path: str | os.PathLike, batch: dict, timeout: float) -> dict:
    """One soffice session over a copy of ``path`` with the sentinel sheet: the bridge's batch mode."""
    soffice = lo._require()
    path = Path(path)
    if not path.exists():
        raise WorkbookError(f"{path}: no such file")
    workdir = tempfile.mkdtemp(prefix="sheetgpt_lo_")
    try:
        os.makedirs(os.path.join(workdir, "out"))
        book = os.path.join(workdir, "book.xlsx")
        lo.inject_sentinel(path, book)
        req = {
            "soffice": soffice,
            "profile": os.path.join(workdir, "profile"),
            "input": book,
            "sentinel": [lo.SENTINEL_SHEET, lo.SENTINEL_CELL, lo.SENTINEL_VALUE],
            "outdir": os.path.join(workdir, "out"),
            "timeout": timeout,
            "batch": batch,
        }
        return lo._run_bridge(req, workdir, timeout)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def convert_with_recalc(path: str | os.PathLike, out_path: str | os.PathLike, *, timeout: float = 600) -> Path:
    """``soffice --headless --convert-to xlsx`` with the forced-recalc profile.

    The output's cached values are LibreOffice's recomputed ones, but the xlsx export writes
    numbers with at most 15 significant digits (not full doubles): use :func:`recalculate` for
    exact comparisons. Proof: a sentinel-only book is converted in the same soffice run (same
    profile and settings) and must come back with ``1/7`` (to 15 digits) in place of its wrong
    cached value.
    """
    soffice = lo._require()
    path, out_path = Path(path), Path(out_path)
    if not path.exists():
        raise WorkbookError(f"{path}: no such file")
    workdir = tempfile.mkdtemp(prefix="sheetgpt_lo_")
    try:
        from sheetgpt.engine.lo_bridge import profile_url, write_profile

        profile = os.path.join(workdir, "profile")
        write_profile(profile)
        indir, outdir = os.path.join(workdir, "in"), os.path.join(workdir, "out")
        os.makedirs(indir)
        os.makedirs(outdir)
        src = os.path.join(indir, "book.xlsx")
        shutil.copyfile(path, src)
        sent_src = os.path.join(indir, "sentinel.xlsx")
        _write_sentinel_book(sent_src)
        cmd = [
            soffice,
            "--headless",
            "--invisible",
            "--norestore",
            "--nologo",
            "--nolockcheck",
            "-env:UserInstallation=" + profile_url(profile),
            "--convert-to",
            "xlsx:Calc MS Excel 2007 XML",
            "--outdir",
            outdir,
            src,
            sent_src,
        ]
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
        )
        try:
            proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            lo._kill_group(proc)
            raise WorkbookError(f"LibreOffice conversion timed out after {timeout:g} s") from None
        finally:
            lo._kill_group(proc)
        out_book = os.path.join(outdir, "book.xlsx")
        out_sent = os.path.join(outdir, "sentinel.xlsx")
        if not os.path.exists(out_book) or not os.path.exists(out_sent):
            raise WorkbookError(f"LibreOffice could not convert {path} (exit {proc.returncode})")
        import openpyxl

        v = openpyxl.load_workbook(out_sent, data_only=True).active["A1"].value
        if not isinstance(v, (int, float)) or abs(v - lo.SENTINEL_VALUE) > 1e-14:
            raise WorkbookError(f"recalculation not proven: sentinel reads {v!r} after conversion")
        out_path.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(out_book, out_path)
        return out_path
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _write_sentinel_book(dst: str) -> None:
    import xlsxwriter

    wb = xlsxwriter.Workbook(dst)
    ws = wb.add_worksheet("Sheet1")
    ws.write_formula(lo.SENTINEL_CELL, "=" + lo.SENTINEL_FORMULA, None, lo.SENTINEL_CACHED)
    wb.close()
