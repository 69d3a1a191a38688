"""The sparse autoencoder: SAELens's published layout, its bad inputs, the bundled SAE's card and labels,
and `sheetgpt predict --features`."""

from __future__ import annotations

import json
import re
import struct

import numpy as np
import pytest
from click.testing import CliRunner
from safetensors.numpy import save_file

from sheetgpt import corpus, reference
from sheetgpt.checkpoint import default_model_dir, load_model, read_safetensors
from sheetgpt.cli import main
from sheetgpt.config import GPT2Config
from sheetgpt.sae import default_sae_dir, load_sae
from sheetgpt.tokenizer import Tokenizer

GPT2_SMALL = GPT2Config()  # n_embd 768, n_layer 12: the shape of the published GPT-2 small SAEs
D_SAE_SMALL = 96  # the published ones have 24,576 features (151 MB); the layout is the same


def write_sae(
    path,
    d_in=768,
    d_sae=D_SAE_SMALL,
    hook="blocks.8.hook_resid_pre",
    seed=0,
    drop=(),
    cfg_extra=None,
    metadata_hook=False,
    tensors=None,
):
    """A random SAE in SAELens's layout: cfg.json + sae_weights.safetensors (written here, never committed)."""
    rng = np.random.default_rng(seed)
    path.mkdir(parents=True, exist_ok=True)
    t = tensors or {
        "W_enc": rng.normal(size=(d_in, d_sae)).astype(np.float32) / np.sqrt(d_in),
        "W_dec": rng.normal(size=(d_sae, d_in)).astype(np.float32) / np.sqrt(d_in),
        "b_enc": rng.normal(size=d_sae).astype(np.float32) * 0.1,
        "b_dec": rng.normal(size=d_in).astype(np.float32) * 0.1,
    }
    save_file({k: v for k, v in t.items() if k not in drop}, str(path / "sae_weights.safetensors"))
    cfg = {"architecture": "standard", "d_in": d_in, "d_sae": d_sae, "dtype": "float32", **(cfg_extra or {})}
    if metadata_hook:  # SAELens 6 writes the hook under "metadata"
        cfg["metadata"] = {"hook_name": hook, "model_name": "gpt2"}
    else:
        cfg["hook_name"] = hook
    (path / "cfg.json").write_text(json.dumps(cfg))
    return t


@pytest.mark.parametrize("metadata_hook", [False, True])
def test_published_layout_loads_gpt2_small_shaped(tmp_path, metadata_hook):
    t = write_sae(tmp_path / "sae", metadata_hook=metadata_hook)
    sae = load_sae(tmp_path / "sae", GPT2_SMALL)
    assert (sae.d_in, sae.d_sae, sae.block, sae.hook_name) == (768, D_SAE_SMALL, 8, "blocks.8.hook_resid_pre")
    for key in ("W_enc", "W_dec", "b_enc", "b_dec"):
        assert np.array_equal(getattr(sae, key), t[key].astype(np.float64))
    assert sae.label(3) == "feature 3"  # no labels.json


def test_encoder_and_decoder_against_the_formula(tmp_path):
    t = write_sae(tmp_path / "sae", d_in=48, d_sae=40, hook="blocks.1.hook_resid_pre")
    sae = load_sae(tmp_path / "sae", GPT2Config(n_layer=2, n_head=4, n_embd=48))
    x = np.random.default_rng(1).normal(size=(7, 48))
    W_enc, W_dec, b_enc, b_dec = (t[k].astype(np.float64) for k in ("W_enc", "W_dec", "b_enc", "b_dec"))
    f_direct = np.where((x - b_dec) @ W_enc + b_enc > 0, (x - b_dec) @ W_enc + b_enc, 0.0)
    f = sae.encode(x)
    np.testing.assert_allclose(f, f_direct, rtol=1e-12, atol=1e-12)
    assert 0 < (f > 0).mean() < 1  # the ReLU cuts some, not all
    np.testing.assert_allclose(sae.decode(f), f_direct @ W_dec + b_dec, rtol=1e-12, atol=1e-12)


def test_apply_b_dec_to_input_false_is_honoured(tmp_path):
    t = write_sae(
        tmp_path / "sae", d_in=48, d_sae=8, hook="blocks.0.hook_resid_pre", cfg_extra={"apply_b_dec_to_input": False}
    )
    sae = load_sae(tmp_path / "sae", GPT2Config(n_layer=2, n_head=4, n_embd=48))
    x = np.ones((1, 48))
    want = np.maximum(x @ t["W_enc"].astype(np.float64) + t["b_enc"], 0)
    np.testing.assert_allclose(sae.encode(x), want, rtol=1e-12, atol=1e-12)


