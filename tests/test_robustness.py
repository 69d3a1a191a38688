"""Bad input never gives a traceback: every case is one line on stderr and exit code 2.

Each test here is one row of docs/robustness.md (keep them in step). Malformed workbooks go
to `sheetgpt check`, odd prompts and output paths to `sheetgpt build`, builds are interrupted,
and hypothesis corrupts a small good book at random: the checker only ever reports.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from xlsx_edit import unshare_formulas

from sheetgpt.cli import main
from sheetgpt.config import GPT2Config
from sheetgpt.engine.reader import read_workbook
from sheetgpt.random_model import make_random_model

CLI = [sys.executable, "-c", "from sheetgpt.cli import main; main()"]
PROGRESS = re.compile(r"^(writing tabs|recomputing formulas)\b")  # click's progress label, not a message


def one_line_error(result_or_stderr) -> str:
    """The single line a failure prints (progress output aside); never a traceback."""
    err = result_or_stderr if isinstance(result_or_stderr, str) else result_or_stderr.stderr
    assert "Traceback" not in err, err
    lines = [x for x in err.strip().splitlines() if x.strip() and not PROGRESS.match(x)]
    assert len(lines) == 1, err
    return lines[0]


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def refused(*args, match: str, seconds: float = 5.0) -> str:
    started = time.perf_counter()
    result = cli(*args)
    elapsed = time.perf_counter() - started
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr, result.exception)
    line = one_line_error(result)
    assert line.startswith("Error: ") and re.search(match, line), line
    assert elapsed < seconds, elapsed
    return line


# ------------------------------------------------------------------ malformed workbooks given to check


def members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as z:
        return {i.filename: z.read(i.filename) for i in z.infolist()}


def write_zip(path: Path, parts: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in parts.items():
            z.writestr(name, data)
    return path


def sheet_part(parts: dict[str, bytes], name: str) -> str:
    wb = parts["xl/workbook.xml"].decode()
    rid = re.search(rf'<sheet name="{re.escape(name)}" sheetId="\d+" r:id="(rId\d+)"', wb).group(1)
    rels = parts["xl/_rels/workbook.xml.rels"].decode()
    return "xl/" + re.search(rf'<Relationship Id="{rid}" Type="[^"]+" Target="([^"]+)"', rels).group(1)


def with_sheet(src: Path, dst: Path, sheet: str, edit) -> Path:
    parts = members(src)
    part = sheet_part(parts, sheet)
    new = edit(unshare_formulas(parts[part].decode()).encode())
    assert new != parts[part]
    parts[part] = new
    return write_zip(dst, parts)


@pytest.fixture(scope="module")
def small(book):
    """A good micro book of 2 token rows (about 80 kB): quick to corrupt and to check."""
    return Path(book("micro", "ab").path)


ENTITY_BOMB = (
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + b"".join(b'<!ENTITY lol%d "%s">' % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10) for i in range(1, 10))
    + b"]>"
)
EXTERNAL_ENTITY = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'


def _declared_huge(small, tmp):
    """A member whose zip headers declare 5 GB (the data is tiny)."""
    data = bytearray(small.read_bytes())
    name = sheet_part(members(small), "Block 0").encode()
    at = data.rfind(b"PK\x01\x02", 0, data.rfind(name) + 1)
    while data[at + 46 : at + 46 + len(name)] != name:
        at = data.rfind(b"PK\x01\x02", 0, at)
    data[at + 24 : at + 28] = (0xF0000000).to_bytes(4, "little")  # uncompressed size in the central directory
    return _put(tmp / "declared.xlsx", bytes(data))


def _real_ratio_bomb(small, tmp):
    """A sheet that inflates 1000:1 to 300 MB of blank rows (headers honest)."""
    parts = members(small)
    path = tmp / "ratio.xlsx"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in parts.items():
            if name != sheet_part(parts, "vocab"):
                z.writestr(name, data)
                continue
            with z.open(name, "w", force_zip64=True) as f:
                f.write(data[: data.index(b"<sheetData>") + 11])
                chunk = b" " * (1 << 20)
                for _ in range(300):
                    f.write(chunk)
                f.write(data[data.index(b"<sheetData>") + 11 :])
    return path


def _lying_sizes(small, tmp):
    """Headers declare 1 kB for a member that inflates to 300 MB."""
    path = _real_ratio_bomb(small, tmp)
    data = bytearray(path.read_bytes())
    name = sheet_part(members(small), "vocab").encode()
    for sig, off in ((b"PK\x01\x02", 46), (b"PK\x03\x04", 30)):
        at = -1
        while True:
            at = data.find(sig, at + 1)
            if at < 0:
                break
            if data[at + off : at + off + len(name)] == name:
                size_at = 24 if sig == b"PK\x01\x02" else 22
                data[size_at + at : size_at + at + 4] = (1000).to_bytes(4, "little")
    return _put(tmp / "lying.xlsx", bytes(data))


def _put(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _sheet_edit(sheet, edit, name="edited.xlsx"):
    return lambda small, tmp: with_sheet(small, tmp / name, sheet, edit)


def _drop_member(sheet):
    def make(small, tmp):
        parts = members(small)
        del parts[sheet_part(parts, sheet)]
        return write_zip(tmp / "nopart.xlsx", parts)

    return make


def _drop_sheet(sheet):
    def make(small, tmp):
        parts = members(small)
        parts["xl/workbook.xml"] = re.sub(
            rb'<sheet name="%s"[^>]*/>' % re.escape(sheet.encode()), b"", parts["xl/workbook.xml"]
        )
        return write_zip(tmp / "nosheet.xlsx", parts)

    return make


def _cell(xml: bytes, row: int, col: int, new: bytes) -> bytes:
    """Replace the cell at 1-based sheet row `row`, 0-based column `col` (cells with or without r=)."""
    m = re.search(rb'<row\s+r="%d"[^>]*>(.*?)</row\s*>' % row, xml, re.S)
    cells = list(re.finditer(rb"<c\b[^>]*?(?:/>|>.*?</c>)", m.group(1), re.S))
    a, b = cells[col].span()
    return xml[: m.start(1) + a] + new + xml[m.start(1) + b :]


def _first_formula(old: bytes, new: bytes):
    def edit(xml):
        assert old in xml
        return xml.replace(old, new, 1)

    return edit


def _guide_number(label_row: int, value: bytes):
    return _sheet_edit(
        "Guide", lambda x: re.sub(rb'(<c r="B%d"[^>]*><v>)[^<]*' % label_row, rb"\g<1>" + value, x, count=1)
    )


MALFORMED = {
    # id: (maker(small, tmp) -> path, regex the one line must match)
    "not a zip (text)": (lambda s, t: _put(t / "a.xlsx", b"hello, I am text\n"), r"not an \.xlsx file"),
    "truncated zip": (
        lambda s, t: _put(t / "a.xlsx", s.read_bytes()[: len(s.read_bytes()) // 2]),
        r"not an \.xlsx file",
    ),
    "zip with a corrupt member": (
        lambda s, t: _put(t / "a.xlsx", _flip_in_member(s)),
        r"corrupt zip member|not an \.xlsx|Bad CRC",
    ),
    "a zip that is not a workbook": (
        lambda s, t: write_zip(t / "a.xlsx", {"hello.txt": b"hi"}),
        r"no xl/workbook\.xml",
    ),
    "entity-expansion bomb in a sheet": (
        _sheet_edit("Block 0", lambda x: ENTITY_BOMB + x[x.index(b"<worksheet") :]),
        "DOCTYPE/ENTITY",
    ),
    "external entity in sharedStrings": (lambda s, t: _external_entity(s, t), "DOCTYPE/ENTITY"),
    "zip bomb: declared size 4 GB": (_declared_huge, "zip bomb"),
    "zip bomb: 1000:1 member": (_real_ratio_bomb, "zip bomb"),
    "zip bomb: lying sizes": (_lying_sizes, "zip bomb|corrupt zip member"),
    "missing sheet (tab removed)": (_drop_sheet("Block 0"), "no tab 'Block 0'"),
    "missing sheet part (zip member removed)": (_drop_member("Block 0"), "missing part"),
    "formula referencing a missing sheet": (
        _sheet_edit("Block 0", _first_formula(b"<f>AVERAGE(Embed!", b"<f>AVERAGE(Nowhere!")),
        "sheet that does not exist: 'Nowhere'",
    ),
    "circular reference": (
        _sheet_edit("Embed", lambda x: re.sub(rb"<f>INDEX\(wte", b"<f>'Block 0'!C5+INDEX(wte", x, count=1)),
        "circular reference",
    ),
    "unsupported function": (
        _sheet_edit("Block 0", _first_formula(b"<f>AVERAGE(", b"<f>WEBSERVICE(")),
        "unsupported function WEBSERVICE",
    ),
    "wrong number of arguments": (
        _sheet_edit("Block 0", _first_formula(b"<f>AVERAGE(Embed!", b"<f>N()+AVERAGE(Embed!")),
        "N takes 1 arguments",
    ),
    "more than a million rows": (
        _sheet_edit(
            "Block 0",
            lambda x: x.replace(b"</sheetData>", b'<row r="1048577"><c r="A1048577"><v>1</v></c></row></sheetData>'),
        ),
        "beyond Excel's 1048576 rows",
    ),
    "one cell at XFD1048576": (
        _sheet_edit(
            "Block 0",
            lambda x: x.replace(b"</sheetData>", b'<row r="1048576"><c r="XFD1048576"><v>1</v></c></row></sheetData>'),
        ),
        "spans 1,048,576 rows x 16,384 columns",
    ),
    "text in a weight cell": (
        _sheet_edit("wte", lambda x: _cell(x, 2, 1, b'<c r="B2" t="inlineStr"><is><t>abc</t></is></c>')),
        "weight tab 'wte': cell B2 holds text 'abc'",
    ),
    "non-numeric value in a number cell": (
        _sheet_edit("wpe", lambda x: _cell(x, 1, 2, b'<c r="C1"><v>1.2.3</v></c>')),
        "is not a number",
    ),
    "Guide claims a billion layers": (_guide_number(11, b"1000000000"), "n_layer"),
    "random bytes": (lambda s, t: _put(t / "a.bin", os.urandom(4096)), r"not an \.xlsx file"),
    "empty file": (lambda s, t: _put(t / "a.xlsx", b""), r"not an \.xlsx file"),
    "a directory": (lambda s, t: t, "is a directory"),
    "no such file": (lambda s, t: t / "missing.xlsx", "no such file"),
}


def _flip_in_member(small: Path) -> bytes:
    data = bytearray(small.read_bytes())
    with zipfile.ZipFile(small) as z:
        info = z.getinfo(sheet_part(members(small), "Block 0"))
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    for k in range(start + 100, start + 140):
        data[k] ^= 0x55
    return bytes(data)


def _external_entity(small: Path, tmp: Path) -> Path:
    parts = members(small)
    sst = parts["xl/sharedStrings.xml"]
    parts["xl/sharedStrings.xml"] = EXTERNAL_ENTITY + sst[sst.index(b"<sst") :].replace(b"<t>", b"<t>&e;", 1)
    return write_zip(tmp / "xxe.xlsx", parts)


@pytest.mark.parametrize("case", list(MALFORMED))
def test_a_malformed_workbook_is_one_line_and_exit_2(small, tmp_path, case):
    make, match = MALFORMED[case]
    refused("check", make(small, tmp_path), match=match)


def _peak_rss_mb(args) -> tuple[int, str, float]:
    """Run the CLI in a grandchild; its peak resident memory, measured by the child that waited for it."""
    probe = (
        "import json, resource, subprocess, sys\n"
        "r = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "print(json.dumps([r.returncode, r.stderr, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe, *CLI, *map(str, args)], capture_output=True, text=True, timeout=120
    )
    return tuple(json.loads(out.stdout))


@pytest.mark.parametrize(
    "case",
    [
        "entity-expansion bomb in a sheet",
        "external entity in sharedStrings",
        "zip bomb: declared size 4 GB",
        "zip bomb: 1000:1 member",
        "zip bomb: lying sizes",
        "one cell at XFD1048576",
    ],
)
@pytest.mark.slow
def test_bombs_are_refused_in_a_subprocess_under_500_mb(small, tmp_path, case):
    make, match = MALFORMED[case]
    code, err, peak_mb = _peak_rss_mb(["check", make(small, tmp_path)])
    assert code == 2 and re.search(match, one_line_error(err)), err
    assert peak_mb < 500, peak_mb


# ------------------------------------------------------------------ prompts for build


@pytest.fixture(scope="module")
def micro(model_dir):
    return model_dir("micro")


def build(micro, out, prompt, *more):
    return cli("build", "--model", micro, "--prompt", prompt, "-o", out, *more)


@pytest.mark.parametrize(
    "prompt, match",
    [
        ("", "the prompt is empty"),
        (" \t\n  ", "the prompt is empty"),
        ("x" * 40, r"more than the model's n_positions \(16\)"),
        ("w" * 5000, r"more than the model's n_positions \(16\)"),  # a very long single word
        ("\ud800", "lone surrogate U\\+D800"),
    ],
    ids=["empty", "whitespace", "longer than the context", "very long word", "lone surrogate"],
)
def test_a_bad_prompt_is_one_line_and_exit_2_and_writes_nothing(micro, tmp_path, prompt, match):
    out = tmp_path / "b.xlsx"
    refused("build", "--model", micro, "--prompt", prompt, "-o", out, match=match, seconds=30)
    assert not list(tmp_path.iterdir())


def test_a_prompt_longer_than_context_is_one_line(micro, tmp_path):
    refused(
        "build",
        "--model",
        micro,
        "--prompt",
        "one two three",
        "--context",
        "3",
        "-o",
        tmp_path / "b.xlsx",
        match="more than --context 3",
        seconds=30,
    )


def test_invalid_utf8_in_argv_is_one_line(micro, tmp_path):
    r = subprocess.run(
        [*CLI, "build", "--model", str(micro), "--prompt", os.fsdecode(b"ab\xff\xfe"), "-o", str(tmp_path / "b.xlsx")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "lone surrogate" in one_line_error(r.stderr)


@pytest.mark.parametrize(
    "prompt",
    ["=1+2*3", "+SUM(A1)", "-2+7", "@foo", "a\x00b\x07c\x1b\x7f d", "é ü 中"],
    ids=["equals", "plus", "minus", "at", "control characters", "non-ASCII"],
)
@pytest.mark.slow
def test_odd_prompts_work_as_text_never_as_formulas(micro, tmp_path, prompt):
    out = tmp_path / "b.xlsx"
    result = build(micro, out, prompt)
    assert result.exit_code == 0, (result.stdout, result.stderr)
    book = read_workbook(out)
    if prompt[0] in "=+-@":  # the text itself is a string cell (Prompt!B4 of a typed book, or the Guide's Prompt row)
        shown = {*book.sheets["Prompt"].strings.values(), *book.sheets["Guide"].strings.values()}
        assert prompt in shown
    texts = {f[2] for sheet in book.sheets.values() for f in sheet.formulas}
    assert prompt not in texts and prompt[1:] not in texts  # never written as a formula
    if prompt in ("=1+2*3", "é ü 中"):  # the check is slow-ish; two books prove it
        assert cli("check", out).exit_code == 0


# ------------------------------------------------------------------ outputs


@pytest.mark.slow
def test_an_existing_output_is_never_overwritten_without_force(micro, tmp_path):
    out = tmp_path / "b.xlsx"
    out.write_bytes(b"precious")
    refused("build", "--model", micro, "--prompt", "hi", "-o", out, match="exists; pass --force", seconds=30)
    assert out.read_bytes() == b"precious"
    assert build(micro, out, "hi", "--force").exit_code == 0 and out.read_bytes()[:2] == b"PK"


@pytest.mark.slow
def test_an_output_in_a_missing_directory_is_created(micro, tmp_path):
    out = tmp_path / "new" / "deeper" / "b.xlsx"
    assert build(micro, out, "hi").exit_code == 0 and out.exists()


def test_an_output_whose_directory_cannot_be_made_is_one_line(micro, tmp_path):
    (tmp_path / "file").write_text("not a directory")
    refused(
        "build",
        "--model",
        micro,
        "--prompt",
        "hi",
        "-o",
        tmp_path / "file" / "b.xlsx",
        match="cannot create its directory",
        seconds=30,
    )


def test_an_output_in_an_unwritable_place_is_one_line(micro, tmp_path):
    target = Path("/proc/sheetgpt-test/b.xlsx")  # /proc refuses new files even to root
    result = build(micro, target, "hi")
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert one_line_error(result).startswith("Error: ")


def test_an_output_that_is_not_xlsx_or_is_a_directory_is_one_line(micro, tmp_path):
    refused("build", "--model", micro, "--prompt", "hi", "-o", tmp_path / "b.csv", match="must be an .xlsx", seconds=30)
    (tmp_path / "d.xlsx").mkdir()
    refused(
        "build",
        "--model",
        micro,
        "--prompt",
        "hi",
        "-o",
        tmp_path / "d.xlsx",
        "--force",
        match="is a directory",
        seconds=30,
    )


def test_json_report_into_a_missing_directory_is_one_line(small, tmp_path):
    result = cli("check", small, "--json", tmp_path / "nowhere" / "r.json")
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert one_line_error(result).startswith("Error: ")


@pytest.fixture(scope="module")
def slow_model(tmp_path_factory):
    """A random model whose build takes several seconds (4 blocks, n_embd 256, 5.6 M weights)."""
    config = GPT2Config(n_layer=4, n_head=4, n_embd=256, n_positions=64, vocab_size=8000)
    return make_random_model(tmp_path_factory.mktemp("slow"), config, 0)


def _start_build(model, out: Path, log: Path) -> subprocess.Popen:
    # SIGINT as a terminal gives it: a test run started in the background (nohup ... &) inherits an
    # ignored SIGINT, Python then installs no KeyboardInterrupt handler, and the build runs on
    proc = subprocess.Popen(
        [*CLI, "build", "--model", str(model), "--prompt", "the quick brown fox jumps over it", "-o", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=log.open("w"),
        preexec_fn=lambda: [signal.signal(s, signal.SIG_DFL) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)],
    )
    deadline = time.time() + 60
    while "writing tabs" not in log.read_text() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # writing has begun; it takes several seconds more
    assert proc.poll() is None, "the build finished before it could be interrupted; make slow_model bigger"
    return proc


def _leftovers(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir() if p.name != "log")


@pytest.mark.slow
@pytest.mark.parametrize(
    "signum, code, line",
    [
        (signal.SIGINT, 130, "Interrupted."),
        (signal.SIGTERM, 143, "Interrupted (SIGTERM)."),
        (signal.SIGHUP, 129, "Interrupted (SIGHUP)."),
    ],
)
def test_a_build_interrupted_by_a_signal_leaves_nothing_and_says_so(slow_model, tmp_path, signum, code, line):
    """SIGTERM (kill, systemd, CI timeouts) and SIGHUP (a closed terminal) clean up as Ctrl+C does; 128 + n."""
    out = tmp_path / "b.xlsx"
    proc = _start_build(slow_model, out, tmp_path / "log")
    proc.send_signal(signum)
    assert proc.wait(timeout=60) == code
    assert one_line_error((tmp_path / "log").read_text()) == line
    assert _leftovers(tmp_path) == []


@pytest.mark.slow
def test_a_build_killed_with_sigkill_leaves_no_book_and_the_next_build_cleans_up(slow_model, micro, tmp_path):
    out = tmp_path / "b.xlsx"
    proc = _start_build(slow_model, out, tmp_path / "log")
    proc.kill()
    proc.wait(timeout=60)
    assert not out.exists()
    left = _leftovers(tmp_path)
    assert all(re.fullmatch(r"\.b\.xlsx\.\d+\.part(\.skeleton)?", n) for n in left), left
    assert build(micro, out, "hi").exit_code == 0
    assert _leftovers(tmp_path) == ["b.xlsx"]


# ------------------------------------------------------------------ checkpoints (see also tests/test_checkpoint.py)


def test_a_directory_that_is_not_a_model_is_one_line(tmp_path, small):
    refused("build", "--model", tmp_path, "--prompt", "hi", "-o", tmp_path / "b.xlsx", match="config.json")
    refused("check", small, "--model", tmp_path, match="config.json")


def test_a_symlink_loop_as_model_is_one_line(tmp_path):
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    refused(
        "build",
        "--model",
        tmp_path / "loop",
        "--prompt",
        "hi",
        "-o",
        tmp_path / "b.xlsx",
        match="loop|symlink|not a directory|config.json",
    )


def test_a_zero_byte_checkpoint_is_one_line(tmp_path, micro):
    d = tmp_path / "m"
    d.mkdir()
    for f in Path(micro).iterdir():
        (d / f.name).write_bytes(f.read_bytes())
    (d / "model.safetensors").write_bytes(b"")
    refused("build", "--model", d, "--prompt", "hi", "-o", tmp_path / "b.xlsx", match="model.safetensors")


@pytest.mark.parametrize("dtype, match", [("int32", "I32|dtype|float"), (">f4", "byte order|big-endian|endian")])
def test_weights_with_the_wrong_dtype_or_byte_order_are_one_line(tmp_path, micro, dtype, match):
    import numpy as np
    from safetensors.numpy import load_file, save_file

    d = tmp_path / "m"
    d.mkdir()
    for f in Path(micro).iterdir():
        (d / f.name).write_bytes(f.read_bytes())
    tensors = load_file(str(d / "model.safetensors"))
    if dtype == "int32":
        key = next(k for k in tensors if k.endswith("h.0.mlp.c_fc.weight"))
        tensors[key] = tensors[key].astype(np.int32)
        save_file(tensors, str(d / "model.safetensors"))
    else:  # float32 bytes swapped in place: the header still says F32 (little-endian)
        raw = bytearray((d / "model.safetensors").read_bytes())
        n = int.from_bytes(raw[:8], "little")
        header = json.loads(raw[8 : 8 + n])
        key = next(k for k in header if k.endswith("wte.weight") or k == "wte.weight")
        a, b = header[key]["data_offsets"]
        body = np.frombuffer(bytes(raw[8 + n + a : 8 + n + b]), "<f4").astype(">f4").tobytes()
        raw[8 + n + a : 8 + n + b] = body
        (d / "model.safetensors").write_bytes(bytes(raw))
    refused("build", "--model", d, "--prompt", "hi", "-o", tmp_path / "b.xlsx", match=match)


# ------------------------------------------------------------------ the checker never crashes


def _corrupt_bytes(good: bytes, ops) -> bytes:
    data = bytearray(good)
    for kind, pos, arg in ops:
        if not data:
            break
        pos %= len(data)
        if kind == "flip":
            data[pos] ^= 1 << (arg % 8)
        elif kind == "trim":
            del data[pos:]
        else:
            data[pos:pos] = bytes([arg % 256]) * (1 + arg % 7)
    return bytes(data)


_OPS = st.lists(
    st.tuples(st.sampled_from(["flip", "trim", "insert"]), st.integers(0, 1 << 20), st.integers(0, 255)),
    min_size=1,
    max_size=4,
)
_FORMULA_BITS = [
    "A1",
    "$B$2",
    "C5:D9",
    "Embed!C5",
    "'Block 0'!C5:C6",
    "wte!A1:H263",
    "XFD1048576",
    "A1:XFD1048576",
    "SUM(",
    "AVERAGE(",
    "MMULT(",
    "TRANSPOSE(",
    "INDEX(",
    "MATCH(",
    "IF(",
    "EXP(",
    "SQRT(",
    "MAX(",
    "LARGE(",
    "IFERROR(",
    "N(",
    "FOO(",
    ")",
    ",",
    "+",
    "-",
    "*",
    "/",
    "^",
    "&",
    "=",
    "<>",
    ">",
    '"x"',
    '""',
    "1",
    "-1",
    "1E308",
    "TRUE",
    "#N/A",
    "#REF!",
    "%",
    " ",
    ":",
    "!",
    "(",
    "{1,2;3,4}",
    "ROW(",
    "A0",
    "Nowhere!A1",
]


def _assert_only_reports(path: Path) -> None:
    result = cli("check", path)
    assert result.exit_code in (0, 1, 2), (result.exit_code, result.stderr, result.exception)
    assert isinstance(result.exception, SystemExit) or result.exception is None, result.exception
    if result.exit_code == 2:
        assert one_line_error(result).startswith("Error: ")


_FUZZ = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@_FUZZ
@given(ops=_OPS)
def test_fuzz_flipped_trimmed_or_inserted_bytes(small, tmp_path, ops):
    _assert_only_reports(_put(tmp_path / "f.xlsx", _corrupt_bytes(small.read_bytes(), ops)))


@_FUZZ
@given(data=st.data())
@pytest.mark.slow
def test_fuzz_a_corrupted_xml_member(small, tmp_path, data):
    parts = members(small)
    name = data.draw(st.sampled_from(sorted(n for n in parts if n.endswith((".xml", ".rels")))))
    parts[name] = _corrupt_bytes(parts[name], data.draw(_OPS))
    _assert_only_reports(write_zip(tmp_path / "f.xlsx", parts))


@_FUZZ
@given(data=st.data())
@pytest.mark.slow
def test_fuzz_a_formula_replaced_by_random_text(small, tmp_path, data):
    parts = members(small)
    sheets = sorted(n for n, v in parts.items() if re.search(rb"<f[^>]*>[^<]", v))
    name = data.draw(st.sampled_from(sheets))
    xml = parts[name]
    spans = [m.span(1) for m in re.finditer(rb"<f[^>]*>([^<]*)</f>", xml)]
    a, b = data.draw(st.sampled_from(spans))
    text = "".join(data.draw(st.lists(st.sampled_from(_FORMULA_BITS), max_size=8)))
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    parts[name] = xml[:a] + text.encode() + xml[b:]
    _assert_only_reports(write_zip(tmp_path / "f.xlsx", parts))
