"""Load a GPT-2 family checkpoint in Hugging Face layout into picoGPT-style nested params.

A model directory holds ``config.json``, ``model.safetensors`` and the tokenizer files
(``vocab.json`` + ``merges.txt``, or OpenAI's ``encoder.json`` + ``vocab.bpe``).

Parameters travel under GPT-2's own names, both as a flat dict (``"h.3.attn.c_attn.w"``,
one entry per weight tab of the workbook) and as nested dicts that mirror them
(``params["blocks"][3]["attn"]["c_attn"]["w"]``), like picoGPT.
"""

from __future__ import annotations

import math
import os
import stat
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import hf_cache
from .config import GPT2Config
from .errors import CheckpointError
from .safe_io import kind_of, loads_bounded

# Loading reads a safetensors file ourselves (header + raw little-endian data) rather than
# through the safetensors package: we need bfloat16, exact one-line errors naming the file
# and tensor, and checks of offsets against the file size (truncated downloads).
_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2"}
_SKIPPED_SUFFIXES = (".attn.bias", ".attn.masked_bias")  # causal-mask buffers, not parameters
_MAX_ABS_WEIGHT = 1e4  # far above any trained GPT-2 weight; a wrong dtype or byte order lands above it


def default_model_dir() -> Path:
    """The tiny teaching model bundled with the package."""
    return Path(__file__).parent / "data" / "tiny"


def param_shapes(config: GPT2Config) -> dict[str, tuple[int, ...]]:
    """Every parameter's name and shape, in forward-pass order (the workbook's weight tabs)."""
    d, V, P = config.n_embd, config.vocab_size, config.n_positions
    shapes: dict[str, tuple[int, ...]] = {"wte": (V, d), "wpe": (P, d)}
    for i in range(config.n_layer):
        shapes |= {
            f"h.{i}.ln_1.g": (d,),
            f"h.{i}.ln_1.b": (d,),
            f"h.{i}.attn.c_attn.w": (d, 3 * d),
            f"h.{i}.attn.c_attn.b": (3 * d,),
            f"h.{i}.attn.c_proj.w": (d, d),
            f"h.{i}.attn.c_proj.b": (d,),
            f"h.{i}.ln_2.g": (d,),
            f"h.{i}.ln_2.b": (d,),
            f"h.{i}.mlp.c_fc.w": (d, 4 * d),
            f"h.{i}.mlp.c_fc.b": (4 * d,),
            f"h.{i}.mlp.c_proj.w": (4 * d, d),
            f"h.{i}.mlp.c_proj.b": (d,),
        }
    shapes |= {"ln_f.g": (d,), "ln_f.b": (d,)}
    return shapes


def hf_key(name: str) -> str:
    """Our name -> the Hugging Face key without prefix: 'h.0.ln_1.g' -> 'h.0.ln_1.weight'."""
    if name in ("wte", "wpe"):
        return f"{name}.weight"
    stem, leaf = name.rsplit(".", 1)
    return f"{stem}.{'bias' if leaf == 'b' else 'weight'}"


def nest(flat: dict[str, np.ndarray], n_layer: int) -> dict:
    """Flat GPT-2 names -> picoGPT's nested dict: {'wte', 'wpe', 'blocks': [...], 'ln_f'}."""
    params: dict = {"blocks": [{} for _ in range(n_layer)]}
    for name, value in flat.items():
        parts = name.split(".")
        if parts[0] == "h":
            node = params["blocks"][int(parts[1])]
            parts = parts[2:]
        else:
            node = params
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return params


@dataclass
class Model:
    """A loaded checkpoint: its sizes, its parameters (flat and nested) and where it came from."""

    config: GPT2Config
    flat: dict[str, np.ndarray]
    path: Path

    @property
    def params(self) -> dict:
        return nest(self.flat, self.config.n_layer)

    def truncated(self, n_layer: int) -> Model:
        """The same model keeping only its first n_layer blocks (for reduced teaching sheets)."""
        if not 1 <= n_layer <= self.config.n_layer:
            raise CheckpointError(
                f"--blocks must be between 1 and {self.config.n_layer} for {self.path}, got {n_layer}"
            )
        config = GPT2Config(**{**self.config.to_dict(), "n_layer": n_layer})
        keep = param_shapes(config)
        return Model(config, {k: v for k, v in self.flat.items() if k in keep}, self.path)