# ---- bad input: one line, exit 2 -----------------------------------------------------------------


def _bad_cases(tmp_path):
    d = 48  # the bundled model's n_embd
    yield "width", lambda p: write_sae(p, d_in=768, hook="blocks.1.hook_resid_pre"), "'d_in' is 768"
    yield "hook", lambda p: write_sae(p, d_in=d, hook="blocks.1.hook_mlp_out"), "not a point the book shows"
    yield "block", lambda p: write_sae(p, d_in=d, hook="blocks.5.hook_resid_pre"), "n_layer=2"
    yield "nohook", lambda p: write_sae(p, d_in=d, hook=None), "no 'hook_name'"
    yield "missing", lambda p: write_sae(p, d_in=d, hook="blocks.1.hook_resid_pre", drop=("b_dec",)), "'b_dec'"
    yield (
        "shape",
        lambda p: write_sae(
            p,
            d_in=d,
            hook="blocks.1.hook_resid_pre",
            tensors={
                "W_enc": np.zeros((d, D_SAE_SMALL), np.float32),
                "W_dec": np.zeros((d, D_SAE_SMALL), np.float32),
                "b_enc": np.zeros(D_SAE_SMALL, np.float32),
                "b_dec": np.zeros(d, np.float32),
            },
        ),
        "'W_dec' has shape",
    )

    def nan(p):
        t = write_sae(p, d_in=d, hook="blocks.1.hook_resid_pre")
        t["W_enc"][3, 5] = np.nan
        save_file(t, str(p / "sae_weights.safetensors"))

    yield "nan", nan, "'W_enc' holds NaN or infinity (first at index [3, 5])"

    def header(p):
        write_sae(p, d_in=d, hook="blocks.1.hook_resid_pre")
        (p / "sae_weights.safetensors").write_bytes(struct.pack("<Q", 10**15) + b"{}")

    yield "header", header, "header length"

    def nocfg(p):
        write_sae(p, d_in=d, hook="blocks.1.hook_resid_pre")
        (p / "cfg.json").unlink()

    yield "nocfg", nocfg, "cfg.json: missing"

    def noweights(p):
        write_sae(p, d_in=d, hook="blocks.1.hook_resid_pre")
        (p / "sae_weights.safetensors").unlink()

    yield "noweights", noweights, "sae_weights.safetensors: missing"

    def labels(p):
        write_sae(p, d_in=d, hook="blocks.1.hook_resid_pre")
        (p / "labels.json").write_text(json.dumps({"labels": ["one"]}))

    yield "labels", labels, "one text per feature"
    yield (
        "topk",
        lambda p: write_sae(p, d_in=d, hook="blocks.1.hook_resid_pre", cfg_extra={"architecture": "topk"}),
        "'architecture' is 'topk'",
    )


@pytest.mark.parametrize("case", [c[0] for c in _bad_cases(None)])
def test_bad_sae_exits_2_with_one_line(tmp_path, case):
    _, make, expected = next(c for c in _bad_cases(tmp_path) if c[0] == case)
    make(tmp_path / "sae")
    result = CliRunner().invoke(
        main, ["predict", "--prompt", "Mike is quick.", "-n", "0", "--features", "--sae", str(tmp_path / "sae")]
    )
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert expected in lines[0], lines[0]


# ---- the bundled SAE: its card and labels, recomputed from the shipped weights and the corpus -------


@pytest.fixture(scope="module")
def shipped():
    """(cfg, weights, labels, card text, eval activations [N, d], (story, position) per row, ids per story)."""
    path = default_sae_dir()
    cfg = json.loads((path / "cfg.json").read_text())
    w = {k: v.astype(np.float64) for k, v in read_safetensors(path / "sae_weights.safetensors").items()}
    labels = json.loads((path / "labels.json").read_text())
    card = (path / "SAE_CARD.md").read_text()
    m = re.search(r"figures\s+below on (\d+) other stories \(seed (\d+), (\d+) tokens\)", card)
    n_stories, seed, n_tokens = map(int, m.groups())
    model = load_model(default_model_dir())
    tok = Tokenizer.from_dir(model.path)
    block = int(cfg["hook_name"].split(".")[1])
    xs, where, all_ids = [], [], []
    for k, s in enumerate(corpus.generate(n_stories, seed)):
        ids = tok.encode(s.text)
        trace = reference.gpt2(ids, model.params, model.config)
        xs.append(trace["embed.h"] if block == 0 else trace[f"h.{block - 1}.res_2"])
        where += [(k, t) for t in range(len(ids))]
        all_ids.append(ids)
    x = np.concatenate(xs)
    assert len(x) == n_tokens
    return cfg, w, labels, card, x, where, all_ids, tok


