"""LibreOffice UNO bridge, run by the SYSTEM python (``/usr/bin/python3``), not by sheetgpt's.

Only the standard library and ``uno`` are used here: the system python usually has no numpy.
``sheetgpt.engine.libreoffice.recalculate`` writes a request JSON and runs::

    /usr/bin/python3 lo_bridge.py REQUEST.json

Request keys:
    soffice      path of the soffice launcher
    profile      directory for a fresh LibreOffice user profile (created here, removed by the caller)
    input        the .xlsx to load (the caller's copy, possibly with a sentinel sheet injected)
    edits        [[sheet, cell, value], ...]; str -> text (setString, never a formula),
                 number -> setValue, null -> clear contents; {"formula": "=..."} -> a formula
                 typed as a person types it in Excel syntax (English names, A1, commas), and
                 {"array": "=..."} with cell a range "C5:F8" -> a CSE array formula over it, and
                 {"type": text} -> text typed as a person types it (see type_text)
    sheets       list of sheet names to read, or null for all
    sentinel     [sheet, cell, expected_float] or null: checked after calculateAll(), then the
                 sheet is deleted before save_as
    save_as      path or null: store the recalculated book as xlsx ("Calc MS Excel 2007 XML")
    outdir       where to write result.json and one <i>.f64 file per sheet
    timeout      seconds (the caller also enforces it by killing the process group)

Output (outdir/result.json):
    {"ok": true, "sheets": [{"name", "nrows", "ncols", "bin", "text": [[r, c, s]...],
     "errors": [[r, c, "#VALUE!"]...]}], "sentinel": value, "timings": {...}}
    <bin> holds nrows*ncols native-endian float64, row-major, A1 at [0, 0], NaN where the
    cell is not a number (text, empty or error). A non-number cell that is in neither the
    text nor the errors list is empty.
On failure: {"ok": false, "error": "one line"} and exit code 1.

Batch mode (request key "batch", see run_batch): one soffice session for many texts set into
one cell, each followed by a recalculation and a read of some ranges; with "type": true each
text is typed (type_text) instead of set as text, and is first typed with the input line into
a scratch cell of the same number format (type_in_input_line) as a witness.
"""

import array
import contextlib
import json
import math
import os
import subprocess
import sys
import time

RECALC_XCU = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<oor:items xmlns:oor="http://openoffice.org/2001/registry" xmlns:xs="http://www.w3.org/2001/XMLSchema" '
    'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">\n'
    '<item oor:path="/org.openoffice.Office.Calc/Formula/Load">'
    '<prop oor:name="OOXMLRecalcMode" oor:op="fuse"><value>0</value></prop></item>\n'
    '<item oor:path="/org.openoffice.Office.Calc/Formula/Load">'
    '<prop oor:name="ODFRecalcMode" oor:op="fuse"><value>0</value></prop></item>\n'
    '<item oor:path="/org.openoffice.Setup/Office">'
    '<prop oor:name="FirstStartWizardCompleted" oor:op="fuse"><value>true</value></prop></item>\n'
    "</oor:items>\n"
)

CHUNK_CELLS = 250_000  # cells per getDataArray call


def write_profile(profile):
    """A fresh user profile whose Calc always recalculates xlsx/ods on load."""
    user = os.path.join(profile, "user")
    os.makedirs(user, exist_ok=True)
    with open(os.path.join(user, "registrymodifications.xcu"), "w", encoding="utf-8") as f:
        f.write(RECALC_XCU)


def profile_url(profile):
    return "file://" + os.path.abspath(profile).replace(" ", "%20")


def file_url(path):
    import uno

    return uno.systemPathToFileUrl(os.path.abspath(path))


