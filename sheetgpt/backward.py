"""The float64 reference backward: GPT-2's backward pass in numpy, llm.c style.

One function per op, named after the forward op in reference.py (``layer_norm_backward`` for
``layer_norm``, ``mha_backward`` for ``mha``, ...), read in the reverse order of the forward. The
forward's trace (``reference.gpt2``) is the cache: each backward reads from it only what it needs
(a layer norm's ``norm`` and ``var``, the attention ``weights``, a linear layer's input, ...).

``backward(ids, params, config, objective)`` gives the gradient of one scalar at the predicting row t:

- ``Prob(target)``: the probability of a token (Ecco's target: the predicted token, the argmax);
- ``NLL(target)``: the negative log-likelihood of a token, ``LN(S) - (logit - M)`` (training).

with respect to every activation stage (the forward's stage name prefixed with ``d``: ``dlogits``,
``dln_f.out``, ``dh.0.mlp.gelu``, ..., ``dembed.h``) and every parameter (flat names, as
``Model.flat``: ``wte``, ``h.0.attn.c_attn.w``, ...). ``wte`` is tied: its gradient collects the
unembedding (logits = ln_f.out @ wte.T) and the embedding (embed.wte = wte[ids]).

Every product, exp, log and tanh here goes through sheetgpt.exact, so the values do not depend on
the machine. docs/backward.md derives each formula.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from . import exact, reference
from .checkpoint import nest
from .config import GPT2Config

Trace = dict[str, np.ndarray]


# ---- the objectives at the predicting row t ---------------------------------------------------


@dataclass(frozen=True)
class Prob:
    """The probability of token ``target`` at the predicting row (Ecco's saliency target)."""

    target: int


@dataclass(frozen=True)
class NLL:
    """The negative log-likelihood of token ``target`` at the predicting row: LN(S) - (logit - M)."""

    target: int


def softmax_parts(logits):  # [V] -> (M [], S [], P [V])
    top = logits.max()
    e = exact.exp(logits - top)
    return top, e.sum(), e / e.sum()


def objective_value(logits, objective) -> float:  # [V] -> the objective's value
    top, total, probs = softmax_parts(logits)
    if isinstance(objective, Prob):
        return float(probs[objective.target])
    return float(exact.log(total) - (logits[objective.target] - top))


def softmax_backward(probs, dprobs):  # [..., n], [..., n] -> d inputs [..., n]
    """P * (dP - r), r = sum(P * dP): the softmax's Jacobian diag(P) - P P^T applied to dP."""
    r = (probs * dprobs).sum(axis=-1, keepdims=True)
    return probs * (dprobs - r)


def crossentropy_softmax_backward(probs, target: int):  # [V] -> d logits [V]
    """d(LN(S) - (logit_k - M)) / d logits = P - onehot(k)."""
    onehot = np.zeros_like(probs)
    onehot[target] = 1.0
    return probs - onehot


def objective_backward(logits, objective):  # [V] -> d logits [V]
    _, _, probs = softmax_parts(logits)
    if isinstance(objective, Prob):
        dprobs = np.zeros_like(probs)
        dprobs[objective.target] = 1.0
        return softmax_backward(probs, dprobs)  # = P * (onehot - P_k)
    return crossentropy_softmax_backward(probs, objective.target)


# ---- one backward per forward op ----------------------------------------------------------------


def linear_backward(dout, x, w, dw=True):  # dout [T, n_out], x [T, n_in], w [n_in, n_out] -> dx, dw, db
    """out = x @ w + b: dx = dout @ w^T, dw = x^T @ dout, db = column sums of dout (``dw`` False:
    dx only, the weights' gradients None: saliency needs no more)."""
    if not dw:
        return exact.matmul(dout, w.T), None, None
    return exact.matmul(dout, w.T), exact.matmul(x.T, dout), dout.sum(axis=0)


def layer_norm_backward(dout, trace, name, g, eps, acts=None):  # dout [T, d] -> dx [T, d], dg [d], db [d]
    """out = norm * g + b, norm = (x - mean) * rstd: llm.c's compact form
    dx = rstd * (dnorm - dmean - norm * dvar), dnorm = dout * g, dmean = mean(dnorm), dvar = mean(dnorm * norm).
    ``acts``: where to keep dnorm, dmean and dvar (as d{name}.dnorm, ...)."""
    norm = trace[f"{name}.norm"]  # [T, d]
    rstd = 1 / np.sqrt(trace[f"{name}.var"] + eps)  # [T, 1]
    dnorm = dout * g  # [T, d]
    dmean = dnorm.mean(axis=-1, keepdims=True)  # [T, 1]
    dvar = (dnorm * norm).mean(axis=-1, keepdims=True)  # [T, 1]
    if acts is not None:
        acts |= {f"d{name}.out": dout, f"d{name}.dnorm": dnorm, f"d{name}.dmean": dmean, f"d{name}.dvar": dvar}
    return rstd * (dnorm - dmean - norm * dvar), (dout * norm).sum(axis=0), dout.sum(axis=0)


def gelu_backward(dout, x):  # dout [T, n], x [T, n] (the GELU's input) -> dx [T, n]
    """gelu(x) = 0.5 x (1 + tanh u), u = c (x + 0.044715 x^3), c = sqrt(2 / pi):
    gelu'(x) = 0.5 (1 + tanh u) + 0.5 x (1 - tanh^2 u) c (1 + 3 * 0.044715 x^2)."""
    c = math.sqrt(2 / math.pi)
    th = exact.tanh(c * (x + 0.044715 * x**3))
    return dout * (0.5 * (1 + th) + 0.5 * x * (1 - th * th) * c * (1 + 3 * 0.044715 * x * x))


def attention_backward(dheads, q, k, v, weights):  # dheads [H, T, hd], q k v [H, T, hd], weights [H, T, T]
    """heads = weights @ v, weights = softmax(q k^T / sqrt(hd), causal): -> dq, dk, dv [H, T, hd]."""
    hd = q.shape[-1]
    dweights = exact.matmul(dheads, v.transpose(0, 2, 1))  # [H, T, T]
    dv = exact.matmul(weights.transpose(0, 2, 1), dheads)  # [H, T, hd]
    dscores = softmax_backward(weights, dweights)  # [H, T, T]; 0 where masked (weights are 0 there)
    dq = exact.matmul(dscores, k) / np.sqrt(hd)  # [H, T, hd]
    dk = exact.matmul(dscores.transpose(0, 2, 1), q) / np.sqrt(hd)  # [H, T, hd]
    return dq, dk, dv, dweights, dscores


def mha_backward(dout, x, attn, n_head, trace, name, grads):  # dout [T, d] -> dx [T, d]
    """``grads``: where to put the weights' gradients, or None for none (dx only)."""
    want, grads = grads is not None, {} if grads is None else grads
    T, d = dout.shape
    hd = d // n_head
    merged, qkv, weights = trace[f"{name}.merged"], trace[f"{name}.c_attn"], trace[f"{name}.weights"]
    w = attn["c_proj"]["w"]
    dmerged, grads[f"{name}.c_proj.w"], grads[f"{name}.c_proj.b"] = linear_backward(dout, merged, w, want)
    heads = lambda a: a.reshape(T, n_head, hd).transpose(1, 0, 2)  # noqa: E731  [T, d] -> [H, T, hd]
    q, k, v = (heads(qkv[:, i * d : (i + 1) * d]) for i in range(3))
    dq, dk, dv, dweights, dscores = attention_backward(heads(dmerged), q, k, v, weights)
    unheads = lambda a: a.transpose(1, 0, 2).reshape(T, d)  # noqa: E731  [H, T, hd] -> [T, d]
    dqkv = np.concatenate([unheads(dq), unheads(dk), unheads(dv)], axis=1)  # [T, 3d]
    dx, grads[f"{name}.c_attn.w"], grads[f"{name}.c_attn.b"] = linear_backward(dqkv, x, attn["c_attn"]["w"], want)
    return dx, {
        f"d{name}.c_proj": dout,
        f"d{name}.merged": dmerged,
        f"d{name}.weights": dweights,
        f"d{name}.scores": dscores,
        f"d{name}.c_attn": dqkv,
    }


def ffn_backward(dout, x, mlp, trace, name, grads):  # dout [T, d] -> dx [T, d]; grads as mha_backward's
    want, grads = grads is not None, {} if grads is None else grads
    up, act = trace[f"{name}.c_fc"], trace[f"{name}.gelu"]
    dact, grads[f"{name}.c_proj.w"], grads[f"{name}.c_proj.b"] = linear_backward(dout, act, mlp["c_proj"]["w"], want)
    dup = gelu_backward(dact, up)
    dx, grads[f"{name}.c_fc.w"], grads[f"{name}.c_fc.b"] = linear_backward(dup, x, mlp["c_fc"]["w"], want)
    return dx, {f"d{name}.c_proj": dout, f"d{name}.gelu": dact, f"d{name}.c_fc": dup}


def transformer_block_backward(dout, x_in, block, n_head, eps, trace, name, grads):  # dout [T, d] -> dx [T, d]
    """x = x_in + mha(ln_1(x_in)); out = x + ffn(ln_2(x)): the residual adds pass the gradient on unchanged.
    ``grads`` as mha_backward's."""
    acts, sink = {f"d{name}.res_2": dout}, {} if grads is None else grads
    dm, a = ffn_backward(dout, trace[f"{name}.ln_2.out"], block["mlp"], trace, f"{name}.mlp", grads)
    acts |= a
    dx, sink[f"{name}.ln_2.g"], sink[f"{name}.ln_2.b"] = layer_norm_backward(
        dm, trace, f"{name}.ln_2", block["ln_2"]["g"], eps, acts
    )
    dres_1 = dout + dx
    acts[f"d{name}.res_1"] = dres_1
    da, a = mha_backward(dres_1, trace[f"{name}.ln_1.out"], block["attn"], n_head, trace, f"{name}.attn", grads)
    acts |= a
    dx, sink[f"{name}.ln_1.g"], sink[f"{name}.ln_1.b"] = layer_norm_backward(
        da, trace, f"{name}.ln_1", block["ln_1"]["g"], eps, acts
    )
    return dres_1 + dx, acts


# ---- the whole backward pass --------------------------------------------------------------------


@dataclass
class Gradients:
    """``acts``: d(objective)/d(stage), keyed ``d`` + stage name; ``params``: keyed by flat parameter name."""

    value: float
    acts: Trace = field(default_factory=dict)
    params: dict[str, np.ndarray] = field(default_factory=dict)


def backward(
    ids, params, config: GPT2Config, objective, t: int = -1, trace: Trace | None = None, weights: bool = True
) -> Gradients:
    """Gradients of ``objective`` at predicting row t (default: the last) w.r.t. every stage and parameter.

    ``params``: nested (``Model.params``) or flat (``Model.flat``). ``trace``: the forward
    ``reference.gpt2(ids, params, config)`` if already computed. ``weights`` False: the stages'
    gradients only (``Gradients.params`` empty), without the costly d W = x^T d out of each linear."""
    if "blocks" not in params:
        params = nest(params, config.n_layer)
    params = reference._to_f64(params)
    ids = np.asarray(ids, dtype=np.int64)
    T, eps = len(ids), config.layer_norm_epsilon
    t = t % T
    trace = trace if trace is not None else reference.gpt2(ids, params, config)
    wte = params["wte"]
    grads: dict[str, np.ndarray] = {}
    acts: Trace = {}
    block_grads = grads if weights else None
    # logits = ln_f.out @ wte.T; only row t reaches the objective
    dlogits = np.zeros_like(trace["logits"])  # [T, V]
    dlogits[t] = objective_backward(trace["logits"][t], objective)
    acts["dlogits"] = dlogits
    dx = np.zeros_like(trace["ln_f.out"])  # [T, d], d ln_f.out: row t = d logits[t] @ wte, 0 elsewhere
    dx[t] = exact.matmul(dlogits[t : t + 1], wte)[0]
    dx, grads["ln_f.g"], grads["ln_f.b"] = layer_norm_backward(dx, trace, "ln_f", params["ln_f"]["g"], eps, acts)
    for i in reversed(range(config.n_layer)):
        x_in = trace[f"h.{i - 1}.res_2"] if i > 0 else trace["embed.h"]
        block = params["blocks"][i]
        dx, a = transformer_block_backward(dx, x_in, block, config.n_head, eps, trace, f"h.{i}", block_grads)
        acts |= a
    acts["dembed.h"] = dx  # embed.h = wte[ids] + wpe[:T]
    value = objective_value(trace["logits"][t], objective)
    if not weights:
        return Gradients(value, acts)
    dwte_out = exact.matmul(dlogits.T, trace["ln_f.out"])  # [V, T] @ [T, d] -> [V, d], the unembedding's share
    dwte_in = np.zeros_like(wte)
    np.add.at(dwte_in, ids, dx)  # scatter-add: a token that appears twice collects both rows
    grads["wte"] = dwte_out + dwte_in
    grads["wpe"] = np.zeros_like(params["wpe"])
    grads["wpe"][:T] = dx
    order = [f"h.{i}.{leaf}" for i in range(config.n_layer) for leaf in _BLOCK_LEAVES]
    ordered = {name: grads[name] for name in ["wte", "wpe", *order, "ln_f.g", "ln_f.b"]}
    return Gradients(value, acts, ordered)


_BLOCK_LEAVES = (
    "ln_1.g", "ln_1.b", "attn.c_attn.w", "attn.c_attn.b", "attn.c_proj.w", "attn.c_proj.b",
    "ln_2.g", "ln_2.b", "mlp.c_fc.w", "mlp.c_fc.b", "mlp.c_proj.w", "mlp.c_proj.b",
)  # fmt: skip


# ---- Ecco's saliency and one step of gradient descent -------------------------------------------


def saliency(ids, params, config: GPT2Config, t: int = -1) -> Trace:
    """Ecco's ``grad_x_input``: the gradient of the predicted token's probability at row t w.r.t. the
    token embeddings wte[id] (= d embed.h, since positions are added after), times wte[id]; the L2
    norm over d per token, divided by the sum over tokens. Also the gradient's own L2 norm."""
    if "blocks" not in params:
        params = nest(params, config.n_layer)
    params = reference._to_f64(params)
    trace = reference.gpt2(ids, params, config)
    predicted = int(np.argmax(trace["logits"][t]))
    g = backward(ids, params, config, Prob(predicted), t, trace, weights=False)
    scores = saliency_scores(g.acts["dembed.h"], trace["embed.wte"])  # d embed.h and wte[ids], [T, d]
    return {"predicted": np.array(predicted), "prob": np.array(g.value)} | scores


def sgd_step(params: dict[str, np.ndarray], grads: dict[str, np.ndarray], lr: float) -> dict[str, np.ndarray]:
    """Plain SGD over every tensor: W - lr * dW (flat names)."""
    return {name: np.asarray(w, np.float64) - lr * grads[name] for name, w in params.items()}


@dataclass
class Step:
    target: int
    lr: float
    loss: float  # NLL before the step
    p_before: float
    p_after: float
    probs_after: np.ndarray  # [V] at row t, after the step
    grad_norms: dict[str, float]


def train_step(ids, flat: dict[str, np.ndarray], config: GPT2Config, target: int, lrs, t: int = -1) -> list[Step]:
    """One plain SGD step on the NLL of ``target`` at row t, for each learning rate in ``lrs`` (one
    backward, one forward per rate): the target's probability before and after."""
    flat = {k: np.asarray(v, np.float64) for k, v in flat.items()}
    g = backward(ids, flat, config, NLL(target), t)
    _, _, before = softmax_parts(reference.gpt2(ids, nest(flat, config.n_layer), config)["logits"][t])
    norms = {name: float(np.sqrt(exact.total(d * d))) for name, d in g.params.items()}
    steps = []
    for lr in lrs:
        new = sgd_step(flat, g.params, lr)
        _, _, after = softmax_parts(reference.gpt2(ids, nest(new, config.n_layer), config)["logits"][t])
        steps.append(Step(target, lr, g.value, float(before[target]), float(after[target]), after, norms))
    return steps


# ---- the Saliency tab's stages (book shapes; sheetgpt/book/tabs/saliency.py writes them) -----------


def saliency_stages(trace: Trace, params, config: GPT2Config, t: int) -> Trace:
    """The Saliency tab's stages for the forward ``trace`` (``reference.gpt2``, before the book's
    predicting-row stages): the backward pass of the predicted token's probability at row t, from
    d logits down to d embed.h, and Ecco's grad_x_input per token row."""
    if "blocks" not in params:
        params = nest(params, config.n_layer)
    logits = trace["logits"][t]  # [V]
    predicted = int(np.argmax(logits))  # the first maximum, like MATCH
    g = backward(trace["ids"], params, config, Prob(predicted), t, trace, weights=False)
    _, total, _ = softmax_parts(logits)
    s = saliency_scores(g.acts["dembed.h"], trace["embed.wte"])
    out = {"sal.sum": np.array([[total]]), "sal.id": np.array([[float(predicted)]])}
    out["dlogits"] = g.acts["dlogits"][t][:, None]  # [V, 1]
    out["dln_f.last"] = g.acts["dln_f.out"][t][None, :]  # [1, d]
    keep = ("dln_f.", "dh.", "dembed.h")
    out |= {name: value for name, value in g.acts.items() if name.startswith(keep)}
    return out | {f"sal.{k}": v[:, None] for k, v in s.items()}


def saliency_scores(grad, x) -> dict[str, np.ndarray]:  # d embed.h [T, d], wte[ids] [T, d] -> [T] each
    grad_x_input = np.sqrt((grad * grad * x * x).sum(axis=-1))
    return {
        "grad_norm": np.sqrt((grad * grad).sum(axis=-1)),
        "grad_x_input": grad_x_input,
        "score": grad_x_input / grad_x_input.sum(),
    }
