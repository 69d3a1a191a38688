"""Issue 28's robustness classes (and issue 23's layer item): each class has a test here.

Layers: the package's errors know nothing of click. Crashes: a compute tab that does not cover
its regions, JSON integers past Python's 4,300-digit limit, a closed standard output. Unbounded
reads: the HF cache's refs, a safetensors header that claims more than config.json allows.
Races and signals: builds and reports never replace a file that appeared meanwhile, SIGTERM and
SIGHUP clean up as Ctrl+C does, report modes follow the umask. A sweep over all of them asserts
that nothing exits 3. docs/robustness.md lists the classes with their exit codes.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sheetgpt.cli import main

CLI = [sys.executable, "-m", "sheetgpt"]
COMMIT = "607a30d783dfa663caf39e06633721c8d4cfcd7e"
HUGE = "7" * 5000  # an integer past Python's 4,300-digit limit on int(str)


def cli(*args, env=None):
    return CliRunner().invoke(main, [str(a) for a in args], env=env)


def one_line(result) -> str:
    """The single line a refusal prints on stderr (progress labels aside), never a traceback."""
    err = result.stderr if hasattr(result, "stderr") else result
    assert "Traceback" not in err, err
    lines = [x for x in err.splitlines() if x.strip() and not re.match(r"(writing tabs|recomputing formulas)", x)]
    assert len(lines) == 1, err
    return lines[0]


def peak_rss_mb(args, env=None) -> tuple[int, str, float]:
    """Run the CLI in a grandchild; its exit code, stderr and peak resident memory (MB)."""
    probe = (
        "import json, resource, subprocess, sys\n"
        "r = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "print(json.dumps([r.returncode, r.stderr, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe, *CLI, *map(str, args)], capture_output=True, text=True, timeout=120, env=env
    )
    return tuple(json.loads(out.stdout))


@pytest.fixture(scope="module")
def small(book):
    return Path(book("micro", "ab").path)


@pytest.fixture
def micro(model_dir, tmp_path):
    """A private copy of the micro model directory, free to damage."""
    d = tmp_path / "micro"
    shutil.copytree(model_dir("micro"), d)
    return d


# ------------------------------------------------------------------ layers


def test_the_package_below_the_cli_does_not_import_click():
    code = (
        "import sys\n"
        "import sheetgpt.errors, sheetgpt.check, sheetgpt.checkpoint, sheetgpt.book.writer, sheetgpt.engine\n"
        "import sheetgpt.engine.reader, sheetgpt.safe_io, sheetgpt.report, sheetgpt.grade, sheetgpt.tokenizer\n"
        "print(sorted(m for m in sys.modules if m == 'click' or m.startswith('click.')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_user_error_is_a_plain_exception_that_the_cli_prints_as_one_line(tmp_path):
    import click

    from sheetgpt.errors import CheckpointError, SheetGPTError

    assert not issubclass(SheetGPTError, click.ClickException)
    e = CheckpointError("x: bad")
    assert (str(e), e.message, e.exit_code) == ("x: bad", "x: bad", 2)
    r = subprocess.run([*CLI, "check", str(tmp_path / "missing.xlsx")], capture_output=True, text=True)
    assert (r.returncode, r.stdout, r.stderr) == (2, "", f"Error: {tmp_path / 'missing.xlsx'}: no such file\n")


# ------------------------------------------------------------------ crashes (were exit 3)


def _parts(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as z:
        return {i.filename: z.read(i.filename) for i in z.infolist()}


def _write(path: Path, parts: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in parts.items():
            z.writestr(name, data)
    return path


def _sheet(parts: dict[str, bytes], name: str) -> str:
    wb = parts["xl/workbook.xml"].decode()
    rid = re.search(rf'<sheet name="{re.escape(name)}" sheetId="\d+" r:id="(rId\d+)"', wb).group(1)
    rels = parts["xl/_rels/workbook.xml.rels"].decode()
    return "xl/" + re.search(rf'<Relationship Id="{rid}" Type="[^"]+" Target="([^"]+)"', rels).group(1)


NARROWED = {
    "emptied": lambda x: re.sub(rb"<sheetData>.*</sheetData>", b"<sheetData/>", x, flags=re.S),
    "rows cut": lambda x: re.sub(rb'<row r="(\d{2,})".*?</row>', b"", x, flags=re.S),
    "columns cut": lambda x: re.sub(rb'<c r="[D-Z]\d+"[^>]*?(/>|>.*?</c>)', b"", x, flags=re.S),
}


@pytest.mark.parametrize("how", NARROWED)
@pytest.mark.parametrize("tab", ["Final norm", "Embed", "Logit lens"])
def test_a_compute_tab_that_does_not_cover_its_regions_fails_those_stages(small, tmp_path, tab, how):
    """Decision: cells a stage needs that the sheet does not hold are wrong values (exit 1, the stage
    FAILs at its first missing cell), not an unusable book: the book still reads and computes."""
    parts = _parts(small)
    part = _sheet(parts, tab)
    parts[part] = re.sub(rb"<dimension [^>]*/>", b"", NARROWED[how](parts[part]))
    bad = _write(tmp_path / "narrow.xlsx", parts)
    r = cli("check", bad)
    assert r.exit_code == 1, (r.exit_code, r.output, r.exception)
    assert re.search(rf"first wrong cell '{tab}'!", r.stdout), r.stdout
    assert "FAIL" in r.stdout.splitlines()[-1]


@pytest.mark.slow
@pytest.mark.parametrize(
    "engine",
    [pytest.param("gnumeric", marks=pytest.mark.gnumeric), pytest.param("libreoffice", marks=pytest.mark.libreoffice)],
)
def test_an_emptied_tab_gets_the_same_verdict_in_every_engine(small, tmp_path, engine):
    import importlib

    if not importlib.import_module(f"sheetgpt.engine.{engine}").available():
        pytest.skip(f"{engine} is not installed")
    parts = _parts(small)
    part = _sheet(parts, "Final norm")
    parts[part] = NARROWED["emptied"](parts[part])
    bad = _write(tmp_path / "narrow.xlsx", parts)
    verdicts = {}
    for name in ("fast", engine):
        r = cli("check", bad, "--engine", name, "--json", tmp_path / f"{name}.json")
        assert r.exit_code == 1, (name, r.output)
        report = json.loads((tmp_path / f"{name}.json").read_text())
        verdicts[name] = sorted(st["stage"] for st in report["stages"] if not st["passed"])
    assert verdicts["fast"] == verdicts[engine] and "ln_f.mean" in verdicts["fast"]


def test_swapped_sheet_ids_are_a_verdict_or_one_line(small, tmp_path):
    parts = _parts(small)
    wb = parts["xl/workbook.xml"].decode()
    ids = dict(re.findall(r'<sheet name="([^"]+)" sheetId="\d+" r:id="(rId\d+)"', wb))
    for a, b in [("Final norm", "Logits"), ("Embed", "Final norm"), ("Logits", "Predict"), ("Embed", "Embeddings")]:
        swapped = wb.replace(f'r:id="{ids[a]}"', "r:id=TMP").replace(f'r:id="{ids[b]}"', f'r:id="{ids[a]}"')
        parts["xl/workbook.xml"] = swapped.replace("r:id=TMP", f'r:id="{ids[b]}"').encode()
        r = cli("check", _write(tmp_path / "swapped.xlsx", parts), "-q")
        assert r.exit_code in (1, 2), (a, b, r.exit_code, r.output)
        if r.exit_code == 2:
            assert one_line(r).startswith("Error: ")


def test_an_emptied_tab_in_an_exercise_book_is_graded_not_a_crash(book, tmp_path):
    parts = _parts(Path(book("micro", "ab", exercise="gelu").path))
    part = _sheet(parts, "Final norm")
    parts[part] = NARROWED["emptied"](parts[part])
    r = cli("grade", _write(tmp_path / "ex.xlsx", parts))
    assert r.exit_code == 1, (r.exit_code, r.output)
    assert "Exercises:" in r.stdout


def _replace_json(path: Path, edit) -> None:
    path.write_text(edit(path.read_text()))


@pytest.mark.parametrize("where", ["config.json", "vocab.json", "safetensors metadata"])
def test_a_json_integer_past_4300_digits_is_one_line_naming_the_file(micro, tmp_path, where):
    if where == "config.json":
        _replace_json(micro / "config.json", lambda t: re.sub(r'"n_layer": *\d+', f'"n_layer": {HUGE}', t))
        name = "config.json"
    elif where == "vocab.json":
        _replace_json(micro / "vocab.json", lambda t: t[: t.rindex("}")] + f', "zzz-huge": {HUGE}}}')
        name = "vocab.json"
    else:
        data = (micro / "model.safetensors").read_bytes()
        (n,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8 : 8 + n])
        header["__metadata__"] = {"format": "pt"}
        text = json.dumps(header).replace('"format": "pt"', f'"format": "pt", "n": {HUGE}').encode()
        (micro / "model.safetensors").write_bytes(struct.pack("<Q", len(text)) + text + data[8 + n :])
        name = "model.safetensors"
    r = cli("build", "--model", micro, "--prompt", "ab", "-o", tmp_path / "b.xlsx")
    assert r.exit_code == 2, (r.exit_code, r.output, r.exception)
    line = one_line(r)
    assert re.fullmatch(rf"Error: \S*{re.escape(name)}: holds an integer of more than 4,300 digits; refusing it", line)
    assert not (tmp_path / "b.xlsx").exists()


@pytest.mark.parametrize("args", [["-v"], [], ["-q"]])
def test_a_closed_standard_output_exits_quietly_with_141(small, args):
    """`sheetgpt check book -v | head -3`: the reader went away; exit 141 (as SIGPIPE would) and say nothing."""
    r_fd, w_fd = os.pipe()
    os.close(r_fd)  # the reader is gone before anything is written
    try:
        proc = subprocess.run([*CLI, "check", str(small), *args], stdout=w_fd, stderr=subprocess.PIPE, text=True)
    finally:
        os.close(w_fd)
    assert proc.returncode == 141, proc.stderr
    assert [x for x in proc.stderr.splitlines() if x != "recomputing formulas"] == [], proc.stderr


def test_head_reads_the_first_lines_of_a_check(small):
    out = subprocess.run(
        f'{" ".join(map(str, CLI))} check {small} -v | head -3; echo "rc=${{PIPESTATUS[0]}}"',
        shell=True,
        executable="/bin/bash",
        capture_output=True,
        text=True,
    )
    lines = out.stdout.splitlines()
    assert len(lines) == 4 and lines[0].startswith("stage") and lines[-1] in ("rc=0", "rc=141"), out
    assert "Error" not in out.stderr and "Exception" not in out.stderr, out.stderr


# ------------------------------------------------------------------ unbounded reads


@pytest.fixture
def hub(micro, tmp_path):
    """A hub cache holding the micro model as org/m; returns (cache env, refs/main)."""
    root = tmp_path / "hub" / "models--org--m"
    shutil.copytree(micro, root / "snapshots" / COMMIT)
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(COMMIT)
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub")}
    return env, root / "refs" / "main"


def test_the_hub_cache_fixture_loads(hub, tmp_path):
    env, _ = hub
    r = cli("build", "--model", "org/m", "--prompt", "ab", "-o", tmp_path / "b.xlsx", env=env)
    assert r.exit_code == 0, r.output


def test_a_3_gb_ref_is_not_read(hub, tmp_path):
    env, ref = hub
    with open(ref, "r+b") as f:
        f.truncate(3 * 2**30)  # sparse: 3 GB of zero bytes that take no disk space
    code, err, peak = peak_rss_mb(["build", "--model", "org/m", "-o", tmp_path / "b.xlsx"], env=env)
    assert code == 2, err
    assert re.fullmatch(
        r"Error: \S+/refs/main: does not hold a commit id \(40 hexadecimal digits; this file has "
        r"more than 128 bytes\); the cache is damaged",
        one_line(err),
    ), err
    assert peak < 300, peak


@pytest.mark.parametrize("target", ["/proc/self/environ", "file"])
def test_a_ref_that_is_a_symlink_is_refused_without_showing_its_target(hub, tmp_path, target):
    env, ref = hub
    secret = "sheetgpt-secret-4711"
    if target == "file":
        target = tmp_path / "secret.txt"
        target.write_text(secret)
    ref.unlink()
    ref.symlink_to(target)
    r = subprocess.run(
        [*CLI, "build", "--model", "org/m", "-o", str(tmp_path / "b.xlsx")],
        capture_output=True,
        text=True,
        env={**env, "SHEETGPT_SECRET": secret},
    )
    assert r.returncode == 2 and secret not in r.stderr + r.stdout, r.stderr
    assert one_line(r.stderr).endswith(
        "refs/main: is a symbolic link; a ref is a regular file holding a commit id; the cache is damaged"
    )


@pytest.mark.parametrize("content", ["not a commit", COMMIT[:39], COMMIT + "0", "../" + COMMIT[3:], "=" * 40])
def test_a_ref_that_is_not_40_hex_digits_is_refused_without_echo(hub, tmp_path, content):
    env, ref = hub
    ref.write_text(content)
    r = cli("build", "--model", "org/m", "-o", tmp_path / "b.xlsx", env=env)
    assert r.exit_code == 2
    line = one_line(r)
    assert "does not hold a commit id" in line and content not in line


def _sparse_checkpoint(micro: Path, vocab: int) -> None:
    """model.safetensors whose wte claims [vocab, n_embd] (float32), the data a sparse hole; config.json agrees."""
    data = (micro / "model.safetensors").read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    config = json.loads((micro / "config.json").read_text())
    d = config["n_embd"]
    config["vocab_size"] = vocab
    (micro / "config.json").write_text(json.dumps(config))
    entries = sorted(((k, v) for k, v in header.items() if k != "__metadata__"), key=lambda kv: kv[1]["data_offsets"])
    offset, out = 0, {}
    for k, v in entries:
        if k in ("wte.weight", "transformer.wte.weight"):
            v = {**v, "dtype": "F32", "shape": [vocab, d]}
        size = 4 * int(math.prod(v["shape"])) if v["dtype"] == "F32" else v["data_offsets"][1] - v["data_offsets"][0]
        out[k] = {**v, "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(out).encode()
    with open(micro / "model.safetensors", "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        f.truncate(8 + len(text) + offset)


def test_a_sparse_4_gb_checkpoint_is_refused_from_its_header(micro, tmp_path):
    """The header and config.json agree on 4 GB of wte, but the tokenizer has 263 tokens: refused
    before any tensor data is read."""
    _sparse_checkpoint(micro, vocab=2**27)  # [2**27, 8] float32 = 4 GiB
    code, err, peak = peak_rss_mb(["build", "--model", micro, "--prompt", "ab", "-o", tmp_path / "b.xlsx"])
    assert code == 2, err
    assert re.search(r"the tokenizer has 263 tokens but config.json says vocab_size 134217728", one_line(err))
    assert peak < 300, peak


def test_a_header_that_disagrees_with_config_is_refused_before_reading(micro, tmp_path):
    _sparse_checkpoint(micro, vocab=2**27)
    config = json.loads((micro / "config.json").read_text())
    (micro / "config.json").write_text(json.dumps({**config, "vocab_size": 263}))
    code, err, peak = peak_rss_mb(["check", "--model", micro, tmp_path / "none.xlsx"])
    assert code == 2 and "none.xlsx: no such file" in err  # the book is checked first
    code, err, peak = peak_rss_mb(["build", "--model", micro, "-o", tmp_path / "b.xlsx"])
    assert code == 2, err
    assert "tensor 'wte.weight' has shape [134217728, 8], expected [263, 8] from config.json" in one_line(err)
    assert peak < 300, peak


def test_a_safetensors_header_past_its_bound_is_refused_unread(micro, tmp_path):
    path = micro / "model.safetensors"
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", 50_000_000) + b"{")
        f.truncate(8 + 50_000_000 + 10)
    code, err, peak = peak_rss_mb(["build", "--model", micro, "-o", tmp_path / "b.xlsx"])
    assert code == 2 and "header length 50,000,000 bytes; sheetgpt reads headers of at most" in one_line(err), err
    assert peak < 300, peak


# ------------------------------------------------------------------ races and signals


def _build_args(model: Path, out: Path, *more):
    return ("build", "--model", model, "--prompt", "ab", "--no-typed-prompt", "-o", out, *more)


@pytest.fixture
def planting(monkeypatch):
    """While the book is being written, another program creates a file at its destination."""
    import sheetgpt.book.writer as writer

    real = writer.assemble

    def assemble_and_plant(skeleton, out_path, *a, **k):
        result = real(skeleton, out_path, *a, **k)
        planted = Path(out_path).parent / Path(out_path).name.split(".", 2)[1].join(["", ".xlsx"])
        planted.write_bytes(b"someone else's file")
        return result

    monkeypatch.setattr(writer, "assemble", assemble_and_plant)


@pytest.mark.parametrize("links", [True, False], ids=["hard links", "no hard links"])
def test_a_file_created_at_the_destination_during_a_build_is_kept(model_dir, tmp_path, planting, monkeypatch, links):
    if not links:  # FAT, exFAT, some network mounts: os.link fails; the name is claimed with O_EXCL
        monkeypatch.setattr("sheetgpt.safe_io.os.link", _raise(OSError(1, "Operation not permitted")))
    out = tmp_path / "b.xlsx"
    r = cli(*_build_args(model_dir("micro"), out))
    assert r.exit_code == 2, (r.output, r.exception)
    assert one_line(r) == f"Error: {out} exists; pass --force to overwrite it"
    assert out.read_bytes() == b"someone else's file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.xlsx"]


@pytest.mark.parametrize("kind", ["symlink", "dangling symlink", "fifo"])
def test_a_book_is_written_only_to_a_new_or_regular_file_even_with_force(tmp_path, kind, monkeypatch):
    def no_model(*a, **k):
        raise AssertionError("the model was loaded before the refusal")

    monkeypatch.setattr("sheetgpt.checkpoint.open_model", no_model)
    out, target = tmp_path / "b.xlsx", tmp_path / "target.xlsx"
    if kind == "fifo":
        os.mkfifo(out)
    else:
        out.symlink_to(target)
        if kind == "symlink":
            target.write_bytes(b"kept")
    r = cli("build", "-o", out, "--force")
    assert r.exit_code == 2
    what = "a FIFO (named pipe)" if kind == "fifo" else "a symbolic link"
    assert one_line(r) == f"Error: {out}: is {what}; a book is written only to a new or regular file"
    assert kind != "symlink" or target.read_bytes() == b"kept"


def test_with_force_the_file_created_during_the_build_is_replaced(model_dir, tmp_path, planting):
    out = tmp_path / "b.xlsx"
    assert cli(*_build_args(model_dir("micro"), out, "--force")).exit_code == 0
    assert out.read_bytes()[:2] == b"PK"


def _raise(exc):
    def f(*a, **k):
        raise exc

    return f


def test_two_concurrent_builds_to_one_new_name_one_wins(model_dir, tmp_path):
    out = tmp_path / "b.xlsx"
    args = [*CLI, *map(str, _build_args(model_dir("micro"), out))]
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(timeout=120), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    assert "exists; pass --force" in next(err for code, err in results if code == 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.xlsx"]


@pytest.fixture
def umask():
    def set_to(mask: int) -> None:
        os.umask(mask)

    old = os.umask(0o022)
    yield set_to
    os.umask(old)


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_new_reports_and_books_follow_the_umask(small, model_dir, tmp_path, umask, mask):
    umask(mask)
    r = cli("check", small, "-q", "--json", tmp_path / "r.json", "--junit", tmp_path / "r.xml")
    assert r.exit_code == 0, r.output
    assert cli(*_build_args(model_dir("micro"), tmp_path / "b.xlsx")).exit_code == 0
    for name in ("r.json", "r.xml", "b.xlsx"):
        assert oct((tmp_path / name).stat().st_mode & 0o777) == oct(0o666 & ~mask), name


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o600])
def test_force_keeps_the_mode_of_the_file_it_replaces(small, model_dir, tmp_path, umask, mode):
    umask(0o077)
    for name in ("r.json", "b.xlsx"):
        (tmp_path / name).write_text("old")
        os.chmod(tmp_path / name, mode)
    assert cli("check", small, "-q", "--json", tmp_path / "r.json", "--force").exit_code == 0
    assert cli(*_build_args(model_dir("micro"), tmp_path / "b.xlsx", "--force")).exit_code == 0
    for name in ("r.json", "b.xlsx"):
        assert (tmp_path / name).read_bytes() != b"old"
        assert oct((tmp_path / name).stat().st_mode & 0o777) == oct(mode), name


def test_a_report_file_planted_during_the_check_is_kept(small, tmp_path, monkeypatch):
    import sheetgpt.check as check

    real = check.check_book
    out = tmp_path / "r.json"

    def check_then_plant(*a, **k):
        report = real(*a, **k)
        out.write_text("someone else's report")
        return report

    monkeypatch.setattr(check, "check_book", check_then_plant)
    r = cli("check", small, "-q", "--json", out)
    assert r.exit_code == 2 and one_line(r) == f"Error: {out} exists; pass --force to overwrite it"
    assert out.read_text() == "someone else's report"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]


@pytest.mark.libreoffice
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_libreoffice_check_stopped_by_a_signal_leaves_no_temporary_copy(small, tmp_path, signum):
    from sheetgpt.engine import libreoffice

    if not libreoffice.available():
        pytest.skip("LibreOffice headless + python3-uno not installed")
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    proc = subprocess.Popen(
        [*CLI, "check", str(small), "--engine", "libreoffice", "-q"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "TMPDIR": str(tmp)},
        preexec_fn=lambda: [signal.signal(s, signal.SIG_DFL) for s in (signal.SIGTERM, signal.SIGHUP)],
    )
    deadline = time.time() + 60
    while not any(tmp.iterdir()) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)  # LibreOffice is starting on its copy of the book
    assert proc.poll() is None, "the check finished before it could be stopped"
    proc.send_signal(signum)
    assert proc.wait(timeout=60) == 128 + signum
    assert one_line(proc.stderr.read()) == f"Interrupted ({signal.Signals(signum).name})."
    assert list(tmp.iterdir()) == []


# ------------------------------------------------------------------ docs true of the CLI


@pytest.mark.slow
def test_the_readme_commands_run_in_order(tmp_path):
    """README's "What you can do" block, line by line, in a fresh directory: each command works after
    the ones before it (no --force needed), DIR being the bundled model's directory (2 blocks, a BPE
    that tokenizes the README's prompts as GPT-2's does, in few tokens). The LibreOffice line is left
    to the LibreOffice tests."""
    from sheetgpt.checkpoint import default_model_dir

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    block = readme.split("## What you can do", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    lines = [x.split("  #", 1)[0].strip() for x in block.splitlines() if x.strip()]
    assert len(lines) >= 10 and all(x.startswith("sheetgpt ") for x in lines), lines
    (tmp_path / "corpus.txt").write_text("the cat sat on the mat; the dog sat on the log. " * 400)
    env = {**os.environ, "DIR": str(default_model_dir())}
    for line in lines:
        if "--engine libreoffice" in line:
            continue
        cmd = line.replace("sheetgpt ", " ".join(CLI) + " ", 1).replace(" DIR", ' "$DIR"')
        r = subprocess.run(cmd, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, (line, r.stdout[-500:], r.stderr[-500:])


def test_help_says_what_grade_grades_and_every_exit_code():
    for verb in ("check", "grade"):
        r = cli(verb, "--help")
        assert r.exit_code == 0
        text = " ".join(r.stdout.split())
        assert "exercise" in text and "not done yet" in text
        for code in ("0 every stage matches", "1 a mismatch", "2 the book", "3 an internal error", "130", "141"):
            assert code in text, (verb, code)


# ------------------------------------------------------------------ the sweep: no exit 3 anywhere

SWEEP = settings(
    max_examples=100, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

# JSON values a hostile file may hold where a size, an id, a shape or an offset belongs
HOSTILE_NUMBERS = st.one_of(
    st.integers(-(2**70), 2**70),
    st.sampled_from([0, -1, 1, 2**31, 2**32, 2**63, 2**64, 10**4299]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.none(),
    st.text(max_size=8),
)
HOSTILE_JSON = st.one_of(  # two levels of structure; deeper nesting is HOSTILE_TEXT's 200 brackets
    HOSTILE_NUMBERS,
    st.lists(HOSTILE_NUMBERS, max_size=4),
    st.dictionaries(st.text(max_size=6), HOSTILE_NUMBERS, max_size=4),
    st.lists(
        st.one_of(st.lists(HOSTILE_NUMBERS, max_size=3), st.dictionaries(st.text(max_size=3), HOSTILE_NUMBERS)),
        max_size=3,
    ),
)
HOSTILE_TEXT = st.one_of(
    st.just(HUGE),  # past Python's int limit
    st.just("1e999999"),
    st.just("-" + HUGE),
    st.just("[" * 200 + "]" * 200),
    st.just("NaN"),
    st.just("Infinity"),
    st.just(HUGE + "." + HUGE),
)


def _assert_no_crash(result) -> None:
    """Exit 0, 1 or 2; a 2 is one line `Error: ...`; never 3 (a bug) nor a traceback."""
    assert result.exit_code in (0, 1, 2), (result.exit_code, result.output, result.exception)
    if result.exit_code == 2:
        assert one_line(result).startswith("Error: ")


class Victim:
    """A copy of the micro model and its original files, restored before each example (a short repr:
    hypothesis prints the fixtures of a falsifying example)."""

    def __init__(self, d: Path):
        self.d, self.files = d, {p.name: p.read_bytes() for p in d.iterdir()}

    def __repr__(self) -> str:
        return f"Victim({self.d.name})"


@pytest.fixture(scope="module")
def victim(model_dir, tmp_path_factory):
    d = tmp_path_factory.mktemp("victim") / "m"
    shutil.copytree(model_dir("micro"), d)
    return Victim(d)


def _restore(victim) -> Path:
    d, files = victim.d, victim.files
    for name, data in files.items():
        (d / name).unlink(missing_ok=True)
        (d / name).write_bytes(data)
    return d


def _predict(d: Path):
    return cli("predict", "--model", d, "--prompt", "ab", "-n", "1")


@SWEEP
@given(
    field=st.sampled_from(["n_layer", "n_head", "n_embd", "n_positions", "vocab_size", "layer_norm_epsilon", "n_ctx"]),
    value=st.one_of(HOSTILE_JSON, HOSTILE_TEXT.map(lambda t: ("raw", t))),
)
def test_sweep_config_json(victim, field, value):
    d = _restore(victim)
    config = json.loads((d / "config.json").read_text())
    if isinstance(value, tuple):
        text = json.dumps({**config, field: "@@"}).replace('"@@"', value[1])
    else:
        text = json.dumps({**config, field: value})
    (d / "config.json").write_text(text)
    _assert_no_crash(_predict(d))


@SWEEP
@given(data=st.data())
def test_sweep_vocab_json(victim, data):
    d = _restore(victim)
    vocab = json.loads((d / "vocab.json").read_text())
    key = data.draw(st.sampled_from(sorted(vocab)))
    how = data.draw(st.sampled_from(["value", "raw value", "new key", "whole"]))
    if how == "value":
        vocab[key] = data.draw(HOSTILE_JSON)
        text = json.dumps(vocab)
    elif how == "raw value":
        text = json.dumps({**vocab, key: "@@"}).replace('"@@"', data.draw(HOSTILE_TEXT))
    elif how == "new key":
        vocab[data.draw(st.text(max_size=5))] = data.draw(HOSTILE_NUMBERS)
        text = json.dumps(vocab)
    else:
        text = json.dumps(data.draw(HOSTILE_JSON))
    (d / "vocab.json").write_text(text)
    _assert_no_crash(_predict(d))


@SWEEP
@given(data=st.data())
def test_sweep_safetensors_header(victim, data):
    d = _restore(victim)
    raw = (d / "model.safetensors").read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    key = data.draw(st.sampled_from(sorted(header)))
    field = data.draw(st.sampled_from(["dtype", "shape", "data_offsets", "whole", "metadata", "length"]))
    body = raw[8 + n :]
    if field == "metadata":
        header["__metadata__"] = "@@"
    elif field == "whole":
        header[key] = "@@"
    elif field != "length" and isinstance(header[key], dict):
        header[key] = {**header[key], field: "@@"}
    value = data.draw(st.one_of(HOSTILE_JSON.map(json.dumps), HOSTILE_TEXT))
    text = json.dumps(header).replace('"@@"', value).encode()
    length = len(text)
    if field == "length":
        length = data.draw(st.sampled_from([0, 1, len(text) - 1, len(text) + 1, 2**40, 2**64 - 1]))
    (d / "model.safetensors").write_bytes(struct.pack("<Q", length) + text + body)
    _assert_no_crash(_predict(d))


@SWEEP
@given(
    content=st.one_of(
        st.binary(max_size=200),
        st.text(max_size=100).map(str.encode),
        st.just(COMMIT.encode() + b"\n"),
        st.just(COMMIT.upper().encode()),
    ),
    kind=st.sampled_from(["file", "symlink", "directory", "fifo", "missing"]),
)
def test_sweep_hub_refs(victim, tmp_path_factory, content, kind):
    d = _restore(victim)
    cache = tmp_path_factory.mktemp("hub")
    root = cache / "models--org--m"
    shutil.copytree(d, root / "snapshots" / COMMIT)
    (root / "refs").mkdir()
    ref = root / "refs" / "main"
    if kind == "file":
        ref.write_bytes(content)
    elif kind == "symlink":
        (cache / "target").write_bytes(content)
        ref.symlink_to(cache / "target")
    elif kind == "directory":
        ref.mkdir()
    elif kind == "fifo":
        os.mkfifo(ref)
    result = cli("predict", "--model", "org/m", "--prompt", "ab", "-n", "1", env={"HF_HUB_CACHE": str(cache)})
    _assert_no_crash(result)
    shown = content.strip().decode("utf-8", "replace")
    if kind in ("file", "symlink") and not re.fullmatch(r"[0-9a-fA-F]{40}", shown):
        assert result.exit_code == 2
        if len(shown) >= 8:  # what is not a commit id is never echoed (shorter texts may occur by chance)
            assert shown not in result.stderr.replace(str(cache), "")


PATH_PARTS = st.one_of(
    st.sampled_from(["..", ".", "", "r.json", "-", "--force", "~", "book.xlsx", "link", "fifo", "dir", "a" * 300]),
    st.text(st.characters(blacklist_characters="\x00/", blacklist_categories=["Cs"]), min_size=1, max_size=20),
)


@SWEEP
@given(
    parts=st.lists(PATH_PARTS, min_size=1, max_size=3), force=st.booleans(), opt=st.sampled_from(["--json", "--junit"])
)
@example(parts=["r.json", "\x1e"], force=False, opt="--json")  # str.splitlines() splits on \x1e: escaped
@example(parts=["new\nline.json"], force=False, opt="--junit")
def test_sweep_report_paths(small, tmp_path_factory, parts, force, opt):
    d = tmp_path_factory.mktemp("reports")
    shutil.copy(small, d / "book.xlsx")
    (d / "link").symlink_to(d / "book.xlsx")
    (d / "dir").mkdir()
    os.mkfifo(d / "fifo")
    out = d.joinpath(*parts)
    result = cli("check", d / "book.xlsx", "-q", opt, out, *(["--force"] if force else []))
    _assert_no_crash(result)
    assert (d / "book.xlsx").read_bytes() == small.read_bytes()  # the book is never a report
    assert not [p.name for p in d.iterdir() if p.name.endswith(".part")]  # no temporary file left


@pytest.mark.parametrize(
    "verb",
    [["check", "-v"], ["check"], ["build"], ["tokenize", "hello world"], ["predict", "--prompt", "ab"], ["--help"]],
)
def test_sweep_closed_stdout(small, tmp_path, verb, model_dir):
    if verb[0] == "check":
        args = [*verb, str(small)]
    elif verb[0] in ("build", "tokenize", "predict"):
        args = [verb[0], "--model", str(model_dir("micro")), *verb[1:]]
        if verb[0] == "build":
            args += ["--prompt", "ab", "-o", str(tmp_path / "b.xlsx")]
    else:
        args = verb
    r_fd, w_fd = os.pipe()
    os.close(r_fd)
    try:
        proc = subprocess.run([*CLI, *args], stdout=w_fd, stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(w_fd)
    assert proc.returncode in (0, 141), (args, proc.returncode, proc.stderr)
    assert [x for x in proc.stderr.splitlines() if x not in ("recomputing formulas", "writing tabs")] == []


def _interpreter_still_starting(err: str) -> bool:
    """A Ctrl+C that lands while the interpreter is still starting: in ``site`` ("Fatal Python error:
    init_import_site", exit 1), or in runpy's import of the package before sheetgpt.cli's first lines
    install its handler (a traceback, then death by SIGINT). No program can handle a signal before its
    first line runs; every frame of the report is the interpreter's or an import statement's."""
    frames = re.findall(r'File "([^"]+)", line \d+', err)
    ours = [f for f in frames if "/sheetgpt/" in f and not f.endswith(("/__main__.py", "/__init__.py"))]
    return err.rstrip().endswith("KeyboardInterrupt") and not ours


@pytest.mark.parametrize("delay", [0.0, 0.4, 1.5, 3.0])
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_sweep_signals_at_any_moment(small, model_dir, tmp_path, delay, signum):
    """A signal at any moment of a build or a check: it finishes (0), or stops with 128 + n (or, before
    Python has started, dies of the signal); never a traceback, never a temporary file left."""
    out = tmp_path / "b.xlsx"
    for args in (
        ["build", "--model", str(model_dir("odd")), "--prompt", "ab", "-o", str(out), "--force"],
        ["check", str(small), "--json", str(tmp_path / "r.json"), "--force"],
    ):
        proc = subprocess.Popen(
            [*CLI, *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "TMPDIR": str(tmp_path), "PYTHONFAULTHANDLER": "1"},
            preexec_fn=lambda: [
                signal.signal(s, signal.SIG_DFL) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
            ],
        )
        time.sleep(delay)
        proc.send_signal(signum)
        try:
            code = proc.wait(timeout=120)
        except subprocess.TimeoutExpired:  # a hang: say where every thread of it was (faulthandler on SIGABRT)
            tree = subprocess.run(["ps", "-o", "pid,stat,wchan:24,cmd", "--ppid", str(proc.pid)], capture_output=True)
            proc.send_signal(signal.SIGABRT)
            proc.wait(timeout=30)
            pytest.fail(
                f"{args[0]} still running 120 s after signal {signum}; its children:\n"
                f"{tree.stdout.decode()}\nits threads:\n{proc.stderr.read()[-8000:]}"
            )
        err = proc.stderr.read()
        if signum == signal.SIGINT and code in (1, -signum) and _interpreter_still_starting(err):
            continue  # CPython's own report of a Ctrl+C before any line of sheetgpt ran (below)
        assert code in (0, 128 + signum, -signum), (args, code, err)
        assert "Traceback" not in err and "internal error" not in err, err
        assert not [p.name for p in tmp_path.iterdir() if ".part" in p.name or p.name.startswith("sheetgpt")]


def test_a_forked_worker_still_dies_of_sigterm():
    """Pool.terminate() stops the deflate and reader workers with SIGTERM: a worker forked while the CLI's
    handler is installed must die of it, not unwind as the CLI does (which hung Pool.join)."""
    from sheetgpt.cli import _signals_as_interrupts

    with _signals_as_interrupts():
        pid = os.fork()
        if pid == 0:  # the worker
            time.sleep(30)
            os._exit(0)
        time.sleep(0.2)
        os.kill(pid, signal.SIGTERM)
        _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM


def test_an_interrupt_that_lands_in_a_weakref_callback_still_stops_the_command():
    """Python prints an exception raised in a weakref callback as "Exception ignored" and goes on; the
    CLI's hook sends the signal again, so the command stops with 128 + n and prints no traceback."""
    code = (
        "import os, signal, weakref, time, click\n"
        "from sheetgpt import cli\n"
        "class T: pass\n"
        "@click.command()\n"
        "def slow():\n"
        "    t = T()\n"
        "    r = weakref.ref(t, lambda _: os.kill(os.getpid(), signal.SIGTERM) or time.sleep(0.5))\n"
        "    del t\n"
        "    time.sleep(5)\n"
        "    print('went on')\n"
        "cli.main.add_command(slow)\n"
        "cli.main(['slow'])\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr and "went on" not in proc.stdout, proc.stderr


# ------------------------------------------------------------------ the sweep: values typed into the yellow cells

# every editable cell of a generating, steered book (sheetgpt/book/editable.py; docs/robustness.md)
EDITABLE = [
    ("typed", "Prompt", "B4"),  # the typed text
    ("typed", "Prompt", "C3"),  # predict after position
    ("rows", "Prompt", "C3"),
    ("rows", "Prompt", "B6"),  # a token text
    ("typed", "Prompt", "B7"),  # a token typed over the BPE's formula
    ("typed", "Predict", "C3"),  # temperature
    ("typed", "Steering", "B4"),  # token A
    ("rows", "Steering", "B5"),  # token B
    ("typed", "Steering", "B6"),  # strength
    ("rows", "Steering", "B7"),  # block L
    ("typed", "Neurons", "B3"),  # block
    ("rows", "Embeddings", "B6"),  # a token
]
EDITS = st.one_of(
    st.tuples(
        st.just("number"),
        st.one_of(
            st.floats(allow_nan=False, allow_infinity=False, width=64),
            st.sampled_from([1e200, -1e200, 1e-310, 1.0000000000000002, 0.9999999999, 1000.0000001, 2.0**53, -0.0]),
        ),
    ),
    st.tuples(st.just("text"), st.sampled_from(["1", "0.5", "TRUE", "#N/A", "=1", " slow", "", "a", "1e999"])),
    st.tuples(st.just("bool"), st.booleans()),
    st.tuples(st.just("error"), st.sampled_from(["#DIV/0!", "#N/A", "#VALUE!", "#REF!"])),
    st.tuples(
        st.just("formula"),
        st.sampled_from(['="a"', "=1/2", "=1/0", "=NA()", '="1"', "=1E200*1E200", "=-0", "=2-1", '=""', "=TRUE()"]),
    ),
    st.tuples(st.just("empty"), st.none()),
)


@pytest.fixture(scope="module")
def editable_books(model_dir, tmp_path_factory):
    """test_editable_cells' books: typed-prompt and token-row, generating, steered (A 'a', B 'b', 1, block 1)."""
    from test_editable_cells import build_books

    return build_books(model_dir("one-head"), tmp_path_factory.mktemp("editable-sweep"))


def _edited_verdict(books, where, edit, d: Path, engine: str) -> tuple:
    """(exit code, failing stages) of ``check --engine`` on the book with one editable cell edited."""
    from xlsx_edit import drop_cached, set_cell

    kind, tab, cell = where
    path = drop_cached(set_cell(books[kind].path, d / "edited.xlsx", tab, cell, *edit))
    report = d / f"{engine}.json"
    report.unlink(missing_ok=True)
    result = cli("check", path, "--engine", engine, "-q", "--json", report)
    _assert_no_crash(result)
    if result.exit_code == 2:
        return 2, one_line(result)
    return result.exit_code, sorted(s["stage"] for s in json.loads(report.read_text())["stages"] if not s["passed"])


@settings(max_examples=12, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(where=st.sampled_from(EDITABLE), edit=EDITS)
@example(where=("typed", "Steering", "B6"), edit=("number", 1e200))
@example(where=("rows", "Prompt", "C3"), edit=("text", "3"))
@pytest.mark.slow
def test_sweep_editable_cells(editable_books, tmp_path_factory, where, edit):
    """Any value in any yellow cell: the check passes (the reference follows the sheet's rule); never exit 3."""
    verdict = _edited_verdict(editable_books, where, edit, tmp_path_factory.mktemp("edit"), "fast")
    assert verdict == (0, []), (where, edit, verdict)


@settings(max_examples=3, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(where=st.sampled_from(EDITABLE), edit=EDITS)
@pytest.mark.parametrize(
    "engine",
    [
        pytest.param("libreoffice", marks=pytest.mark.libreoffice),
        pytest.param("gnumeric", marks=pytest.mark.gnumeric),
        pytest.param("ironcalc", marks=pytest.mark.ironcalc),
    ],
)
def test_sweep_editable_cells_same_verdict_in_every_engine(editable_books, tmp_path_factory, engine, where, edit):
    d = tmp_path_factory.mktemp("edit")
    fast = _edited_verdict(editable_books, where, edit, d, "fast")
    assert _edited_verdict(editable_books, where, edit, d, engine) == fast, (engine, where, edit)
