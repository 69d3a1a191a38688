"""`--model NAME` from the local Hugging Face hub cache: a fake cache in the real layout, no network.

The layout built here is the one huggingface_hub writes (models--org--name/refs/main naming a
commit, snapshots/<commit>/<file> relative symlinks into blobs/<sha256>), holding a random
GPT-2-shaped checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from sheetgpt import hf_cache
from sheetgpt.checkpoint import load_model
from sheetgpt.cli import main
from sheetgpt.errors import CheckpointError
from sheetgpt.random_model import SHAPES, make_random_model

COMMIT = "607a30d783dfa663caf39e06633721c8d4cfcd7e"
OTHER = "11c5a3d5811f50298f278a704980280950aedb10"


def add_to_cache(cache: Path, repo: str, src: Path, commit: str = COMMIT, ref: bool = True) -> Path:
    """Put a model directory into a hub cache as huggingface_hub does; returns the snapshot directory."""
    root = cache / ("models--" + repo.replace("/", "--"))
    snap = root / "snapshots" / commit
    (root / "blobs").mkdir(parents=True, exist_ok=True)
    snap.mkdir(parents=True)
    for f in sorted(src.iterdir()):
        data = f.read_bytes()
        blob = root / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        os.symlink(os.path.join("..", "..", "blobs", blob.name), snap / f.name)
    if ref:
        (root / "refs").mkdir(exist_ok=True)
        (root / "refs" / "main").write_text(commit)  # no newline, as huggingface_hub writes it
    return snap


@pytest.fixture(scope="module")
def micro_src(tmp_path_factory):
    return make_random_model(tmp_path_factory.mktemp("src") / "micro", SHAPES["micro"], seed=3)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty hub cache under HF_HUB_CACHE; the other variables cleared so that only it counts."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    c = tmp_path / "hub"
    c.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(c))
    monkeypatch.chdir(tmp_path)  # no ./gpt2 directory unless a test makes one
    return c


def same_weights(a, b) -> bool:
    return a.flat.keys() == b.flat.keys() and all(np.array_equal(a.flat[k], b.flat[k]) for k in a.flat)


def test_a_cached_name_loads_its_snapshot_through_the_blob_symlinks(cache, micro_src):
    snap = add_to_cache(cache, "openai-community/gpt2", micro_src)
    assert (snap / "model.safetensors").is_symlink()  # the real layout: files are links into blobs/
    model = load_model("openai-community/gpt2")
    assert model.path == snap
    assert same_weights(model, load_model(micro_src))


@pytest.mark.parametrize(
    "cached_as, asked",
    [
        ("openai-community/gpt2", "gpt2"),
        ("gpt2", "openai-community/gpt2"),
        ("gpt2", "gpt2"),
        ("distilbert/distilgpt2", "distilgpt2"),
        ("someone/tiny-gpt", "someone/tiny-gpt"),
    ],
)
def test_hub_aliases_find_either_name(cache, micro_src, cached_as, asked):
    snap = add_to_cache(cache, cached_as, micro_src)
    assert hf_cache.resolve(asked) == snap


def test_refs_main_picks_the_snapshot_among_several(cache, micro_src, tmp_path):
    other = make_random_model(tmp_path / "other", SHAPES["micro"], seed=4)
    add_to_cache(cache, "openai-community/gpt2", other, commit=OTHER, ref=False)
    snap = add_to_cache(cache, "openai-community/gpt2", micro_src, commit=COMMIT)
    assert hf_cache.resolve("gpt2") == snap
    assert same_weights(load_model("gpt2"), load_model(micro_src))
    # refs/main moved to the other commit: the other weights load
    (snap.parent.parent / "refs" / "main").write_text(OTHER + "\n")
    assert same_weights(load_model("gpt2"), load_model(other))


def test_several_snapshots_without_refs_is_one_line(cache, micro_src):
    add_to_cache(cache, "org/m", micro_src, commit=COMMIT, ref=False)
    add_to_cache(cache, "org/m", micro_src, commit=OTHER, ref=False)
    with pytest.raises(CheckpointError, match="2 snapshots and no refs/main"):
        hf_cache.resolve("org/m")


def test_a_single_snapshot_without_refs_is_used(cache, micro_src):
    snap = add_to_cache(cache, "org/m", micro_src, ref=False)
    assert hf_cache.resolve("org/m") == snap


def test_refs_naming_a_missing_snapshot_is_one_line(cache, micro_src):
    snap = add_to_cache(cache, "org/m", micro_src)
    (snap.parent.parent / "refs" / "main").write_text(OTHER)
    with pytest.raises(CheckpointError, match=f"names commit {OTHER}.*huggingface-cli download org/m"):
        hf_cache.resolve("org/m")


@pytest.mark.parametrize("bad", ["../../etc", "a/b", ""])
def test_refs_that_are_not_a_commit_id_are_refused(cache, micro_src, bad):
    snap = add_to_cache(cache, "org/m", micro_src)
    (snap.parent.parent / "refs" / "main").write_text(bad)
    with pytest.raises(CheckpointError, match="does not hold a commit id"):
        hf_cache.resolve("org/m")


def test_a_missing_blob_is_one_line_naming_the_file(cache, micro_src):
    snap = add_to_cache(cache, "org/m", micro_src)
    os.unlink(os.path.realpath(snap / "model.safetensors"))  # an interrupted download
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load_model("org/m")


def test_a_name_not_cached_says_how_to_download_it(cache):
    with pytest.raises(CheckpointError) as info:
        load_model("gpt2")
    msg = info.value.format_message()
    assert "\n" not in msg
    assert 'huggingface-cli download openai-community/gpt2 --include "*.json" "*.safetensors" "*.txt"' in msg
    assert str(cache / "models--openai-community--gpt2" / "snapshots") in msg  # the directory form
    assert "never downloads" in msg


@pytest.mark.parametrize(
    "args, repo",
    [
        (["build", "--model", "distilgpt2"], "distilbert/distilgpt2"),
        (["check", "book.xlsx", "--model", "gpt2"], "openai-community/gpt2"),
        (["predict", "--model", "gpt2-medium", "--prompt", "a"], "openai-community/gpt2-medium"),
        (["tokenize", "--model", "org/name", "a"], "org/name"),
    ],
)
def test_the_cli_miss_is_one_line_exit_2(cache, args, repo):
    Path("book.xlsx").write_bytes(b"not read: the model is resolved first")
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    lines = [x for x in result.output.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), lines
    assert f"huggingface-cli download {repo} --include" in lines[0]


def test_an_existing_directory_wins_over_a_cached_name(cache, micro_src, tmp_path):
    add_to_cache(cache, "openai-community/gpt2", micro_src)
    local = make_random_model(tmp_path / "gpt2", SHAPES["micro"], seed=9)  # ./gpt2 (the cwd is tmp_path)
    model = load_model("gpt2")
    assert model.path == Path("gpt2")
    assert same_weights(model, load_model(local))
    assert not same_weights(model, load_model(micro_src))


def test_paths_that_cannot_be_names_are_not_looked_up(cache):
    for text in ("/nowhere/gpt2", "./gpt2", "../gpt2", "a/b/c"):
        assert hf_cache.resolve(text) == Path(text)
    with pytest.raises(CheckpointError, match="no such directory"):
        load_model("/nowhere/gpt2")


@pytest.mark.parametrize("how", ["HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME", "HOME"])
def test_the_cache_location_follows_the_environment(monkeypatch, tmp_path, micro_src, how):
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    where = {
        "HF_HUB_CACHE": tmp_path / "x",
        "HUGGINGFACE_HUB_CACHE": tmp_path / "x",
        "HF_HOME": tmp_path / "hf" / "hub",
        "XDG_CACHE_HOME": tmp_path / "xdg" / "huggingface" / "hub",
        "HOME": tmp_path / "home" / ".cache" / "huggingface" / "hub",
    }[how]
    value = {"HF_HOME": tmp_path / "hf", "XDG_CACHE_HOME": tmp_path / "xdg"}.get(how, where)
    if how != "HOME":
        monkeypatch.setenv(how, str(value))
    snap = add_to_cache(where, "openai-community/gpt2", micro_src)
    assert hf_cache.hub_cache_dir() == where
    assert hf_cache.resolve("gpt2") == snap


def test_hf_hub_cache_wins_over_hf_home(monkeypatch, tmp_path, micro_src):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home-hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    snap = add_to_cache(tmp_path / "hub-cache", "openai-community/gpt2", micro_src)
    add_to_cache(tmp_path / "home-hf" / "hub", "openai-community/gpt2", micro_src, commit=OTHER)
    assert hf_cache.resolve("gpt2") == snap


def test_build_check_predict_and_tokenize_take_a_cached_name(cache, micro_src, tmp_path):
    add_to_cache(cache, "openai-community/gpt2", micro_src)
    run = CliRunner().invoke
    built = run(main, ["build", "--model", "gpt2", "--prompt", "ab", "--no-typed-prompt"])
    assert built.exit_code == 0, built.output
    book = tmp_path / "output" / "gpt2.xlsx"  # named after the repository, not the commit hash
    assert book.is_file()
    checked = run(main, ["check", str(book), "--model", "openai-community/gpt2"])
    assert checked.exit_code == 0, checked.output
    assert "weights: 16/16 tabs equal the checkpoint" in checked.output
    predicted = run(main, ["predict", "--model", "gpt2", "--prompt", "ab", "-n", "2", "--json"])
    assert predicted.exit_code == 0, predicted.output
    tokens = run(main, ["tokenize", "--model", "gpt2", "ab", "--json"])
    assert tokens.exit_code == 0, tokens.output
    assert json.loads(tokens.output)["ids"] == json.loads(predicted.output)["prompt_ids"]
