"""Make the backward goldens: torch float64 autograd gradients on the fixture models.

The oracle is independent of sheetgpt's math: Hugging Face ``GPT2LMHeadModel`` (torch, float64,
eager attention, eval mode) is built from the same checkpoints as scripts/make_goldens.py
(tests/fixtures/models/<shape>/, which this script only reads), runs forward on the token
embeddings ``wte(ids)``, and ``backward()`` on one objective at a predicting row t:

- ``prob``: softmax(logits[t])[target], target = the argmax of logits[t] (Ecco's saliency target);
- ``nll``:  -log_softmax(logits[t])[target], target = the 4th most likely token at t.

Forward hooks call ``retain_grad()`` on the activations whose gradients are recorded. Only
``make_goldens.load_hf`` and ``check_weights_match_file`` come from this repository.

    pip install -e '.[oracle]'   # torch==2.13.0, transformers
    python3 scripts/make_backward_goldens.py

Writes tests/fixtures/goldens/backward.npz; tests/test_backward.py reads it with numpy alone.

Layout (case = one name from meta["cases"], i = block number):
    meta                         JSON: cases [{name, shape, objective, target, t}], versions, date
    {case}.ids                   [T] token ids
    {case}.value                 the objective's value
    {case}.param.{name}          [shape of the parameter] d objective / d parameter (flat names: wte,
                                 h.0.attn.c_attn.w, ..., ln_f.b); wte's collects embedding and unembedding
    {case}.dlogits               [T, V]
    {case}.dln_f.out             [T, d]
    {case}.dh.{i}.res_2          [T, d]    block output
    {case}.dh.{i}.mlp.c_proj     [T, d]    MLP output
    {case}.dh.{i}.mlp.gelu       [T, 4d]
    {case}.dh.{i}.mlp.c_fc       [T, 4d]
    {case}.dh.{i}.ln_2.out       [T, d]
    {case}.dh.{i}.res_1          [T, d]    the residual stream after attention
    {case}.dh.{i}.attn.c_proj    [T, d]    attention output
    {case}.dh.{i}.attn.merged    [T, d]    heads side by side (c_proj's input)
    {case}.dh.{i}.attn.weights   [H, T, T] attention probabilities
    {case}.dh.{i}.attn.c_attn    [T, 3d]   q, k, v
    {case}.dh.{i}.ln_1.out       [T, d]
    {case}.dembed.h              [T, d]    wte[ids] + wpe[:T]
"""

from __future__ import annotations

import datetime
import json
import sys
from pathlib import Path

import numpy as np
import torch
import transformers

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_goldens import check_weights_match_file, load_hf  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "tests" / "fixtures" / "models"
OUT = ROOT / "tests" / "fixtures" / "goldens" / "backward.npz"

# (shape, which sequence of tests/fixtures/goldens/<shape>.npz, predicting row t)
CASES = [("micro", "prompt", -1), ("one-head", 2, 5)]  # 2 heads x 1 block; 1 head x 2 blocks, an earlier row


def flat_name(hf: str) -> str:
    """'h.0.ln_1.weight' -> 'h.0.ln_1.g', 'h.0.attn.c_attn.weight' -> 'h.0.attn.c_attn.w', 'wte.weight' -> 'wte'."""
    stem, leaf = hf.rsplit(".", 1)
    if stem in ("wte", "wpe"):
        return stem
    if leaf == "bias":
        return f"{stem}.b"
    return f"{stem}.{'g' if stem.split('.')[-1].startswith('ln') else 'w'}"