# The safetensors format allows 100 MB of JSON header; GPT-2 XL's is about 60 kB (580 tensors). 16 MB keeps
# json.loads of a hostile header to a few hundred MB of Python objects.
MAX_HEADER_BYTES = 16_000_000
MAX_DIMS = 8


@dataclass
class TensorEntry:
    """One tensor's line of a safetensors header, checked: dtype, shape and its byte range in the data."""

    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int


def read_header(path: Path) -> tuple[dict[str, TensorEntry], int]:
    """The checked header of a .safetensors file and where its data starts; reads only the header.

    Every shape is multiplied out in Python integers (no overflow) and must match its byte range,
    and the ranges must lie inside the file and cover its data exactly, as the format requires,
    before any tensor is read or allocated.
    """
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        if path.is_symlink():
            raise CheckpointError(f"{path}: a symbolic link that leads nowhere (or in a loop)") from None
        raise CheckpointError(f"{path}: missing; a model directory needs model.safetensors") from None
    except IsADirectoryError:
        raise CheckpointError(f"{path}: is a directory, expected a .safetensors file") from None
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise CheckpointError(f"{path}: is {kind_of(st.st_mode)}, expected a .safetensors file")
    with os.fdopen(fd, "rb") as f:
        size = st.st_size
        if size < 8:
            raise CheckpointError(f"{path}: {size} bytes, too short to be a safetensors file (truncated download?)")
        (header_len,) = struct.unpack("<Q", f.read(8))
        if header_len > size - 8:
            raise CheckpointError(
                f"{path}: header length {header_len} exceeds the file size; the file is truncated or not safetensors"
            )
        if header_len > MAX_HEADER_BYTES:
            raise CheckpointError(
                f"{path}: header length {header_len:,} bytes; sheetgpt reads headers of at most "
                f"{MAX_HEADER_BYTES:,} bytes (GPT-2's are under 100 kB)"
            )
        raw_header = f.read(header_len)
    header = loads_bounded(
        raw_header, str(path), CheckpointError, "the header is not valid JSON; not a safetensors file"
    )
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: the header is not a JSON object; the file is not safetensors")
    data_len = size - 8 - header_len
    entries: dict[str, TensorEntry] = {}
    for key, info in header.items():
        if key == "__metadata__":
            continue
        try:
            dtype, shape, (start, end) = info["dtype"], tuple(info["shape"]), info["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(f"{path}: tensor {key!r} has a malformed header entry") from None
        if not all(_is_count(n) for n in (*shape, start, end)):
            raise CheckpointError(
                f"{path}: tensor {key!r} has a malformed header entry (shape and offsets must be whole numbers >= 0)"
            )
        if len(shape) > MAX_DIMS:
            raise CheckpointError(f"{path}: tensor {key!r} has {len(shape)} dimensions; GPT-2's tensors have 1 to 4")
        if not isinstance(dtype, str) or dtype not in _DTYPES:
            raise CheckpointError(
                f"{path}: tensor {key!r} has dtype {str(dtype)[:40]}; sheetgpt reads F32, F16, BF16 and F64 weights"
            )
        nbytes = math.prod(shape) * np.dtype(_DTYPES[dtype]).itemsize  # Python ints: [2**32, 2**32] stays exact
        if not (start <= end) or end - start != nbytes:
            raise CheckpointError(f"{path}: tensor {key!r} has data offsets that do not match its shape {list(shape)}")
        if end > data_len:
            raise CheckpointError(
                f"{path}: tensor {key!r} ends at byte {end} but the data has {data_len} bytes; the file is truncated"
            )
        entries[key] = TensorEntry(dtype, shape, start, end)
    covered = max((e.end for e in entries.values()), default=0)
    if covered != data_len:
        raise CheckpointError(
            f"{path}: the tensors cover {covered:,} bytes of data but the file holds {data_len:,}; "
            "the file is damaged or not safetensors"
        )
    return entries, 8 + header_len


def read_safetensors(path: Path, entries: tuple[dict[str, TensorEntry], int] | None = None) -> dict[str, np.ndarray]:
    """Read every tensor of a .safetensors file as float32/float64 numpy arrays (header checked first).

    Each tensor is read straight into its own array (F32 and F64 are then used as they are), so the
    peak memory is the tensors themselves, not the file's bytes as well.
    """
    header, data_start = entries if entries is not None else read_header(path)
    tensors = {}
    try:
        with open(path, "rb") as f:
            for key, e in header.items():
                raw = np.empty(e.shape, dtype=_DTYPES[e.dtype])
                f.seek(data_start + e.start)
                if f.readinto(memoryview(raw.reshape(-1)).cast("B")) != e.end - e.start:
                    raise CheckpointError(f"{path}: tensor {key!r} ends past the end of the file (truncated)")
                if e.dtype == "BF16":
                    raw = (raw.astype(np.uint32) << 16).view(np.float32)
                tensors[key] = raw.astype(np.float64 if e.dtype == "F64" else np.float32, copy=False)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    return tensors


def _is_count(n) -> bool:
    return isinstance(n, int) and not isinstance(n, bool) and n >= 0


def bin_only(path: Path) -> CheckpointError:
    """pytorch_model.bin is a pickle, which can run code when loaded: never loaded, the user is told what to do."""
    hit = hf_cache.cached_repo(path)
    repo = hit[0] if hit else "openai-community/gpt2"
    return CheckpointError(
        f"{path}: has pytorch_model.bin but no model.safetensors; sheetgpt never loads a pickle. Download the "
        f"safetensors file (huggingface-cli download {repo} model.safetensors"
        + ("" if hit else " --local-dir DIR")
        + ') or convert it where torch is installed: python -c "import torch; from safetensors.torch import '
        "save_file; s = torch.load('pytorch_model.bin', weights_only=True); "
        "save_file({k: v.contiguous() for k, v in s.items()}, 'model.safetensors')\""
    )


def check_sizes(config: GPT2Config, shapes: dict[str, tuple[int, ...]], weights: Path) -> None:
    """config.json's sizes against the tensors the file really has, before anything is allocated.

    n_layer, n_embd, vocab_size and n_positions each name a tensor (h.N..., wte, wpe) whose header
    entry must exist with that shape; so a config claiming a billion layers is refused at once.
    """
    d, V, P = config.n_embd, config.vocab_size, config.n_positions
    for key, want in (("wte.weight", (V, d)), ("wpe.weight", (P, d))):
        if key not in shapes:
            raise CheckpointError(f"{weights}: missing tensor {key!r}")
        if tuple(shapes[key]) != want:
            raise CheckpointError(
                f"{weights}: tensor {key!r} has shape {list(shapes[key])}, expected {list(want)} from config.json"
            )
    blocks = {int(k.split(".")[1]) for k in shapes if k.startswith("h.") and k.split(".")[1].isdigit()}
    missing = next((i for i in range(min(config.n_layer, len(blocks) + 1)) if i not in blocks), None)
    if missing is not None:
        held = f"blocks 0-{max(blocks)}" if blocks else "no blocks"
        raise CheckpointError(
            f"{weights}: missing tensor 'h.{missing}.ln_1.weight' and the rest of block {missing} "
            f"(n_layer={config.n_layer} in config.json; the file has {held})"
        )


def check_tensors(config: GPT2Config, shapes: dict[str, tuple[int, ...]], weights: Path) -> None:
    """Every tensor of the header against config.json (after check_sizes): each parameter present with its
    shape, lm_head (if any) shaped like wte, nothing unexpected. So the bytes read afterwards are exactly
    what config.json's sizes need, whatever the header claims."""
    for name, shape in param_shapes(config).items():
        key = hf_key(name)
        if key not in shapes:
            raise CheckpointError(f"{weights}: missing tensor {key!r} (n_layer={config.n_layer} in config.json)")
        if tuple(shapes[key]) != shape:
            raise CheckpointError(
                f"{weights}: tensor {key!r} has shape {list(shapes[key])}, expected {list(shape)} from config.json"
            )
    known = {hf_key(name) for name in param_shapes(config)}
    if "lm_head.weight" in shapes and tuple(shapes["lm_head.weight"]) != tuple(shapes["wte.weight"]):
        raise CheckpointError(
            f"{weights}: lm_head.weight has shape {list(shapes['lm_head.weight'])}, not wte's; "
            "sheetgpt needs GPT-2's tied unembedding"
        )
    extra = [k for k in shapes if k not in known and k != "lm_head.weight" and not k.endswith(_SKIPPED_SUFFIXES)]
    if extra:
        blocks = sorted({int(k.split(".")[1]) for k in extra if k.startswith("h.") and k.split(".")[1].isdigit()})
        hint = f"; config.json says n_layer={config.n_layer} but the file has block {blocks[-1]}" if blocks else ""
        raise CheckpointError(f"{weights}: unexpected tensor {extra[0]!r}{hint}")


def _strip_prefix(key: str) -> str:
    return key[len("transformer.") :] if key.startswith("transformer.") else key


@dataclass
class ModelFiles:
    """A model directory whose config.json and safetensors header are read and checked against each
    other, before any tensor data is: ``load()`` then reads exactly the bytes config.json's sizes need."""

    path: Path
    config: GPT2Config
    weights: Path
    header: tuple[dict[str, TensorEntry], int]

    def load(self) -> Model:
        weights = self.weights
        raw = {_strip_prefix(k): v for k, v in read_safetensors(weights, self.header).items()}
        flat = {}
        for name in param_shapes(self.config):
            key = hf_key(name)
            value = raw.pop(key)
            finite = np.isfinite(value)
            # the magnitude check comes first: a wrong byte order makes huge values *and* some NaN/inf
            peak = float(np.abs(value[finite]).max()) if finite.any() else 0.0
            if peak > _MAX_ABS_WEIGHT:
                raise CheckpointError(
                    f"{weights}: tensor {key!r} holds a value of magnitude {peak:.3g}; "
                    "the file's dtype or byte order is probably wrong"
                )
            if not finite.all():
                bad = np.argwhere(~finite)[0].tolist()
                raise CheckpointError(f"{weights}: tensor {key!r} holds NaN or infinity (first at index {bad})")
            flat[name] = value
        lm_head = raw.pop("lm_head.weight", None)
        if lm_head is not None and not np.array_equal(lm_head, flat["wte"]):
            raise CheckpointError(
                f"{weights}: lm_head.weight differs from wte.weight; sheetgpt needs GPT-2's tied unembedding"
            )
        return Model(self.config, flat, self.path)


def open_model(model_dir: str | Path | None = None) -> ModelFiles:
    """A model directory's config.json and safetensors header, checked against each other; no tensor read.

    ``model_dir`` is a directory, or a hub repository id ('gpt2', 'openai-community/gpt2') found in
    the local Hugging Face cache (see hf_cache); nothing is ever downloaded.
    """
    path = hf_cache.resolve(model_dir) if model_dir is not None else default_model_dir()
    if not path.exists():
        if path.is_symlink():
            raise CheckpointError(
                f"{path}: a symbolic link that leads nowhere (or in a loop); pass --model DIR with a real directory"
            )
        raise CheckpointError(f"{path}: no such directory; pass --model DIR with a Hugging Face GPT-2 directory")
    if not path.is_dir():
        raise CheckpointError(f"{path}: not a directory; pass --model DIR with config.json and model.safetensors")
    weights = path / "model.safetensors"
    if not weights.exists() and not weights.is_symlink() and (path / "pytorch_model.bin").exists():
        raise bin_only(path)
    config = GPT2Config.from_json(path / "config.json")
    header = read_header(weights)
    shapes = {_strip_prefix(k): e.shape for k, e in header[0].items()}
    check_sizes(config, shapes, weights)
    check_tensors(config, shapes, weights)
    return ModelFiles(path, config, weights, header)


def load_model(model_dir: str | Path | None = None) -> Model:
    """Load config.json + model.safetensors from a Hugging Face GPT-2 directory, or a cached hub name
    (``open_model``, then its tensors)."""
    return open_model(model_dir).load()
