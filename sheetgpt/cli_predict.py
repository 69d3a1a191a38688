"""`sheetgpt predict`: run the float64 reference on a prompt and continue it.

It shows what the workbook computes: the prompt's tokens, the next-token distribution
(the --show most likely) and a continuation, each new token from a full forward pass of
``reference.gpt2`` over the whole sequence so far (no cache; these models are small): greedy, or
with --sample drawn as the book's Sample tab draws it (``sheetgpt.sampling``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click
import numpy as np

from . import cli_backward, reference, sampling
from .checkpoint import Model, default_model_dir, load_model
from .cli_types import sampling_options
from .errors import SheetGPTError
from .tokenizer import ENDOFTEXT, Tokenizer


def _load(model_dir: str | None) -> tuple[Model, Tokenizer]:
    if model_dir is None:
        path = default_model_dir()
        if not (path / "config.json").exists():
            raise SheetGPTError(
                f"the bundled teaching model is missing ({path}); pass --model DIR with a GPT-2 directory"
            )
    else:
        path = Path(model_dir)
    model = load_model(path)
    return model, Tokenizer.from_dir(model.path)  # a cached hub name resolves to its snapshot


def _encode(tok: Tokenizer, model: Model, prompt: str) -> list[int]:
    if not prompt:
        raise SheetGPTError("the prompt is empty; give --prompt TEXT with at least one token")
    ids = tok.encode(prompt)
    P, V = model.config.n_positions, model.config.vocab_size
    if len(ids) > P:
        raise SheetGPTError(
            f"the prompt is {len(ids)} tokens but {model.path} takes at most n_positions={P}; shorten it"
        )
    if max(ids) >= V:
        raise SheetGPTError(
            f"the prompt has token id {max(ids)} but {model.path} has vocab_size={V}; "
            "the tokenizer does not match the model"
        )
    return ids


def continue_ids(
    ids: list[int],
    model: Model,
    logits,
    n: int,
    settings: sampling.Settings,
    stop: int | None = None,
    steer=None,
) -> tuple[list[int], str]:
    """Up to n new ids, each after a full forward pass, and why it ended: "n" (n ids made),
    "n_positions" (the sequence filled the context) or "endoftext" (``stop`` was chosen; not kept).
    The k-th new id uses the generator's k-th draw (``sampling.states``), as the book's rows do."""
    params, config = model.params, model.config
    draws = [sampling.uniform(x) for x in sampling.states(int(settings.seed), n)] if settings.sampling else []
    seq, new = list(ids), []
    while len(new) < n:
        if len(seq) >= config.n_positions:
            return new, "n_positions"
        if new:
            logits = reference.gpt2(seq, params, config, steer=steer)["logits"][-1]
        nxt = sampling.next_token(logits, settings, draws[len(new)] if draws else None)
        if nxt == stop:
            return new, "endoftext"
        seq.append(nxt)
        new.append(nxt)
    return new, "n"


@click.command("predict")
@click.option(
    "--model",
    "model_dir",
    type=click.Path(),
    default=None,
    help="Model directory (config.json, model.safetensors, vocab.json + merges.txt), or a model name in the "
    "local Hugging Face cache (gpt2, distilgpt2, org/name).  [default: the bundled teaching model]",
)
@click.option("--prompt", required=True, help="The text to continue.")
@click.option(
    "-n", "n_tokens", type=click.IntRange(min=0), default=10, help="How many tokens to add (stops at n_positions)."
)
@sampling_options
@click.option("--show", type=click.IntRange(min=1), default=5, help="How many most likely next tokens to show.")
@click.option(
    "--stop/--no-stop",
    default=True,
    help="Stop the continuation when the model chooses <|endoftext|> (--no-stop: go on past it).",
)
@click.option(
    "--steer",
    type=(str, str, float, int),
    default=None,
    metavar="A B STRENGTH L",
    help="Activation steering, as in `sheetgpt build --steer`: add STRENGTH x (wte[A] - wte[B]) to the residual "
    "stream at the input of block L, e.g. --steer ' slow' ' quick' 1 0.",
)
@click.option(
    "--steer-feature",
    type=(int, float, int),
    default=None,
    metavar="K STRENGTH L",
    help="Feature steering, as in `sheetgpt build --steer-feature`: add STRENGTH x W_dec[K] (the SAE's feature "
    "K, --sae or the bundled one) to the residual stream at the input of block L.",
)
@click.option(
    "--json", "as_json", is_flag=True, default=False, help="Print the result as JSON (with the last position's logits)."
)
@click.option(
    "--features", is_flag=True, default=False, help="Print each token's top sparse-autoencoder features (--sae)."
)
@click.option(
    "--sae",
    "sae_dir",
    type=click.Path(),
    default=None,
    help="SAE directory in SAELens's layout (cfg.json + sae_weights.safetensors) for --features.  "
    "[default: the bundled model's SAE]",
)
@cli_backward.add_options
def predict_cmd(
    model_dir,
    prompt,
    n_tokens,
    sample,
    temperature,
    top_k,
    top_p,
    seed,
    show,
    stop,
    steer,
    steer_feature,
    as_json,
    features,
    sae_dir,
    saliency,
    train_step,
    target,
    lr,
) -> None:
    """Predict the next token after --prompt with the float64 reference, and continue the text."""
    start = time.perf_counter()
    settings = sampling.from_cli(sample, temperature, top_k, top_p, seed)  # before loading anything
    cli_backward.check_options(saliency, train_step, target, lr, steer)
    model, tok = _load(model_dir)
    ids = _encode(tok, model, prompt)
    sae = None
    if features or sae_dir is not None or steer_feature is not None:
        from . import cli_features

        sae = cli_features.load(model, sae_dir)
    add = None
    if steer_feature is not None:
        from .book.tabs import steering

        if steer is not None:
            raise SheetGPTError("give --steer or --steer-feature, not both (one direction at a time)")
        by_feature = steering.from_feature_cli(steer_feature, tok.display_ids(), model.config.n_layer, sae.d_sae)
        wte = np.asarray(model.params["wte"], np.float64)
        held = (sae.feature_ids, sae.W_dec)
        add = by_feature.stages(tok.display_ids(), wte, model.config.n_layer, held)["steer.add"]
        if not features and sae_dir is None:
            sae = None  # steering only: no feature listing
    if steer is not None:
        from .book.tabs import steering

        steered = steering.from_cli(steer, tok.display_ids(), model.config.n_layer)
        wte = np.asarray(model.params["wte"], np.float64)
        add = steered.stages(tok.display_ids(), wte, model.config.n_layer)["steer.add"]
    logits = reference.gpt2(ids, model.params, model.config, steer=add)["logits"][-1]  # [V], the last position
    probs = reference.next_token_probs(logits)[2]
    k = min(show, model.config.vocab_size)
    shown = sampling.candidates(logits, k)[1]
    top = [{"id": int(i), "text": tok.display(int(i)), "prob": float(probs[i])} for i in shown]
    explain = cli_backward.saliency_report(ids, model, tok) if saliency else None
    step = None
    if train_step:
        step = cli_backward.train_step_report(ids, model, tok, target, lr, k, int(np.argmax(logits)))
    eot = tok.special.get(ENDOFTEXT) if stop else None
    new, ended = continue_ids(ids, model, logits, n_tokens, settings, eot, add)
    seconds = time.perf_counter() - start
    if as_json:
        click.echo(
            json.dumps(
                {
                    "prompt_ids": ids,
                    "tokens": [tok.display(i) for i in ids],
                    "top": top,
                    "sampling": {
                        "mode": "sample" if settings.sampling else "greedy",
                        "temperature": settings.temperature,
                        "top_k": settings.top_k,
                        "top_p": settings.top_p,
                        "seed": settings.seed,
                    },
                    "continuation_ids": new,
                    "continuation_text": tok.decode(new),
                    "stopped_by": ended,
                    "logits": logits.tolist(),
                    **({"features": cli_features.as_json(model, ids + new, sae, show, add)} if sae else {}),
                    **({"saliency": explain} if saliency else {}),
                    **({"train_step": step} if train_step else {}),
                },
                ensure_ascii=False,
            )
        )
        return
    c = model.config
    click.echo(
        f"model {model.path}: n_layer={c.n_layer} n_head={c.n_head} n_embd={c.n_embd} "
        f"n_positions={c.n_positions} vocab_size={c.vocab_size}"
    )
    click.echo(f"prompt: {len(ids)} tokens")
    for i in ids:
        click.echo(f"  {i:>6}  {tok.display(i)!r}")
    click.echo(f"next token (top {k}, probabilities at temperature 1):")
    for t in top:
        click.echo(f"  {t['id']:>6}  {t['prob']:.6f}  {t['text']!r}")
    if explain:
        cli_backward.print_saliency(explain)
    if step:
        cli_backward.print_train_step(step)
    how = "greedy"
    if settings.sampling:
        s = settings
        how = f"sampled: temperature {s.temperature:g}, top-k {s.top_k or 'off'}, top-p {s.top_p:g}, seed {s.seed}"
    stopped = {"n": "", "n_positions": " (stopped at n_positions)", "endoftext": f" (stopped at {ENDOFTEXT})"}[ended]
    click.echo(f"continuation ({how}){stopped}: {tok.decode(new)!r}")
    click.echo(f"  ids: {new}")
    if sae is not None:
        seq = ids + new
        cli_features.echo_features(model, [tok.display(i) for i in seq], seq, len(ids), sae, show, add)
    click.echo(f"{len(ids)} prompt tokens + {len(new)} new tokens, {len(new) or 1} forward passes, {seconds:.2f} s")
