"""`sheetgpt predict` against the Hugging Face goldens, and its errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from sheetgpt import reference
from sheetgpt.checkpoint import load_model
from sheetgpt.cli import main
from sheetgpt.cli_predict import predict_cmd

FIXTURES = Path(__file__).parent / "fixtures"
SHAPES = ["micro", "one-head", "odd", "wide"]


def predict(*args: str):
    return CliRunner().invoke(main, ["predict", *args])


def predict_json(*args: str) -> dict:
    result = predict(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def one_line_error(result) -> str:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("Error: ")
    assert result.exception is None or isinstance(result.exception, SystemExit)
    return lines[0]


def test_predict_is_a_subcommand_of_the_cli():
    assert main.commands["predict"] is predict_cmd


@pytest.mark.parametrize("shape", SHAPES)
def test_json_matches_hf_golden(shape):
    golden = np.load(FIXTURES / "goldens" / f"{shape}.npz")
    k = int(golden["prompt.seq"])
    text, ids = str(golden["prompt.text"]), golden[f"seq{k}.ids"].tolist()
    want = golden[f"seq{k}.logits"][-1]
    out = predict_json("--model", str(FIXTURES / "models" / shape), "--prompt", text, "-n", "3")
    assert out["prompt_ids"] == ids  # our tokenizer agrees with HF's on the prompt
    got = np.array(out["logits"])
    assert got.shape == want.shape
    assert np.max(np.abs(got - want)) <= 1e-10 * np.max(np.abs(want))
    assert out["top"][0]["id"] == int(np.argmax(want))
    if len(ids) < load_model(FIXTURES / "models" / shape).config.n_positions:
        assert out["continuation_ids"][0] == int(np.argmax(want))  # greedy by default
    else:  # the prompt fills the context: nothing is added
        assert out["continuation_ids"] == []
    probs = [t["prob"] for t in out["top"]]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-12
    assert len(out["tokens"]) == len(ids)


def test_greedy_continuation_is_argmax_of_the_reference():
    d = FIXTURES / "models" / "odd"
    out = predict_json("--model", str(d), "--prompt", "the cat", "-n", "4")
    model = load_model(d)
    seq = list(out["prompt_ids"])
    for _ in range(4):
        seq.append(int(np.argmax(reference.gpt2(seq, model.params, model.config)["logits"][-1])))
    assert out["continuation_ids"] == seq[len(out["prompt_ids"]) :]


def test_sampling_is_reproducible_with_seed():
    d = str(FIXTURES / "models" / "wide")
    args = ["--model", d, "--prompt", "the cat sat", "-n", "12", "--sample", "--temperature", "1.5", "--top-k", "20"]
    a = predict_json(*args, "--seed", "7")
    b = predict_json(*args, "--seed", "7")
    others = [predict_json(*args, "--seed", str(s))["continuation_ids"] for s in (8, 9, 10)]
    assert a["continuation_ids"] == b["continuation_ids"]
    assert len(a["continuation_ids"]) == 12
    assert any(o != a["continuation_ids"] for o in others)


def test_sampling_stays_in_top_k_and_show_is_apart():
    d = str(FIXTURES / "models" / "micro")
    for seed in range(5):
        out = predict_json(
            "--model", d, "--prompt", "a", "-n", "1", "--sample", "--temperature", "5", "--top-k", "2",
            "--seed", str(seed), "--show", "7",
        )  # fmt: skip
        assert out["continuation_ids"][0] in [t["id"] for t in out["top"][:2]]
        assert len(out["top"]) == 7


def test_stops_at_n_positions():
    d = str(FIXTURES / "models" / "micro")  # n_positions = 16
    out = predict_json("--model", d, "--prompt", "the cat sat", "-n", "50")
    assert len(out["prompt_ids"]) + len(out["continuation_ids"]) == 16
    text = predict("--model", d, "--prompt", "the cat sat", "-n", "50")
    assert "stopped at n_positions" in text.output


def test_text_output_ends_with_summary():
    result = predict("--model", str(FIXTURES / "models" / "one-head"), "--prompt", "the cat", "-n", "2")
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert "next token (top 5" in result.output
    assert "2 new tokens" in lines[-1] and lines[-1].endswith(" s")


def test_error_empty_prompt():
    line = one_line_error(predict("--model", str(FIXTURES / "models" / "micro"), "--prompt", ""))
    assert "empty" in line


def test_error_prompt_too_long():
    line = one_line_error(predict("--model", str(FIXTURES / "models" / "micro"), "--prompt", "x y " * 20))
    assert "n_positions=16" in line


@pytest.mark.parametrize("kind", ["missing", "file", "no-weights"])
def test_error_bad_model_dir(tmp_path, kind):
    d = tmp_path / "m"
    if kind == "file":
        d.write_text("x")
    elif kind == "no-weights":
        shutil.copytree(FIXTURES / "models" / "micro", d)
        (d / "model.safetensors").unlink()
    line = one_line_error(predict("--model", str(d), "--prompt", "hi"))
    assert str(d) in line


def test_error_missing_bundled_model(monkeypatch, tmp_path):
    monkeypatch.setattr("sheetgpt.cli_predict.default_model_dir", lambda: tmp_path / "tiny")
    line = one_line_error(predict("--prompt", "hi"))
    assert "bundled" in line and str(tmp_path / "tiny") in line


@pytest.mark.parametrize("args", [["-n", "-1"], ["--show", "0"]])
def test_error_bad_options(args):
    result = predict("--model", str(FIXTURES / "models" / "micro"), "--prompt", "hi", *args)
    assert result.exit_code == 2


# ---- <|endoftext|> ends the continuation ------------------------------------------------


@pytest.fixture(scope="module")
def eot_model(tmp_path_factory):
    """A micro model whose every next token is <|endoftext|>: ln_f gives a constant e_0 (g = 0,
    b = e_0), so the logits are wte[:, 0], and <|endoftext|>'s wte[:, 0] is 10 (the others ~N(0, 0.5))."""
    from sheetgpt.random_model import SHAPES, random_params, write_checkpoint, write_tokenizer

    config = SHAPES["micro"]
    params = random_params(config, seed=5)
    params["ln_f.g"][:] = 0
    params["ln_f.b"][:] = 0
    params["ln_f.b"][0] = 1
    params["wte"][config.vocab_size - 1, 0] = 10
    d = write_checkpoint(tmp_path_factory.mktemp("eot") / "m", config, params)
    write_tokenizer(d, config.vocab_size)
    model = load_model(d)  # the premise, from the reference itself: greedy picks <|endoftext|>
    ids = [70, 71]
    assert int(np.argmax(reference.gpt2(ids, model.params, model.config)["logits"][-1])) == config.vocab_size - 1
    return d


