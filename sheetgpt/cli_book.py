"""`sheetgpt build` and `sheetgpt check`: write a workbook, and prove one."""

from __future__ import annotations

import os
import stat
import sys
import tempfile
import time
from pathlib import Path

import click

from .cli_types import FiniteFloat, sampling_options
from .errors import SheetGPTError
from .safe_io import check_temp_name, kind_of, path_text, require_regular_file, write_error

DEFAULT_PROMPT = "Mike is quick. He moves"
# Token rows of the bundled model's default book: the prompt and its greedy continuation (measured in
# BENCHMARKS.md: the book's size and its build and check times grow with the rows).
DEFAULT_GENERATE_ROWS = 24


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
    """Write a report beside its destination under a fresh hidden name, then rename it into place.

    The destination is checked again just before the rename: it must still be a regular file or
    absent (a symlink or FIFO planted while the check ran is refused, not replaced).
    """
    _check_report_path(path, force)
    fd, tmp = None, None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            fd = None
            f.write(text)
        _check_report_path(path, force)
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        raise write_error(path, exc) from None
    finally:
        if fd is not None:
            os.close(fd)
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def _check_report_path(out: Path, force: bool) -> None:
    """A --json/--junit destination must be new, or a regular file with --force; its directory must exist."""
    try:
        st = os.lstat(out)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise SheetGPTError(f"{path_text(out)}: cannot use it as a report ({exc.strerror or exc})") from None
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise SheetGPTError(
            f"{path_text(out)}: is {kind_of(st.st_mode)}; a report is written only to a new or regular file"
        )
    if st is not None and not force:
        raise SheetGPTError(f"{path_text(out)} exists; pass --force to overwrite it")
    if not out.parent.is_dir():
        raise SheetGPTError(f"{path_text(out)}: no directory {path_text(out.parent)}; create it first")


def _same_file(a: Path, b: Path) -> bool:
    """The same file (hard links too), or the same place once symlinks in the directories are resolved."""
    try:
        if os.path.samefile(a, b):
            return True
    except OSError:
        pass
    return os.path.realpath(a) == os.path.realpath(b)


def check_report_paths(book: Path, outputs: dict[str, Path | None], force: bool) -> None:
    """All refusals about --json/--junit, before any checking: kinds of file, --force, clashes."""
    given = {opt: out for opt, out in outputs.items() if out is not None}
    for opt, out in given.items():
        _check_report_path(out, force)
        check_temp_name(out, f".{out.name}.XXXXXXXX.part")  # mkstemp's random part is 8 characters
        if _same_file(out, book):
            raise SheetGPTError(f"{opt} {path_text(out)} is the book being checked; write the report elsewhere")
    if len(given) == 2 and _same_file(*given.values()):
        raise SheetGPTError(f"--json and --junit both name {path_text(given['--json'])}; give two different files")


