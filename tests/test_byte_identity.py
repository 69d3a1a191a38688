"""A guard: books built from fixed inputs are byte-identical to the committed hashes, part by part,
on any CPU, BLAS kernel and thread count.

The hashes in tests/fixtures/book_hashes.json must not move when code moves. A change that means
to alter the books updates them in the same commit and says why:

    SHEETGPT_UPDATE_HASHES=1 python -m pytest -q tests/test_byte_identity.py

SOURCE_DATE_EPOCH fixes the two build times a book holds (docProps/core.xml's and the Guide's
"built" cell), so every part is hashed. ``check``'s JSON report of one book is kept as a golden
too (timings, paths and the engine's error sizes removed: see ``report_golden``), so moving
check, grade and report is guarded as well.

The slow test builds the same books in fresh processes under several OpenBLAS kernels, thread
counts and with numpy's AVX-512 loops turned off: every cached value is computed without BLAS
and without numpy's SIMD transcendentals (sheetgpt.exact), so all of them give the same bytes.
Run as a script (``python tests/test_byte_identity.py DIR``) it prints what the test compares.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from sheetgpt.book.tabs.steering import Settings
from sheetgpt.book.writer import build_workbook
from sheetgpt.check import check_book
from sheetgpt.checkpoint import load_model
from sheetgpt.random_model import SHAPES, make_random_model
from sheetgpt.sae import load_sae
from sheetgpt.tokenizer import Tokenizer

ROOT = Path(__file__).resolve().parents[1]
HASHES = Path(__file__).parent / "fixtures" / "book_hashes.json"
REPORTS = Path(__file__).parent / "fixtures" / "check_reports.json"
FIXTURES = Path(__file__).parent / "fixtures" / "models"
EPOCH = "1700000000"
PROMPT = "Mike is quick. He moves"

# name -> (model: None for the bundled one, a fixture folder, or a random shape; prompt; build options).
# "blocks" is the CLI's --blocks (Model.truncated), not a build_workbook option.
BOOKS = {
    # the CLI's default book: 24 token rows, the prompt's 6 and 18 generated (issue 16)
    "default": (None, PROMPT, {"typed_prompt": None, "generate": 18, "sae": "bundled"}),
    "no-typed-prompt": (None, PROMPT, {"typed_prompt": False}),
    "micro": ("random:micro", "the cat sat on", {}),
    "odd": ("fixture:odd", "a quick test", {"context": 11, "logits_all": True}),
    "exercise": (None, PROMPT, {"exercise": "variance,gelu"}),
    "steered": (None, PROMPT, {"generate": 4, "steer": Settings(strength=2.5, block=1)}),
    "blocks": (None, PROMPT, {"blocks": 1, "generate": 2}),
    "train": (None, PROMPT, {"tabs": {"train": True}, "typed_prompt": False}),  # sheetgpt build --train (issue 26)
}
REPORT_BOOKS = ("micro", "exercise")  # check's JSON report of these is a golden

# OpenBLAS kernels x thread counts, and numpy without its AVX-512 loops (numpy 2 names its dispatch
# targets X86_V4, AVX512_ICL, AVX512_SPR; numpy 1 AVX512F, AVX512_SKX, ...: it ignores the others)
NO_AVX512 = "X86_V4 AVX512F AVX512CD AVX512_SKX AVX512_CLX AVX512_CNL AVX512_ICL AVX512_SPR"
KERNELS = ("Haswell", "SkylakeX", "Sandybridge")
SETTINGS = [{"OPENBLAS_CORETYPE": c, "OPENBLAS_NUM_THREADS": n} for c in KERNELS for n in ("1", "2")]
SETTINGS.append({"NPY_DISABLE_CPU_FEATURES": NO_AVX512, "OPENBLAS_CORETYPE": "Haswell", "OPENBLAS_NUM_THREADS": "2"})


def build(name: str, tmp_path: Path) -> Path:
    """Book ``name`` of BOOKS, written under tmp_path (SOURCE_DATE_EPOCH must be set)."""
    spec, prompt, options = BOOKS[name]
    options = dict(options)
    model_dir = None
    if spec is not None:
        kind, shape = spec.split(":")
        model_dir = FIXTURES / shape if kind == "fixture" else make_random_model(tmp_path / shape, SHAPES[shape], 0)
    model = load_model(model_dir)
    tokenizer = Tokenizer.from_dir(model.path)
    if "blocks" in options:
        model = model.truncated(options.pop("blocks"))
    if options.get("sae") == "bundled":  # the bundled model's books have the Features tab (issue 27)
        options["sae"] = load_sae(None, model.config)
    out = tmp_path / f"{name}.xlsx"
    return build_workbook(model, tokenizer, prompt, out, source=f"fixed source for {name}", **options).path


def part_hashes(path: Path) -> dict[str, str]:
    with zipfile.ZipFile(path) as zf:
        return {n: hashlib.sha256(zf.read(n)).hexdigest() for n in sorted(zf.namelist())}


def report_golden(path: Path) -> dict:
    """``check``'s JSON report of a book (the fast engine), without what depends on the machine or the
    run: the seconds, the book's path, each stage's max_abs/max_rel (the fast engine's own sums use
    BLAS; whether they are within rtol is the stage's ``passed``), and a first wrong cell's recomputed
    number is kept to 6 significant digits (for the same reason)."""
    data = json.loads(check_book(path, engine="fast").to_json())
    assert data.pop("path") == str(path)
    data.pop("seconds")
    for stage in data["stages"]:
        stage.pop("max_abs")
        stage.pop("max_rel")
        bad = stage["first_bad"] or {}
        if isinstance(bad.get("got"), float):
            bad["got"] = float(f"{bad['got']:.6g}")
    return data


def everything(tmp_path: Path) -> dict:
    """What the slow test compares across BLAS settings: every book's part hashes and the report goldens."""
    os.environ["SOURCE_DATE_EPOCH"] = EPOCH
    books = {name: build(name, tmp_path) for name in BOOKS}
    return {
        "hashes": {name: part_hashes(path) for name, path in books.items()},
        "reports": {name: report_golden(books[name]) for name in REPORT_BOOKS},
    }


def _recorded(path: Path, name: str, got) -> object:
    recorded = json.loads(path.read_text()) if path.exists() else {}
    if os.environ.get("SHEETGPT_UPDATE_HASHES") == "1":
        recorded[name] = got
        path.write_text(json.dumps(recorded, indent=1, sort_keys=True) + "\n")
        pytest.skip("golden updated")
    assert name in recorded, f"nothing recorded for {name} in {path.name}: run with SHEETGPT_UPDATE_HASHES=1"
    return recorded[name]


def _changed(got: dict, want: dict) -> list[str]:
    return sorted(n for n in set(got) | set(want) if got.get(n) != want.get(n))


@pytest.fixture(scope="module")
def books(tmp_path_factory):
    """name -> path, each book built once (lazily) for this module."""
    tmp = tmp_path_factory.mktemp("books")
    built: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in built:
            old = os.environ.get("SOURCE_DATE_EPOCH")
            os.environ["SOURCE_DATE_EPOCH"] = EPOCH
            try:
                built[name] = build(name, tmp)
            finally:
                if old is None:
                    del os.environ["SOURCE_DATE_EPOCH"]
                else:
                    os.environ["SOURCE_DATE_EPOCH"] = old
        return built[name]

    return get


@pytest.mark.parametrize("name", sorted(BOOKS))
def test_every_part_of_the_book_hashes_as_recorded(name, books):
    got = part_hashes(books(name))
    want = _recorded(HASHES, name, got)
    assert not _changed(got, want), f"{name}: these parts changed: {_changed(got, want)}"


@pytest.mark.parametrize("name", REPORT_BOOKS)
def test_check_json_report_is_as_recorded(name, books):
    got = report_golden(books(name))
    want = _recorded(REPORTS, name, got)
    assert got["stages"] and got["passed"] == (name != "exercise")  # an unfilled exercise book fails its blanks
    assert got == want, f"{name}: check's JSON report changed"


def test_the_creation_time_follows_source_date_epoch(books):
    with zipfile.ZipFile(books("micro")) as zf:
        core = zf.read("docProps/core.xml").decode()
    assert '<dcterms:created xsi:type="dcterms:W3CDTF">2023-11-14T22:13:20Z</dcterms:created>' in core


@pytest.mark.slow
@pytest.mark.parametrize("env", SETTINGS, ids=lambda e: "-".join(f"{k}={v}"[:24] for k, v in sorted(e.items())))
def test_books_are_the_same_bytes_under_every_blas_setting(env, tmp_path):
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OPENBLAS_", "NPY_", "OMP_", "MKL_"))}
    clean |= env | {"PYTHONPATH": os.pathsep.join([str(ROOT), clean.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    run = subprocess.run(
        [sys.executable, "-W", "ignore::ImportWarning", __file__, str(tmp_path)],
        env=clean,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    got = json.loads(run.stdout)
    hashes, reports = json.loads(HASHES.read_text()), json.loads(REPORTS.read_text())
    for name in BOOKS:
        changed = _changed(got["hashes"][name], hashes[name])
        assert not changed, f"{name} under {env}: these parts changed: {changed}"
    for name in REPORT_BOOKS:
        assert got["reports"][name] == reports[name], f"check's report of {name} under {env}"


if __name__ == "__main__":
    print(json.dumps(everything(Path(sys.argv[1]))))
