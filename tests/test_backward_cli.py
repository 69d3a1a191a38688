"""`sheetgpt predict --saliency` and `--train-step` on the bundled model, against the issue's measured
figures (Ecco's grad_x_input; one plain SGD step), and their errors."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from test_cli_predict import one_line_error  # one line, exit 2: the same rule as predict's other errors

from sheetgpt.cli import main

PROMPT = "Mike is quick. He moves"


def predict(*args: str):
    return CliRunner().invoke(main, ["predict", "--prompt", PROMPT, "-n", "0", *args])


def predict_json(*args: str) -> dict:
    result = predict(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_saliency_scores_are_eccos_on_the_bundled_model():
    out = predict_json("--saliency")["saliency"]
    assert out["method"] == "grad_x_input"
    assert out["predicted"]["text"] == " quickly" and abs(out["predicted"]["prob"] - 0.593) < 1e-3
    scores = {t["text"]: t["score"] for t in out["tokens"]}
    want = {"Mike": 0.187, " is": 0.086, " quick": 0.322, ".": 0.043, " He": 0.239, " moves": 0.123}
    assert scores.keys() == want.keys()
    for text, score in want.items():
        assert abs(scores[text] - score) < 1e-3, text
    assert all(t["grad_norm"] > 0 and t["grad_x_input"] > 0 for t in out["tokens"])


def test_saliency_text_names_the_prediction_and_each_token():
    result = predict("--saliency")
    assert result.exit_code == 0, result.output
    text = result.output.split("input saliency", 1)[1]
    assert "' quickly' (p 0.593051)" in text.splitlines()[0]
    assert "0.322  ' quick'" in text and "0.239  ' He'" in text


def test_train_step_defaults_to_the_predicted_token_and_lr_0_005():
    out = predict_json("--train-step")["train_step"]
    assert out["target"]["text"] == " quickly" and out["lr"] == 0.005
    assert abs(out["p_before"] - 0.593) < 1e-3 and abs(out["p_after"] - 0.705) < 1e-3


def test_train_step_on_another_target():
    out = predict_json("--train-step", "--target", " swiftly", "--lr", "0.005")["train_step"]
    assert abs(out["p_before"] - 0.267) < 1e-3 and abs(out["p_after"] - 0.487) < 1e-3
    assert out["top_k_after"][0]["text"] == " swiftly" and len(out["top_k_after"]) == 5
    result = predict("--train-step", "--target", " swiftly")
    assert result.exit_code == 0, result.output
    assert "p(' swiftly') before 0.266595, after 0.487248" in result.output


@pytest.mark.parametrize(
    "args,words",
    [
        (["--target", " quickly"], "--train-step"),
        (["--lr", "0.1"], "--train-step"),
        (["--train-step", "--target", " quickly now"], "exactly one token"),
        (["--train-step", "--target", ""], "empty"),
        (["--saliency", "--steer", " slow", " quick", "1", "0"], "--steer"),
    ],
)
def test_errors_are_one_line(args, words):
    assert words in one_line_error(predict(*args))


@pytest.mark.parametrize("lr", ["-0.1", "0", "abc", "nan", "inf", "1e9"])
def test_bad_learning_rates_exit_2(lr):
    result = predict("--train-step", "--lr", lr)
    assert result.exit_code == 2 and "--lr" in result.output