def start_soffice(soffice, profile, pipe_name):
    args = [
        soffice,
        "--headless",
        "--invisible",
        "--norestore",
        "--nologo",
        "--nodefault",
        "--nolockcheck",
        "-env:UserInstallation=" + profile_url(profile),
        f"--accept=pipe,name={pipe_name};urp;StarOffice.ComponentContext",
    ]
    # Same process group as this bridge: the caller kills the whole group on timeout.
    return subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def connect(pipe_name, proc, deadline):
    import uno
    from com.sun.star.connection import NoConnectException

    local = uno.getComponentContext()
    resolver = local.ServiceManager.createInstanceWithContext("com.sun.star.bridge.UnoUrlResolver", local)
    url = f"uno:pipe,name={pipe_name};urp;StarOffice.ComponentContext"
    while True:
        try:
            return resolver.resolve(url)
        except NoConnectException:
            if proc.poll() is not None:
                code = proc.returncode
                raise RuntimeError(f"soffice exited with code {code} before accepting a connection") from None
            if time.monotonic() > deadline:
                raise TimeoutError("soffice did not accept a connection in time") from None
            time.sleep(0.1)


def load_document(desktop, path):
    """Open ``path`` hidden and editable, or raise."""
    doc = desktop.loadComponentFromURL(file_url(path), "_blank", 0, (prop("Hidden", True), prop("ReadOnly", False)))
    if doc is None:
        raise RuntimeError(f"LibreOffice could not open {path}")
    return doc


def prop(name, value):
    import uno

    p = uno.createUnoStruct("com.sun.star.beans.PropertyValue")
    p.Name = name
    p.Value = value
    return p


def force_recalc_config(ctx):
    """Set OOXMLRecalcMode=0 (always) also through the config API, and return what is in effect."""
    smgr = ctx.ServiceManager
    cp = smgr.createInstanceWithContext("com.sun.star.configuration.ConfigurationProvider", ctx)
    node = prop("nodepath", "/org.openoffice.Office.Calc/Formula/Load")
    upd = cp.createInstanceWithArguments("com.sun.star.configuration.ConfigurationUpdateAccess", (node,))
    upd.setPropertyValue("OOXMLRecalcMode", 0)
    upd.setPropertyValue("ODFRecalcMode", 0)
    upd.commitChanges()
    return upd.getPropertyValue("OOXMLRecalcMode")


def type_formula(doc, cell, value):
    """Enter a formula written in Excel's syntax, as a person types it into the cell (or, for
    {"array": ...}, with Ctrl+Shift+Enter over the range): parsed by LibreOffice's own formula
    parser with the Excel A1 English grammar, then set as the cell's tokens."""
    import uno
    from com.sun.star.table import CellAddress

    parser = doc.createInstance("com.sun.star.sheet.FormulaParser")
    parser.FormulaConvention = uno.getConstantByName("com.sun.star.sheet.AddressConvention.XL_A1")
    parser.CompileEnglish = True
    mapper = doc.createInstance("com.sun.star.sheet.FormulaOpCodeMapper")
    parser.OpCodeMap = mapper.getAvailableMappings(
        uno.getConstantByName("com.sun.star.sheet.FormulaLanguage.XL_ENGLISH"),
        uno.getConstantByName("com.sun.star.sheet.FormulaMapGroup.ALL_EXCEPT_SPECIAL"),
    )
    a = cell.getRangeAddress()
    text = value.get("formula") or value.get("array")
    at = CellAddress(a.Sheet, a.StartColumn, a.StartRow)
    tokens = parser.parseFormula(text[1:] if text.startswith("=") else text, at)
    if "array" in value:
        cell.setArrayTokens(tokens)
    else:
        cell.setTokens(tokens)


def type_text(cell, text):
    """Enter ``text`` as a person types it into the cell: the cell's input parser, which honours the
    cell's number format (a Text cell keeps 3/4, 1e5, =1+1, TRUE; a General one makes a date, a
    number, a formula, a boolean). ``FormulaLocal`` goes through ScDocFunc::SetNormalString, the
    parser the input line (``.uno:EnterString``) also ends in; ``setFormula`` does not (it parses
    with en-US rules and ignores the cell's format) and ``setString`` parses nothing."""
    cell.setPropertyValue("FormulaLocal", text)


def cell_kind(cell):
    """TEXT, VALUE, FORMULA or EMPTY: what the cell holds (not what a formula returns)."""
    return cell.getType().value


def format_string(doc, cell):
    return doc.getNumberFormats().getByKey(cell.getPropertyValue("NumberFormat")).FormatString


