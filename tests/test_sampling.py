"""sheetgpt.sampling: the generator, the choice rule, and `sheetgpt predict --sample` (issue 25)."""

from __future__ import annotations

import numpy as np
import pytest

from sheetgpt import sampling
from sheetgpt.errors import SheetGPTError
from sheetgpt.sampling import CAP, MODULUS, Settings


def test_the_generator_is_the_published_minimal_standard():
    # The C++ standard's minstd_rand (multiplier 48271, modulus 2^31 - 1): "the 10000th consecutive
    # invocation of a default-constructed object [seed 1] shall produce the value 399268537" (also
    # libc++'s test: e.discard(9999); assert(e() == 399268537), and Park and Miller's CHECK in rngs.c).
    x = 1
    for _ in range(10_000):
        x = sampling.advance(x)
    assert x == 399268537


def test_states_start_from_the_seed_and_advance_once_per_row():
    xs = sampling.states(41, 5)
    assert xs[0] == 42 * 1327217884 % MODULUS
    assert all(b == 48271 * a % MODULUS for a, b in zip(xs, xs[1:]))
    assert all(0 < sampling.uniform(x) < 1 for x in xs)
    assert (sampling.MAX_SEED + 1) * sampling.SEED_MULTIPLIER < 2**53  # exact in every engine
    assert MODULUS * sampling.MULTIPLIER < 2**53


def test_consecutive_seeds_spread_their_first_draw():
    u = np.array([sampling.uniform(sampling.first_state(s)) for s in range(2000)])
    counts = np.histogram(u, bins=20, range=(0, 1))[0]
    assert counts.min() >= 90 and counts.max() <= 110  # 100 expected per bin


def _s(**kw) -> Settings:
    return Settings(**{"mode": "sample", **kw})


def test_top_k_1_and_temperature_0_are_greedy():
    rng = np.random.default_rng(3)
    for _ in range(200):
        logits = rng.normal(size=300)
        logits[rng.integers(300)] = logits.max()  # a tie at the top: greedy takes the lower id
        want = int(np.argmax(logits))
        for u in (1e-9, 0.5, 1 - 1e-9):
            assert sampling.next_token(logits, _s(top_k=1), u) == want
            assert sampling.next_token(logits, _s(temperature=0), u) == want
            assert sampling.next_token(logits, Settings(), u) == want  # mode greedy


def test_a_hand_worked_row():
    # logits 0, ln 2, ln 3 (ids 0, 1, 2) at T = 1: weights 1/3, 2/3, 1 -> sorted by logit: ids 2, 1, 0
    # with weights 1, 2/3, 1/3 (relative to the largest), cumulative 1, 5/3, 2; probabilities 1/2, 1/3, 1/6.
    logits = np.log([1.0, 2.0, 3.0])
    c = sampling.sample(logits, _s(), 0.4)
    assert c.ids.tolist() == [2, 1, 0]
    assert np.allclose(c.cumulative, [1, 5 / 3, 2])
    assert (c.kept, c.pick, c.token) == (3, 1, 2)  # 1 > 0.4 * 2
    assert sampling.sample(logits, _s(), 0.6).token == 1  # 5/3 > 1.2
    assert sampling.sample(logits, _s(), 0.9).token == 0  # 2 > 1.8
    # top-p 0.5: the first prefix whose probability reaches 0.5 is {2} (exactly 1/2): always id 2
    assert sampling.sample(logits, _s(top_p=0.5), 0.99).token == 2
    # top-p 0.6: {2, 1}, renormalized 3/5, 2/5
    c = sampling.sample(logits, _s(top_p=0.6), 0.7)
    assert (c.kept, c.token) == (2, 1)
    assert sampling.sample(logits, _s(top_p=0.6), 0.59).token == 2
    # top-k 2: id 0 never
    assert {sampling.sample(logits, _s(top_k=2), u).token for u in np.linspace(0.01, 0.99, 50)} == {1, 2}


def test_ties_go_to_the_lower_id_first():
    logits = np.array([0.0, 5.0, 1.0, 5.0, 5.0])
    values, ids = sampling.candidates(logits)
    assert ids.tolist() == [1, 3, 4, 2, 0]
    c = sampling.sample(logits, _s(top_k=2), 0.75)  # 1 and 3 kept, equal weights: u 0.75 -> the second
    assert c.token == 3


def test_candidates_are_capped():
    logits = np.arange(1000.0) / 100
    values, ids = sampling.candidates(logits)
    assert len(ids) == CAP and ids[0] == 999 and ids[-1] == 1000 - CAP
    assert sampling.sample(logits, _s(temperature=1e6), 1 - 1e-9).token == 1000 - CAP  # never past the cap


