"""The fast weight-tab writer: its texts read back exactly, its zips are valid, its books equal the old ones."""

from __future__ import annotations

import io
import zipfile
import zlib

import numpy as np
import openpyxl
import pytest
import xlsxwriter

from sheetgpt import fast_xlsx
from sheetgpt.weight_text import compose, decompose, stored_values


def _awkward_weights(n: int = 20000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(n).astype(np.float32) * np.float32(0.15)
    special = [0, -0.0, 1, -1, 10, 100, 1e-9, -1e-9, 1e20, -3e-38, 3.4e38, 1e-45, 0.001, 123456789, 1e8, 1e9,
               0.1, 0.5, 9.99999e-5, 1e-14, 1e-15, 2.5e-16, 7e-30]
    w[: len(special)] = np.array(special, dtype=np.float32)
    w[len(special):2000] *= np.float32(10.0) ** rng.integers(-30, 30, 2000 - len(special)).astype(np.float32)
    return w


def _book_with(values: np.ndarray) -> bytes:
    """A one-sheet book whose sheet is written by fast_xlsx (through assemble, as build does)."""
    import os
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        skel, out = os.path.join(d, "s.xlsx"), os.path.join(d, "o.xlsx")
        wb = xlsxwriter.Workbook(skel)
        wb.add_worksheet("w")
        wb.close()
        fast_xlsx.assemble(skel, out, {"xl/worksheets/sheet1.xml": ("w", values)}, processes=2)
        return open(out, "rb").read()


def test_mantissa_exponent_is_exact_where_it_claims():
    x = stored_values(_awkward_weights())
    m, k, ok = fast_xlsx.mantissa_exponent(x)
    assert ok.mean() > 0.9
    assert np.array_equal(m[ok] / 10.0 ** k[ok], np.abs(x[ok]))
    texts = [b"%dE-%d" % (a, b) for a, b in zip(m[ok][:3000].tolist(), k[ok][:3000].tolist())]
    assert [float(t) for t in texts] == np.abs(x[ok][:3000]).tolist()


def test_every_cell_text_reads_back_as_compose_of_decompose():
    w = _awkward_weights()
    want = compose(*decompose(w))
    plain = fast_xlsx.number_cells(want[2000:])  # ordinary weights: the fixed-width fast path
    assert plain is not None and len(plain) == (w.size - 2000) * fast_xlsx.CELL_BYTES
    xml = fast_xlsx.rows_xml(want[None, :], 0)  # all of them, awkward ones included
    got = np.array([float(t.split(b"<")[0]) for t in xml.split(b"<v>")[1:]])
    assert np.array_equal(got, want)
    assert np.array_equal(got.astype(np.float32)[np.isfinite(w)], w[np.isfinite(w)])  # float32 round trip


def test_values_longer_than_the_fixed_width_fall_back_to_repr():
    x = np.array([[0.1 + 0.2, -1.2345678901234567e-100, 5e-324]])  # not 9-digit decimals
    xml = fast_xlsx.rows_xml(x, 0)
    texts = xml.split(b"<v>")[1:]
    assert [float(t.split(b"<")[0]) for t in texts] == x.ravel().tolist()


def test_readers_read_the_fast_sheet_exactly(tmp_path):
    w = _awkward_weights(6000).reshape(60, 100)
    want = stored_values(w)
    path = tmp_path / "b.xlsx"
    path.write_bytes(_book_with(want))
    with zipfile.ZipFile(path) as z:
        assert z.testzip() is None
    ws = openpyxl.load_workbook(path, read_only=True)["w"]
    got = np.array([[0.0 if v is None else v for v in row] for row in ws.iter_rows(values_only=True)], dtype=float)
    assert np.array_equal(got, want)
    calamine = pytest.importorskip("python_calamine")
    rows = calamine.CalamineWorkbook.from_path(str(path)).get_sheet_by_name("w").to_python()
    assert np.array_equal(np.array(rows, dtype=float), want)
    from sheetgpt.xlsx_reader import read_workbook

    sheet = read_workbook(path, sheets=["w"]).sheets["w"]
    rows_, cols_, vals = sheet.numbers
    got = np.full((60, 100), np.nan)
    got[rows_, cols_] = vals
    assert np.array_equal(got, want)


def test_crc32_combine_matches_zlib():
    rng = np.random.default_rng(1)
    a, b = rng.bytes(1000), rng.bytes(12345)
    assert fast_xlsx.crc32_combine(zlib.crc32(a), zlib.crc32(b), len(b)) == zlib.crc32(a + b)
    assert fast_xlsx.crc32_combine(zlib.crc32(a), zlib.crc32(b""), 0) == zlib.crc32(a)


def test_pieces_join_into_one_stream_across_many_chunks():
    values = stored_values(_awkward_weights(30000)).reshape(300, 100)
    skel = io.BytesIO()
    wb = xlsxwriter.Workbook(skel, {"in_memory": True})
    wb.add_worksheet("w")
    wb.close()
    prefix, suffix = fast_xlsx.sheet_parts(zipfile.ZipFile(skel).read("xl/worksheets/sheet1.xml"), 300, 100)
    tasks = fast_xlsx.plan("m", "w", (300, 100), prefix, suffix, cells_per_piece=1000)
    assert len(tasks) == 30
    pieces = list(fast_xlsx.deflate_all(tasks, {"w": values}, processes=2))
    xml = zlib.decompress(b"".join(p.data for p in pieces), -15)
    assert xml == prefix + b"".join(fast_xlsx.rows_xml(values[t.r0:t.r1], t.r0) for t in tasks) + suffix
    assert b'<dimension ref="A1:CV300"/>' in xml


def test_a_built_book_is_xlsxwriters_book_plus_exact_weight_tabs(tmp_path, model_dir, monkeypatch):
    """Every member but the weight tabs is xlsxwriter's, byte for byte (the old path wrote the same
    members); the weight tabs read back (openpyxl) as exactly the stored values the reference used."""
    import shutil

    from sheetgpt import build
    from sheetgpt.checkpoint import load_model
    from sheetgpt.tokenizer import Tokenizer

    d = model_dir("odd")
    model, tok = load_model(d), Tokenizer.from_dir(d)
    real = fast_xlsx.assemble
    seen = {}

    def keep_skeleton(skeleton, out, weights, **kw):
        shutil.copy(skeleton, tmp_path / "skeleton.xlsx")
        seen.update(weights)
        return real(skeleton, out, weights, **kw)

    monkeypatch.setattr(build.fast_xlsx, "assemble", keep_skeleton)
    path = build.build_workbook(model, tok, "the cat sat", tmp_path / "fast.xlsx").path
    with zipfile.ZipFile(path) as fast, zipfile.ZipFile(tmp_path / "skeleton.xlsx") as skel:
        assert fast.testzip() is None
        assert fast.namelist() == skel.namelist()
        for name in skel.namelist():
            if name not in seen:
                assert fast.read(name) == skel.read(name), name
    assert len(seen) == len(model.flat)
    book = openpyxl.load_workbook(path, read_only=True)
    for tab, values in seen.values():
        got = np.array([list(r) for r in book[tab].iter_rows(values_only=True)], dtype=float)
        assert np.array_equal(got, stored_values(model.flat[tab]).reshape(got.shape)), tab
