"""Compare sheetgpt's evaluator with the independent `formulas` engine on a small book."""

from __future__ import annotations

import math
import re

import numpy as np

from sheetgpt.xlsx_reader import cell_name, parse_ref


def oracle_values(path) -> dict:
    """{(SHEET_UPPER, row, col): value} for every cell `formulas` computed."""
    import formulas

    sol = formulas.ExcelModel().loads(str(path)).finish().calculate()
    out = {}
    for key, rng in sol.items():
        m = re.fullmatch(r"'\[[^\]]+\](.+)'!([A-Z]+[0-9]+)(?::([A-Z]+[0-9]+))?", key)
        if not m:
            continue
        sheet = m.group(1).replace("''", "'")
        r0, c0 = parse_ref(m.group(2))
        val = np.asarray(getattr(rng, "value", rng), dtype=object)
        if val.ndim == 0:
            val = val.reshape(1, 1)
        for i in range(val.shape[0]):
            for j in range(val.shape[1]):
                out[(sheet.upper(), r0 + i, c0 + j)] = val[i, j]
    return out


def ours(res, sheet, r, c):
    k = res.kinds[sheet][r, c]
    if (r, c) in res.errors[sheet]:
        return res.errors[sheet][(r, c)]
    if (r, c) in res.text[sheet]:
        return res.text[sheet][(r, c)]
    if k == 3:
        return bool(res.values[sheet][r, c])
    return float(res.values[sheet][r, c])


def mismatches(book, res, oracle, rel=1e-12) -> list[str]:
    bad = []
    for name, sh in book.sheets.items():
        cells = []
        for r, c, _, rng in sh.formulas:
            if rng:
                cells += [(i, j) for i in range(rng[0], rng[2] + 1) for j in range(rng[1], rng[3] + 1)]
            else:
                cells.append((r, c))
        for r, c in cells:
            want = oracle.get((name.upper(), r, c))
            got = ours(res, name, r, c)
            w = str(want) if type(want).__name__ == "XlError" else want
            if isinstance(w, (bool, np.bool_)):
                ok = isinstance(got, bool) and got == bool(w)
            elif isinstance(w, (int, float, np.floating, np.integer)) and not isinstance(got, (str, bool)):
                ok = math.isclose(got, float(w), rel_tol=rel, abs_tol=1e-300)
            else:
                ok = got == w
            if not ok:
                bad.append(f"{name}!{cell_name(r, c)}: ours {got!r} oracle {w!r}")
    return bad
