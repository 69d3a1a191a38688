"""`sheetgpt predict --features`: each token's top sparse-autoencoder features, from the float64 reference.

The SAE (sheetgpt.sae; the bundled one by default, ``--sae DIR`` for another in SAELens's layout)
reads the residual stream at its hook point (the input of block L) of a forward pass over the
prompt and its continuation; for each token it prints the active features with the largest
activations, each with its label.
"""

from __future__ import annotations

import click
import numpy as np

from . import reference
from .checkpoint import Model
from .sae import SAE, load_sae, resid_pre, top_features


def token_features(model: Model, ids: list[int], sae: SAE, k: int, steer=None):  # -> per token [(feature, act)]
    """The top k active features of each token (largest first), and each row's relative reconstruction
    error ||x - x_hat|| / ||x||."""
    trace = reference.gpt2(ids, model.params, model.config, steer=steer)
    x = resid_pre(trace, sae.block)
    f = sae.encode(x)
    err = np.linalg.norm(x - sae.decode(f), axis=1) / np.maximum(np.linalg.norm(x, axis=1), 1e-300)
    return [top_features(row, k) for row in f], err


def load(model: Model, sae_dir) -> SAE:
    """The SAE of --sae DIR (the bundled one if None), checked against the model: exit 2 with one line if not."""
    return load_sae(sae_dir, model.config)


def echo_features(model: Model, texts: list[str], ids: list[int], n_prompt: int, sae: SAE, k: int, steer=None):
    """Print each token's top k features (activation, label) to stdout."""
    tops, err = token_features(model, ids, sae, k, steer)
    click.echo(
        f"features: SAE {sae.path} at {sae.hook_name} (d_sae={sae.d_sae}); top {k} active per token, "
        "with the relative reconstruction error |x - x_hat| / |x|"
    )
    for t, (text, top) in enumerate(zip(texts, tops)):
        where = "prompt" if t < n_prompt else "new"
        click.echo(f"  {t:>3} {where:<6} {text!r}  error {err[t]:.3f}")
        for feature, act in top:
            click.echo(f"        {feature:>6}  {act:8.4f}  {sae.label(feature)}")
        if not top:
            click.echo("        (no active feature)")


def as_json(model: Model, ids: list[int], sae: SAE, k: int, steer=None) -> list[dict]:
    """Per token of prompt + continuation: its top k features and its relative reconstruction error."""
    tops, err = token_features(model, ids, sae, k, steer)
    return [
        {
            "error": float(e),
            "top": [{"feature": f, "activation": a, "label": sae.label(f)} for f, a in top],
        }
        for top, e in zip(tops, err)
    ]
