"""The float64 reference: GPT-2's forward pass in numpy, keeping every intermediate.

It reads like the math (picoGPT style) and computes exactly what the workbook's
formulas compute, step for step, so that each tab can be checked against it:
softmax subtracts the row maximum and exponentiates before normalising, because the
sheet shows those steps; masked attention scores are NaN (the sheet leaves them blank).

``gpt2(ids, params, ...)`` returns a ``Trace``: a dict from stage name (``"h.0.attn.c_attn"``,
``"ln_f.out"``, ``"logits"``, ...) to its value. Stage names are the regions' names (sheetgpt/book/tabs/).

The trace is what a book caches, so it must be the same bits on every machine: products go through
``exact.matmul`` (no BLAS) and exp, tanh, log through ``exact`` (the C library's scalar functions, not
numpy's SIMD loops); everything else is element-wise IEEE arithmetic or a sum over one axis.
"""

from __future__ import annotations

import math

import numpy as np

from . import exact
from .config import GPT2Config

Trace = dict[str, np.ndarray]


def gelu(x):  # gelu_new, the tanh form GPT-2 uses
    return 0.5 * x * (1 + exact.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * (x * x * x))))


def softmax_steps(x):  # [..., n] -> (exp [..., n], weights [..., n]); NaN entries are masked out
    e = np.where(np.isnan(x), 0.0, exact.exp(x - np.nanmax(x, axis=-1, keepdims=True)))
    return e, e / e.sum(axis=-1, keepdims=True)


def layer_norm(x, g, b, eps, trace, name):  # [T, d] -> [T, d]
    mean = x.mean(axis=-1, keepdims=True)  # [T, 1]
    var = x.var(axis=-1, keepdims=True)  # [T, 1], biased, like GPT-2
    norm = (x - mean) / np.sqrt(var + eps)  # [T, d]
    out = norm * g + b  # [T, d]
    trace |= {f"{name}.mean": mean, f"{name}.var": var, f"{name}.norm": norm, f"{name}.out": out}
    return out


def linear(x, w, b):  # [T, n_in] -> [T, n_out]
    return exact.matmul(x, w) + b


def mha(x, c_attn, c_proj, n_head, trace, name):  # [T, d] -> [T, d]
    T, d = x.shape
    hd = d // n_head
    qkv = linear(x, c_attn["w"], c_attn["b"])  # [T, d] -> [T, 3d]
    q, k, v = (
        qkv[:, i * d : (i + 1) * d].reshape(T, n_head, hd).transpose(1, 0, 2) for i in range(3)
    )  # 3 x [H, T, hd]
    scores = exact.matmul(q, k.transpose(0, 2, 1)) / math.sqrt(hd)  # [H, T, T]
    causal = np.triu(np.ones((T, T), dtype=bool), k=1)  # key position > query position
    masked = np.where(causal, np.nan, scores)  # [H, T, T]
    e, weights = softmax_steps(masked)  # [H, T, T]
    heads = exact.matmul(weights, v)  # [H, T, hd]
    merged = heads.transpose(1, 0, 2).reshape(T, d)  # [T, d]
    out = linear(merged, c_proj["w"], c_proj["b"])  # [T, d]
    trace |= {
        f"{name}.c_attn": qkv,
        f"{name}.scores": scores,
        f"{name}.masked": masked,
        f"{name}.exp": e,
        f"{name}.weights": weights,
        f"{name}.merged": merged,
        f"{name}.c_proj": out,
    }
    return out


def ffn(x, c_fc, c_proj, trace, name):  # [T, d] -> [T, d]
    up = linear(x, c_fc["w"], c_fc["b"])  # [T, d] -> [T, 4d]
    act = gelu(up)  # [T, 4d]
    down = linear(act, c_proj["w"], c_proj["b"])  # [T, 4d] -> [T, d]
    trace |= {f"{name}.c_fc": up, f"{name}.gelu": act, f"{name}.c_proj": down}
    return down


def transformer_block(x, block, n_head, eps, trace, name):  # [T, d] -> [T, d]
    a = layer_norm(x, block["ln_1"]["g"], block["ln_1"]["b"], eps, trace, f"{name}.ln_1")
    x = x + mha(a, block["attn"]["c_attn"], block["attn"]["c_proj"], n_head, trace, f"{name}.attn")
    trace[f"{name}.res_1"] = x
    m = layer_norm(x, block["ln_2"]["g"], block["ln_2"]["b"], eps, trace, f"{name}.ln_2")
    x = x + ffn(m, block["mlp"]["c_fc"], block["mlp"]["c_proj"], trace, f"{name}.mlp")
    trace[f"{name}.res_2"] = x
    return x


def next_token_probs(logits, temperature=1.0):  # [V] -> (max [], sum [], probs [V])
    top = logits.max()
    e = exact.exp((logits - top) / temperature)
    return top, e.sum(), e / e.sum()