def type_in_input_line(ctx, desktop, texts, number_format):
    """Each text entered through the input line (dispatch ``.uno:EnterString``, what typing and Enter
    do) into A1 of a new hidden Calc document, A1 formatted ``number_format``: [[getString, kind]...].

    A witness for type_text. A scratch document because, after ``.uno:EnterString`` into a hidden
    sheetgpt book, soffice 7.4 headless aborts from an idle task within a second (Signal 6 in
    vcl::Window::GetCursor; also for a cell nothing depends on, also with autocalc off), and a
    non-hidden frame under --headless aborts the same way on load. A one-sheet document does not."""
    from com.sun.star.lang import Locale

    doc = desktop.loadComponentFromURL("private:factory/scalc", "_blank", 0, (prop("Hidden", True),))
    try:
        cell = doc.getSheets().getByIndex(0).getCellByPosition(0, 0)
        formats, locale = doc.getNumberFormats(), Locale()
        key = formats.queryKey(number_format, locale, False)
        if key == -1:
            key = formats.addNew(number_format, locale)
        cell.setPropertyValue("NumberFormat", key)
        ctrl = doc.getCurrentController()
        frame = ctrl.getFrame()
        dispatcher = ctx.ServiceManager.createInstanceWithContext("com.sun.star.frame.DispatchHelper", ctx)
        out = []
        for text in texts:
            ctrl.select(cell)
            dispatcher.executeDispatch(frame, ".uno:EnterString", "", 0, (prop("StringName", text),))
            out.append([cell.getString(), cell_kind(cell)])
        return out
    finally:
        doc.close(True)


def cell_error_text(sheet, c, r):
    cell = sheet.getCellByPosition(c, r)
    s = cell.getString()
    if not s:
        s = f"Err:{cell.getError()}"
    return s


