"""Make the golden fixtures: random GPT-2 models and Hugging Face's float64 outputs on them.

The oracle is independent of sheetgpt's math: Hugging Face ``GPT2LMHeadModel`` (torch,
float64, eager attention, eval mode) runs each fixture model; forward hooks record every
block's attention output, MLP output and block output (res_2), plus ln_f and the logits;
``output_attentions=True`` gives the attention probabilities. Only sheetgpt's
``make_random_model`` is used (to write the checkpoints); HF reads them on its own.

    pip install -e '.[oracle]'   # torch==2.13.0, transformers
    python3 scripts/make_goldens.py

Writes tests/fixtures/models/<shape>/ and tests/fixtures/goldens/<shape>.npz + README.md.
CI never runs this script; tests/test_reference.py reads its output with numpy alone.

Layout of <shape>.npz (k = sequence number, i = block number):
    meta                   JSON string: shape, config, seed, prefix, versions, date
    seq{k}.ids             [T] int64 token ids
    seq{k}.h.{i}.attn.c_proj   [T, d]    attention output (after c_proj), before the residual add
    seq{k}.h.{i}.attn.weights  [H, T, T] attention probabilities (0 above the diagonal)
    seq{k}.h.{i}.mlp.c_proj    [T, d]    MLP output, before the residual add
    seq{k}.h.{i}.res_2         [T, d]    block output
    seq{k}.ln_f.out        [T, d]
    seq{k}.logits          [T, V]
    prompt.text            a text whose HF-tokenizer ids are seq{prompt.seq}.ids
    prompt.seq             which sequence that is
"""

from __future__ import annotations

import datetime
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import torch
import transformers
from transformers import GPT2LMHeadModel, GPT2TokenizerFast

from sheetgpt.random_model import SHAPES, make_random_model

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "tests" / "fixtures" / "models"
GOLDENS = ROOT / "tests" / "fixtures" / "goldens"

# shape -> (seed, key prefix in model.safetensors, whether h.N.attn.bias buffers are stored)
FIXTURES = {
    "micro": (101, "transformer.", True),
    "one-head": (202, "", True),
    "odd": (303, "transformer.", False),
    "wide": (404, "", False),
}
PROMPT_TEXT = "the cat sat on the mat, and the dog ran"


