"""How fast is `sheetgpt check`, and how do other readers and engines compare?

    python benchmarks/check_speed.py BOOK [--tab h.0.mlp.c_fc.w] [--skip-formulas]

Prints, in one run: the check's wall time, peak memory (max RSS of the check process and
its worker processes) and cells/s; python-calamine and openpyxl (read-only) reading one
weight tab of BOOK; and the `formulas` package on a 16x768 @ 768x768 product book, with
its time extrapolated to all of BOOK's cells (weights included: `formulas` loads every cell).
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_check(book: Path) -> tuple[float, float, int, int]:
    """(seconds, peak GiB, formula cells, numeric cells) of `sheetgpt check --json`."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "report.json"
        t = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-c", "from sheetgpt.cli import main; main()", "check", str(book), "--json", str(out)],
            capture_output=True,
            text=True,
        )
        seconds = time.perf_counter() - t
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20  # KiB -> GiB
        print(proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr.strip()[-500:])
        report = out.read_text() if out.exists() else "{}"  # read before the directory goes
    import zipfile

    with zipfile.ZipFile(book) as zf:
        xml = sum(i.file_size for i in zf.infolist() if i.filename.startswith("xl/worksheets/"))
    import json

    formula_cells = json.loads(report).get("formula_cells", 0)
    return seconds, peak, formula_cells, xml


def read_tab_calamine(book: Path, tab: str) -> tuple[float, int]:
    from python_calamine import CalamineWorkbook

    t = time.perf_counter()
    rows = CalamineWorkbook.from_path(str(book)).get_sheet_by_name(tab).to_python()
    return time.perf_counter() - t, sum(len(r) for r in rows)


def read_tab_openpyxl(book: Path, tab: str) -> tuple[float, int]:
    import openpyxl

    t = time.perf_counter()
    wb = openpyxl.load_workbook(str(book), read_only=True, data_only=True)
    n = sum(len(r) for r in wb[tab].iter_rows(values_only=True))
    wb.close()
    return time.perf_counter() - t, n


def formulas_matmul(T: int = 16, K: int = 768, M: int = 768) -> tuple[float, int]:
    """The `formulas` package computing {=MMULT(x, w)} (x [T, K], w [K, M]) as one CSE array."""
    import formulas
    import numpy as np
    import xlsxwriter

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "mm.xlsx"
        wb = xlsxwriter.Workbook(str(path))
        x, w, o = wb.add_worksheet("x"), wb.add_worksheet("w"), wb.add_worksheet("o")
        for r, row in enumerate(rng.normal(size=(T, K)).tolist()):
            x.write_row(r, 0, row)
        for r, row in enumerate(rng.normal(size=(K, M)).tolist()):
            w.write_row(r, 0, row)
        from xlsxwriter.utility import xl_rowcol_to_cell as cell

        o.write_array_formula(0, 0, T - 1, M - 1, f"=MMULT(x!A1:{cell(T - 1, K - 1)},w!A1:{cell(K - 1, M - 1)})")
        wb.close()
        t = time.perf_counter()
        formulas.ExcelModel().loads(str(path)).finish().calculate()
        return time.perf_counter() - t, T * K + K * M + T * M


def book_cells(book: Path) -> int:
    """Cells of every sheet by its <dimension> (exact for weight tabs, an upper bound elsewhere)."""
    import re
    import zipfile

    from sheetgpt.a1 import parse_range

    total = 0
    with zipfile.ZipFile(book) as zf:
        for info in zf.infolist():
            if info.filename.startswith("xl/worksheets/sheet"):
                with zf.open(info) as f:
                    m = re.search(rb'<dimension ref="([A-Z]+\d+(?::[A-Z]+\d+)?)"', f.read(4096))
                if m:
                    ref = m.group(1).decode()
                    r0, c0, r1, c1 = parse_range(ref if ":" in ref else f"{ref}:{ref}")
                    total += (r1 - r0 + 1) * (c1 - c0 + 1)
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("book", type=Path)
    ap.add_argument("--tab", default="h.0.mlp.c_fc.w", help="weight tab for the reader comparison")
    ap.add_argument("--skip-formulas", action="store_true", help="skip the formulas-package run")
    args = ap.parse_args()

    seconds, peak, fcells, xml = run_check(args.book)
    from sheetgpt.engine.reader import read_workbook

    t = time.perf_counter()
    sheet = read_workbook(args.book, sheets=[args.tab]).sheets[args.tab]
    ours_tab = time.perf_counter() - t
    n_tab = sheet.n_numbers
    print(
        f"sheetgpt check: {seconds:.1f} s wall, peak {peak:.2f} GiB (max RSS incl. workers), "
        f"{fcells:,} formula cells, {xml / 1e9:.2f} GB sheet XML"
    )
    print(
        f"reading {args.tab!r} ({n_tab:,} numbers): sheetgpt {ours_tab:.2f} s ({n_tab / ours_tab / 1e6:.2f} M cells/s)"
    )
    for name, fn in (("python-calamine", read_tab_calamine), ("openpyxl read-only", read_tab_openpyxl)):
        try:
            dt, n = fn(args.book, args.tab)
            print(f"reading {args.tab!r}: {name} {dt:.2f} s ({n / dt / 1e6:.2f} M cells/s)")
        except ImportError as e:
            print(f"{name}: not installed ({e})")
    if not args.skip_formulas:
        dt, cells = formulas_matmul()
        total = book_cells(args.book)
        print(
            f"formulas package: 16x768 @ 768x768 CSE MMULT book ({cells:,} cells) in {dt:.1f} s; "
            f"at that rate the whole book (up to {total:,} cells by its <dimension>s) "
            f"would take up to ~{dt / cells * total / 3600:.1f} h"
        )


if __name__ == "__main__":
    main()
