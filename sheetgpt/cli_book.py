"""`sheetgpt build` and `sheetgpt check`: write a workbook, and prove one."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import click

from .cli_types import FiniteFloat, sampling_options
from .engine.registry import ENGINES
from .engine.registry import help_text as engine_help
from .errors import SheetGPTError
from .safe_io import (
    check_report_paths,
    check_temp_name,
    destination,
    path_text,
    require_regular_file,
    write_report,
)

DEFAULT_PROMPT = "Mike is quick. He moves"
# Token rows of the bundled model's default book: the prompt and its greedy continuation (measured in
# BENCHMARKS.md: the book's size and its build and check times grow with the rows).
DEFAULT_GENERATE_ROWS = 24


EXERCISE_HELP = (
    "An exercise book: these stages' cells are left empty for a learner to fill (comma-separated "
    "stage names such as h.0.ln_1.var, or families: {families}; see docs/exercises.md). Grade with sheetgpt grade."
)


class ExerciseOption(click.Option):
    """--exercise, whose help lists the exercise families the tab modules declare (read when help is shown,
    so that the command line does not import the tabs to start)."""

    def get_help_record(self, ctx):
        from .book.tabs import TABS
        from .exercises import families

        self.help = EXERCISE_HELP.format(families=", ".join(families(TABS)))
        return super().get_help_record(ctx)


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


def _check_output(output: Path, force: bool) -> None:
    """Refusals about -o before any work: a temporary name too long, an existing file without --force, a
    symlink, FIFO or device even with --force (a directory is build_workbook's to refuse, by name)."""
    check_temp_name(output, f".{output.name}.{os.getpid()}.part.skeleton")
    if not output.is_dir():
        destination(output, force, "book")


class SwitchedTabsCommand(click.Command):
    """A command whose flags include one ``--NAME/--no-NAME`` per switched tab (a tab module's ``SWITCH``:
    the Saliency tab, the training tabs, ...), taken from the tab registry when the command parses its
    arguments or shows its help (not when ``sheetgpt`` starts: the registry imports every tab). The
    callback gets them as ``switched``: {NAME: on}."""

    _options: dict = {}  # Switch -> its click.Option, made once (click tells parameters apart by identity)

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        from .book import tabs as registry  # the registry as it is now (a test may add a tab)

        switched = [
            self._options.setdefault(
                s,
                click.Option(
                    [f"--{s.name}/--no-{s.name}", f"switched_{s.name}"], default=s.default, show_default=True,
                    help=s.help,
                ),
            )
            for s in registry.switches()
        ]
        params = super().get_params(ctx)  # the command's own, then --help
        k = len(self.params)
        return [*params[:k], *switched, *params[k:]]

    def invoke(self, ctx: click.Context):
        prefix = "switched_"
        switched = {k[len(prefix) :]: ctx.params.pop(k) for k in list(ctx.params) if k.startswith(prefix)}
        ctx.params["switched"] = switched
        return super().invoke(ctx)


@click.command("build", cls=SwitchedTabsCommand)
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
    cls=ExerciseOption,
    default=None,
    metavar="STAGES",
    help=EXERCISE_HELP,
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
@click.option(
    "--features/--no-features",
    default=None,
    help="The Features tab: a sparse autoencoder's top features per token, their labels, the reconstruction "
    "error and a heat map of one feature, in formulas, and steering by a feature on the Steering tab. "
    "Default: on for the bundled model (its SAE, sheetgpt/data/tiny/sae), off for others (--sae DIR).",
)
@click.option(
    "--sae",
    "sae_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="SAE directory in SAELens's layout (cfg.json with d_in, d_sae, hook_name blocks.L.hook_resid_pre; "
    "sae_weights.safetensors with W_enc, W_dec, b_enc, b_dec) for the Features tab (implies --features).",
)
@click.option(
    "--sae-features",
    type=click.IntRange(min=5),
    default=None,
    help="Keep only N of the SAE's features in the book: those most active on the prompt (with --feature). "
    "Default: all of them.",
)
@click.option(
    "--steer-feature",
    type=(int, float, int),
    default=None,
    metavar="K STRENGTH L",
    help="Feature steering (with --features or --sae): add STRENGTH x W_dec[K], feature K's decoder row, to the "
    "residual stream at the input of block L; the Steering tab's feature cell holds K (editable).",
)
@click.option(
    "--feature",
    type=int,
    default=None,
    help="The feature the Features tab's heat map shows (editable there). Default: the most active at the "
    "predicting position.",
)
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
    features,
    sae_dir,
    sae_features,
    steer_feature,
    feature,
    switched,
):
    """Write a workbook that computes GPT-2's forward pass with formulas."""
    from . import sampling
    from .book.writer import build_workbook
    from .checkpoint import open_model
    from .hf_cache import model_name
    from .tokenizer import ENDOFTEXT, Tokenizer

    started = time.perf_counter()
    sample_settings = sampling.from_cli(sample, temperature, top_k, top_p, seed)  # the Sample tab's cells
    if output is not None:  # before loading a model: a name the file system cannot take is refused at once
        _check_output(output, force)
    files = open_model(model_dir)  # config.json and the safetensors header, checked; no tensor read yet
    tokenizer = Tokenizer.from_dir(files.path)
    if tokenizer.vocab_size != files.config.vocab_size:  # before gigabytes of weights are read for nothing
        raise SheetGPTError(
            f"{path_text(files.path)}: the tokenizer has {tokenizer.vocab_size} tokens but config.json says "
            f"vocab_size {files.config.vocab_size}"
        )
    model = files.load()
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
    from .book import tabs as registry

    fixed = [s for s in registry.switches() if s.fixed_rows and switched[s.name]]  # e.g. --train
    if fixed and (generate or steer is not None):
        raise SheetGPTError(
            f"a book with --{fixed[0].name} predicts once from its prompt, neither generating nor steering: "
            "leave out --generate and --steer"
        )
    if fixed and typed_prompt is None:
        typed_prompt = False  # its rows are the prompt's tokens (type over a token to change it)
    if generate is None and (exercise is not None or fixed):
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
    sae = None
    if features is None:  # the bundled model's books have the Features tab (not exercises, nor --blocks 1)
        features = model_dir is None and exercise is None and sae_dir is None
        if features:
            from .sae import default_sae_dir, read_cfg

            try:
                read_cfg(default_sae_dir() / "cfg.json", model.config)
            except SheetGPTError:
                features = False
    if features or sae_dir is not None:
        from .sae import load_sae

        sae = load_sae(sae_dir, model.config)  # one line, exit 2, for a directory this model cannot use
        if feature is not None and not 0 <= feature < sae.d_sae:
            raise SheetGPTError(f"--feature must be a feature number from 0 to {sae.d_sae - 1}, got {feature}")
        if exercise is not None:
            raise SheetGPTError("an exercise book has no Features tab: leave out --features and --sae")
        if steer_feature is not None:
            if steer is not None:
                raise SheetGPTError("give --steer or --steer-feature, not both (one direction at a time)")
            from .book.tabs import steering

            steer = steering.from_feature_cli(steer_feature, tokenizer.display_ids(), model.config.n_layer, sae.d_sae)
    elif feature is not None or sae_features is not None or steer_feature is not None:
        raise SheetGPTError("--feature, --sae-features and --steer-feature need --features or --sae DIR")
    output = output or Path("output") / f"{model_name(model.path)}.xlsx"
    _check_output(output, force)
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
            sae=sae,
            feature=feature,
            sae_features=sae_features,
            tabs=switched,
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
    type=click.Choice(ENGINES),
    default="fast",
    show_default=True,
    help=engine_help(),
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
    help="Seconds an outside engine may take (--engine libreoffice, gnumeric, ironcalc); a GPT-2-small-shaped book "
    "with --blocks 2 takes about 5 minutes on 2 cores.",
)
@click.option("--verbose", "-v", is_flag=True, help="One line per stage instead of one per tab.")
@click.option("--quiet", "-q", is_flag=True, help="Print only the verdict line.")
def check_cmd(book, engine, rtol, model_dir, json_out, junit_out, force, timeout, verbose, quiet):
    """Recompute every formula of BOOK and compare each stage with the float64 reference.

    Prints one line per tab, every failing stage in full, and the verdict last (--verbose: one
    line per stage; --quiet: the verdict alone).

    An exercise book (built with --exercise; `sheetgpt grade` is this command) is also graded:
    per exercise, pass, FAIL with the first wrong cell and a diagnosis, or not done yet; an exercise
    passes on the values its formulas give, whatever functions the learner used.

    \b
    Exit codes:
      0    every stage matches (and every exercise passes)
      1    a mismatch (in an exercise book: an exercise wrong or not done yet)
      2    the book or an option is unusable (one line on stderr)
      3    an internal error: a bug in sheetgpt, please report it
      130  interrupted (Ctrl+C); 143 SIGTERM, 129 SIGHUP
      141  standard output closed (`| head`), quietly
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
        write_report(json_out, report.to_json(), force)
    if junit_out:
        write_report(junit_out, report.to_junit(), force)
    click.echo(verdict(report) + f"; {report.formula_cells:,} formula cells in {report.seconds:.1f} s")
    raise SystemExit(0 if report.passed else 1)
