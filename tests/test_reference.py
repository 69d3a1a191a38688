"""The float64 reference equals Hugging Face GPT-2 (float64, eager) on the fixture models.

Goldens come from scripts/make_goldens.py (see tests/fixtures/goldens/README.md); these
tests need only numpy. Tolerance: 1e-10 relative to the largest magnitude of each array.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sheetgpt import reference
from sheetgpt.checkpoint import load_model

FIXTURES = Path(__file__).parent / "fixtures"
SHAPES = ["micro", "one-head", "odd", "wide"]
RTOL = 1e-10


def rel_err(got: np.ndarray, want: np.ndarray) -> float:
    """max |got - want| / max |want| (masked attention weights are 0 in both)."""
    got = np.asarray(got, dtype=np.float64)
    assert got.shape == want.shape
    return float(np.max(np.abs(got - want)) / max(np.max(np.abs(want)), 1e-300))


def golden_cases():
    for shape in SHAPES:
        golden = np.load(FIXTURES / "goldens" / f"{shape}.npz")
        n_seq = len([k for k in golden.files if k.endswith(".ids")])
        for k in range(n_seq):
            yield pytest.param(shape, k, id=f"{shape}-seq{k}")


@pytest.fixture(scope="module")
def models():
    return {s: load_model(FIXTURES / "models" / s) for s in SHAPES}


@pytest.fixture(scope="module")
def goldens():
    return {s: np.load(FIXTURES / "goldens" / f"{s}.npz") for s in SHAPES}


def test_goldens_are_float64_from_eager_hf(goldens):
    for shape, g in goldens.items():
        meta = json.loads(str(g["meta"]))
        assert meta["dtype"] == "float64" and meta["attn_implementation"] == "eager"
        assert meta["shape"] == shape
        assert g["seq0.logits"].dtype == np.float64
        lengths = [len(g[f"seq{k}.ids"]) for k in range(int(g["prompt.seq"]) + 1)]
        assert 1 in lengths and meta["config"]["n_positions"] in lengths


def test_fixture_models_cover_both_key_layouts(goldens):
    prefixes = {json.loads(str(g["meta"]))["prefix"] for g in goldens.values()}
    assert prefixes == {"", "transformer."}


@pytest.mark.parametrize("shape,k", list(golden_cases()))
def test_reference_equals_hf(shape, k, models, goldens):
    model, g = models[shape], goldens[shape]
    ids = g[f"seq{k}.ids"]
    trace = reference.gpt2(ids, model.params, model.config)
    T, H = len(ids), model.config.n_head
    names = ["logits", "ln_f.out"]
    for i in range(model.config.n_layer):
        names += [f"h.{i}.attn.c_proj", f"h.{i}.mlp.c_proj", f"h.{i}.res_2", f"h.{i}.attn.weights"]
    errors = {}
    for name in names:
        want = g[f"seq{k}.{name}"]
        got = trace[name]
        if name.endswith("attn.weights"):
            assert got.shape == (H, T, T)
            assert not np.isnan(got).any()
        errors[name] = rel_err(got, want)
    worst = max(errors, key=errors.get)
    assert errors[worst] <= RTOL, f"{shape} seq{k}: {worst} differs from HF by {errors[worst]:.3g} (relative)"


def test_argmax_matches_hf(models, goldens):
    for shape in SHAPES:
        model, g = models[shape], goldens[shape]
        k = int(g["prompt.seq"])
        trace = reference.gpt2(g[f"seq{k}.ids"], model.params, model.config)
        assert np.array_equal(trace["logits"].argmax(-1), g[f"seq{k}.logits"].argmax(-1))


# ---- the math pieces --------------------------------------------------------------------


def test_gelu_is_the_tanh_form():
    x = np.linspace(-8, 8, 1601)
    direct = np.array([0.5 * v * (1 + np.tanh(np.sqrt(2 / np.pi) * (v + 0.044715 * v**3))) for v in x])
    assert np.max(np.abs(reference.gelu(x) - direct)) <= 1e-15
    assert reference.gelu(np.array(0.0)) == 0.0
    # close to the exact erf GELU, but not equal to it (GPT-2 uses the tanh approximation)
    from math import erf, sqrt

    exact = np.array([0.5 * v * (1 + erf(v / sqrt(2))) for v in x])
    diff = np.max(np.abs(reference.gelu(x) - exact))
    assert 1e-6 < diff < 1e-3


def test_layer_norm_gives_mean_0_var_1():
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 5.0, size=(7, 30))
    d = x.shape[1]
    trace = {}
    out = reference.layer_norm(x, np.ones(d), np.zeros(d), 1e-5, trace, "ln")
    assert np.allclose(out.mean(-1), 0, atol=1e-12)
    assert np.allclose(out.var(-1), 1, atol=1e-5)  # eps keeps it just below 1
    assert np.allclose(trace["ln.mean"][:, 0], x.mean(-1))
    g, b = rng.normal(size=d), rng.normal(size=d)
    out2 = reference.layer_norm(x, g, b, 1e-5, {}, "ln")
    assert np.allclose(out2, out * g + b, atol=1e-12)


def test_softmax_rows_sum_to_1_and_masked_entries_are_0():
    rng = np.random.default_rng(1)
    x = rng.normal(0, 20, size=(3, 6, 6))
    x = np.where(np.triu(np.ones((6, 6), bool), 1), np.nan, x)
    e, w = reference.softmax_steps(x)
    assert np.allclose(w.sum(-1), 1, atol=1e-15)
    assert (w[:, np.triu(np.ones((6, 6), bool), 1)] == 0).all()
    assert (w >= 0).all()
    big = reference.softmax_steps(np.array([1000.0, 1000.0, -1000.0]))[1]
    assert np.allclose(big, [0.5, 0.5, 0.0])


def test_causal_a_later_token_does_not_change_earlier_logits(models):
    model = models["odd"]
    rng = np.random.default_rng(2)
    ids = rng.integers(0, model.config.vocab_size, size=12)
    changed = ids.copy()
    changed[8] = (ids[8] + 1) % model.config.vocab_size
    a = reference.gpt2(ids, model.params, model.config)["logits"]
    b = reference.gpt2(changed, model.params, model.config)["logits"]
    assert np.array_equal(a[:8], b[:8])
    assert not np.allclose(a[8:], b[8:])


def test_next_token_probs_sum_to_1(models):
    model = models["micro"]
    trace = reference.gpt2([1, 2, 3], model.params, model.config)
    assert abs(trace["predict.probs"].sum() - 1) < 1e-12
    assert trace["predict.probs"].argmax() == trace["logits"][-1].argmax()


def test_next_logits_are_the_last_row_of_the_full_logits_bit_for_bit():
    model = load_model(FIXTURES / "models" / "odd")
    ids = [5, 1, 3, 0, 7]
    full = reference.gpt2(ids, model.params, model.config)["logits"][-1]
    assert np.array_equal(reference.next_logits(ids, model.params, model.config), full)
