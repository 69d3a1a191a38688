"""The bundled teaching model (sheetgpt/data/tiny/): loads, is small, and predicts sensibly. numpy only, no torch."""

import re
from pathlib import Path

import numpy as np
import pytest

from sheetgpt import corpus
from sheetgpt.checkpoint import default_model_dir, load_model
from sheetgpt.reference import gpt2
from sheetgpt.tokenizer import Tokenizer

DEMO = "Mike is quick. He moves"

# The [heldout] triples of templates/corpus.ini as prompts: their (name, adjective) pairs never
# occur in the training stories. Listed here so that a change to the corpus is a visible diff.
HELDOUT = [
    ("Tom is quiet. He sings", " quietly"),
    ("Emma is careful. She talks", " carefully"),
    ("Leo is happy. He works", " happily"),
    ("Zoe is slow. She dances", " slowly"),
    ("Omar is gentle. He reads", " gently"),
    ("Rosa is angry. She walks", " angrily"),
    ("Paul is polite. He speaks", " politely"),
    ("Lucy is lazy. She plays", " lazily"),
]

# The same with a person of the other gender as a distractor, introduced after and before:
# only the pronoun says whose adjective counts.
DISTRACTED = [
    ("Tom is quiet. Sally is careful. He sings", " quietly"),
    ("Emma is careful. Mike is happy. She talks", " carefully"),
    ("Leo is happy. Sally is slow. He works", " happily"),
    ("Zoe is slow. Mike is gentle. She dances", " slowly"),
    ("Omar is gentle. Sally is angry. He reads", " gently"),
    ("Rosa is angry. Mike is polite. She walks", " angrily"),
    ("Paul is polite. Sally is lazy. He speaks", " politely"),
    ("Lucy is lazy. Mike is quiet. She plays", " lazily"),
    ("Sally is careful. Tom is quiet. He sings", " quietly"),
    ("Mike is happy. Emma is careful. She talks", " carefully"),
    ("Sally is slow. Leo is happy. He works", " happily"),
    ("Mike is gentle. Zoe is slow. She dances", " slowly"),
    ("Sally is angry. Omar is gentle. He reads", " gently"),
    ("Mike is polite. Rosa is angry. She walks", " angrily"),
    ("Sally is lazy. Paul is polite. He speaks", " politely"),
    ("Mike is quiet. Lucy is lazy. She plays", " lazily"),
]

# Found by scripts/train_tiny.py (see MODEL_CARD.md): in this block and head, the attention
# row of " moves" in DEMO puts its largest weight on " quick".
ATTN_BLOCK, ATTN_HEAD = 1, 0


@pytest.fixture(scope="module")
def model():
    return load_model()


@pytest.fixture(scope="module")
def tok():
    return Tokenizer.from_dir(default_model_dir())


def top_token(model, tok, prompt):
    trace = gpt2(tok.encode(prompt), model.params, model.config)
    probs = trace["predict.probs"]
    return tok.display(int(probs.argmax())), float(probs.max()), trace


# ---- the files -------------------------------------------------------------------------------


def test_bundled_model_is_the_default_and_small():
    d = default_model_dir()
    assert d == Path(__import__("sheetgpt").__file__).parent / "data" / "tiny"
    for name in ("config.json", "model.safetensors", "vocab.json", "merges.txt", "MODEL_CARD.md"):
        assert (d / name).is_file(), name
    assert sum(f.stat().st_size for f in d.iterdir()) < 3_000_000


def test_sizes_fit_a_workbook(model, tok):
    c = model.config
    assert c.n_layer == 2 and c.n_head in (2, 4) and 32 <= c.n_embd <= 64 and 32 <= c.n_positions <= 64
    assert 257 <= c.vocab_size <= 1024 and c.vocab_size == tok.vocab_size
    assert all(v.dtype == np.float32 for v in model.flat.values())
    assert model.flat["h.0.attn.c_attn.w"].shape == (c.n_embd, 3 * c.n_embd)  # Conv1D [in, out]


def test_every_word_of_the_corpus_is_one_token(tok):
    lex = corpus.load_lexicon()
    words = [*lex.names, *lex.words()]
    assert {w: tok.encode(w) for w in words if len(tok.encode(w)) != 1} == {}
    assert len(tok.encode(DEMO)) == 6


# ---- the corpus ------------------------------------------------------------------------------


def test_heldout_list_is_the_corpus_heldout_set():
    assert corpus.heldout_prompts() == HELDOUT


def test_training_stories_never_hold_a_heldout_pair():
    lex = corpus.load_lexicon()
    stories = corpus.generate(3000, 0, "train")
    text = "\n".join(s.text for s in stories)
    for name, adj in lex.heldout_pairs:
        assert not re.search(rf"\b{name} is (very |an? )?{adj}\b", text)
        assert not re.search(rf"\b{name} and \w+ are {adj}\.|\band {name} are {adj}\.", text)
    assert corpus.generate(50, 0, "train")[7].text == stories[7].text  # seeded


def test_heldout_stories_act_out_the_heldout_triples():
    stories = corpus.generate(16, 0, "heldout")
    for story, (name, adj, verb) in zip(stories, corpus.load_lexicon().heldout * 2):
        assert re.search(rf"\b{name} is (very |an? )?{adj}( boy| girl)?\.", story.text)
        assert any(prefix.endswith(" " + verb) for prefix, _ in story.targets)


# ---- predictions (float64 reference) -------------------------------------------------------


def test_demo_prompt_predicts_quickly(model, tok):
    top, p, _ = top_token(model, tok, DEMO)
    assert top == " quickly" and p > 0.5


@pytest.mark.parametrize("prompt,adverb", HELDOUT)
def test_heldout_combination_predicts_its_adverb(model, tok, prompt, adverb):
    assert top_token(model, tok, prompt)[0] == adverb


@pytest.mark.parametrize("prompt,adverb", DISTRACTED)
def test_pronoun_picks_the_right_person(model, tok, prompt, adverb):
    assert top_token(model, tok, prompt)[0] == adverb


def test_heldout_adverb_accuracy(model, tok):
    """Every adverb of the training script's held-out stories (seed 0: the same 800 stories,
    one to three people, pronouns and names), predicted by the float64 reference."""
    hits = total = 0
    for story in corpus.generate(800, 0, "heldout"):
        logits = gpt2(tok.encode(story.text), model.params, model.config)["logits"]  # [T, V]
        for prefix, adverb in story.targets:
            (want,) = tok.encode(adverb)
            hits += int(logits[len(tok.encode(prefix)) - 1].argmax()) == want
            total += 1
    assert total > 900 and hits / total >= 0.95, f"{hits} of {total}"


def test_attention_of_moves_peaks_on_quick(model, tok):
    _, _, trace = top_token(model, tok, DEMO)
    texts = [tok.display(i) for i in tok.encode(DEMO)]
    row = trace[f"h.{ATTN_BLOCK}.attn.weights"][ATTN_HEAD, texts.index(" moves")]
    assert texts[int(np.nanargmax(row))] == " quick"
