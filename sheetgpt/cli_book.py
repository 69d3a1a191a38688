"""`sheetgpt build` and `sheetgpt check`: write a workbook, and prove one."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import click

from .errors import SheetGPTError

DEFAULT_PROMPT = "Mike is quick. He moves"


def _size(path: Path) -> str:
    n = path.stat().st_size
    return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n / 1e3:.0f} kB"


class LazyProgressBar:
    """A click progress bar on stderr that appears with the first update, so that an error
    raised before any work is done is the only line the user sees."""

    def __init__(self, **kwargs):
        self.kwargs, self.bar = kwargs, None

    def update(self, n: int, length: int | None = None) -> None:
        if self.bar is None:
            self.bar = click.progressbar(file=sys.stderr, show_pos=True, **self.kwargs).__enter__()
        if length is not None:
            self.bar.length = length
        self.bar.update(n)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.__exit__(*exc)


def _atomic_write_text(path: Path, text: str, force: bool) -> None:
    if path.exists() and not force:
        raise SheetGPTError(f"{path} exists; pass --force to overwrite it")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        raise SheetGPTError(f"{path}: cannot write it ({exc.strerror or exc})") from None
    finally:
        tmp.unlink(missing_ok=True)


@click.command("build")
@click.option(
    "--model",
    "model_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Hugging Face GPT-2 directory (config.json, model.safetensors, vocab.json, merges.txt). "
    "Default: the bundled tiny teaching model.",
)
@click.option("--prompt", default=DEFAULT_PROMPT, show_default=True, help="Text whose next token the book predicts.")
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    default=None,
    help="Where to write the .xlsx. Default: output/<model name>.xlsx",
)
@click.option("--blocks", type=int, default=None, help="Keep only the first N transformer blocks (teaching sheets).")
@click.option(
    "--context",
    type=int,
    default=None,
    help="Token rows in the book (default: the prompt's length; typed-prompt books at least 16, "
    "room to type a longer text); rows after the prompt are padding.",
)
@click.option(
    "--logits",
    type=click.Choice(["last", "all"]),
    default="last",
    show_default=True,
    help="Logits for the predicting position only, or for every position.",
)
@click.option(
    "--typed-prompt/--no-typed-prompt",
    default=None,
    help="Tokenize a typed text inside the book (a BPE tab of formulas; type into Prompt!B4). "
    "Default: on when the BPE formulas can tokenize the prompt (Latin-1 text).",
)
@click.option("--force", is_flag=True, help="Overwrite an existing output file.")
def build_cmd(model_dir, prompt, output, blocks, context, logits, force, typed_prompt):
    """Write a workbook that computes GPT-2's forward pass with formulas."""
    from .book.writer import build_workbook
    from .checkpoint import load_model
    from .tokenizer import Tokenizer

    started = time.perf_counter()
    model = load_model(model_dir)
    if blocks is not None:
        model = model.truncated(blocks)
    if context is not None and not 1 <= context <= model.config.n_positions:
        raise SheetGPTError(
            f"--context must be between 1 and the model's n_positions ({model.config.n_positions}), got {context}"
        )
    tokenizer = Tokenizer.from_dir(model.path)
    name = model.path.resolve().name or "model"
    output = output or Path("output") / f"{name}.xlsx"
    steps = (
        model.config.n_layer + 4 + len(model.flat)
    )  # compute tabs (Embed, blocks, Final norm, Logits, Predict) + weight tabs
    with LazyProgressBar(length=steps, label="writing tabs") as bar:
        result = build_workbook(
            model,
            tokenizer,
            prompt,
            output,
            context=context,
            logits_all=logits == "all",
            force=force,
            source=str(model.path),
            progress=lambda n, _tab: bar.update(n),
            typed_prompt=typed_prompt,
        )
    top = int(result.trace["predict.probs"][:, 0].argmax())
    prob = float(result.trace["predict.probs"][top, 0])
    click.echo(
        f"wrote {result.path} ({_size(result.path)}): {len(result.layout.tabs)} tabs, "
        f"{result.cells:,} cells, {len(result.ids)} token rows, {model.config.n_layer} blocks, "
        f"in {time.perf_counter() - started:.1f} s"
    )
    click.echo(
        f"predicted next token: {tokenizer.display(top)!r} (p = {prob:.3f}); prove it with: sheetgpt check {result.path}"
    )


@click.command("check")
@click.argument("book", type=click.Path(path_type=Path))
@click.option(
    "--engine",
    type=click.Choice(["fast", "formulas", "libreoffice"]),
    default="fast",
    show_default=True,
    help="fast: our vectorized evaluator; formulas: the formulas package (small books); "
    "libreoffice: LibreOffice headless, recalculation forced and proven.",
)
@click.option(
    "--rtol",
    type=float,
    default=1e-9,
    show_default=True,
    help="Allowed error relative to each stage's largest magnitude.",
)
@click.option(
    "--model",
    "model_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Also prove that the weight tabs equal this checkpoint.",
)
@click.option("--json", "json_out", type=click.Path(path_type=Path), default=None, help="Write the report as JSON.")
@click.option("--junit", "junit_out", type=click.Path(path_type=Path), default=None, help="Write a JUnit XML report.")
@click.option("--force", is_flag=True, help="Overwrite existing --json/--junit files.")
@click.option(
    "--timeout",
    type=float,
    default=1800,
    show_default=True,
    help="Seconds LibreOffice may take (--engine libreoffice); a GPT-2-small-shaped book "
    "with --blocks 2 takes about 5 minutes on 2 cores.",
)
def check_cmd(book, engine, rtol, model_dir, json_out, junit_out, force, timeout):
    """Recompute every formula of BOOK and compare each stage with the float64 reference.

    Exit code 0: every stage matches; 1: a mismatch; 2: the book (or an option) is unusable.
    """
    from .check import check_book, format_table, verdict
    from .checkpoint import load_model

    if not book.exists():
        raise SheetGPTError(f"{book}: no such file")
    if book.is_dir():
        raise SheetGPTError(f"{book}: is a directory, expected an .xlsx workbook")
    if not rtol > 0:
        raise SheetGPTError(f"--rtol must be above 0, got {rtol}")
    for out in (json_out, junit_out):  # before minutes of checking, not after
        if out is not None and out.exists() and not force:
            raise SheetGPTError(f"{out} exists; pass --force to overwrite it")
        if out is not None and not out.parent.is_dir():
            raise SheetGPTError(f"{out}: no directory {out.parent}; create it first")
    model = load_model(model_dir) if model_dir is not None else None
    bars = []  # shown from the first batch the evaluator reports

    def progress(done: int, total: int) -> None:
        if not bars:
            bars.append(click.progressbar(length=total, label="recomputing formulas", show_pos=True, file=sys.stderr))
            bars[0].__enter__()
        bars[0].update(done - bars[0].pos)

    try:
        report = check_book(book, engine=engine, rtol=rtol, model=model, progress=progress, timeout=timeout)
    finally:
        for bar in bars:
            bar.__exit__(None, None, None)
    click.echo(format_table(report))
    if json_out:
        _atomic_write_text(json_out, report.to_json(), force)
    if junit_out:
        _atomic_write_text(junit_out, report.to_junit(), force)
    click.echo(verdict(report) + f"; {report.formula_cells:,} formula cells in {report.seconds:.1f} s")
    raise SystemExit(0 if report.passed else 1)