def sequences(config, seed: int) -> list[np.ndarray]:
    """Seeded random ids: length 1, a few in between, and the full context n_positions."""
    rng = np.random.default_rng(seed + 1)
    P = config.n_positions
    lengths = sorted({1, 2, max(3, P // 3), P})
    return [rng.integers(0, config.vocab_size, size=n, dtype=np.int64) for n in lengths]


def fitting_prompt(tok, n_positions: int) -> tuple[str, np.ndarray]:
    """The longest word prefix of PROMPT_TEXT whose HF-tokenizer ids fit in n_positions."""
    words = PROMPT_TEXT.split(" ")
    for n in range(len(words), 0, -1):
        text = " ".join(words[:n])
        ids = tok(text)["input_ids"]
        if len(ids) <= n_positions:
            if not ids:
                sys.exit("the HF tokenizer returned no ids for the prompt")
            return text, np.array(ids, dtype=np.int64)
    sys.exit("no prefix of the prompt fits")


def load_hf(model_dir: Path) -> GPT2LMHeadModel:
    model, info = GPT2LMHeadModel.from_pretrained(
        model_dir, attn_implementation="eager", output_loading_info=True, dtype=torch.float64
    )
    model = model.double().eval()
    missing = [k for k in info.get("missing_keys", ()) if not k.endswith((".attn.bias", ".attn.masked_bias"))]
    mismatched = list(info.get("mismatched_keys", ()))
    unexpected = [k for k in info.get("unexpected_keys", ()) if not k.endswith((".attn.bias", ".attn.masked_bias"))]
    errors = list(info.get("error_msgs", ()))
    # lm_head.weight is tied to wte and never stored; anything else missing would be newly initialized
    missing = [k for k in missing if k != "lm_head.weight"]
    if missing or mismatched or unexpected or errors:
        sys.exit(
            f"{model_dir}: HF did not load every weight: missing={missing} mismatched={mismatched} "
            f"unexpected={unexpected} errors={errors}"
        )
    if model.lm_head.weight.data_ptr() != model.transformer.wte.weight.data_ptr() and not torch.equal(
        model.lm_head.weight, model.transformer.wte.weight
    ):
        sys.exit(f"{model_dir}: lm_head is not tied to wte")
    assert torch.equal(model.lm_head.weight, model.transformer.wte.weight)
    assert model.transformer.wte.weight.dtype == torch.float64
    assert model.config.activation_function == "gelu_new"
    assert model.config._attn_implementation == "eager", model.config._attn_implementation
    return model


def check_weights_match_file(model: GPT2LMHeadModel, model_dir: Path) -> None:
    """Every HF parameter equals the float32 tensor in the file (read with safetensors, not sheetgpt)."""
    from safetensors.numpy import load_file

    raw = {k.removeprefix("transformer."): v for k, v in load_file(str(model_dir / "model.safetensors")).items()}
    n = 0
    for name, p in model.transformer.named_parameters():
        expect = raw[name].astype(np.float64)
        got = p.detach().numpy()
        if not np.array_equal(got, expect):
            sys.exit(f"{model_dir}: HF parameter {name} differs from the file")
        n += 1
    expected_n = 2 + 12 * model.config.n_layer + 2  # wte, wpe, 12 per block, ln_f.g/b
    if n != expected_n:
        sys.exit(f"{model_dir}: HF has {n} parameters, expected {expected_n}")


@torch.no_grad()
def run(model: GPT2LMHeadModel, ids: np.ndarray) -> dict[str, np.ndarray]:
    captured: dict[str, torch.Tensor] = {}
    hooks = []

    def keep(name):
        def hook(_module, _inputs, output):
            captured[name] = output[0] if isinstance(output, tuple) else output

        return hook

    for i, block in enumerate(model.transformer.h):
        hooks.append(block.attn.register_forward_hook(keep(f"h.{i}.attn.c_proj")))
        hooks.append(block.mlp.register_forward_hook(keep(f"h.{i}.mlp.c_proj")))
        hooks.append(block.register_forward_hook(keep(f"h.{i}.res_2")))
    hooks.append(model.transformer.ln_f.register_forward_hook(keep("ln_f.out")))
    try:
        out = model(torch.tensor(ids[None, :]), output_attentions=True, use_cache=False)
    finally:
        for h in hooks:
            h.remove()
    result = {"ids": ids}
    for name, t in captured.items():
        assert t.dtype == torch.float64, (name, t.dtype)
        result[name] = t[0].numpy().copy()
    assert len(out.attentions) == model.config.n_layer
    for i, a in enumerate(out.attentions):
        assert a.dtype == torch.float64
        result[f"h.{i}.attn.weights"] = a[0].numpy().copy()
    result["logits"] = out.logits[0].numpy().copy()
    assert out.logits.dtype == torch.float64
    return result


def main() -> None:
    MODELS.mkdir(parents=True, exist_ok=True)
    GOLDENS.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    date = datetime.date.today().isoformat()
    lines = []
    for shape, (seed, prefix, buffers) in FIXTURES.items():
        config = SHAPES[shape]
        model_dir = MODELS / shape
        if model_dir.exists():
            shutil.rmtree(model_dir)
        make_random_model(model_dir, config, seed=seed, prefix=prefix, mask_buffers=buffers)
        model = load_hf(model_dir)
        check_weights_match_file(model, model_dir)
        tok = GPT2TokenizerFast.from_pretrained(model_dir)
        prompt_text, prompt_ids = fitting_prompt(tok, config.n_positions)
        seqs = sequences(config, seed) + [prompt_ids]
        meta = {
            "shape": shape,
            "config": config.to_dict(),
            "seed": seed,
            "prefix": prefix,
            "mask_buffers": buffers,
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "numpy": np.__version__,
            "date": date,
            "dtype": "float64",
            "attn_implementation": "eager",
            "script": "scripts/make_goldens.py",
        }
        arrays: dict[str, np.ndarray] = {
            "meta": np.array(json.dumps(meta)),
            "prompt.text": np.array(prompt_text),
            "prompt.seq": np.array(len(seqs) - 1),
        }
        for k, ids in enumerate(seqs):
            for name, value in run(model, ids).items():
                arrays[f"seq{k}.{name}"] = value
        np.savez_compressed(GOLDENS / f"{shape}.npz", **arrays)
        size = sum(f.stat().st_size for f in model_dir.iterdir())
        lines.append(
            f"| {shape} | {config.n_layer} | {config.n_head} | {config.n_embd} | {config.n_positions} | "
            f"{config.vocab_size} | {seed} | `{prefix or '(none)'}` | {'yes' if buffers else 'no'} | "
            f"{', '.join(str(len(s)) for s in seqs)} |"
        )
        print(
            f"{shape}: {len(seqs)} sequences, model {size / 1e6:.2f} MB, "
            f"golden {(GOLDENS / f'{shape}.npz').stat().st_size / 1e6:.2f} MB"
        )
    write_readme(lines, date)


def write_readme(rows: list[str], date: str) -> None:
    text = (
        f"""# Golden outputs from Hugging Face GPT-2 (float64)

Made by `scripts/make_goldens.py` on {date} with torch {torch.__version__},
transformers {transformers.__version__}, numpy {np.__version__}, Python {sys.version.split()[0]}.
CI does not need torch: the tests read these `.npz` files with numpy.

How:

1. `sheetgpt.random_model.make_random_model` writes each model in `tests/fixtures/models/<shape>/`
   (float32 weights in `model.safetensors`, `config.json`, `vocab.json`, `merges.txt`).
2. `GPT2LMHeadModel.from_pretrained(dir, attn_implementation="eager", output_loading_info=True,
   dtype=torch.float64)`, then `.double().eval()`. The script stops unless every weight was
   loaded from the file (no missing / unexpected / mismatched keys apart from the `attn.bias`
   mask buffers and the tied `lm_head.weight`), each HF parameter equals the file's tensor
   (read with `safetensors.numpy`), and `lm_head.weight` equals `wte.weight`.
3. For each token-id sequence (seeded random ids of lengths 1, 2, n_positions/3 and
   n_positions, and the ids of the text prompt below from HF's `GPT2TokenizerFast`), one
   forward pass with `output_attentions=True, use_cache=False`, recording with forward hooks
   each block's attention output (`h.i.attn.c_proj`), MLP output (`h.i.mlp.c_proj`) and block
   output (`h.i.res_2`), and `ln_f.out`; plus `h.i.attn.weights` (the attention probabilities)
   and `logits` for every position. All float64.

Prompt text: the longest word prefix of `{PROMPT_TEXT!r}` whose ids fit in n_positions
(stored as `prompt.text`; its ids, from `GPT2TokenizerFast.from_pretrained(dir)`, are `seq{{prompt.seq}}.ids`).

| shape | n_layer | n_head | n_embd | n_positions | vocab | seed | key prefix | attn.bias buffers | sequence lengths |
|---|---|---|---|---|---|---|---|---|---|
"""
        + "\n".join(rows)
        + "\n\nArray names are listed in the docstring of `scripts/make_goldens.py`.\n"
    )
    (GOLDENS / "README.md").write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
