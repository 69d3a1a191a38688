"""The teaching tabs: Logit lens and Embeddings are proven like every stage; Tokenize, temperature, notes."""

from __future__ import annotations

import numpy as np
import openpyxl
import pytest

from sheetgpt import a1
from sheetgpt.book.tabs import embeddings, predict
from sheetgpt.check import check_book
from sheetgpt.checkpoint import Model, load_model
from sheetgpt.engine import libreoffice
from sheetgpt.reference import cosine, next_token_probs
from sheetgpt.tokenizer import Tokenizer
from sheetgpt.weight_text import stored_values

TEACHING = ("Logit lens", "Embeddings")
LENS = [
    "lens.x",
    "lens.mean",
    "lens.var",
    "lens.norm",
    "lens.out",
    "lens.max",
    "lens.sum",
    "lens.prob",
    "lens.id",
    "lens.logits",
]
EMB = [
    "emb.ids",
    "emb.vectors",
    "emb.analogy",
    "emb.lengths",
    "emb.pairs",
    "emb.near.query",
    "emb.near.query.id",
    "emb.near.analogy",
    "emb.near.analogy.id",
    "emb.norms",
    "emb.cos",
]


def _teaching_stages_pass(report):
    stages = {s.stage: s for s in report.stages}
    assert set(LENS + EMB) <= set(stages)
    failed = [(s.stage, s.first_bad) for s in report.stages if not s.passed]
    assert not failed, failed


@pytest.mark.parametrize(
    "engine",
    [
        "fast",
        pytest.param("formulas", marks=pytest.mark.slow),
        pytest.param("libreoffice", marks=pytest.mark.libreoffice),
    ],
)
def test_logit_lens_and_embeddings_pass_check(book, engine):
    result = book("micro", "the cat sat on")
    _teaching_stages_pass(check_book(result.path, engine=engine, rtol=1e-9))


def test_the_last_block_of_the_lens_is_the_real_prediction(book):
    trace = book("one-head", "a quick test").trace
    lens = trace["lens.logits"]  # [V, n_layer]
    assert np.allclose(lens[:, -1], trace["logits"][:, 0], rtol=0, atol=1e-12)
    assert trace["lens.id"][-1, 0] == np.argmax(trace["predict.probs"][:, 0])
    assert not np.allclose(lens[:, 0], lens[:, -1])  # an earlier block predicts something else


@pytest.mark.slow
def test_tokenize_tab_shows_every_merge_and_the_prompts_ids(book, model_dir):
    prompt = "the cat sat on the mat"
    result = book("odd", prompt)
    tok = Tokenizer.from_dir(model_dir("odd"))
    ws = openpyxl.load_workbook(result.path)["Tokenize"]
    rows = list(ws.iter_rows(values_only=True))
    ids = [v for row in rows if row[0] == "token ids" for v in row[2:] if v is not None]
    assert ids == tok.encode(prompt)
    merges = [row for row in rows if isinstance(row[0], str) and row[0].startswith("merge, rank ")]
    steps = [step for word in tok.trace(prompt) for step in word.steps]
    assert [int(row[0].rsplit(" ", 1)[1]) for row in merges] == [s.rank for s in steps]
    assert len(steps) > 0


def test_region_titles_carry_their_explanation_as_a_note(book):
    result = book("micro", "the cat sat on")
    wb = openpyxl.load_workbook(result.path)
    layout = result.layout
    for name in ("h.0.attn.weights", "ln_f.out", "lens.logits", "emb.pairs"):
        region = layout.regions[name]
        ws = wb[region.tab]
        notes = [c.comment.text for row in ws.iter_rows(max_row=region.top) for c in row if c.comment]
        assert region.text["explain"] in notes, name


@pytest.mark.slow
def test_a_two_block_book_of_a_larger_shape_has_every_tab(book):
    result = book("wide", "the cat sat on the mat", blocks=2)
    names = openpyxl.load_workbook(result.path, read_only=True).sheetnames
    assert names[:4] == ["Guide", "Prompt", "Tokenize", "Embed"]
    assert {"Block 0", "Block 1", "Final norm", "Logits", "Predict", *TEACHING, "vocab", "wte"} <= set(names)
    assert "Block 2" not in names
    assert result.trace["lens.logits"].shape == (1021, 2)
    report = check_book(result.path, engine="fast")
    _teaching_stages_pass(report)


@pytest.mark.libreoffice
def test_temperature_edit_reshapes_the_distribution(book, model_dir):
    result = book("one-head", "the cat sat")
    tok = Tokenizer.from_dir(model_dir("one-head"))
    probs = result.layout.region("predict.probs")
    temperature = a1.cell(*predict.TEMPERATURE)
    rc = libreoffice.recalculate(result.path, edits={(predict.NAME, temperature): 0.5}, sheets=[predict.NAME])
    got = rc.numbers[predict.NAME][probs.top : probs.bottom + 1, probs.left]
    _, _, want = next_token_probs(result.trace["logits"][:, 0], 0.5)
    assert np.max(np.abs(got - want)) <= 1e-9 * want.max()
    assert got.max() > result.trace["predict.probs"].max()  # a lower temperature sharpens the distribution
    top = rc.values[predict.NAME][probs.top : probs.top + predict.TOP_K, predict.TOKEN_COL]  # the top-k table follows
    assert list(top) == [tok.display(int(i)) for i in np.argsort(-want, kind="stable")[:10]]


@pytest.mark.libreoffice
def test_editing_an_embeddings_token_gives_numpys_cosine(book, model_dir):
    result = book("one-head", "the cat sat")
    layout = result.layout
    tok = Tokenizer.from_dir(model_dir("one-head"))
    model = load_model(model_dir("one-head"))
    wte = Model(model.config, {k: stored_values(v) for k, v in model.flat.items()}, model.path).flat["wte"]
    ids = [int(i) for i in result.trace["emb.ids"][:, 0]]
    new_a, new_q = 42, 137  # pair 1's first token, and the query of the nearest-tokens table
    (ra, ca), (rq, cq) = embeddings.input_cells()[0], embeddings.input_cells()[embeddings.QUERY]
    edits = {
        (embeddings.NAME, a1.cell(ra, ca)): tok.display(new_a),
        (embeddings.NAME, a1.cell(rq, cq)): tok.display(new_q),
    }
    rc = libreoffice.recalculate(result.path, edits=edits, sheets=[embeddings.NAME])
    sheet = rc.numbers[embeddings.NAME]
    pairs, near = layout.regions["emb.pairs"], layout.regions["emb.near.query.id"]
    assert sheet[ra, embeddings.ID_COL] == new_a
    assert abs(sheet[pairs.top, pairs.left] - cosine(wte[new_a], wte[ids[1]])) <= 1e-12
    want = cosine(wte, wte[new_q][None, :])
    assert list(sheet[near.top : near.bottom + 1, near.left].astype(int)) == list(
        np.argsort(-want, kind="stable")[: embeddings.NEAREST]
    )
    assert rc.values[embeddings.NAME][near.top, near.left - 1] == tok.display(new_q)  # the token itself ranks first
