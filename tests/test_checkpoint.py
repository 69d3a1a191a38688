"""The checkpoint loader: every way a model directory can be wrong gives one clear line.

Each error is a CheckpointError (exit code 2) whose message is a single line naming the
file and, where there is one, the tensor. Positives: both key layouts, the causal-mask
buffers, and F32 / F16 / BF16 / F64 weights.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from sheetgpt.checkpoint import load_model, read_safetensors
from sheetgpt.errors import CheckpointError

MODELS = Path(__file__).parent / "fixtures" / "models"


@pytest.fixture
def model_dir(tmp_path) -> Path:
    """A writable copy of the 'one-head' fixture (2 blocks, keys without prefix, mask buffers)."""
    d = tmp_path / "one-head"
    shutil.copytree(MODELS / "one-head", d)
    return d


def tensors_of(d: Path) -> dict[str, np.ndarray]:
    return load_file(str(d / "model.safetensors"))


def save(d: Path, tensors: dict[str, np.ndarray]) -> None:
    save_file(tensors, str(d / "model.safetensors"))


def write_raw(path: Path, entries: dict[str, tuple[str, list[int], bytes]]) -> None:
    """A safetensors file by hand: {key: (dtype label, shape, raw bytes)}, for dtypes numpy cannot label."""
    header, body = {}, b""
    for key, (dtype, shape, data) in entries.items():
        header[key] = {"dtype": dtype, "shape": shape, "data_offsets": [len(body), len(body) + len(data)]}
        body += data
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)
    path.write_bytes(struct.pack("<Q", len(head)) + head + body)


def relabel(d: Path, convert) -> dict[str, np.ndarray]:
    """Rewrite every float tensor with convert(array) -> (dtype label, raw bytes); returns the originals."""
    original = tensors_of(d)
    entries = {}
    for key, value in original.items():
        label, data = convert(value)
        entries[key] = (label, list(value.shape), data)
    write_raw(d / "model.safetensors", entries)
    return original


def config_of(d: Path) -> dict:
    return json.loads((d / "config.json").read_text())


def set_config(d: Path, **changes) -> None:
    cfg = config_of(d)
    for k, v in changes.items():
        if v is None:
            cfg.pop(k, None)
        else:
            cfg[k] = v
    (d / "config.json").write_text(json.dumps(cfg))


def load_error(path, *must_contain: str) -> str:
    """load_model(path) must raise a one-line CheckpointError (exit 2) containing each string."""
    with pytest.raises(CheckpointError) as info:
        load_model(path)
    err = info.value
    msg = err.format_message()
    assert err.exit_code == 2
    assert "\n" not in msg, msg
    for part in must_contain:
        assert part in msg, f"{part!r} not in {msg!r}"
    return msg


# ---- the directory and config.json ------------------------------------------------------


def test_missing_directory(tmp_path):
    load_error(tmp_path / "nope", str(tmp_path / "nope"), "no such directory")


def test_not_a_directory(tmp_path):
    f = tmp_path / "file.txt"
    f.write_text("hi")
    load_error(f, str(f), "not a directory")


def test_symlink_loop_directory(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    os.symlink(b, a)
    os.symlink(a, b)
    load_error(a, str(a))


def test_symlink_loop_weights(model_dir):
    w = model_dir / "model.safetensors"
    w.unlink()
    os.symlink(model_dir / "loop2", w)
    os.symlink(w, model_dir / "loop2")
    load_error(model_dir, "model.safetensors")


def test_missing_config(model_dir):
    (model_dir / "config.json").unlink()
    load_error(model_dir, str(model_dir / "config.json"), "missing")


@pytest.mark.parametrize("text", ["", "{not json", "\xff\xfe garbage", "[1, 2, 3]", '"a string"'])
def test_config_not_json_object(model_dir, text):
    (model_dir / "config.json").write_text(text, encoding="latin-1")
    load_error(model_dir, "config.json")


@pytest.mark.parametrize("field", ["n_layer", "n_head", "n_embd", "n_positions", "vocab_size"])
def test_config_missing_a_size(model_dir, field):
    aliases = {"n_positions": ["n_ctx", "n_positions"]}.get(field, [field])
    set_config(model_dir, **{k: None for k in aliases})
    load_error(model_dir, "config.json", field)


@pytest.mark.parametrize("value", [0, -3, 2.5, "12", True, None])
def test_config_bad_size_value(model_dir, value):
    cfg = config_of(model_dir)
    cfg["n_head"] = value
    (model_dir / "config.json").write_text(json.dumps(cfg))
    load_error(model_dir, "config.json", "n_head")


def test_n_embd_not_divisible_by_n_head(model_dir):
    set_config(model_dir, n_head=5)  # n_embd = 12
    load_error(model_dir, "config.json", "n_embd (12)", "n_head (5)")


def test_config_hf_aliases_accepted(model_dir):
    cfg = config_of(model_dir)
    for ours, theirs in [
        ("n_layer", "num_hidden_layers"),
        ("n_embd", "hidden_size"),
        ("n_head", "num_attention_heads"),
    ]:
        cfg[theirs] = cfg.pop(ours)
    (model_dir / "config.json").write_text(json.dumps(cfg))
    assert load_model(model_dir).config.n_embd == 12


# ---- model.safetensors as a file --------------------------------------------------------


def test_missing_safetensors(model_dir):
    (model_dir / "model.safetensors").unlink()
    load_error(model_dir, str(model_dir / "model.safetensors"), "missing")


class _Trap:
    """Unpickling this touches a marker file: proof that a pickle was (or was not) loaded."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("with_safetensors", [False, True])