def steering(wte, a: int, b: int, strength: float, block: int, n_layer: int):  # -> [n_layer, d]
    """What activation steering adds to the residual stream at the input of each block: strength x
    (wte[a] - wte[b]) at block ``block``, zero elsewhere (and everywhere if a, b or the block is not valid)."""
    add = np.zeros((n_layer, wte.shape[1]))
    if a >= 0 and b >= 0 and 0 <= block < n_layer:
        add[block] = strength * (wte[a] - wte[b])
    return add


def gpt2(ids, params, config: GPT2Config, *, temperature: float = 1.0, steer=None) -> Trace:
    """Forward pass over token ids; every stage's value, float64, keyed by stage name.

    ``steer`` [n_layer, d] (``steering``): added to every row of the residual stream at each block's
    input, kept as the stage ``h.{i}.in``."""
    trace = hidden(ids, params, config, steer=steer)
    wte = np.asarray(params["wte"], dtype=np.float64)
    trace["logits"] = exact.matmul(trace["ln_f.out"], wte.T)  # [T, d] -> [T, V], tied unembedding
    top, total, probs = next_token_probs(trace["logits"][-1], temperature)
    trace |= {"predict.max": np.array(top), "predict.sum": np.array(total), "predict.probs": probs}
    return trace


def hidden(ids, params, config: GPT2Config, *, steer=None) -> Trace:
    """``gpt2`` up to the final norm (``ln_f.out``), without the logits."""
    ids = np.asarray(ids, dtype=np.int64)
    f64 = lambda a: np.asarray(a, dtype=np.float64)  # noqa: E731
    trace: Trace = {"ids": ids}
    wte, wpe = f64(params["wte"]), f64(params["wpe"])
    trace["embed.wte"] = wte[ids]  # [T, d]
    trace["embed.wpe"] = wpe[: len(ids)]  # [T, d]
    x = trace["embed.h"] = trace["embed.wte"] + trace["embed.wpe"]  # [T, d]
    eps = config.layer_norm_epsilon
    for i, block in enumerate(params["blocks"]):
        block = _to_f64(block)
        if steer is not None:
            x = trace[f"h.{i}.in"] = x + steer[i]  # [T, d] + [d]
        x = transformer_block(x, block, config.n_head, eps, trace, f"h.{i}")
    layer_norm(x, f64(params["ln_f"]["g"]), f64(params["ln_f"]["b"]), eps, trace, "ln_f")
    return trace


def next_logits(ids, params, config: GPT2Config, steer=None):  # [T] -> [V]
    """The logits after the last token: ``gpt2(...)["logits"][-1]``, the same bits, one row of the unembedding."""
    last = hidden(ids, params, config, steer=steer)["ln_f.out"][-1:]  # [1, d]
    return exact.matmul(last, np.asarray(params["wte"], dtype=np.float64).T)[0]


def greedy_fill(ids, generated, params, config: GPT2Config, steer=None) -> list[int]:  # [T], [T] bool -> [T]
    """Each generated row's id is the argmax (the first maximum, like MATCH) of the logits after the rows before it."""
    ids = [int(i) for i in ids]
    params = _to_f64(params)  # once, not in every pass
    for t in range(1, len(ids)):
        if generated[t]:
            ids[t] = int(np.argmax(next_logits(ids[:t], params, config, steer=steer)))
    return ids