@click.command("build")
@click.option(
    "--model",
    "model_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="A Hugging Face GPT-2 directory (config.json, model.safetensors, vocab.json, merges.txt), or a "
    "model name in the local Hugging Face cache (gpt2, openai-community/gpt2, distilgpt2...; never "
    "downloaded). Default: the bundled tiny teaching model.",
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
@click.option(
    "--exercise",
    "exercise",
    default=None,
    metavar="STAGES",
    help="An exercise book: these stages' cells are left empty for a learner to fill (comma-separated "
    "stage names such as h.0.ln_1.var, or families: layer_norm, variance, attention, mask, softmax, "
    "linear, gelu, mlp, residual, embedding, unembedding; see docs/exercises.md). Grade with sheetgpt grade.",
)
@click.option(
    "--generate",
    type=click.IntRange(min=0),
    default=None,
    help="Token rows after the prompt that the book fills with its own greedy continuation, in formulas "
    "(the context is then the prompt plus N rows). 0: rows after the prompt are padding. Default: the "
    f"bundled model fills its context ({DEFAULT_GENERATE_ROWS} rows in all); other models and --context: 0.",
)
@click.option(
    "--steer",
    type=(str, str, float, int),
    default=None,
    metavar="A B STRENGTH L",
    help="Activation steering: add STRENGTH x (wte[A] - wte[B]) to the residual stream at the input of block L "
    "(token texts as the vocab tab shows them), e.g. --steer ' slow' ' quick' 1 0. The book's Steering tab "
    "holds the four values (editable); books built with --generate have it too, with strength 0.",
)
@sampling_options
@click.option("--force", is_flag=True, help="Overwrite an existing output file.")
def build_cmd(
    model_dir,
    prompt,
    output,
    blocks,
    context,
    logits,
    force,
    typed_prompt,
    exercise,
    generate,
    steer,
    sample,
    temperature,
    top_k,
    top_p,
    seed,
):
    """Write a workbook that computes GPT-2's forward pass with formulas."""
    from . import sampling
    from .book.writer import build_workbook
    from .checkpoint import load_model
    from .hf_cache import model_name
    from .tokenizer import ENDOFTEXT, Tokenizer

    started = time.perf_counter()
    sample_settings = sampling.from_cli(sample, temperature, top_k, top_p, seed)  # the Sample tab's cells
    if output is not None:  # before loading a model: a name the file system cannot take is refused at once
        check_temp_name(output, f".{output.name}.{os.getpid()}.part.skeleton")
    model = load_model(model_dir)
    if blocks is not None:
        model = model.truncated(blocks)
    if context is not None and not 1 <= context <= model.config.n_positions:
        raise SheetGPTError(
            f"--context must be between 1 and the model's n_positions ({model.config.n_positions}), got {context}"
        )
    if generate and context is not None:
        raise SheetGPTError(
            f"give --context or --generate, not both: --generate {generate} makes the context the prompt's "
            f"tokens plus {generate}"
        )
    if exercise is not None and (generate or steer is not None):
        raise SheetGPTError("an exercise book neither generates nor steers: leave out --generate and --steer")
    tokenizer = Tokenizer.from_dir(model.path)
    if generate is None and exercise is not None:
        generate = 0  # an exercise book predicts one token, once the learner's blanks compute
    if generate is None:  # the bundled model fills its context, up to DEFAULT_GENERATE_ROWS rows
        rows = min(DEFAULT_GENERATE_ROWS, model.config.n_positions)
        n = len(tokenizer.encode(prompt)) if prompt else 0
        generate = max(rows - n, 0) if model_dir is None and context is None else 0
    if sample and not generate:
        raise SheetGPTError("--sample sets the Sample tab of a generating book: give --generate N (N > 0) too")
    if steer is not None:
        from .book.tabs import steering

        steer = steering.from_cli(steer, tokenizer.display_ids(), model.config.n_layer)
    output = output or Path("output") / f"{model_name(model.path)}.xlsx"
    check_temp_name(output, f".{output.name}.{os.getpid()}.part.skeleton")
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
            source=path_text(model.path),
            progress=lambda n, _tab: bar.update(n),
            typed_prompt=typed_prompt,
            exercise=exercise,
            generate=generate,
            steer=steer,
            sample_settings=sample_settings,
        )
    top = int(result.trace["predict.probs"][:, 0].argmax())
    prob = float(result.trace["predict.probs"][top, 0])
    shown = path_text(result.path)
    click.echo(
        f"wrote {shown} ({_size(result.path)}): {len(result.layout.tabs)} tabs, "
        f"{result.cells:,} cells, {len(result.ids)} token rows, {model.config.n_layer} blocks, "
        f"in {time.perf_counter() - started:.1f} s"
    )
    if result.exercises:
        click.echo(
            f"exercises ({len(result.exercises)}): {', '.join(result.exercises)}; the learner fills the yellow "
            f"cells, then: sheetgpt grade {shown}"
        )
        return
    click.echo(
        f"predicted next token: {tokenizer.display(top)!r} (p = {prob:.3f}); prove it with: sheetgpt check {shown}"
    )
    if generate:
        ids = result.ids[len(result.ids) - generate :]
        eot = tokenizer.special.get(ENDOFTEXT)
        shown_ids = ids[: ids.index(eot)] if eot in ids else ids
        how = "sampled" if sample_settings.sampling else "greedy"
        click.echo(f"{how} continuation in the book ({generate} rows): {tokenizer.decode(shown_ids)!r}")