def test_pytorch_bin_is_never_unpickled(model_dir, tmp_path, with_safetensors):
    import pickle

    marker = tmp_path / "unpickled"
    (model_dir / "pytorch_model.bin").write_bytes(pickle.dumps({"wte.weight": _Trap(marker)}))
    pickle.loads(pickle.dumps(_Trap(tmp_path / "armed")))
    assert (tmp_path / "armed").exists()  # the trap works when a pickle is loaded
    if with_safetensors:
        load_model(model_dir)  # the safetensors file is used; the .bin beside it is ignored
    else:
        (model_dir / "model.safetensors").unlink()
        msg = load_error(model_dir, str(model_dir), "pytorch_model.bin", "never loads a pickle")
        assert "huggingface-cli download openai-community/gpt2 model.safetensors" in msg
        assert "safetensors.torch import save_file" in msg and "weights_only=True" in msg
    assert not marker.exists()


def test_safetensors_is_a_directory(model_dir):
    (model_dir / "model.safetensors").unlink()
    (model_dir / "model.safetensors").mkdir()
    load_error(model_dir, "model.safetensors", "directory")


def test_zero_byte_safetensors(model_dir):
    (model_dir / "model.safetensors").write_bytes(b"")
    load_error(model_dir, "model.safetensors", "0 bytes")


def test_truncated_data(model_dir):
    w = model_dir / "model.safetensors"
    data = w.read_bytes()
    w.write_bytes(data[: len(data) - 100])
    load_error(model_dir, "model.safetensors", "truncated")


def test_truncated_inside_header(model_dir):
    w = model_dir / "model.safetensors"
    w.write_bytes(w.read_bytes()[:50])
    load_error(model_dir, "model.safetensors", "truncated")


def test_header_not_json(model_dir):
    w = model_dir / "model.safetensors"
    head = b"this is not json at all!"
    w.write_bytes(struct.pack("<Q", len(head)) + head + b"\0" * 64)
    load_error(model_dir, "model.safetensors", "not valid JSON")


def test_header_not_an_object(model_dir):
    w = model_dir / "model.safetensors"
    head = b"[1, 2, 3]"
    w.write_bytes(struct.pack("<Q", len(head)) + head)
    load_error(model_dir, "model.safetensors", "not a JSON object")