def _to_f64(tree):
    if isinstance(tree, dict):
        return {k: _to_f64(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_to_f64(v) for v in tree]
    return np.asarray(tree, dtype=np.float64)


# ---- teaching tabs: the logit lens and embedding similarity (checked like every stage) -------------


def logit_lens(outputs, t, g, b, eps, wte) -> Trace:  # n_layer x [T, d] -> the Logit lens tab's stages
    """What the model would predict after position t if it stopped after each block: ln_f, then wte."""
    trace: Trace = {"lens.x": np.stack([h[t] for h in outputs])}  # [n_layer, d], one row per block
    out = layer_norm(trace["lens.x"], g, b, eps, trace, "lens")  # [n_layer, d]
    logits = exact.matmul(out, wte.T)  # [n_layer, V]
    top = logits.max(axis=-1, keepdims=True)  # [n_layer, 1]
    total = exact.exp(logits - top).sum(axis=-1, keepdims=True)  # [n_layer, 1]
    trace |= {
        "lens.logits": logits.T,
        "lens.max": top,
        "lens.sum": total,
        "lens.prob": 1 / total,
        "lens.id": logits.argmax(axis=-1)[:, None].astype(np.float64),
    }  # argmax: the first maximum, like MATCH
    return trace


def neuron_view(gelus, block: int, t: int, k: int) -> Trace:  # n_layer x [T, 4d] -> the Neurons tab's stages
    """The k MLP neurons with the largest GELU activation in each row of block ``block`` (LARGE, then MATCH:
    the first neuron with that value), and the activations, across all rows, of row t's k neurons."""
    act = gelus[block]  # [T, 4d]
    top = -np.sort(-act, axis=-1)[:, :k]  # [T, k], LARGE(row, 1..k)
    ids = np.array([[np.flatnonzero(row == v)[0] for v in vals] for row, vals in zip(act, top)])  # [T, k]
    return {
        "neurons.act": top,
        "neurons.id": ids.astype(np.float64),
        "neurons.focus": ids[t][None, :].astype(np.float64),  # [1, k]
        "neurons.heat": act[:, ids[t]],  # [T, k]
    }


def norm(x):  # [..., d] -> [...], the length of each vector
    return np.sqrt((x * x).sum(axis=-1))


def cosine(a, b):  # [..., d], [..., d] -> [...]
    return (a * b).sum(axis=-1) / (norm(a) * norm(b))


def embedding_similarity(wte, ids, n_pairs, k) -> Trace:  # wte [V, d], ids [2 n_pairs + 4] -> the Embeddings tab
    """Token vectors, cosine of pairs, a - b + c, and the k nearest vocabulary rows of a query and of the analogy.

    ``ids``: the pair tokens (a1, b1, a2, b2, ...), the query, then the analogy's a, b, c; -1 (not in the
    vocabulary) uses row 0, as the sheet does.
    """
    ids = np.asarray(ids, dtype=np.int64)
    v = wte[np.maximum(ids, 0)]  # [N, d]
    analogy = v[-3] - v[-2] + v[-1]  # [d]
    rows = np.vstack([v, analogy])  # [N + 1, d]
    norms = norm(wte)  # [V], once: cosine(wte, x) would compute it again for each column
    q = 2 * n_pairs
    cos = np.stack([(wte * x).sum(axis=-1) / (norms * norm(x)) for x in (rows[q], analogy)], axis=1)  # [V, 2]
    trace: Trace = {
        "emb.ids": ids[:, None].astype(np.float64),
        "emb.vectors": v,
        "emb.analogy": analogy[None],
        "emb.lengths": norm(rows)[:, None],
        "emb.pairs": cosine(v[0 : 2 * n_pairs : 2], v[1 : 2 * n_pairs : 2])[:, None],
        "emb.norms": norms[:, None],
        "emb.cos": cos,
    }
    for j, name in enumerate(("query", "analogy")):
        top = np.sort(cos[:, j])[::-1][:k]  # LARGE(column, 1..k)
        first = [int(np.flatnonzero(cos[:, j] == x)[0]) for x in top]  # MATCH(value, column, 0): the first equal row
        trace |= {f"emb.near.{name}": top[:, None], f"emb.near.{name}.id": np.array(first, dtype=np.float64)[:, None]}
    return trace


# ---- the stages a book adds to the forward pass (the book writer writes them, sheetgpt.check compares them)


def with_selected_position(trace: dict, t: int, temperature: float = 1.0) -> dict:
    """Add the stages that depend on the predicting position t (Final norm one-hot, logits, Predict)."""
    T = trace["ln_f.out"].shape[0]
    out = dict(trace)
    out["prompt.ids"] = np.asarray(trace["ids"], dtype=np.float64)[:, None]
    out["ln_f.select"] = (np.arange(T) == t).astype(np.float64)[None, :]
    out["ln_f.last"] = trace["ln_f.out"][t : t + 1]
    out["logits.all"] = trace["logits"].T  # [V, T]
    out["logits"] = trace["logits"][t][:, None]  # [V, 1]
    top, total, probs = next_token_probs(trace["logits"][t], temperature)
    out |= {"predict.max": np.array([[top]]), "predict.sum": np.array([[total]]), "predict.probs": probs[:, None]}
    return out


def with_generation_stages(trace: dict, n_layer: int) -> dict:
    """The stages a generating book computes differently: each row's argmax (the next token), and
    attention scores only where a query may look (row t's product reads keys 0..t; the rest is blank)."""
    out = dict(trace)
    out["logits.argmax"] = trace["logits.all"].argmax(axis=0)[:, None].astype(np.float64)  # [T, 1], first maximum
    for i in range(n_layer):
        out[f"h.{i}.attn.scores"] = trace[f"h.{i}.attn.masked"]  # NaN above the diagonal: blank cells
    return out


def with_teaching_stages(trace: dict, weights: dict, config: GPT2Config, t: int, emb_ids, n_pairs: int, k: int) -> dict:
    """Add the Logit lens stages (predicting position t) and the Embeddings stages (token ids emb_ids:
    n_pairs pairs, a query, an analogy's a, b, c; the k nearest tokens).

    ``weights``: the book's parameters by name (``wte``, ``ln_f.g``, ...), as floats.
    """
    f64 = {name: np.asarray(weights[name], dtype=np.float64) for name in ("wte", "ln_f.g", "ln_f.b")}
    outputs = [trace[f"h.{i}.res_2"] for i in range(config.n_layer)]
    out = dict(trace)
    out |= logit_lens(outputs, t, f64["ln_f.g"], f64["ln_f.b"], config.layer_norm_epsilon, f64["wte"])
    out |= embedding_similarity(f64["wte"], emb_ids, n_pairs, k)
    return out
