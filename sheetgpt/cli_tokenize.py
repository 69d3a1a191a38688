"""`sheetgpt tokenize` and `sheetgpt bpe-learn`: GPT-2's tokenizer on the command line."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from . import hf_cache
from .errors import SheetGPTError
from .safe_io import require_regular_file
from .tokenizer import Tokenizer, bpe_learn


def _default_model_dir() -> Path:
    from .checkpoint import default_model_dir

    return default_model_dir()


def _read_text(text: str | None, file: str | None) -> str:
    if text is not None and file is not None:
        raise SheetGPTError("give the text or --file, not both")
    if file is None and text is None:
        raise SheetGPTError("no text; give TEXT, --file F, or - to read standard input")
    if text == "-" or file == "-":
        return sys.stdin.read()
    if file is not None:
        p = Path(file)
        require_regular_file(p, "a text file ('-' reads standard input)")  # not /dev/zero or a FIFO
        try:
            return p.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise SheetGPTError(f"{p}: no such file") from None
        except UnicodeDecodeError as e:
            raise SheetGPTError(f"{p}: not UTF-8 text (byte {e.start}); convert it to UTF-8 first") from None
        except OSError as e:
            raise SheetGPTError(f"{p}: cannot read ({e.strerror})") from None
    return text


@click.command("tokenize")
@click.argument("text", required=False)
@click.option(
    "--model",
    "model_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Model directory with vocab.json + merges.txt (or encoder.json + vocab.bpe), or a model name in the "
    "local Hugging Face cache.  [default: the bundled teaching model]",
)
@click.option(
    "--file", "-f", "file", type=str, default=None, help="Read the text from this file ('-' for standard input)."
)
@click.option("--json", "as_json", is_flag=True, default=False, help="Print ids, tokens and the merge trace as JSON.")
def tokenize_cmd(text: str | None, model_dir: str | None, file: str | None, as_json: bool) -> None:
    """Show how GPT-2 tokenizes TEXT: each token and the merges that built it ('-' reads standard input)."""
    s = _read_text(text, file)
    tok = Tokenizer.from_dir(hf_cache.resolve(model_dir) if model_dir is not None else _default_model_dir())
    words = tok.trace(s)
    ids = [i for w in words for i in w.ids]
    if as_json:
        out = {
            "ids": ids,
            "tokens": [tok.token_str(i) for i in ids],
            "display": [tok.display(i) for i in ids],
            "trace": [
                {
                    "text": w.text,
                    "symbols": w.symbols,
                    "steps": [{"pair": list(st.pair), "rank": st.rank, "symbols": st.symbols} for st in w.steps],
                    "tokens": w.tokens,
                    "ids": w.ids,
                }
                for w in words
            ],
        }
        click.echo(json.dumps(out, ensure_ascii=False, indent=1))
        return
    click.echo(f"{len(ids)} tokens, {len(words)} pre-tokens, {len(s)} characters")
    click.echo(f"{'id':>6}  {'GPT-2 form':<20}  text")
    for i in ids:
        click.echo(f"{i:>6}  {tok.token_str(i):<20}  {tok.display(i)!r}")
    click.echo("")
    click.echo("merge trace (rank: pair -> symbols):")
    for w in words:
        click.echo(f"{w.text!r}: {' '.join(w.symbols)}")
        for st in w.steps:
            click.echo(f"  {st.rank:>6}: {st.pair[0]} + {st.pair[1]} -> {' '.join(st.symbols)}")
        click.echo(f"  ids {w.ids}")


@click.command("bpe-learn")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option(
    "--vocab-size",
    type=int,
    required=True,
    help="Final vocabulary size: 256 bytes + merges + <|endoftext|> (GPT-2: 50257).",
)
@click.option(
    "-o",
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    default=".",
    help="Directory for vocab.json and merges.txt.",
)
@click.option("--force", is_flag=True, default=False, help="Overwrite existing vocab.json / merges.txt.")
def bpe_learn_cmd(file: str, vocab_size: int, out_dir: str, force: bool) -> None:
    """Learn byte-level BPE merges from FILE with GPT-2's pre-tokenization."""
    text = _read_text(None, file)
    if vocab_size < 257:
        raise SheetGPTError(
            f"--vocab-size {vocab_size} is too small; it must be at least 257 (256 bytes + <|endoftext|>)"
        )
    out = Path(out_dir)
    existing = [p.name for p in (out / "vocab.json", out / "merges.txt") if p.exists()]
    if existing and not force:
        raise SheetGPTError(
            f"{out}: {' and '.join(existing)} already exist; use --force to overwrite or -o to choose another directory"
        )

    def on_merge(rank: int, pair: tuple[str, str], new: str, count: int) -> None:
        click.echo(f"{rank:>6}  {pair[0]!r} + {pair[1]!r} -> {new!r}  (count {count})")

    t0 = time.perf_counter()
    tok = bpe_learn(text, vocab_size, on_merge=on_merge)
    seconds = time.perf_counter() - t0
    try:
        tok.save(out)
    except OSError as e:
        raise SheetGPTError(f"{out}: cannot write ({e.strerror})") from None
    short = "" if tok.vocab_size == vocab_size else f" (asked {vocab_size}: the text has no more pairs)"
    click.echo(
        f"learned {len(tok.merges)} merges, vocab size {tok.vocab_size}{short}, in {seconds:.2f} s; "
        f"wrote {out / 'vocab.json'} and {out / 'merges.txt'}"
    )
