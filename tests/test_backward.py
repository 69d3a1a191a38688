"""The reference backward (sheetgpt/backward.py) against central finite differences, torch's
float64 autograd (goldens from scripts/make_backward_goldens.py), and the issue's measured facts.

Tolerances, each relative to the largest magnitude of the tensor compared (many true values are 0):
finite differences at h = 1e-4 to 1e-6; torch autograd to 1e-12. No torch here: the goldens are .npz.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sheetgpt import backward as B
from sheetgpt import reference
from sheetgpt.checkpoint import load_model, nest
from sheetgpt.random_model import SHAPES, random_params

FIXTURES = Path(__file__).parent / "fixtures"
H, FD_RTOL, TORCH_RTOL = 1e-4, 1e-6, 1e-12


def rel_err(got, want) -> float:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape
    return float(np.max(np.abs(got - want)) / max(np.max(np.abs(want)), 1e-300))


# ---- finite differences on a random micro model --------------------------------------------------


@pytest.fixture(scope="module")
def micro():
    config = SHAPES["micro"]
    flat = {k: v.astype(np.float64) for k, v in random_params(config, seed=7).items()}
    ids = np.array([5, 17, 200, 5, 31, 99, 140])  # token 5 twice: its wte row collects both
    return config, flat, ids


def objective_at(ids, flat, config, objective, t):
    return B.objective_value(reference.gpt2(ids, nest(flat, config.n_layer), config)["logits"][t], objective)


def central_difference(ids, flat, config, objective, t, name, idx):
    plus, minus = dict(flat), dict(flat)
    plus[name], minus[name] = flat[name].copy(), flat[name].copy()
    plus[name][idx] += H
    minus[name][idx] -= H
    return (objective_at(ids, plus, config, objective, t) - objective_at(ids, minus, config, objective, t)) / (2 * H)


def sample_entries(shape, rng, n=24):
    size = int(np.prod(shape))
    flat_idx = np.arange(size) if size <= n else rng.choice(size, n, replace=False)
    return [np.unravel_index(i, shape) for i in flat_idx]


def objectives(config, flat, ids, t):
    logits = reference.gpt2(ids, nest(flat, config.n_layer), config)["logits"][t]
    ranked = np.argsort(-logits)
    return [B.Prob(int(ranked[0])), B.NLL(int(ranked[3]))]


@pytest.mark.parametrize("t", [-1, 3])
@pytest.mark.parametrize("which", ["prob", "nll"])
def test_parameter_gradients_equal_finite_differences(micro, t, which):
    config, flat, ids = micro
    objective = objectives(config, flat, ids, t)[which == "nll"]
    g = B.backward(ids, flat, config, objective, t)
    assert list(g.params) == list(flat)  # every parameter, in the checkpoint's order
    rng = np.random.default_rng(0)
    for name, w in flat.items():
        grad = g.params[name]
        assert grad.shape == w.shape
        scale = np.max(np.abs(grad))
        entries = sample_entries(w.shape, rng)
        if name == "wte":  # the rows that matter: the prompt's tokens (embedding) and the objective's token
            entries += [(int(ids[0]), j) for j in range(w.shape[1])] + [(objective.target, 0)]
        for idx in entries:
            fd = central_difference(ids, flat, config, objective, t, name, idx)
            assert abs(fd - grad[idx]) <= FD_RTOL * scale, f"{which} t={t} d{name}{idx}: {grad[idx]} vs fd {fd}"


@pytest.mark.parametrize("which", ["prob", "nll"])
def test_embed_h_gradient_equals_finite_differences(micro, which):
    """embed.h = wte[ids] + wpe[:T]: moving wpe[r, j] moves embed.h[r, j] alone, so its difference
    quotient is d embed.h[r, j]."""
    config, flat, ids = micro
    t = -1
    objective = objectives(config, flat, ids, t)[which == "nll"]
    g = B.backward(ids, flat, config, objective, t)
    dh = g.acts["dembed.h"]
    assert dh.shape == (len(ids), config.n_embd)
    fd = np.zeros_like(dh)
    for r in range(len(ids)):
        for j in range(config.n_embd):
            fd[r, j] = central_difference(ids, flat, config, objective, t, "wpe", (r, j))
    assert rel_err(dh, fd) <= FD_RTOL
    assert np.array_equal(g.params["wpe"][: len(ids)], dh) and not g.params["wpe"][len(ids) :].any()


def test_rows_after_the_predicting_row_get_no_gradient(micro):
    config, flat, ids = micro
    g = B.backward(ids, flat, config, B.Prob(3), t=2)
    for name in ("dlogits", "dln_f.out", "dh.0.mlp.c_fc", "dh.0.attn.c_attn", "dembed.h"):
        assert not g.acts[name][3:].any(), name
        assert g.acts[name][:3].any(), name


def test_objective_values(micro):
    config, flat, ids = micro
    logits = reference.gpt2(ids, nest(flat, config.n_layer), config)["logits"][-1]
    p = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    assert abs(B.objective_value(logits, B.Prob(10)) - p[10]) <= 1e-15
    assert abs(B.objective_value(logits, B.NLL(10)) + np.log(p[10])) <= 1e-12


def test_sgd_step_moves_every_tensor_against_its_gradient(micro):
    config, flat, ids = micro
    g = B.backward(ids, flat, config, B.NLL(4))
    new = B.sgd_step(flat, g.params, 0.01)
    assert list(new) == list(flat)
    for name in flat:
        assert np.array_equal(new[name], flat[name] - 0.01 * g.params[name])


# ---- torch float64 autograd goldens ------------------------------------------------------------


def golden_cases():
    golden = np.load(FIXTURES / "goldens" / "backward.npz")
    for case in json.loads(str(golden["meta"]))["cases"]:
        yield pytest.param(case, id=case["name"])


@pytest.fixture(scope="module")
def backward_golden():
    return np.load(FIXTURES / "goldens" / "backward.npz")


def test_backward_goldens_are_float64_autograd(backward_golden):
    meta = json.loads(str(backward_golden["meta"]))
    assert meta["dtype"] == "float64" and meta["attn_implementation"] == "eager"
    assert {c["objective"] for c in meta["cases"]} == {"prob", "nll"}
    assert any(c["t"] != -1 for c in meta["cases"])


@pytest.mark.parametrize("case", list(golden_cases()))
def test_backward_equals_torch_autograd(case, backward_golden):
    g = backward_golden
    model = load_model(FIXTURES / "models" / case["shape"])
    key = case["name"]
    ids = g[f"{key}.ids"]
    objective = (B.Prob if case["objective"] == "prob" else B.NLL)(case["target"])
    got = B.backward(ids, model.flat, model.config, objective, case["t"])
    assert abs(got.value - float(g[f"{key}.value"])) <= 1e-12 * abs(float(g[f"{key}.value"]))
    names = [n.removeprefix(f"{key}.") for n in g.files if n.startswith(f"{key}.") and n.split(".", 1)[1][0] == "d"]
    params = [n.removeprefix(f"{key}.param.") for n in g.files if n.startswith(f"{key}.param.")]
    assert set(params) == set(model.flat)
    assert {"dlogits", "dln_f.out", "dembed.h", "dh.0.attn.weights", "dh.0.mlp.gelu"} <= set(names)
    errors = {f"d{p}": rel_err(got.params[p], g[f"{key}.param.{p}"]) for p in params}
    errors |= {n: rel_err(got.acts[n], g[f"{key}.{n}"]) for n in names}
    worst = max(errors, key=errors.get)
    assert errors[worst] <= TORCH_RTOL, f"{key}: {worst} differs from torch by {errors[worst]:.3g} (relative)"


# ---- the measurements on the bundled model ---------------------------------------------


@pytest.fixture(scope="module")
def tiny():
    from sheetgpt.tokenizer import Tokenizer

    model = load_model(None)
    tok = Tokenizer.from_dir(model.path)
    return model, tok, tok.encode("Mike is quick. He moves")


def test_ecco_saliency_on_the_bundled_model(tiny):
    model, tok, ids = tiny
    s = B.saliency(ids, model.flat, model.config)
    assert tok.display(int(s["predicted"])) == " quickly"
    assert abs(float(s["prob"]) - 0.593) < 1e-3
    assert np.allclose(s["score"], [0.187, 0.086, 0.322, 0.043, 0.239, 0.123], atol=1e-3)
    assert abs(s["score"].sum() - 1) < 1e-15


@pytest.mark.parametrize(
    "target,lr,before,after",
    [
        (" quickly", 0.001, 0.593, 0.617),
        (" quickly", 0.005, 0.593, 0.705),
        (" quickly", 0.01, 0.593, 0.796),
        (" quickly", 0.05, 0.593, 0.995),
        (" swiftly", 0.005, 0.267, 0.487),
    ],
)
def test_one_sgd_step_on_the_bundled_model(tiny, target, lr, before, after):
    model, tok, ids = tiny
    (target_id,) = tok.encode(target)
    (step,) = B.train_step(ids, model.flat, model.config, target_id, [lr])
    assert abs(step.p_before - before) < 1e-3 and abs(step.p_after - after) < 1e-3
    assert int(np.argmax(step.probs_after)) == target_id  # ' swiftly' becomes the argmax too
    norms = step.grad_norms
    assert max(norms, key=norms.get) == "wte"


@pytest.mark.parametrize("t", [-1, 2])
def test_backward_without_weights_gives_the_same_stage_gradients_bit_for_bit(micro, t):
    # the Saliency tab's path (weights=False) skips each linear's d W: the stages' gradients it caches
    # must not change by a bit, and it must not pretend to have weight gradients
    config, flat, ids = micro
    full = B.backward(ids, flat, config, B.Prob(7), t)
    lean = B.backward(ids, flat, config, B.Prob(7), t, weights=False)
    assert lean.params == {} and lean.value == full.value
    assert lean.acts.keys() == full.acts.keys()
    for name, value in full.acts.items():
        assert np.array_equal(lean.acts[name], value), name