@pytest.mark.parametrize(
    "entry",
    [
        {"dtype": "F32", "shape": [2]},
        {"dtype": "F32", "shape": 2, "data_offsets": [0, 8]},
        {"dtype": "F32", "shape": ["a"], "data_offsets": [0, 8]},
        {"dtype": "F32", "shape": [2], "data_offsets": ["0", 8]},
        {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]},
        {"dtype": "F32", "shape": [2.0], "data_offsets": [0, 8]},
        {"dtype": "F32", "shape": [2], "data_offsets": [0, 8, 9]},
        {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]},
        "not a dict",
    ],
)
def test_malformed_header_entry(model_dir, entry):
    w = model_dir / "model.safetensors"
    head = json.dumps({"wte.weight": entry}).encode()
    w.write_bytes(struct.pack("<Q", len(head)) + head + b"\0" * 8)
    load_error(model_dir, "model.safetensors", "'wte.weight'")


# ---- the tensors ------------------------------------------------------------------------


def test_missing_tensor(model_dir):
    t = tensors_of(model_dir)
    del t["h.1.mlp.c_fc.weight"]
    save(model_dir, t)
    load_error(model_dir, "model.safetensors", "'h.1.mlp.c_fc.weight'", "missing")


def test_wrong_shape(model_dir):
    t = tensors_of(model_dir)
    t["h.0.attn.c_attn.weight"] = np.ascontiguousarray(t["h.0.attn.c_attn.weight"].T)
    save(model_dir, t)
    load_error(model_dir, "model.safetensors", "'h.0.attn.c_attn.weight'", "[36, 12]", "[12, 36]")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_nan_or_infinite_weight_is_refused_naming_the_tensor_and_index(model_dir, bad):
    t = tensors_of(model_dir)
    t["h.1.ln_2.bias"][5] = bad
    save(model_dir, t)
    load_error(model_dir, "model.safetensors", "'h.1.ln_2.bias'", "NaN or infinity", "[5]")


def test_a_huge_weight_is_refused_as_a_likely_byte_order_mistake(model_dir):
    t = tensors_of(model_dir)
    t["wpe.weight"][3, 3] = 3e5
    save(model_dir, t)
    load_error(model_dir, "model.safetensors", "'wpe.weight'", "byte order")


def test_unsupported_dtype_i32(model_dir):
    t = tensors_of(model_dir)
    t["wpe.weight"] = t["wpe.weight"].astype(np.int32)
    save(model_dir, t)
    load_error(model_dir, "model.safetensors", "'wpe.weight'", "I32")


def test_big_endian_written_as_little_endian(model_dir):
    relabel(model_dir, lambda v: ("F32", v.astype(">f4").tobytes()))
    load_error(model_dir, "model.safetensors", "'wte.weight'", "byte order")


def test_n_layer_in_config_fewer_than_tensors(model_dir):
    set_config(model_dir, n_layer=1)
    load_error(model_dir, "model.safetensors", "n_layer=1", "block 1")


def test_n_layer_in_config_more_than_tensors(model_dir):
    set_config(model_dir, n_layer=3)
    load_error(model_dir, "model.safetensors", "'h.2.", "n_layer=3")


def test_vocab_size_disagrees(model_dir):
    set_config(model_dir, vocab_size=301)
    load_error(model_dir, "model.safetensors", "'wte.weight'", "[300, 12]", "[301, 12]")


def test_unexpected_tensor(model_dir):
    t = tensors_of(model_dir)
    t["score.weight"] = np.zeros((2, 12), np.float32)
    save(model_dir, t)
    load_error(model_dir, "model.safetensors", "'score.weight'")


def test_lm_head_differs_from_wte(model_dir):
    t = tensors_of(model_dir)
    t["lm_head.weight"] = t["wte.weight"] * np.float32(1.5)
    save(model_dir, t)
    load_error(model_dir, "model.safetensors", "lm_head.weight", "wte")


def test_lm_head_equal_to_wte_loads(model_dir):
    t = tensors_of(model_dir)
    t["lm_head.weight"] = t["wte.weight"].copy()
    save(model_dir, t)
    assert load_model(model_dir).flat["wte"].shape == (300, 12)


