"""`sheetgpt predict`: run the float64 reference on a prompt and continue it.

It shows what the workbook computes: the prompt's tokens, the next-token distribution
(top k) and a continuation, each new token from a full forward pass of ``reference.gpt2``
over the whole sequence so far (no cache; these models are small).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click
import numpy as np

from . import cli_backward, reference
from .checkpoint import Model, default_model_dir, load_model
from .cli_types import FiniteFloat
from .errors import SheetGPTError
from .tokenizer import ENDOFTEXT, Tokenizer

# Below 1e-3 sampling is greedy in all but name; far below (1e-320, a denormal) logits / T overflows to inf.
MIN_TEMPERATURE, MAX_TEMPERATURE = 1e-3, 1e6


def softmax(x):  # [n] -> [n]
    e = np.exp(x - x.max())
    return e / e.sum()


def top_k_ids(logits, k: int):  # [V] -> [k], highest first; ties go to the lower id
    return np.argsort(-logits, kind="stable")[:k]


def choose_next(logits, temperature: float, k: int, rng) -> int:  # [V] -> one id
    """Greedy (argmax) when temperature is 0, else a draw from softmax(logits / T) over the top k."""
    if temperature == 0:
        return int(np.argmax(logits))
    top = top_k_ids(logits, k)
    return int(rng.choice(top, p=softmax(logits[top] / temperature)))


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
    temperature: float,
    k: int,
    seed: int | None,
    stop: int | None = None,
    steer=None,
) -> tuple[list[int], str]:
    """Up to n new ids, each after a full forward pass, and why it ended: "n" (n ids made),
    "n_positions" (the sequence filled the context) or "endoftext" (``stop`` was chosen; not kept)."""
    rng = np.random.default_rng(seed)
    params, config = model.params, model.config
    seq, new = list(ids), []
    while len(new) < n:
        if len(seq) >= config.n_positions:
            return new, "n_positions"
        if new:
            logits = reference.gpt2(seq, params, config, steer=steer)["logits"][-1]
        nxt = choose_next(logits, temperature, k, rng)
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
@click.option(
    "--temperature",
    type=FiniteFloat(MIN_TEMPERATURE, MAX_TEMPERATURE, zero=True, what="greedy"),
    default=0.0,
    help=f"0 is greedy (argmax); from {MIN_TEMPERATURE:g} to {MAX_TEMPERATURE:g} samples from "
    "softmax(logits / T) over the top k.",
)
@click.option(
    "--top-k", "top_k", type=click.IntRange(min=1), default=5, help="How many next tokens to show, and to sample from."
)
@click.option("--seed", type=click.IntRange(min=0), default=0, help="Seed of numpy's default_rng for sampling (>= 0).")
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
    temperature,
    top_k,
    seed,
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
        settings = steering.from_feature_cli(steer_feature, tok.display_ids(), model.config.n_layer, sae.d_sae)
        wte = np.asarray(model.params["wte"], np.float64)
        held = (sae.feature_ids, sae.W_dec)
        add = settings.stages(tok.display_ids(), wte, model.config.n_layer, held)["steer.add"]
        if not features and sae_dir is None:
            sae = None  # steering only: no feature listing
    if steer is not None:
        from .book.tabs import steering

        settings = steering.from_cli(steer, tok.display_ids(), model.config.n_layer)
        wte = np.asarray(model.params["wte"], np.float64)
        add = settings.stages(tok.display_ids(), wte, model.config.n_layer)["steer.add"]
    logits = reference.gpt2(ids, model.params, model.config, steer=add)["logits"][-1]  # [V], the last position
    probs = softmax(logits)
    k = min(top_k, model.config.vocab_size)
    top = [{"id": int(i), "text": tok.display(int(i)), "prob": float(probs[i])} for i in top_k_ids(logits, k)]
    explain = cli_backward.saliency_report(ids, model, tok) if saliency else None
    step = None
    if train_step:
        step = cli_backward.train_step_report(ids, model, tok, target, lr, k, int(np.argmax(logits)))
    eot = tok.special.get(ENDOFTEXT) if stop else None
    new, ended = continue_ids(ids, model, logits, n_tokens, temperature, k, seed, eot, add)
    seconds = time.perf_counter() - start
    if as_json:
        click.echo(
            json.dumps(
                {
                    "prompt_ids": ids,
                    "tokens": [tok.display(i) for i in ids],
                    "top_k": top,
                    "continuation_ids": new,
                    "continuation_text": tok.decode(new),
                    "stopped_by": ended,
                    "logits": logits.tolist(),
                    **({"features": cli_features.as_json(model, ids + new, sae, top_k, add)} if sae else {}),
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
    how = "greedy" if temperature == 0 else f"sampled, temperature {temperature:g}, top {k}, seed {seed}"
    stopped = {"n": "", "n_positions": " (stopped at n_positions)", "endoftext": f" (stopped at {ENDOFTEXT})"}[ended]
    click.echo(f"continuation ({how}){stopped}: {tok.decode(new)!r}")
    click.echo(f"  ids: {new}")
    if sae is not None:
        seq = ids + new
        cli_features.echo_features(model, [tok.display(i) for i in seq], seq, len(ids), sae, top_k, add)
    click.echo(f"{len(ids)} prompt tokens + {len(new)} new tokens, {len(new) or 1} forward passes, {seconds:.2f} s")