def read_sheet(sheet, index, outdir):
    from com.sun.star.sheet.CellFlags import FORMULA as CF_FORMULA
    from com.sun.star.sheet.FormulaResult import ERROR as FR_ERROR

    cur = sheet.createCursor()
    cur.gotoEndOfUsedArea(False)
    end = cur.getRangeAddress()
    nrows, ncols = end.EndRow + 1, end.EndColumn + 1
    # An empty sheet still reports A1 as its used area; it is read as a 1x1 empty sheet.
    nan = float("nan")
    buf = array.array("d")
    text = []
    chunk_rows = max(1, CHUNK_CELLS // ncols)
    for r0 in range(0, nrows, chunk_rows):
        r1 = min(nrows, r0 + chunk_rows) - 1
        rng = sheet.getCellRangeByPosition(0, r0, ncols - 1, r1)
        rows = rng.getDataArray()
        for i, row in enumerate(rows):
            for j, v in enumerate(row):
                if type(v) is float:
                    buf.append(v)
                else:
                    buf.append(nan)
                    if v != "":
                        text.append([r0 + i, j, v])
    # Error cells: getDataArray gives them as empty strings (or NaN); find them explicitly.
    errors = []
    err_ranges = sheet.queryFormulaCells(FR_ERROR)
    for a in err_ranges.getRangeAddresses():
        for r in range(a.StartRow, a.EndRow + 1):
            for c in range(a.StartColumn, a.EndColumn + 1):
                errors.append([r, c, cell_error_text(sheet, c, r)])
                buf[r * ncols + c] = nan
    if errors:
        err_pos = {(r, c) for r, c, _ in errors}
        text = [t for t in text if (t[0], t[1]) not in err_pos]
    # Formula cells that produce "" are text "", not empty: find formula cells whose value is
    # the empty string.
    fcells = sheet.queryContentCells(CF_FORMULA)
    text_pos = {(t[0], t[1]) for t in text}
    err_pos = {(e[0], e[1]) for e in errors}
    for a in fcells.getRangeAddresses():
        for r in range(a.StartRow, a.EndRow + 1):
            base = r * ncols
            for c in range(a.StartColumn, a.EndColumn + 1):
                if math.isnan(buf[base + c]) and (r, c) not in text_pos and (r, c) not in err_pos:
                    text.append([r, c, ""])
    binname = f"{index}.f64"
    with open(os.path.join(outdir, binname), "wb") as f:
        buf.tofile(f)
    return {"name": sheet.getName(), "nrows": nrows, "ncols": ncols, "bin": binname, "text": text, "errors": errors}


@contextlib.contextmanager
def soffice_session(req, deadline, pipe_prefix="sheetgpt"):
    """soffice headless with a fresh profile that forces recalculation on load, connected over a
    pipe: yields (ctx, desktop, the recalc mode set); soffice is always stopped afterwards."""
    import uno  # noqa: F401  (makes the com.sun.star modules importable)

    write_profile(req["profile"])
    pipe_name = f"{pipe_prefix}_{os.getpid()}_{int(time.time() * 1000) % 1000000}"
    proc = start_soffice(req["soffice"], req["profile"], pipe_name)
    desktop = None
    try:
        ctx = connect(pipe_name, proc, deadline)
        desktop = ctx.ServiceManager.createInstanceWithContext("com.sun.star.frame.Desktop", ctx)
        yield ctx, desktop, force_recalc_config(ctx)
    finally:
        stop_soffice(desktop, proc)


def run(req):
    t0 = time.monotonic()
    deadline = t0 + float(req.get("timeout", 600))
    timings = {}
    with soffice_session(req, deadline) as (ctx, desktop, mode):
        timings["start"] = time.monotonic() - t0
        t = time.monotonic()
        doc = load_document(desktop, req["input"])
        timings["load"] = time.monotonic() - t
        t = time.monotonic()
        sheets = doc.getSheets()
        sent = req.get("sentinel")
        on_load = None
        if sent and sheets.hasByName(sent[0]):
            # Before calculateAll(): shows whether the load itself recalculated (OOXMLRecalcMode).
            on_load = sheets.getByName(sent[0]).getCellRangeByName(sent[1]).getValue()
        for sname, addr, value in req.get("edits") or []:
            if not sheets.hasByName(sname):
                raise KeyError(f"edit: no sheet named {sname!r}")
            cell = sheets.getByName(sname).getCellRangeByName(addr)
            if isinstance(value, dict) and "type" in value:
                type_text(cell, value["type"])
            elif isinstance(value, dict):
                type_formula(doc, cell, value)
            elif value is None:
                cell.setString("")
            elif isinstance(value, str):
                cell.setString(value)  # always text, even if it starts with "="
            elif isinstance(value, bool):
                cell.setValue(1.0 if value else 0.0)
            else:
                cell.setValue(float(value))
        doc.calculateAll()
        timings["calc"] = time.monotonic() - t
        t = time.monotonic()
        result = {"ok": True, "ooxml_recalc_mode": mode, "sentinel_on_load": on_load}
        if sent:
            sname, addr, expected = sent
            sv = sheets.getByName(sname).getCellRangeByName(addr).getValue()
            result["sentinel"] = sv
            if sv != expected:
                raise RuntimeError(
                    f"recalculation not proven: sentinel {sname}!{addr} reads {sv!r}, expected {expected!r}"
                )
        wanted = req.get("sheets")
        names = list(sheets.getElementNames())
        skip = {sent[0]} if sent else set()
        if wanted is None:
            wanted = [n for n in names if n not in skip]
        for n in wanted:
            if n not in names:
                raise KeyError(
                    "no sheet named {!r} (sheets: {})".format(n, ", ".join(x for x in names if x not in skip))
                )
        out = []
        for i, n in enumerate(wanted):
            out.append(read_sheet(sheets.getByName(n), i, req["outdir"]))
        result["sheets"] = out
        timings["read"] = time.monotonic() - t
        if req.get("save_as"):
            t = time.monotonic()
            if sent and sheets.hasByName(sent[0]):
                sheets.removeByName(sent[0])
            doc.storeToURL(
                file_url(req["save_as"]), (prop("FilterName", "Calc MS Excel 2007 XML"), prop("Overwrite", True))
            )
            timings["save"] = time.monotonic() - t
        doc.close(True)
        result["timings"] = timings
        return result


def run_batch(req):
    """Batch mode (request key ``batch``): for each text, set one cell, recalculate, read some ranges.

    ``batch``: {"cell": [sheet, "B4"], "texts": [...], "ranges": [[sheet, "A1:C9"], ...]}, and
    optionally "type": true.
    One soffice session for all texts; ``results`` holds, per text, each range's rows of values
    (numbers as floats, text as str, errors as their display text).
    With "type": each text is typed (type_text) instead of set as text; ``cells`` holds, per text,
    [getString, kind] of the cell after typing, ``input_line`` the same after typing it with the
    input line into a scratch cell of the cell's number format (``number_format``).
    """
    import uno  # noqa: F401  (makes the com.sun.star modules importable)
    from com.sun.star.sheet.FormulaResult import ERROR as FR_ERROR

    t0 = time.monotonic()
    deadline = t0 + float(req.get("timeout", 600))
    with soffice_session(req, deadline) as (ctx, desktop, _mode):
        timings = {"start": time.monotonic() - t0}
        batch = req["batch"]
        typing = bool(batch.get("type"))
        extra = {}
        if typing:
            # The witness first, before the book is open (see type_in_input_line).
            t = time.monotonic()
            number_format = batch.get("number_format", "@")
            extra["input_line"] = type_in_input_line(ctx, desktop, batch["texts"], number_format)
            timings["input_line"] = time.monotonic() - t
        t = time.monotonic()
        doc = load_document(desktop, req["input"])
        timings["load"] = time.monotonic() - t
        sheets = doc.getSheets()
        target = sheets.getByName(batch["cell"][0]).getCellRangeByName(batch["cell"][1])
        if typing:
            extra["number_format"] = format_string(doc, target)  # the caller compares it with the witness's
            extra["cells"] = []
        results, sentinel = [], None
        t = time.monotonic()
        for text in batch["texts"]:
            if time.monotonic() > deadline:
                raise TimeoutError("batch timed out")
            if typing:
                type_text(target, text)
                extra["cells"].append([target.getString(), cell_kind(target)])
            else:
                target.setString(text)
            doc.calculateAll()
            if sentinel is None and req.get("sentinel"):
                sname, addr, expected = req["sentinel"]
                sentinel = sheets.getByName(sname).getCellRangeByName(addr).getValue()
                if sentinel != expected:
                    raise RuntimeError(f"recalculation not proven: sentinel reads {sentinel!r}")
            one = []
            for sname, addr in batch["ranges"]:
                sheet = sheets.getByName(sname)
                rng = sheet.getCellRangeByName(addr)
                rows = [list(r) for r in rng.getDataArray()]
                a = rng.getRangeAddress()
                for e in rng.queryFormulaCells(FR_ERROR).getRangeAddresses():
                    for r in range(e.StartRow, e.EndRow + 1):
                        for c in range(e.StartColumn, e.EndColumn + 1):
                            rows[r - a.StartRow][c - a.StartColumn] = cell_error_text(sheet, c, r)
                one.append(rows)
            results.append(one)
        timings["texts"] = time.monotonic() - t
        doc.close(True)
        return {"ok": True, "results": results, "sentinel": sentinel, "timings": timings, **extra}


def stop_soffice(desktop, proc) -> None:
    """Ask soffice to quit; kill it if it has not within 10 s."""
    try:
        if desktop is not None:
            desktop.terminate()
    except Exception:
        pass
    try:
        proc.wait(timeout=10)
    except Exception:
        proc.kill()
        try:
            proc.wait(timeout=5)
        except Exception:
            pass


def main(argv):
    with open(argv[1], encoding="utf-8") as f:
        req = json.load(f)
    out = os.path.join(req["outdir"], "result.json")
    try:
        result = run_batch(req) if req.get("batch") else run(req)
        code = 0
    except Exception as e:  # report one line to the caller
        msg = str(e).strip().splitlines()
        result = {"ok": False, "error": "{}: {}".format(type(e).__name__, msg[0] if msg else "")}
        code = 1
    with open(out, "w", encoding="utf-8") as f:
        json.dump(result, f)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv))