@pytest.mark.parametrize(
    "kw, why",
    [
        ({"mode": "often"}, "mode"),
        ({"mode": 1}, "mode"),
        ({"temperature": "hot"}, "temperature"),
        ({"temperature": -1}, "temperature"),
        ({"temperature": 1e-4}, "temperature"),
        ({"top_k": 1.5}, "top_k"),
        ({"top_k": -1}, "top_k"),
        ({"top_k": "ten"}, "top_k"),
        ({"top_p": 0}, "top_p"),
        ({"top_p": 1.01}, "top_p"),
        ({"seed": 2.5}, "seed"),
        ({"seed": sampling.MAX_SEED + 1}, "seed"),
        ({"seed": None}, "seed"),
    ],
)
def test_bad_settings_fall_back_to_greedy(kw, why):
    s = _s(**kw)
    assert s.problem() == why and not s.sampling


def test_empty_top_k_and_top_p_are_off():
    s = _s(top_k=None, top_p=None)
    assert s.problem() is None and s.k == CAP and s.p == 1.0


@pytest.mark.parametrize(
    "args",
    [
        (True, "-1", None, None, None),
        (True, "x", None, None, None),
        (True, None, "2.5", None, None),
        (True, None, None, "0", None),
        (True, None, None, "1.5", None),
        (True, None, None, None, "1.5"),
        (True, None, None, None, "-3"),
        (True, None, None, None, "nan"),
        (False, "0.7", None, None, None),
    ],
)
def test_from_cli_refuses_what_the_book_would_not_take(args):
    with pytest.raises(SheetGPTError):
        sampling.from_cli(*args)


def test_from_cli_defaults():
    assert sampling.from_cli(False, None, None, None, None) == Settings()
    assert sampling.from_cli(True, None, None, None, None) == Settings("sample", 1.0, 0, 1.0, 0)
    assert sampling.from_cli(True, "0.7", "5", "0.9", "12") == Settings("sample", 0.7, 5, 0.9, 12)


# ---- `sheetgpt predict --sample` on the bundled model -------------------------------------------

PROMPT = "Mike is quick. He moves"


def _predict(*args: str) -> dict:
    import json

    from click.testing import CliRunner

    from sheetgpt.cli import main

    result = CliRunner().invoke(main, ["predict", "--prompt", PROMPT, "--json", "--no-stop", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_predict_top_k_1_and_temperature_0_equal_greedy():
    greedy = _predict("-n", "8")["continuation_ids"]
    for seed in ("0", "7", "123456"):
        assert _predict("-n", "8", "--sample", "--top-k", "1", "--seed", seed)["continuation_ids"] == greedy
        assert _predict("-n", "8", "--sample", "--temperature", "0", "--seed", seed)["continuation_ids"] == greedy


def test_predict_samples_with_the_sheets_generator():
    from sheetgpt import reference
    from sheetgpt.checkpoint import default_model_dir, load_model

    out = _predict("-n", "3", "--sample", "--seed", "5", "--temperature", "1.5", "--top-p", "0.95")
    model = load_model(default_model_dir())
    s = Settings("sample", 1.5, 0, 0.95, 5)
    seq, xs = list(out["prompt_ids"]), sampling.states(5, 3)
    for n in range(3):  # draw n + 1 for the (n + 1)-th new token, whatever the seed spread
        logits = reference.gpt2(seq, model.params, model.config)["logits"][-1]
        seq.append(sampling.sample(logits, s, xs[n] / MODULUS).token)
    assert out["continuation_ids"] == seq[len(out["prompt_ids"]) :]


@pytest.mark.parametrize("prompt", [PROMPT, "Sally is"])
def test_first_sampled_token_frequencies_match_the_model(prompt):
    """Over 2,000 seeds at temperature 1, the first sampled token's frequencies are within total
    variation 0.03 of the model's softmax (for 2,000 independent draws the expected distance is about
    0.5 x sum sqrt(p (1 - p) / 2000) <= 0.5 x sqrt(K / 2000), 0.02 for K = 3 likely tokens), plus the
    probability beyond the 64 candidates, which is never sampled."""
    from sheetgpt import reference
    from sheetgpt.checkpoint import default_model_dir, load_model
    from sheetgpt.cli_predict import continue_ids
    from sheetgpt.tokenizer import Tokenizer

    d = default_model_dir()
    model, tok = load_model(d), Tokenizer.from_dir(d)
    ids = tok.encode(prompt)
    logits = reference.gpt2(ids, model.params, model.config)["logits"][-1]
    e = np.exp(logits - logits.max())
    p = e / e.sum()  # the model's probabilities (numpy, not the module under test)
    beyond = np.sort(p)[::-1][CAP:].sum()
    N = 2000
    counts = np.zeros(len(p))
    for seed in range(N):
        new, _ = continue_ids(ids, model, logits, 1, Settings("sample", 1.0, 0, 1.0, seed))
        counts[new[0]] += 1
    tv = 0.5 * np.abs(counts / N - p).sum()
    assert tv <= 0.03 + beyond, (tv, beyond)
    assert (counts > 0).sum() >= 2  # the draws are not all greedy