def _card_figure(card: str, what: str) -> float:
    return float(re.search(r"^- " + re.escape(what) + r"[^*\n]*\*\*([0-9.]+)\*\*", card, re.M).group(1))


def test_shipped_sae_card_figures_are_reproduced(shipped):
    cfg, w, _, card, x, *_ = shipped
    assert cfg["hook_name"] == "blocks.1.hook_resid_pre" and cfg["d_in"] == 48
    # a direct numpy formula, not sheetgpt.sae
    f = np.maximum((x - w["b_dec"]) @ w["W_enc"] + w["b_enc"], 0)
    x_hat = f @ w["W_dec"] + w["b_dec"]
    fve = 1 - ((x - x_hat) ** 2).sum() / ((x - x.mean(0)) ** 2).sum()
    l0 = (f > 0).sum(1).mean()
    dead = int((f.max(0) <= 0).sum())
    assert abs(fve - _card_figure(card, "fraction of variance explained")) < 1e-3
    assert abs(l0 - _card_figure(card, "mean L0")) < 0.01
    assert dead == int(_card_figure(card, "dead features"))
    assert fve >= 0.9 and l0 <= 12  # the card's stated bounds: explains the stream, a handful of features per token
    np.testing.assert_allclose(np.linalg.norm(w["W_dec"], axis=1), 1, atol=1e-5)  # decoder rows of unit norm


def test_shipped_labels_name_the_top_activating_tokens(shipped):
    """Most live features' labels list tokens; for each of those, its top-activating token in the corpus is listed."""
    _, w, labels, _, x, where, all_ids, tok = shipped
    f = np.maximum((x - w["b_dec"]) @ w["W_enc"] + w["b_enc"], 0)
    live = [k for k in range(f.shape[1]) if f[:, k].max() > 0]
    checked = 0
    for k in live:
        lab = labels["labels"][k]
        listed = re.findall(r"'((?:[^'\\]|\\.)*)'", lab.split(" after ")[0])
        top = int(np.argmax(f[:, k]))
        s, t = where[top]
        token = tok.display(all_ids[s][t])
        if listed and "..." not in lab.split(" after ")[0]:
            assert token in listed, (k, lab, token)
            checked += 1
    assert checked >= 0.5 * len(live), (checked, len(live))


def test_predict_features_prints_labels():
    result = CliRunner().invoke(
        main, ["predict", "--prompt", "Mike is quick. He moves", "-n", "1", "--features", "--show", "3"]
    )
    assert result.exit_code == 0, result.output
    labels = json.loads((default_sae_dir() / "labels.json").read_text())["labels"]
    out = result.output.split("features: ", 1)[1]
    rows = re.findall(r"^\s+(\d+)\s+([0-9.]+)\s+(.*)$", out, re.M)
    assert rows and all(labels[int(k)] == lab or lab == f"feature {k}" for k, _, lab in rows)
    assert "' He'" in out  # the pronoun's row is there


def test_predict_features_json_is_the_encoder_on_the_reference_stream():
    prompt = "Sally is calm. She reads"
    result = CliRunner().invoke(main, ["predict", "--prompt", prompt, "-n", "2", "--features", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    model = load_model(default_model_dir())
    ids = out["prompt_ids"] + out["continuation_ids"]
    trace = reference.gpt2(ids, model.params, model.config)
    x = trace["h.0.res_2"]  # the input of block 1
    w = {k: v.astype(np.float64) for k, v in read_safetensors(default_sae_dir() / "sae_weights.safetensors").items()}
    f = np.maximum((x - w["b_dec"]) @ w["W_enc"] + w["b_enc"], 0)
    assert len(out["features"]) == len(ids)
    for t, row in enumerate(out["features"]):
        want = np.argsort(-f[t], kind="stable")[: len(row["top"])]
        assert [e["feature"] for e in row["top"]] == want.tolist()
        np.testing.assert_allclose([e["activation"] for e in row["top"]], f[t, want], rtol=1e-9, atol=1e-12)
        x_hat = f[t] @ w["W_dec"] + w["b_dec"]
        assert abs(row["error"] - np.linalg.norm(x[t] - x_hat) / np.linalg.norm(x[t])) < 1e-9
