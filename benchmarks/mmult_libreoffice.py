"""CSE array MMULT vs one 1x1 MMULT per cell, recalculated by LibreOffice headless.

The workbook issue asks us to choose how matrix products are written by what is faster in
LibreOffice (and clearer). One product of GPT-2 small's MLP: [16, 768] @ [768, 3072].
Prints LibreOffice's load and calculation times for each form and the error against numpy.

    python benchmarks/mmult_libreoffice.py
"""

from __future__ import annotations

import os
import tempfile

import numpy as np
import xlsxwriter
from xlsxwriter.utility import xl_col_to_name as col

from sheetgpt.engine.libreoffice import recalculate

T, D, N = 16, 768, 3072


def write_book(path: str, form: str, x: np.ndarray, w: np.ndarray) -> None:
    wb = xlsxwriter.Workbook(path)
    xs, ws, out = wb.add_worksheet("x"), wb.add_worksheet("w"), wb.add_worksheet("out")
    for i, row in enumerate(x.tolist()):
        xs.write_row(i, 0, row)
    for i, row in enumerate(w.tolist()):
        ws.write_row(i, 0, row)
    if form == "cse":  # one array formula over the whole [T, N] result
        out.write_array_formula(0, 0, T - 1, N - 1, f"{{=MMULT(x!$A$1:${col(D - 1)}${T},w!$A$1:${col(N - 1)}${D})}}")
    else:  # one 1x1 MMULT per cell: row i of x times column j of w
        for i in range(T):
            for j in range(N):
                out.write_formula(i, j, f"=MMULT(x!$A{i + 1}:${col(D - 1)}{i + 1},w!{col(j)}$1:{col(j)}${D})")
    wb.close()


def main() -> None:
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((T, D)), rng.standard_normal((D, N)) * 0.05
    print(f"LibreOffice: [{T}, {D}] @ [{D}, {N}]; load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as tmp:
        for form in ("cse", "per-cell"):
            path = os.path.join(tmp, f"{form}.xlsx")
            write_book(path, form, x, w)
            r = recalculate(path, sheets=["out"])
            err = float(np.abs(r.numbers["out"][:T, :N] - x @ w).max())
            t = r.timings
            print(
                f"{form:>9}: load {t['load']:.1f} s, calculate {t['calc']:.1f} s, total {t['total']:.1f} s, "
                f"file {os.path.getsize(path) / 1e6:.1f} MB, max abs error {err:.1e}"
            )


if __name__ == "__main__":
    main()
