"""Seeded GPT-2-shaped checkpoints with random weights, in Hugging Face layout.

No model hub is reachable here, so tests and benchmarks use these: ``config.json``,
``model.safetensors``, ``vocab.json`` and ``merges.txt``, exactly as a real GPT-2
directory has them. Biases and layer-norm parameters are random too (not zero/one),
so that every term of every formula matters.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from .checkpoint import hf_key, param_shapes
from .config import GPT2Config
from .tokenizer import byte_symbol_order

# Standard deviations: large enough that attention is far from uniform and every
# softmax, GELU and layer norm works on values of order one.
_STD = {"wte": 0.5, "wpe": 0.2, "w": 0.15, "b": 0.1, "g": 0.2}

SHAPES = {
    # name: (n_layer, n_head, n_embd, n_positions, vocab_size)
    "micro": GPT2Config(n_layer=1, n_head=2, n_embd=8, n_positions=16, vocab_size=263),
    "one-head": GPT2Config(n_layer=2, n_head=1, n_embd=12, n_positions=24, vocab_size=300),
    "odd": GPT2Config(n_layer=2, n_head=3, n_embd=30, n_positions=32, vocab_size=517),
    "wide": GPT2Config(n_layer=3, n_head=4, n_embd=96, n_positions=64, vocab_size=1021),
    "gpt2-small": GPT2Config(),
}


def random_params(config: GPT2Config, seed: int = 0) -> dict[str, np.ndarray]:
    """Random float32 parameters under GPT-2's names (see checkpoint.param_shapes)."""
    rng = np.random.default_rng(seed)
    params = {}
    for name, shape in param_shapes(config).items():
        leaf = name if name in ("wte", "wpe") else name.rsplit(".", 1)[1]
        value = rng.standard_normal(shape, dtype=np.float32) * np.float32(_STD[leaf])
        if leaf == "w" and name.endswith("c_proj.w"):
            value /= np.float32(np.sqrt(2 * config.n_layer))  # GPT-2's scaled init of residual projections
        if leaf == "g":
            value += np.float32(1.0)
        params[name] = value
    return params


def synthetic_merges(n_merges: int) -> list[tuple[str, str]]:
    """A valid BPE merge list of any length: 'Ġ'/letters extended one letter at a time."""
    letters = list(string.ascii_lowercase)
    merges, queue, seen = [], ["Ġ"] + letters, set(byte_symbol_order())
    while len(merges) < n_merges:
        grown = []
        for left in queue:
            for right in letters:
                token = left + right
                if token not in seen:
                    seen.add(token)
                    merges.append((left, right))
                    grown.append(token)
                    if len(merges) == n_merges:
                        return merges
        queue = grown
    return merges


def write_tokenizer(out_dir: Path, vocab_size: int) -> None:
    """vocab.json + merges.txt with exactly vocab_size tokens (256 bytes, merges, <|endoftext|>)."""
    if vocab_size < 257:
        raise ValueError("a GPT-2 vocabulary needs at least 257 tokens (256 bytes + <|endoftext|>)")
    symbols = byte_symbol_order()  # GPT-2's order: '!' is id 0, 'Ġ' (space) is 220
    merges = synthetic_merges(vocab_size - 257)
    tokens = symbols + [a + b for a, b in merges] + ["<|endoftext|>"]
    (out_dir / "vocab.json").write_text(
        json.dumps({t: i for i, t in enumerate(tokens)}, ensure_ascii=False), encoding="utf-8"
    )
    (out_dir / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8")


def write_checkpoint(
    out_dir: str | Path,
    config: GPT2Config,
    params: dict[str, np.ndarray],
    *,
    prefix: str = "transformer.",
    mask_buffers: bool = True,
) -> Path:
    """Save params in Hugging Face layout (Conv1D weights [in, out]; lm_head tied, not stored)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {prefix + hf_key(name): np.ascontiguousarray(value) for name, value in params.items()}
    if mask_buffers:  # real checkpoints carry the causal mask as h.N.attn.bias; loaders must skip it
        P = config.n_positions
        mask = np.tril(np.ones((P, P), dtype=np.float32))[None, None]
        for i in range(config.n_layer):
            tensors[f"{prefix}h.{i}.attn.bias"] = mask
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    hf_config = {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "activation_function": "gelu_new",
        "n_ctx": config.n_positions,
        "tie_word_embeddings": True,
        "attn_pdrop": 0.0,
        "embd_pdrop": 0.0,
        "resid_pdrop": 0.0,
        "bos_token_id": config.vocab_size - 1,
        "eos_token_id": config.vocab_size - 1,
        **config.to_dict(),
    }
    (out / "config.json").write_text(json.dumps(hf_config, indent=2) + "\n", encoding="utf-8")
    return out


def make_random_model(out_dir: str | Path, config: GPT2Config, seed: int = 0, **kwargs) -> Path:
    """A complete random model directory: weights, config and a tokenizer of vocab_size tokens."""
    out = write_checkpoint(out_dir, config, random_params(config, seed), **kwargs)
    write_tokenizer(out, config.vocab_size)
    return out