# ---- what loads --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape,prefix", [("micro", "transformer."), ("one-head", ""), ("odd", "transformer."), ("wide", "")]
)
def test_both_key_layouts_load(shape, prefix):
    d = MODELS / shape
    keys = tensors_of(d).keys()
    assert all(k.startswith("transformer.") for k in keys) == (prefix == "transformer.")
    model = load_model(d)
    assert set(model.flat) >= {"wte", "wpe", "ln_f.g", "h.0.attn.c_attn.w"}
    raw = {k.removeprefix("transformer."): v for k, v in tensors_of(d).items()}
    assert np.array_equal(model.flat["h.0.attn.c_attn.w"], raw["h.0.attn.c_attn.weight"])
    assert model.params["blocks"][model.config.n_layer - 1]["mlp"]["c_proj"]["w"].shape == (
        4 * model.config.n_embd,
        model.config.n_embd,
    )


def test_same_weights_under_either_prefix(model_dir):
    before = load_model(model_dir).flat
    save(model_dir, {"transformer." + k: v for k, v in tensors_of(model_dir).items()})
    after = load_model(model_dir).flat
    assert before.keys() == after.keys()
    assert all(np.array_equal(before[k], after[k]) for k in before)


def test_attn_bias_buffers_skipped(model_dir):
    keys = tensors_of(model_dir).keys()
    assert "h.0.attn.bias" in keys and "h.1.attn.bias" in keys
    model = load_model(model_dir)
    assert not any("attn.bias" in k for k in model.flat)
    t = tensors_of(model_dir)
    t["h.0.attn.masked_bias"] = np.array(-1e4, dtype=np.float32)
    save(model_dir, t)
    load_model(model_dir)


def _bf16(v: np.ndarray) -> tuple[str, bytes]:
    return "BF16", (v.astype("<f4").view("<u4") >> 16).astype("<u2").tobytes()


@pytest.mark.parametrize(
    "label,convert,exact",
    [
        ("F16", lambda v: ("F16", v.astype("<f2").tobytes()), lambda v: v.astype(np.float16).astype(np.float32)),
        ("BF16", _bf16, lambda v: ((v.view(np.uint32) >> 16) << 16).view(np.float32)),
        ("F64", lambda v: ("F64", v.astype("<f8").tobytes()), lambda v: v.astype(np.float64)),
    ],
)
def test_half_bfloat_and_double_checkpoints_load(model_dir, label, convert, exact):
    original = relabel(model_dir, convert)
    model = load_model(model_dir)
    raw = read_safetensors(model_dir / "model.safetensors")
    assert raw["wte.weight"].dtype == (np.float64 if label == "F64" else np.float32)
    want = exact(original["h.1.attn.c_proj.weight"])
    assert np.array_equal(model.flat["h.1.attn.c_proj.w"], want)
    assert np.max(np.abs(model.flat["wte"] - original["wte.weight"])) < 0.01 * np.max(np.abs(original["wte.weight"]))


def test_truncated_model_keeps_first_blocks():
    model = load_model(MODELS / "wide")
    small = model.truncated(1)
    assert small.config.n_layer == 1
    assert not any(k.startswith("h.1.") for k in small.flat)
    with pytest.raises(CheckpointError):
        model.truncated(4)


# ---- sizes, shapes and nesting that would cost without bound ----------------------------


def test_a_billion_layers_in_config_is_refused_before_allocating(model_dir):
    import time

    set_config(model_dir, n_layer=1_000_000_000)
    started = time.perf_counter()
    load_error(model_dir, "model.safetensors", "n_layer=1000000000", "'h.2.ln_1.weight'", "blocks 0-1")
    assert time.perf_counter() - started < 2  # param_shapes would build 12 billion entries