@click.command("check")
@click.argument("book", type=click.Path(path_type=Path))
@click.option(
    "--engine",
    type=click.Choice(["fast", "formulas", "libreoffice", "gnumeric"]),
    default="fast",
    show_default=True,
    help="fast: our vectorized evaluator; formulas: the formulas package (small books); "
    "libreoffice: LibreOffice headless, recalculation forced and proven; "
    "gnumeric: Gnumeric's ssconvert --recalc, recalculation proven.",
)
@click.option(
    "--rtol",
    type=FiniteFloat(0, 1, low_open=True),
    default=1e-9,
    show_default=True,
    help="Allowed error relative to each stage's largest magnitude (above 0, at most 1).",
)
@click.option(
    "--model",
    "model_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Also prove that the weight tabs equal this checkpoint (a directory, or a model name in the "
    "local Hugging Face cache).",
)
@click.option(
    "--json",
    "json_out",
    type=click.Path(path_type=Path),
    default=None,
    help="Write the report as JSON (a new or regular file).",
)
@click.option(
    "--junit",
    "junit_out",
    type=click.Path(path_type=Path),
    default=None,
    help="Write a JUnit XML report (a new or regular file).",
)
@click.option("--force", is_flag=True, help="Overwrite existing --json/--junit files (regular files only).")
@click.option(
    "--timeout",
    type=FiniteFloat(0, 7 * 86400, low_open=True),
    default=1800,
    show_default=True,
    help="Seconds LibreOffice or Gnumeric may take (--engine libreoffice, gnumeric); a GPT-2-small-shaped book "
    "with --blocks 2 takes about 5 minutes on 2 cores.",
)
@click.option("--verbose", "-v", is_flag=True, help="One line per stage instead of one per tab.")
@click.option("--quiet", "-q", is_flag=True, help="Print only the verdict line.")
def check_cmd(book, engine, rtol, model_dir, json_out, junit_out, force, timeout, verbose, quiet):
    """Recompute every formula of BOOK and compare each stage with the float64 reference.

    Prints one line per tab, every failing stage in full, and the verdict last (--verbose: one
    line per stage; --quiet: the verdict alone). Exit code 0: every stage matches; 1: a mismatch;
    2: the book (or an option) is unusable.
    """
    from .check import check_book
    from .checkpoint import load_model
    from .report import format_table, summary, verdict

    if verbose and quiet:
        raise SheetGPTError("give --verbose or --quiet, not both")
    require_regular_file(book, "an .xlsx workbook")
    check_report_paths(book, {"--json": json_out, "--junit": junit_out}, force)  # before minutes of checking
    model = load_model(model_dir) if model_dir is not None else None
    bars = []  # shown from the first batch the evaluator reports

    def progress(done: int, total: int) -> None:
        if quiet:
            return
        if not bars:
            bars.append(click.progressbar(length=total, label="recomputing formulas", show_pos=True, file=sys.stderr))
            bars[0].__enter__()
        bars[0].update(done - bars[0].pos)

    try:
        report = check_book(
            book,
            engine=engine,
            rtol=rtol,
            model=model,
            progress=progress,
            timeout=timeout,
            notice=None if quiet else (lambda text: click.echo(text, err=True)),
        )
    finally:
        for bar in bars:
            bar.__exit__(None, None, None)
    if not quiet:
        click.echo(format_table(report) if verbose else summary(report))
    if json_out:
        _atomic_write_text(json_out, report.to_json(), force)
    if junit_out:
        _atomic_write_text(junit_out, report.to_junit(), force)
    click.echo(verdict(report) + f"; {report.formula_cells:,} formula cells in {report.seconds:.1f} s")
    raise SystemExit(0 if report.passed else 1)