def test_predict_stops_at_endoftext_and_says_so(eot_model):
    out = predict_json("--model", str(eot_model), "--prompt", "ab", "-n", "5")
    assert out["continuation_ids"] == [] and out["stopped_by"] == "endoftext"
    assert out["top"][0]["text"] == "<|endoftext|>"
    text = predict("--model", str(eot_model), "--prompt", "ab", "-n", "5")
    assert text.exit_code == 0, text.output
    assert "(stopped at <|endoftext|>)" in text.output
    assert "<|endoftext|>" not in text.output.split("continuation", 1)[1].splitlines()[0].split(":", 1)[1]


def test_no_stop_keeps_going_past_endoftext(eot_model):
    out = predict_json("--model", str(eot_model), "--prompt", "ab", "-n", "5", "--no-stop")
    assert out["continuation_ids"] == [262] * 5 and out["stopped_by"] == "n"
    assert out["continuation_text"] == "<|endoftext|>" * 5


def test_stopped_by_reports_n_positions_and_n():
    d = str(FIXTURES / "models" / "micro")
    assert predict_json("--model", d, "--prompt", "the cat sat", "-n", "50", "--no-stop")["stopped_by"] == "n_positions"
    assert predict_json("--model", d, "--prompt", "the cat", "-n", "1", "--no-stop")["stopped_by"] == "n"


@pytest.mark.parametrize(
    "args",
    [
        ["--temperature", "nan"],
        ["--temperature", "inf"],
        ["--temperature", "-inf"],
        ["--temperature", "1e-320"],  # a denormal: logits / T overflows
        ["--temperature", "1e-4"],
        ["--temperature", "1e7"],
        ["--temperature", "x"],
        ["--temperature", "-0.5"],
        ["--seed", "-1"],
        ["--seed", "1.5"],
        ["--seed", "ten"],
        ["--top-k", "2.5"],
        ["--top-k", "-1"],
        ["--top-k", "many"],
        ["--top-p", "0"],
        ["--top-p", "1.5"],
        ["--top-p", "x"],
    ],
)
def test_bad_sampling_values_are_one_line_before_loading(args, monkeypatch):
    monkeypatch.setattr("sheetgpt.cli_predict._load", lambda *a: pytest.fail("the model was loaded"))
    line = one_line_error(predict("--model", str(FIXTURES / "models" / "micro"), "--prompt", "hi", "--sample", *args))
    assert f"Invalid value for '{args[0]}'" in line


def test_sampling_options_without_sample_are_refused():
    line = one_line_error(predict("--model", str(FIXTURES / "models" / "micro"), "--prompt", "hi", "--top-p", "0.9"))
    assert "--sample" in line


@pytest.mark.parametrize("t", ["0", "0.0", "0.001", "1", "1e6"])
def test_temperatures_in_range_are_accepted(t):
    out = predict_json(
        "--model", str(FIXTURES / "models" / "micro"), "--prompt", "hi", "-n", "1", "--sample", "--temperature", t
    )
    assert len(out["continuation_ids"]) == 1
