"""Write a random sparse autoencoder in SAELens's published layout (cfg.json + sae_weights.safetensors).

By default it has the shape of the published GPT-2 small residual SAEs (d_in 768, d_sae 24,576,
blocks.8.hook_resid_pre; 151 MB in float32): the full-size benchmark of `sheetgpt build --sae DIR
--sae-features N` (README, "Features"). The weights are random (numpy default_rng(seed)), so its
features mean nothing; the book's formulas and check do not care.

    python scripts/make_random_sae.py /tmp/sae-gpt2-small
    python scripts/make_random_sae.py /tmp/sae-tiny --d-in 48 --d-sae 20000 --hook blocks.1.hook_resid_pre
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file


def write(out: Path, d_in: int = 768, d_sae: int = 24576, hook: str = "blocks.8.hook_resid_pre", seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    W_dec = rng.normal(size=(d_sae, d_in)).astype(np.float32)
    W_dec /= np.linalg.norm(W_dec, axis=1, keepdims=True)  # unit decoder rows, as SAELens trains them
    tensors = {
        "W_enc": np.ascontiguousarray(W_dec.T),  # tied at initialisation, as SAELens starts
        "W_dec": W_dec,
        "b_enc": (rng.normal(size=d_sae) * 0.1).astype(np.float32),
        "b_dec": (rng.normal(size=d_in) * 0.1).astype(np.float32),
    }
    save_file(tensors, str(out / "sae_weights.safetensors"))
    cfg = {
        "architecture": "standard",
        "d_in": d_in,
        "d_sae": d_sae,
        "dtype": "float32",
        "hook_name": hook,
        "activation_fn_str": "relu",
        "apply_b_dec_to_input": True,
        "normalize_activations": "none",
        "model_name": "random (scripts/make_random_sae.py)",
        "seed": seed,
    }
    (out / "cfg.json").write_text(json.dumps(cfg, indent=2) + "\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path, help="directory to write cfg.json and sae_weights.safetensors into")
    p.add_argument("--d-in", type=int, default=768)
    p.add_argument("--d-sae", type=int, default=24576)
    p.add_argument("--hook", default="blocks.8.hook_resid_pre")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    write(a.out, a.d_in, a.d_sae, a.hook, a.seed)
    print(f"wrote {a.out}: d_in {a.d_in}, d_sae {a.d_sae}, {a.hook}")


if __name__ == "__main__":
    main()