@pytest.mark.parametrize(
    "field, value, key",
    [
        ("n_embd", 1 << 40, "'wte.weight'"),
        ("vocab_size", 10**12, "'wte.weight'"),
        ("n_positions", 10**9, "'wpe.weight'"),
    ],
)
def test_huge_sizes_in_config_are_checked_against_the_tensors(model_dir, field, value, key):
    set_config(model_dir, **{field: value, "n_head": 1} if field == "n_embd" else {field: value})
    if field == "n_positions":
        set_config(model_dir, n_ctx=None)
    load_error(model_dir, "model.safetensors", key, "expected")


@pytest.mark.parametrize(
    "shape, offsets",
    [
        ([2**32, 2**32], [0, 0]),  # wraps to 0 bytes in int64
        ([2**32, 2**32], [0, 8]),
        ([2**70], [0, 8]),  # not an int64 at all
        ([2**62, 4], [0, 0]),  # 2**64 elements: wraps to 0 in int64
        ([1] * 9, [0, 4]),  # more dimensions than any GPT-2 tensor
    ],
)
def test_overflowing_shapes_are_refused(model_dir, shape, offsets):
    w = model_dir / "model.safetensors"
    head = json.dumps({"wte.weight": {"dtype": "F32", "shape": shape, "data_offsets": offsets}}).encode()
    w.write_bytes(struct.pack("<Q", len(head)) + head + b"\0" * 8)
    load_error(model_dir, "model.safetensors", "'wte.weight'")


def test_data_longer_than_the_tensors_is_refused(model_dir):
    w = model_dir / "model.safetensors"
    w.write_bytes(w.read_bytes() + b"\0" * 64)
    load_error(model_dir, "model.safetensors", "cover", "holds")


def _deep(n: int) -> bytes:
    return b"[" * n + b"]" * n


@pytest.mark.parametrize("depth", [100, 100_000])
def test_deeply_nested_safetensors_header_is_refused(model_dir, depth):
    w = model_dir / "model.safetensors"
    head = b'{"__metadata__": ' + _deep(depth) + b"}"
    w.write_bytes(struct.pack("<Q", len(head)) + head)
    load_error(model_dir, "model.safetensors", "nested more than 64 levels")


@pytest.mark.parametrize("depth", [100, 100_000])
def test_deeply_nested_config_is_refused(model_dir, depth):
    cfg = json.dumps(config_of(model_dir))[:-1] + ', "task_specific_params": ' + _deep(depth).decode() + "}"
    (model_dir / "config.json").write_text(cfg)
    load_error(model_dir, "config.json", "nested more than 64 levels")


def test_brackets_inside_strings_do_not_count_as_nesting(model_dir):
    cfg = config_of(model_dir)
    cfg["note"] = "[" * 5000 + '\\" {{{' + "]" * 10
    cfg["x"] = {"y": [[["ok"]]]}
    (model_dir / "config.json").write_text(json.dumps(cfg))
    assert load_model(model_dir).config.n_layer == 2


def test_an_oversized_config_is_refused(model_dir):
    cfg = config_of(model_dir)
    cfg["padding"] = "x" * 2_000_000
    (model_dir / "config.json").write_text(json.dumps(cfg))
    load_error(model_dir, "config.json", "at most 1,000,000 bytes")


@pytest.mark.parametrize("name", ["config.json", "model.safetensors", "vocab.json"])
@pytest.mark.parametrize("target", ["/dev/zero", "fifo", "dir"])
def test_special_files_in_a_model_directory_are_refused(model_dir, name, target):
    from sheetgpt.errors import SheetGPTError
    from sheetgpt.tokenizer import Tokenizer

    f = model_dir / name
    f.unlink()
    if target == "fifo":
        os.mkfifo(f)
    elif target == "dir":
        f.mkdir()
    else:
        os.symlink(target, f)
    with pytest.raises(SheetGPTError) as info:
        load_model(model_dir) if name != "vocab.json" else Tokenizer.from_dir(model_dir)
    msg = info.value.format_message()
    assert name in msg and ("a device" in msg or "FIFO" in msg or "directory" in msg), msg