def gradients(model, ids: np.ndarray, objective: str, t: int) -> tuple[int, dict[str, np.ndarray]]:
    model.zero_grad(set_to_none=True)
    kept: dict[str, torch.Tensor] = {}
    hooks = []

    def out_hook(name):
        def hook(_module, _inputs, output):
            x = output[0] if isinstance(output, tuple) else output
            x.retain_grad()
            kept[name] = x

        return hook

    def in_hook(name):
        def hook(_module, args, kwargs):
            x = args[0] if args else kwargs["hidden_states"]
            x.retain_grad()
            kept[name] = x

        return hook

    tr = model.transformer
    for i, block in enumerate(tr.h):
        hooks += [
            block.register_forward_pre_hook(in_hook("dembed.h" if i == 0 else f"_in{i}"), with_kwargs=True),
            block.ln_1.register_forward_hook(out_hook(f"dh.{i}.ln_1.out")),
            block.attn.c_attn.register_forward_hook(out_hook(f"dh.{i}.attn.c_attn")),
            block.attn.c_proj.register_forward_pre_hook(in_hook(f"dh.{i}.attn.merged"), with_kwargs=True),
            block.attn.register_forward_hook(out_hook(f"dh.{i}.attn.c_proj")),
            block.ln_2.register_forward_pre_hook(in_hook(f"dh.{i}.res_1"), with_kwargs=True),
            block.ln_2.register_forward_hook(out_hook(f"dh.{i}.ln_2.out")),
            block.mlp.c_fc.register_forward_hook(out_hook(f"dh.{i}.mlp.c_fc")),
            block.mlp.act.register_forward_hook(out_hook(f"dh.{i}.mlp.gelu")),
            block.mlp.register_forward_hook(out_hook(f"dh.{i}.mlp.c_proj")),
            block.register_forward_hook(out_hook(f"dh.{i}.res_2")),
        ]
    hooks.append(tr.ln_f.register_forward_hook(out_hook("dln_f.out")))
    try:
        embeds = tr.wte(torch.tensor(ids[None, :]))  # through the module, so wte collects the embedding's share
        out = model(inputs_embeds=embeds, output_attentions=True, use_cache=False)
    finally:
        for h in hooks:
            h.remove()
    logits = out.logits[0]  # [T, V]
    logits.retain_grad()
    for i, a in enumerate(out.attentions):
        a.retain_grad()
        kept[f"dh.{i}.attn.weights"] = a
    row = logits[t]
    if objective == "prob":
        target = int(torch.argmax(row))
        value = torch.softmax(row, dim=-1)[target]
    else:
        target = int(torch.argsort(row, descending=True)[3])
        value = -torch.log_softmax(row, dim=-1)[target]
    value.backward()
    result = {"value": value.detach().numpy().copy(), "dlogits": logits.grad.numpy().copy()}
    for name, x in kept.items():
        if name.startswith("_"):
            continue
        if x.grad is None:
            sys.exit(f"autograd gave no gradient for {name} (the hooked tensor is not the one the graph used)")
        assert x.grad.dtype == torch.float64
        result[name] = x.grad[0].numpy().copy()
    assert model.lm_head.weight is tr.wte.weight, "lm_head must be the same Parameter as wte (tied)"
    for hf, p in tr.named_parameters():
        result[f"param.{flat_name(hf)}"] = p.grad.numpy().copy()
    return target, result


def main() -> None:
    torch.manual_seed(0)
    arrays: dict[str, np.ndarray] = {}
    cases = []
    for shape, seq, t in CASES:
        model_dir = MODELS / shape
        model = load_hf(model_dir)
        check_weights_match_file(model, model_dir)
        forward = np.load(ROOT / "tests" / "fixtures" / "goldens" / f"{shape}.npz")
        k = int(forward["prompt.seq"]) if seq == "prompt" else seq
        ids = forward[f"seq{k}.ids"]
        for objective in ("prob", "nll"):
            name = f"{shape}-seq{k}-t{t}-{objective}"
            target, grads = gradients(model, ids, objective, t)
            cases.append({"name": name, "shape": shape, "objective": objective, "target": target, "t": t})
            arrays[f"{name}.ids"] = ids
            for key, value in grads.items():
                arrays[f"{name}.{key}"] = value
            print(f"{name}: target {target}, value {float(grads['value']):.6g}, {len(grads)} arrays")
    meta = {
        "cases": cases,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "numpy": np.__version__,
        "date": datetime.date.today().isoformat(),
        "dtype": "float64",
        "attn_implementation": "eager",
        "script": "scripts/make_backward_goldens.py",
    }
    arrays["meta"] = np.array(json.dumps(meta))
    np.savez_compressed(OUT, **arrays)
    print(f"{OUT}: {OUT.stat().st_size / 1e3:.0f} kB")


if __name__ == "__main__":
    main()
