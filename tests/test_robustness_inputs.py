"""Issue 18's input-side classes, through the CLI: each is one line, exit 2, nothing left behind.

- special files (/dev/zero, FIFOs, directories) where a file is read: refused before opening;
- --json/--junit destinations: only new or regular files, never the book, never each other,
  all refused before the check runs;
- option values: nan, inf, negative and denormal values refused by click at parse time;
- writing that fails: a full disk (ENOSPC), a read-only place (EROFS), a name whose temporary
  name passes 255 bytes; a model path that is not UTF-8 is written safely into the Guide.

The tests run as root here, and root ignores permission bits, so a read-only directory made with
chmod would still be writable: full and read-only file systems are simulated by making the
write calls raise OSError(ENOSPC) / OSError(EROFS) (monkeypatch), as the kernel would.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from sheetgpt.cli import main
from sheetgpt.engine.reader import read_workbook

PROGRESS = re.compile(r"^(writing tabs|recomputing formulas)\b")


def run(*args):
    return CliRunner().invoke(main, [a if isinstance(a, str) else os.fsdecode(a) for a in args])


def refused(*args, match: str) -> str:
    result = run(*args)
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output
    lines = [x for x in result.output.strip().splitlines() if x.strip() and not PROGRESS.match(x)]
    assert len(lines) == 1 and lines[0].startswith("Error: "), lines
    assert re.search(match, lines[0]), lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def small(book, tmp_path_factory):
    src = Path(book("micro", "ab").path)
    path = tmp_path_factory.mktemp("book") / "small.xlsx"
    shutil.copy(src, path)
    return path


@pytest.fixture
def no_check(monkeypatch):
    """Fails the test if the check itself starts: every refusal must come before it."""

    def boom(*a, **k):
        raise AssertionError("the check ran before the refusal")

    monkeypatch.setattr("sheetgpt.check.check_book", boom)


def listing(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir())


# ------------------------------------------------------------------ check BOOK: regular files only


@pytest.mark.parametrize("kind", ["/dev/zero", "fifo", "directory", "symlink to /dev/zero"])
def test_check_accepts_only_regular_files(tmp_path, no_check, kind):
    target = {"/dev/zero": Path("/dev/zero"), "fifo": tmp_path / "f.xlsx", "directory": tmp_path / "d.xlsx"}.get(
        kind, tmp_path / "z.xlsx"
    )
    if kind == "fifo":
        os.mkfifo(target)  # opening it to read would block for ever: it must not be opened
    elif kind == "directory":
        target.mkdir()
    elif kind.startswith("symlink"):
        os.symlink("/dev/zero", target)
    refused("check", str(target), match=r"is (a device|a FIFO \(named pipe\)|a directory), expected an \.xlsx workbook")


def test_a_symlink_to_a_regular_book_is_fine(small, tmp_path):
    link = tmp_path / "link.xlsx"
    os.symlink(small, link)
    assert run("check", str(link), "-q").exit_code == 0


def test_tokenize_file_accepts_only_regular_files(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    refused("tokenize", "--file", "/dev/zero", match="is a device")
    refused("tokenize", "--file", str(tmp_path / "fifo"), match="is a FIFO")
    refused("bpe-learn", str(tmp_path / "fifo"), "--vocab-size", "300", "-o", str(tmp_path), match="is a FIFO")


# ------------------------------------------------------------------ --json / --junit destinations


@pytest.mark.parametrize("kind", ["symlink", "dangling symlink", "device", "directory", "fifo"])
@pytest.mark.parametrize("opt", ["--json", "--junit"])
def test_report_paths_must_be_regular_or_new_even_with_force(small, tmp_path, no_check, kind, opt):
    elsewhere = tmp_path / "elsewhere.txt"
    elsewhere.write_text("keep me")
    out = tmp_path / "r.out"
    if kind == "symlink":
        os.symlink(elsewhere, out)
    elif kind == "dangling symlink":
        os.symlink(tmp_path / "nowhere", out)
    elif kind == "device":
        out = Path("/dev/null")
    elif kind == "directory":
        out.mkdir()
    else:
        os.mkfifo(out)
    refused("check", str(small), opt, str(out), "--force", match="a report is written only to a new or regular file")
    assert elsewhere.read_text() == "keep me"
    if kind.endswith("symlink"):
        assert out.is_symlink()


@pytest.mark.parametrize("opt", ["--json", "--junit"])
def test_the_book_itself_is_never_a_report(small, tmp_path, no_check, opt):
    before = small.read_bytes()
    refused("check", str(small), opt, str(small), "--force", match="is the book being checked")
    hard = tmp_path / "hard.xlsx"
    os.link(small, hard)  # the same file under another name
    refused("check", str(small), opt, str(hard), "--force", match="is the book being checked")
    d = tmp_path / "d"
    os.symlink(small.parent, d)  # the same path through a symlinked directory
    refused("check", str(small), opt, str(d / small.name), "--force", match="is the book being checked")
    assert small.read_bytes() == before


def test_json_and_junit_must_be_different_files(small, tmp_path, no_check):
    refused("check", str(small), "--json", str(tmp_path / "r"), "--junit", str(tmp_path / "r"), match="both name")
    os.symlink(tmp_path, tmp_path / "alias")
    refused(
        "check",
        str(small),
        "--json",
        str(tmp_path / "r"),
        "--junit",
        str(tmp_path / "alias" / "r"),
        match="both name",
    )


def test_regular_report_files_are_replaced_with_force(small, tmp_path):
    j, x = tmp_path / "r.json", tmp_path / "r.xml"
    j.write_text("old")
    x.write_text("old")
    assert run("check", str(small), "--json", str(j), "--junit", str(x), "--force", "-q").exit_code == 0
    assert j.read_text().startswith("{") and x.read_text().startswith("<?xml")
    assert listing(tmp_path) == ["r.json", "r.xml"]


def test_a_report_whose_temporary_name_is_too_long_is_refused_first(small, tmp_path, no_check):
    refused("check", str(small), "--json", str(tmp_path / ("r" * 245)), match="255-byte limit")


def test_a_report_that_cannot_be_written_leaves_nothing(small, tmp_path, monkeypatch):
    def full(*a, **k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("sheetgpt.safe_io.os.link", full)  # a new report is linked into place
    refused("check", str(small), "-q", "--json", str(tmp_path / "r.json"), match="No space left on device")
    assert listing(tmp_path) == []


# ------------------------------------------------------------------ option values


@pytest.mark.parametrize(
    "args",
    [
        ["--timeout", "nan"],
        ["--timeout", "-5"],
        ["--timeout", "0"],
        ["--timeout", "inf"],
        ["--timeout", "1e300"],
        ["--rtol", "inf"],
        ["--rtol", "nan"],
        ["--rtol", "-inf"],
        ["--rtol", "0"],
        ["--rtol", "-1e-9"],
        ["--rtol", "2"],
    ],
)
def test_bad_check_option_values_are_refused_at_parse_time(small, no_check, args):
    result = run("check", str(small), *args)
    assert result.exit_code == 2, result.output
    assert "Invalid value for" in result.output and "Traceback" not in result.output


# ------------------------------------------------------------------ writing a book


@pytest.fixture(scope="module")
def micro(model_dir):
    return model_dir("micro")


def build(micro, out, *more):
    return ("build", "--model", str(micro), "--prompt", "ab", "--no-typed-prompt", "-o", str(out), *more)


def test_a_full_disk_while_writing_the_book_leaves_nothing(micro, tmp_path, monkeypatch):
    import sheetgpt.book.writer as fx

    real = fx.assemble

    def assemble_then_disk_full(skeleton, out_path, *a, **k):
        Path(out_path).write_bytes(b"PK half a book")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(out_path))

    monkeypatch.setattr(fx, "assemble", assemble_then_disk_full)
    out = tmp_path / "out" / "b.xlsx"
    refused(*build(micro, out), match=r"b\.xlsx: cannot write it \(No space left on device\); free some space")
    assert listing(out.parent) == []
    monkeypatch.setattr(fx, "assemble", real)
    assert run(*build(micro, out)).exit_code == 0


@pytest.mark.parametrize("where", ["rename", "skeleton"])
def test_a_read_only_place_leaves_nothing(micro, tmp_path, monkeypatch, where):
    def read_only(*a, **k):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    if where == "rename":
        monkeypatch.setattr("sheetgpt.safe_io.os.link", read_only)  # a new book is linked into place
    else:  # xlsxwriter's own open of the skeleton: it wraps the OSError in FileCreateError
        monkeypatch.setattr("xlsxwriter.workbook.ZipFile", read_only)
    out = tmp_path / "b.xlsx"
    refused(*build(micro, out), match=r"cannot write it \(Read-only file system\); write elsewhere")
    assert listing(tmp_path) == []


@pytest.mark.parametrize("length", [238, 250, 255, 300])
def test_an_output_name_too_long_for_its_temporary_name_is_refused(micro, tmp_path, length, monkeypatch):
    monkeypatch.setattr("sheetgpt.checkpoint.load_model", lambda *a: pytest.fail("the model was loaded"))
    out = tmp_path / ("b" * (length - 5) + ".xlsx")
    refused(*build(micro, out), match="255-byte limit")
    assert listing(tmp_path) == []


@pytest.mark.slow
def test_a_model_path_that_is_not_utf8_builds_with_a_safe_provenance(micro, tmp_path):
    d = Path(os.fsdecode(bytes(tmp_path) + b"/caf\xe9-\xff"))  # Latin-1 bytes: not UTF-8
    shutil.copytree(micro, d)
    out = tmp_path / "b.xlsx"
    result = run(*build(d, out))
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    guide = read_workbook(out).sheets["Guide"].strings.values()
    model_cells = [s for s in guide if "caf" in s]
    assert model_cells and all(r"caf\xe9-\xff" in s for s in model_cells), model_cells
    assert run("check", str(out), "-q").exit_code == 0


# ------------------------------------------------------------------ model inputs through the CLI


def test_a_deeply_nested_vocab_is_one_line(micro, tmp_path):
    d = tmp_path / "m"
    shutil.copytree(micro, d)
    (d / "vocab.json").write_text("[" * 200_000 + "]" * 200_000)
    refused(*build(d, tmp_path / "b.xlsx"), match=r"vocab\.json: JSON nested more than 64 levels")


def test_a_billion_layer_config_is_refused_fast_through_the_cli(micro, tmp_path):
    import json
    import time

    d = tmp_path / "m"
    shutil.copytree(micro, d)
    cfg = json.loads((d / "config.json").read_text())
    cfg["n_layer"] = 1_000_000_000
    (d / "config.json").write_text(json.dumps(cfg))
    started = time.perf_counter()
    refused(*build(d, tmp_path / "b.xlsx"), match="n_layer=1000000000")
    assert time.perf_counter() - started < 5
