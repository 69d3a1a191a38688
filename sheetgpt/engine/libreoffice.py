"""Headless LibreOffice recalculation, with proof that it really recalculated.

LibreOffice Calc is driven over UNO by ``lo_bridge.py``, run with the SYSTEM python
(``/usr/bin/python3``: python3-uno only works there). Every run:

* uses a fresh, throw-away user profile in which ``OOXMLRecalcMode`` is 0 ("always recalculate
  on load"), set both in ``registrymodifications.xcu`` and through the configuration API;
* works on a temporary copy of the book with a **sentinel sheet** injected (``_sgpt_sentinel``,
  ``A1 = 1/7`` whose cached value in the file is a wrong ``-1``). After the edits and
  ``calculateAll()`` (a hard recalculation), A1 must read exactly ``1/7``, else
  ``WorkbookError("recalculation not proven ...")``. The sentinel sheet is never returned, and
  is deleted before ``save_as``. ``Values.sentinel_on_load`` is its value read right after
  loading (before ``calculateAll()``): 1/7 with our profile. Measured: with
  ``OOXMLRecalcMode`` forced to 1 ("never") it reads -1 on load and 1/7 after ``calculateAll()``,
  so the check catches a load that trusted cached values and ``calculateAll()`` fixes it;
* reads values with ``getDataArray()`` in chunks, as full IEEE doubles (no 15-digit rounding:
  the bridge sends raw float64 bytes);
* kills soffice (by process group, it is the bridge's own child) and deletes the profile, also
  on errors and timeouts.

Cell values in the returned ``Values``: numbers -> ``float``, text -> ``str`` (a formula returning
``""`` gives ``""``), empty -> ``None``, errors -> LibreOffice's display text, e.g.
``"#VALUE!"``, ``"#DIV/0!"``, ``"#N/A"``, ``"#NAME?"``, ``"#REF!"``, ``"#NUM!"``, or
``"Err:502"`` style for errors that have no Excel name (see ``Values.errors``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import struct
import subprocess
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

from ..errors import SheetGPTError, WorkbookError
from .values import Values
from .zip_limits import check_members, read_small

SYSTEM_PYTHON = "/usr/bin/python3"
BRIDGE = Path(__file__).with_name("lo_bridge.py")
MISSING = "LibreOffice is not installed: apt-get install libreoffice-calc-nogui python3-uno"

SENTINEL_SHEET = "_sgpt_sentinel"
SENTINEL_CELL = "A1"
SENTINEL_FORMULA = "1/7"
SENTINEL_VALUE = 1.0 / 7.0
SENTINEL_CACHED = -1  # deliberately wrong cached value written into the file
SENTINEL = True  # the backend protocol (registry.Backend)
TYPED_EDITS = True


# --------------------------------------------------------------------------- discovery


def find_soffice() -> str | None:
    """Path of the ``soffice`` launcher, or None."""
    env = os.environ.get("SHEETGPT_SOFFICE")
    if env and os.access(env, os.X_OK):
        return env
    for name in ("soffice", "libreoffice"):
        p = shutil.which(name)
        if p:
            return p
    for p in (
        "/usr/lib/libreoffice/program/soffice",
        "/opt/libreoffice/program/soffice",
        "/Applications/LibreOffice.app/Contents/MacOS/soffice",
    ):
        if os.access(p, os.X_OK):
            return p
    return None


_AVAILABLE: bool | None = None


def available() -> bool:
    """True when soffice exists AND the system python can ``import uno`` (cached)."""
    global _AVAILABLE
    if _AVAILABLE is None:
        ok = find_soffice() is not None and os.access(SYSTEM_PYTHON, os.X_OK)
        if ok:
            try:
                r = subprocess.run([SYSTEM_PYTHON, "-c", "import uno"], capture_output=True, timeout=60)
                ok = r.returncode == 0
            except (OSError, subprocess.TimeoutExpired):
                ok = False
        _AVAILABLE = ok
    return _AVAILABLE


def _require() -> str:
    soffice = find_soffice()
    if soffice is None or not available():
        raise SheetGPTError(MISSING)
    return soffice


# --------------------------------------------------------------------------- sentinel


def inject_sentinel(src: str | os.PathLike, dst: str | os.PathLike, name: str = SENTINEL_SHEET) -> None:
    """Copy xlsx ``src`` to ``dst`` with one more (last, hidden) sheet holding the sentinel.

    Done on the zip parts directly (workbook.xml, its rels, [Content_Types].xml), so nothing else
    in the book is rewritten: every other member is copied as it is stored, never inflated, and
    the zip is held to the reader's bounds (member count, duplicates, declared sizes). Raises
    WorkbookError if the book is not an xlsx we understand.
    """
    try:
        zin = zipfile.ZipFile(src)
    except (OSError, zipfile.BadZipFile) as e:
        raise WorkbookError(f"{src}: not an xlsx file ({e})") from None
    with zin:
        check_members(src, zin.infolist())
        names = zin.namelist()
        wb_path = "xl/workbook.xml"
        rels_path = "xl/_rels/workbook.xml.rels"
        if wb_path not in names or rels_path not in names or "[Content_Types].xml" not in names:
            raise WorkbookError(f"{src}: not an xlsx workbook (no xl/workbook.xml)")
        wb = read_small(zin, wb_path, 64 << 20).decode("utf-8")
        rels = read_small(zin, rels_path, 16 << 20).decode("utf-8")
        ct = read_small(zin, "[Content_Types].xml", 16 << 20).decode("utf-8")
        if re.search(rf'name="{re.escape(name)}"', wb):
            raise WorkbookError(f"{src}: already has a sheet named {name}")
        m = re.search(r"<(\w+:)?sheet\s[^>]*?(\w+):id=\"[^\"]*\"[^>]*/>", wb)
        close = re.search(r"</(\w+:)?sheets>", wb)
        if not m or not close:
            raise WorkbookError(f"{src}: cannot find the sheet list in xl/workbook.xml")
        pfx, rpfx = m.group(1) or "", m.group(2)
        ids = [int(x) for x in re.findall(r'sheetId="(\d+)"', wb)]
        sheet_id = max(ids, default=0) + 1
        rid = "rIdSgptSentinel"
        part = "worksheets/_sgpt_sentinel.xml"
        wb = (
            wb[: close.start()]
            + f'<{pfx}sheet name="{name}" sheetId="{sheet_id}" state="hidden" {rpfx}:id="{rid}"/>'
            + wb[close.start() :]
        )
        rels = rels.replace(
            "</Relationships>",
            f'<Relationship Id="{rid}" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
            f'relationships/worksheet" Target="{part}"/></Relationships>',
        )
        ct = ct.replace(
            "</Types>",
            f'<Override PartName="/xl/{part}" ContentType="application/'
            'vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/></Types>',
        )
        sheet_xml = (
            '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
            '<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
            f'<sheetData><row r="1"><c r="{SENTINEL_CELL}"><f>{SENTINEL_FORMULA}</f>'
            f"<v>{SENTINEL_CACHED}</v></c></row></sheetData></worksheet>"
        )
        edited = {wb_path: wb, rels_path: rels, "[Content_Types].xml": ct}
        with zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
            for info in zin.infolist():
                if info.filename in edited:
                    zout.writestr(info, edited[info.filename].encode("utf-8"))
                else:
                    _copy_raw(zin, zout, info)
            zout.writestr("xl/" + part, sheet_xml)


def _copy_raw(zin: zipfile.ZipFile, zout: zipfile.ZipFile, info: zipfile.ZipInfo) -> None:
    """Append one member to ``zout`` as ``zin`` stores it: its compressed bytes, copied in chunks.

    zipfile has no call for this; it is done as ``ZipFile.writestr`` does it, on the attributes
    the central directory is written from at close (``fp``, ``start_dir``, ``filelist``, ``NameToInfo``).
    """
    if info.flag_bits & 0x1:
        raise WorkbookError(f"{zin.filename}: zip member {info.filename} is encrypted")
    src = zin.fp
    src.seek(info.header_offset)
    local = src.read(30)
    if len(local) < 30 or local[:4] != b"PK\x03\x04":
        raise WorkbookError(f"{zin.filename}: corrupt zip member {info.filename}")
    name_len, extra_len = struct.unpack("<HH", local[26:30])
    src.seek(info.header_offset + 30 + name_len + extra_len)
    out = zipfile.ZipInfo(info.filename, info.date_time)
    out.compress_type, out.CRC = info.compress_type, info.CRC
    out.compress_size, out.file_size = info.compress_size, info.file_size
    out.external_attr, out.create_system = info.external_attr, info.create_system
    out.flag_bits = info.flag_bits & 0x800  # keep the UTF-8 name flag; sizes are in the header, no descriptor
    zout.fp.seek(zout.start_dir)
    out.header_offset = zout.fp.tell()
    zout.fp.write(out.FileHeader(out.file_size > zipfile.ZIP64_LIMIT or out.compress_size > zipfile.ZIP64_LIMIT))
    left = info.compress_size
    while left:
        chunk = src.read(min(left, 1 << 20))
        if not chunk:
            raise WorkbookError(f"{zin.filename}: zip member {info.filename} is truncated")
        zout.fp.write(chunk)
        left -= len(chunk)
    zout.filelist.append(out)
    zout.NameToInfo[out.filename] = out
    zout.start_dir = zout.fp.tell()


# --------------------------------------------------------------------------- running


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the bridge's own session: bridge + its soffice
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


def _run_bridge(req: dict, workdir: str, timeout: float) -> dict:
    req_path = os.path.join(workdir, "request.json")
    with open(req_path, "w", encoding="utf-8") as f:
        json.dump(req, f)
    proc = subprocess.Popen(
        [SYSTEM_PYTHON, str(BRIDGE), req_path],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        env={**os.environ, "TMPDIR": workdir},  # soffice's own lu*.tmp files go with the workdir, even when killed
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        raise WorkbookError(f"LibreOffice recalculation timed out after {timeout:g} s") from None
    finally:
        # soffice.bin can outlive the bridge if it crashed; the group is ours either way.
        _kill_group(proc)
    res_path = os.path.join(workdir, "out", "result.json")
    if not os.path.exists(res_path):
        tail = err.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no output"]
        raise WorkbookError(f"LibreOffice bridge failed (exit {proc.returncode}): {tail[0]}")
    with open(res_path, encoding="utf-8") as f:
        res = json.load(f)
    if not res.get("ok"):
        raise WorkbookError(f"LibreOffice recalculation failed: {res.get('error')}")
    return res


def recompute(path, book=None, *, progress=None, timeout: float = 1800, notice=None, edits=None) -> Values:
    """The backend protocol (``registry.Backend``): :func:`recalculate`; ``book`` is not needed."""
    return recalculate(path, edits=edits, timeout=timeout)


def recalculate(
    path: str | os.PathLike,
    *,
    edits: dict[tuple[str, str], object] | None = None,
    sheets: list[str] | None = None,
    save_as: str | os.PathLike | None = None,
    timeout: float = 600,
    prove: bool = True,
) -> Values:
    """Load ``path`` in headless LibreOffice, apply ``edits``, recalculate everything, read back.

    ``edits``: ``{(sheet, "B5"): value}``; str values are set as TEXT (never parsed as a formula,
    even ``"=1+1"``), int/float as numbers, None clears the cell. Typing formulas (tests of exercise
    books): ``{"formula": "=AVERAGE(C5:J5)"}`` enters a formula as a person types it in Excel syntax,
    ``{(sheet, "C5:F8"): {"array": "=MMULT(...)"}}`` a CSE array formula over a range.
    ``{"type": "3/4"}`` types a text as a person does (the cell's input parser and number format:
    a Text cell keeps 3/4, a General one makes it a date; see ``type_texts`` in tests/lo_batch.py).
    ``sheets``: names to read (default: all). ``save_as``: also store the recalculated book as
    xlsx (LibreOffice's export; the sentinel sheet is removed first; cached numbers in it are
    rounded to 15 significant digits, see docs/compat.md). ``prove``: inject and check the
    sentinel (see module docstring). Timeouts and failures raise one-line ``WorkbookError``.
    """
    soffice = _require()
    path = Path(path)
    if not path.exists():
        raise WorkbookError(f"{path}: no such file")
    t0 = time.monotonic()
    workdir = tempfile.mkdtemp(prefix="sheetgpt_lo_")
    try:
        os.makedirs(os.path.join(workdir, "out"))
        book = os.path.join(workdir, "book.xlsx")
        if prove:
            inject_sentinel(path, book)
        else:
            shutil.copyfile(path, book)
        req = {
            "soffice": soffice,
            "profile": os.path.join(workdir, "profile"),
            "input": book,
            "edits": [[s, a, v] for (s, a), v in (edits or {}).items()],
            "sheets": list(sheets) if sheets is not None else None,
            "sentinel": [SENTINEL_SHEET, SENTINEL_CELL, SENTINEL_VALUE] if prove else None,
            "save_as": str(Path(save_as).resolve()) if save_as else None,
            "outdir": os.path.join(workdir, "out"),
            "timeout": timeout,
        }
        for (s, a), v in (edits or {}).items():
            if isinstance(v, dict) and len(v) == 1 and isinstance(next(iter(v.values())), str):
                if next(iter(v)) in ("formula", "array", "type"):
                    continue
            if v is not None and not isinstance(v, (str, int, float)):
                raise WorkbookError(f"edit {s}!{a}: value must be str, number or None, not {type(v).__name__}")
        res = _run_bridge(req, workdir, timeout)
        numbers, text, errors = {}, {}, {}
        for sh in res["sheets"]:
            arr = np.fromfile(os.path.join(workdir, "out", sh["bin"]), dtype=np.float64)
            numbers[sh["name"]] = arr.reshape(sh["nrows"], sh["ncols"])
            text[sh["name"]] = {(r, c): s for r, c, s in sh["text"]}
            errors[sh["name"]] = {(r, c): s for r, c, s in sh["errors"]}
        timings = dict(res.get("timings", {}))
        timings["total"] = time.monotonic() - t0
        return Values(
            numbers,
            text,
            errors,
            timings=timings,
            sentinel=res.get("sentinel"),
            sentinel_on_load=res.get("sentinel_on_load"),
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
