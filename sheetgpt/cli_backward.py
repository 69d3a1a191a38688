"""`sheetgpt predict --saliency` and `--train-step`: the reference backward (sheetgpt/backward.py) on a prompt.

--saliency    Ecco's grad_x_input for the predicted token at the last position, per prompt token.
--train-step  one plain SGD step on the NLL of --target (default: the predicted token) with learning
              rate --lr (default 0.005): the target's probability before and after, and the new top k.
"""

from __future__ import annotations

import click
import numpy as np

from . import backward
from .checkpoint import Model
from .cli_types import FiniteFloat
from .errors import SheetGPTError
from .tokenizer import Tokenizer

DEFAULT_LR = 0.005
MAX_LR = 1e3  # far past the point where one step throws every probability onto one token

OPTIONS = [
    click.option(
        "--saliency",
        is_flag=True,
        default=False,
        help="Print Ecco's input saliency (grad_x_input) of each prompt token for the predicted next token.",
    ),
    click.option(
        "--train-step",
        "train_step",
        is_flag=True,
        default=False,
        help=f"Take one plain SGD step on the NLL of --target over every tensor (learning rate --lr, default "
        f"{DEFAULT_LR:g}) and print the target's probability before and after, and the new top k.",
    ),
    click.option(
        "--target",
        default=None,
        help="With --train-step: the token to learn, as text of exactly one token, e.g. ' quickly'. "
        "[default: the predicted token]",
    ),
    click.option(
        "--lr",
        type=FiniteFloat(0, MAX_LR, low_open=True),
        default=None,
        help=f"With --train-step: the learning rate, above 0 up to {MAX_LR:g}.  [default: {DEFAULT_LR:g}]",
    ),
]


def add_options(command):
    for option in reversed(OPTIONS):
        command = option(command)
    return command


def check_options(saliency: bool, train_step: bool, target, lr, steer) -> None:
    if not train_step and (target is not None or lr is not None):
        raise SheetGPTError("--target and --lr go with --train-step; add --train-step")
    if (saliency or train_step) and steer is not None:
        raise SheetGPTError("--saliency and --train-step explain the model as it is; leave out --steer")


def target_id(tok: Tokenizer, model: Model, text: str) -> int:
    if not text:
        raise SheetGPTError("--target is empty; give the text of one token, e.g. --target ' quickly'")
    ids = tok.encode(text)
    if len(ids) != 1:
        shown = ", ".join(repr(tok.display(i)) for i in ids)
        raise SheetGPTError(f"--target {text!r} is {len(ids)} tokens ({shown}); give the text of exactly one token")
    V = model.config.vocab_size
    if ids[0] >= V:
        raise SheetGPTError(f"--target {text!r} is token id {ids[0]} but the model has vocab_size={V}")
    return ids[0]


def saliency_report(ids: list[int], model: Model, tok: Tokenizer) -> dict:
    s = backward.saliency(ids, model.flat, model.config)
    predicted = int(s["predicted"])
    return {
        "method": "grad_x_input",
        "predicted": {"id": predicted, "text": tok.display(predicted), "prob": float(s["prob"])},
        "tokens": [
            {
                "id": int(i),
                "text": tok.display(int(i)),
                "score": float(s["score"][r]),
                "grad_x_input": float(s["grad_x_input"][r]),
                "grad_norm": float(s["grad_norm"][r]),
            }
            for r, i in enumerate(ids)
        ],
    }


def train_step_report(ids: list[int], model: Model, tok: Tokenizer, target, lr, k: int, predicted: int) -> dict:
    tid = predicted if target is None else target_id(tok, model, target)
    lr = DEFAULT_LR if lr is None else lr
    (step,) = backward.train_step(ids, model.flat, model.config, tid, [lr])
    top = np.argsort(-step.probs_after, kind="stable")[:k]
    norms = step.grad_norms
    return {
        "target": {"id": tid, "text": tok.display(tid)},
        "lr": lr,
        "loss": step.loss,
        "p_before": step.p_before,
        "p_after": step.p_after,
        "top_k_after": [{"id": int(i), "text": tok.display(int(i)), "prob": float(step.probs_after[i])} for i in top],
        "grad_norms": norms,
    }


def print_saliency(report: dict) -> None:
    p = report["predicted"]
    click.echo(
        f"input saliency (Ecco's grad_x_input) for the predicted token {p['text']!r} (p {p['prob']:.6f}): "
        "|d p / d wte[id] x wte[id]|, normalized to sum 1"
    )
    for t in report["tokens"]:
        bar = "#" * round(40 * t["score"])
        click.echo(f"  {t['id']:>6}  {t['score']:.3f}  {t['text']!r:<16} {bar}")


def print_train_step(report: dict) -> None:
    t = report["target"]
    norms = report["grad_norms"]
    biggest = max(norms, key=norms.get)
    click.echo(
        f"one SGD step on the NLL of {t['text']!r} (id {t['id']}), lr {report['lr']:g}, every tensor updated "
        f"(loss {report['loss']:.6f}; largest gradient norm: {biggest} {norms[biggest]:.4g}):"
    )
    click.echo(f"  p({t['text']!r}) before {report['p_before']:.6f}, after {report['p_after']:.6f}")
    click.echo(f"  next token after the step (top {len(report['top_k_after'])}):")
    for x in report["top_k_after"]:
        click.echo(f"    {x['id']:>6}  {x['prob']:.6f}  {x['text']!r}")
