"""Load a sparse autoencoder (SAE) in the layout GPT-2 SAEs are published in, and run it.

An SAE directory holds, as SAELens writes and reads it (its constants ``SAE_CFG_FILENAME =
"cfg.json"`` and ``SAE_WEIGHTS_FILENAME = "sae_weights.safetensors"`` in jbloomAus/SAELens
``sae_lens/config.py``; the GPT-2 small residual SAEs at huggingface.co/jbloom/GPT2-Small-SAEs-Reformatted
are folders ``blocks.N.hook_resid_pre/`` holding these two files, 151 MB for 768 x 24576 float32):

- ``cfg.json``: ``d_in`` (the width of the stream it reads), ``d_sae`` (the number of features) and
  ``hook_name`` (TransformerLens's name of the point it reads, ``blocks.8.hook_resid_pre``); SAELens 6
  moved ``hook_name`` into ``metadata`` (``{"d_in": 2048, "d_sae": 8192, ..., "metadata": {"hook_name":
  "blocks.7.hook_attn_out", "sae_lens_version": "6.21.0", ...}}`` in a published cfg.json on the
  Hugging Face hub), which is read too.
  ``apply_b_dec_to_input`` (default true) says whether b_dec is subtracted before encoding;
  ``architecture`` must be ``standard`` and ``activation_fn_str`` / ``activation_fn`` ``relu`` if given.
- ``sae_weights.safetensors``: ``W_enc`` [d_in, d_sae], ``W_dec`` [d_sae, d_in], ``b_enc`` [d_sae],
  ``b_dec`` [d_in] (SAELens's attribute table); other tensors (SAELens may add a ``scaling_factor``) are refused.
- ``labels.json`` (sheetgpt's own, optional): one text label per feature.

The encoder is ``f = ReLU((x - b_dec) @ W_enc + b_enc)``, the decoder ``x_hat = f @ W_dec + b_dec``,
both with exact.matmul (so the values a book caches do not depend on the CPU).

Only ``blocks.L.hook_resid_pre`` is read: the residual stream at the input of block L (for L = 0,
the embeddings wte + wpe), which the book shows on each block's tab.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import exact
from .checkpoint import read_header, read_safetensors
from .config import GPT2Config
from .errors import SheetGPTError
from .safe_io import read_json

CFG_FILENAME = "cfg.json"
WEIGHTS_FILENAME = "sae_weights.safetensors"
LABELS_FILENAME = "labels.json"
MAX_CFG_BYTES = 1_000_000  # a published cfg.json is about 1-2 kB
MAX_LABELS_BYTES = 50_000_000
MAX_D_SAE = 1 << 20  # 16 x 65,536; larger is not a GPT-2 SAE anyone publishes
HOOK = re.compile(r"blocks\.(\d+)\.hook_resid_pre")
TENSORS = ("W_enc", "W_dec", "b_enc", "b_dec")


def default_sae_dir() -> Path:
    """The SAE bundled with the teaching model (scripts/train_sae.py)."""
    return Path(__file__).parent / "data" / "tiny" / "sae"


class SAEError(SheetGPTError):
    """An SAE directory that cannot be used with this model; the message names the file and key."""


@dataclass
class SAE:
    """A loaded SAE: where it reads (block), its float64 weights, its labels and where it came from."""

    hook_name: str
    block: int  # reads the residual stream at the input of this block
    W_enc: np.ndarray  # [d_in, d_sae]
    W_dec: np.ndarray  # [d_sae, d_in]
    b_enc: np.ndarray  # [d_sae]
    b_dec: np.ndarray  # [d_in]
    labels: list[str]
    path: Path
    apply_b_dec_to_input: bool = True
    ids: np.ndarray | None = None  # [d_sae] each feature's number in the published SAE (a subset: ``subset``)

    @property
    def d_in(self) -> int:
        return self.W_enc.shape[0]

    @property
    def d_sae(self) -> int:
        return self.W_enc.shape[1]

    def encode(self, x):  # [T, d_in] -> [T, d_sae]
        x = np.asarray(x, dtype=np.float64)
        if self.apply_b_dec_to_input:
            x = x - self.b_dec
        return np.maximum(exact.matmul(x, self.W_enc) + self.b_enc, 0.0)

    def decode(self, f):  # [T, d_sae] -> [T, d_in]
        return exact.matmul(np.asarray(f, dtype=np.float64), self.W_dec) + self.b_dec

    def label(self, k: int) -> str:
        return self.labels[k] if k < len(self.labels) and self.labels[k] else f"feature {k}"

    @property
    def feature_ids(self) -> np.ndarray:  # [d_sae] each column's feature number
        return np.arange(self.d_sae) if self.ids is None else self.ids

    def subset(self, keep) -> SAE:
        """Only the features ``keep`` (numbers of this SAE, ascending): their encoder columns, decoder rows,
        biases and labels; b_dec is folded into the encoder bias when the SAE does not subtract it, so that
        the result always computes ReLU((x - b_dec) W_enc + b_enc)."""
        keep = np.asarray(sorted(set(int(k) for k in keep)), dtype=np.int64)
        b_enc = (
            self.b_enc if self.apply_b_dec_to_input else self.b_enc + exact.matmul(self.b_dec[None, :], self.W_enc)[0]
        )
        return SAE(
            self.hook_name,
            self.block,
            self.W_enc[:, keep],
            self.W_dec[keep],
            b_enc[keep],
            self.b_dec,
            [self.label(int(k)) for k in keep],
            self.path,
            True,
            self.feature_ids[keep],
        )


def select_features(sae: SAE, x, n: int, keep=()) -> list[int]:  # [T, d_in] -> feature numbers
    """The ``n`` features with the largest activation anywhere in ``x`` (ties: the lower number first),
    with ``keep`` (a feature a book must show) among them: ``--sae-features N``."""
    f = sae.encode(x).max(axis=0)
    order = [int(k) for k in np.argsort(-f, kind="stable")]
    chosen = [k for k in keep if 0 <= k < sae.d_sae][:n]
    for k in order:
        if len(chosen) >= n:
            break
        if k not in chosen:
            chosen.append(k)
    return sorted(chosen)


def resid_pre(trace: dict, block: int):  # -> [T, d]
    """The residual stream at the input of ``block`` from a reference.gpt2 trace (after any steering)."""
    if f"h.{block}.in" in trace:
        return trace[f"h.{block}.in"]
    return trace["embed.h"] if block == 0 else trace[f"h.{block - 1}.res_2"]


def top_features(f, k: int):  # [d_sae] -> [(feature, activation)], largest first, ties to the lower index
    order = np.argsort(-f, kind="stable")[:k]
    return [(int(i), float(f[i])) for i in order if f[i] > 0]


def _int_field(cfg: dict, key: str, where: Path) -> int:
    if key not in cfg:
        raise SAEError(f"{where}: no {key!r}; an SAE's cfg.json gives d_in, d_sae and hook_name")
    value = cfg[key]
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_D_SAE:
        raise SAEError(f"{where}: {key!r} is {value!r}; expected a whole number from 1 to {MAX_D_SAE:,}")
    return value


def read_cfg(path: Path, config: GPT2Config) -> tuple[int, int, str, int, bool]:
    """-> (d_in, d_sae, hook_name, block, apply_b_dec_to_input), checked against the model."""
    cfg = read_json(path, MAX_CFG_BYTES, "an SAE directory needs cfg.json (d_in, d_sae, hook_name)", SAEError)
    if not isinstance(cfg, dict):
        raise SAEError(f"{path}: expected a JSON object with d_in, d_sae and hook_name")
    d_in, d_sae = _int_field(cfg, "d_in", path), _int_field(cfg, "d_sae", path)
    if d_in != config.n_embd:
        raise SAEError(f"{path}: 'd_in' is {d_in} but the model's stream is n_embd={config.n_embd} wide")
    meta = cfg.get("metadata") if isinstance(cfg.get("metadata"), dict) else {}
    hook = cfg.get("hook_name", meta.get("hook_name"))
    if not isinstance(hook, str):
        raise SAEError(f"{path}: no 'hook_name' (nor metadata.hook_name); expected e.g. 'blocks.1.hook_resid_pre'")
    m = HOOK.fullmatch(hook)
    if m is None:
        raise SAEError(
            f"{path}: 'hook_name' {hook[:80]!r} is not a point the book shows; sheetgpt reads "
            "'blocks.L.hook_resid_pre' (the input of block L)"
        )
    block = int(m.group(1))
    if block >= config.n_layer:
        raise SAEError(f"{path}: 'hook_name' {hook!r} names block {block} but the model has n_layer={config.n_layer}")
    for key, allowed in (
        ("architecture", ("standard",)),
        ("activation_fn_str", ("relu",)),
        ("activation_fn", ("relu",)),
    ):
        if key in cfg and cfg[key] not in allowed:
            raise SAEError(f"{path}: {key!r} is {cfg[key]!r}; sheetgpt reads {allowed[0]!r} SAEs (ReLU encoder)")
    norm = cfg.get("normalize_activations", "none")
    if norm not in ("none", None):
        raise SAEError(f"{path}: 'normalize_activations' is {norm!r}; sheetgpt reads SAEs trained on the raw stream")
    apply = cfg.get("apply_b_dec_to_input", True)
    if not isinstance(apply, bool):
        raise SAEError(f"{path}: 'apply_b_dec_to_input' is {apply!r}; expected true or false")
    return d_in, d_sae, hook, block, apply


def load_sae(sae_dir: str | Path | None, config: GPT2Config) -> SAE:
    """Read cfg.json + sae_weights.safetensors (+ labels.json) and check them against the model's config."""
    path = Path(sae_dir) if sae_dir is not None else default_sae_dir()
    if not path.is_dir():
        raise SAEError(f"{path}: not a directory; --sae DIR needs cfg.json and sae_weights.safetensors")
    d_in, d_sae, hook, block, apply = read_cfg(path / CFG_FILENAME, config)
    weights = path / WEIGHTS_FILENAME
    if not weights.exists() and not weights.is_symlink():
        raise SAEError(f"{weights}: missing; an SAE directory needs sae_weights.safetensors")
    header = read_header(weights)  # bounded: header length, offsets and sizes checked before any read
    want = {"W_enc": (d_in, d_sae), "W_dec": (d_sae, d_in), "b_enc": (d_sae,), "b_dec": (d_in,)}
    for key, shape in want.items():
        if key not in header[0]:
            raise SAEError(f"{weights}: missing tensor {key!r}; an SAE needs W_enc, W_dec, b_enc and b_dec")
        if header[0][key].shape != shape:
            raise SAEError(
                f"{weights}: tensor {key!r} has shape {list(header[0][key].shape)}, expected {list(shape)} "
                f"from cfg.json (d_in={d_in}, d_sae={d_sae})"
            )
    extra = sorted(set(header[0]) - set(want))
    if extra:
        raise SAEError(f"{weights}: unexpected tensor {extra[0]!r}; sheetgpt reads W_enc, W_dec, b_enc and b_dec")
    raw = read_safetensors(weights, header)
    values = {}
    for key in TENSORS:
        v = np.asarray(raw[key], dtype=np.float64)
        bad = ~np.isfinite(v)
        if bad.any():
            raise SAEError(
                f"{weights}: tensor {key!r} holds NaN or infinity (first at index {np.argwhere(bad)[0].tolist()})"
            )
        values[key] = v
    labels = _read_labels(path / LABELS_FILENAME, d_sae)
    return SAE(hook, block, values["W_enc"], values["W_dec"], values["b_enc"], values["b_dec"], labels, path, apply)


def _read_labels(path: Path, d_sae: int) -> list[str]:
    if not path.exists():
        return []
    raw = read_json(path, MAX_LABELS_BYTES, "", SAEError)
    labels = raw.get("labels") if isinstance(raw, dict) else None
    if not isinstance(labels, list) or len(labels) != d_sae or not all(isinstance(s, str) for s in labels):
        raise SAEError(f'{path}: expected {{"labels": [...]}} with one text per feature ({d_sae})')
    return labels


def fraction_of_variance_explained(x, x_hat) -> float:  # [N, d], [N, d] -> 1 - SSE / SST (about the mean)
    x = np.asarray(x, dtype=np.float64)
    sse = float(((x - x_hat) ** 2).sum())
    sst = float(((x - x.mean(0)) ** 2).sum())
    return 1.0 - sse / sst if sst > 0 else math.nan
