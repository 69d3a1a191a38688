"""The bundled teaching model (sheetgpt/data/tiny/): loads, is small, and its probabilities mean something.

Every held-out figure is recomputed here with the float64 numpy reference (no torch): the adverb
distribution against the corpus frequencies of sheetgpt/templates/corpus.ini, the calibration of the
top-1 prediction, whose adjective the adverb follows, the demo prompt's distribution, temperature, and a
greedy continuation. The thresholds are those the model was asked for (issue 17), not its own figures.
"""

import re
from pathlib import Path

import numpy as np
import pytest

from sheetgpt import corpus
from sheetgpt.checkpoint import default_model_dir, load_model
from sheetgpt.reference import gpt2
from sheetgpt.tokenizer import ENDOFTEXT, Tokenizer

DEMO = "Mike is quick. He moves"

# The [heldout] triples of sheetgpt/templates/corpus.ini as prompts, with each adjective's most frequent adverb:
# their (name, adjective) pairs never occur in the training stories. Listed here so that a change to
# the corpus is a visible diff.
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

# With a person of the other gender as a distractor, introduced after and before: only the pronoun
# says whose adjective counts. Any adverb of that adjective is right.
DISTRACTED = [
    ("Tom is quiet. Sally is careful. He sings", "quiet"),
    ("Emma is careful. Mike is happy. She talks", "careful"),
    ("Leo is happy. Sally is slow. He works", "happy"),
    ("Zoe is slow. Mike is gentle. She dances", "slow"),
    ("Omar is gentle. Sally is angry. He reads", "gentle"),
    ("Rosa is angry. Mike is polite. She walks", "angry"),
    ("Paul is polite. Sally is lazy. He speaks", "polite"),
    ("Lucy is lazy. Mike is quiet. She plays", "lazy"),
    ("Sally is careful. Tom is quiet. He sings", "quiet"),
    ("Mike is happy. Emma is careful. She talks", "careful"),
    ("Sally is slow. Leo is happy. He works", "happy"),
    ("Mike is gentle. Zoe is slow. She dances", "slow"),
    ("Sally is angry. Omar is gentle. He reads", "gentle"),
    ("Mike is polite. Rosa is angry. She walks", "angry"),
    ("Sally is lazy. Paul is polite. He speaks", "polite"),
    ("Mike is quiet. Lucy is lazy. She plays", "lazy"),
    ("Mike is quick. Sally is slow. She walks", "slow"),  # the README's example
]

# Found by scripts/train_tiny.py (see MODEL_CARD.md): in this block and head, the attention
# row of " moves" in DEMO puts its largest weight on " quick".
ATTN_BLOCK, ATTN_HEAD = 1, 1

HELDOUT_STORIES = 800  # the training script's held-out set: corpus.generate(800, 0, "heldout")


@pytest.fixture(scope="module")
def model():
    return load_model()


@pytest.fixture(scope="module")
def tok():
    return Tokenizer.from_dir(default_model_dir())


@pytest.fixture(scope="module")
def lex():
    return corpus.load_lexicon()


def probs_of(model, tok, text, temperature=1.0):
    return gpt2(tok.encode(text), model.params, model.config, temperature=temperature)["predict.probs"]


def softmax(logits):  # [T, V] -> [T, V]
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@pytest.fixture(scope="module")
def heldout(model, tok):
    """(story, token ids with <|endoftext|>, next-token probabilities [T, V]) of each held-out story,
    computed by the float64 reference."""
    eot = tok.encoder[ENDOFTEXT]
    out = []
    for story in corpus.generate(HELDOUT_STORIES, 0, "heldout"):
        ids = tok.encode(story.text) + [eot]
        logits = gpt2(ids[:-1], model.params, model.config)["logits"]
        out.append((story, ids, softmax(logits)))
    return out


def adverb_rows(heldout, tok):
    """-> (story, target, p [V]) at every adverb position of the held-out stories."""
    for story, _, probs in heldout:
        for target in story.targets:
            assert tok.decode(tok.encode(target.prefix + target.adverb))[len(target.prefix) :] == target.adverb
            yield story, target, probs[len(tok.encode(target.prefix)) - 1]


# ---- the files -------------------------------------------------------------------------------


def test_bundled_model_is_the_default_and_small():
    d = default_model_dir()
    assert d == Path(__import__("sheetgpt").__file__).parent / "data" / "tiny"
    for name in ("config.json", "model.safetensors", "vocab.json", "merges.txt", "MODEL_CARD.md", "calibration.png"):
        assert (d / name).is_file(), name
    assert (d / "calibration.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "calibration.png" in (d / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert sum(f.stat().st_size for f in d.iterdir()) < 3_000_000


def test_sizes_fit_a_workbook(model, tok):
    c = model.config
    assert c.n_layer == 2 and c.n_head in (2, 4) and 32 <= c.n_embd <= 64 and 32 <= c.n_positions <= 64
    assert 257 <= c.vocab_size <= 1024 and c.vocab_size == tok.vocab_size
    assert all(v.dtype == np.float32 for v in model.flat.values())
    assert model.flat["h.0.attn.c_attn.w"].shape == (c.n_embd, 3 * c.n_embd)  # Conv1D [in, out]


def test_every_story_fits_the_positions(model, tok):
    longest = max(len(tok.encode(s.text)) + 1 for s in corpus.generate(5000, 0, "train"))
    assert longest <= model.config.n_positions


def test_every_word_of_the_corpus_is_one_token(tok, lex):
    words = [*lex.names, *lex.words()]
    assert {w: tok.encode(w) for w in words if len(tok.encode(w)) != 1} == {}
    assert len(tok.encode(DEMO)) == 6


# ---- the corpus ------------------------------------------------------------------------------


def test_heldout_list_is_the_corpus_heldout_set():
    assert corpus.heldout_prompts() == HELDOUT


def test_training_stories_never_hold_a_heldout_pair(lex):
    stories = corpus.generate(3000, 0, "train")
    text = "\n".join(s.text for s in stories)
    for name, adj in lex.heldout_pairs:
        assert not re.search(rf"\b{name} is (very |an? )?{adj}\b", text)
        assert not re.search(rf"\b{name} and \w+ are {adj}\.|\band {name} are {adj}\.", text)
    assert corpus.generate(50, 0, "train")[7].text == stories[7].text  # seeded


def test_heldout_stories_act_out_the_heldout_triples(lex):
    stories = corpus.generate(16, 0, "heldout")
    for story, (name, adj, verb) in zip(stories, lex.heldout * 2):
        assert re.search(rf"\b{name} is (very |an? )?{adj}( boy| girl)?\.", story.text)
        assert any(t.prefix.endswith(" " + verb) and t.adjective == adj for t in story.targets)


def test_stories_run_three_to_six_sentences():
    counts = [s.text.count(".") for s in corpus.generate(2000, 0, "train")]
    assert min(counts) == 3 and max(counts) == 6
    assert {3, 4, 5, 6} <= set(counts)


def test_adverbs_follow_the_frequencies_of_corpus_ini(lex):
    """The corpus draws each adverb with corpus.ini's frequency: counted in 20,000 stories."""
    counts = {adj: dict.fromkeys(advs, 0) for adj, advs in lex.adverbs.items()}
    for story in corpus.generate(20000, 1, "train"):
        for t in story.targets:
            counts[t.adjective][t.adverb.strip()] += 1
    for adj, advs in lex.adverbs.items():
        n = sum(counts[adj].values())
        for adv, f in advs.items():
            assert abs(counts[adj][adv] / n - f) < 4 * np.sqrt(f * (1 - f) / n) + 1e-3, (adj, adv, counts[adj])
    assert lex.adverbs["quick"] == {"quickly": 0.6, "swiftly": 0.25, "fast": 0.15}


# ---- held-out figures (float64 reference) ---------------------------------------------------


@pytest.mark.slow
def test_heldout_adverb_distribution_matches_the_corpus(heldout, tok, lex):
    """Total variation distance between the next-token distribution at each adverb position and the
    corpus frequencies of that adjective's adverbs (mass on other tokens counts), averaged per
    adjective, then over adjectives: at most 0.1."""
    tv = {adj: [] for adj in lex.adverbs}
    for _, target, p in adverb_rows(heldout, tok):
        want = np.zeros_like(p)
        for adv, f in lex.adverbs[target.adjective].items():
            want[tok.encode(" " + adv)[0]] = f
        tv[target.adjective].append(0.5 * np.abs(p - want).sum())
    assert all(len(v) >= 20 for v in tv.values()), {a: len(v) for a, v in tv.items()}
    mean = np.mean([np.mean(v) for v in tv.values()])
    assert mean <= 0.1, {a: round(float(np.mean(v)), 3) for a, v in tv.items()}


@pytest.mark.slow
def test_heldout_top1_is_calibrated(heldout, tok):
    """Expected calibration error of the top-1 prediction over every held-out position (10 equal-width
    confidence bins): at most 0.05."""
    conf, correct = [], []
    for _, ids, probs in heldout:
        conf.append(probs.max(-1))
        correct.append(probs.argmax(-1) == np.array(ids[1:]))
    conf, correct = np.concatenate(conf), np.concatenate(correct)
    assert len(conf) > 10000
    which = np.minimum((conf * 10).astype(int), 9)
    ece = sum(
        (which == b).mean() * abs(correct[which == b].mean() - conf[which == b].mean())
        for b in range(10)
        if (which == b).any()
    )
    assert ece <= 0.05, ece
    assert 0.2 < correct.mean() < 0.95  # the stories are neither all chance nor all fixed


@pytest.mark.slow
def test_heldout_adverb_follows_the_right_person(heldout, tok, lex):
    """In held-out stories with 2-3 people, the top adverb is one of the acting person's adjective's
    adverbs in at least 95% of adverb positions."""
    owner = lex.adjective_of
    hits = [
        owner.get(tok.display(int(p.argmax())).strip()) == target.adjective
        for story, target, p in adverb_rows(heldout, tok)
        if story.people >= 2
    ]
    assert len(hits) > 1000 and np.mean(hits) >= 0.95, f"{sum(hits)} of {len(hits)}"


# ---- prompts (float64 reference) -----------------------------------------------------------


def test_demo_prompt_has_a_distribution(model, tok):
    p = probs_of(model, tok, DEMO)
    assert tok.display(int(p.argmax())) == " quickly"
    assert 0.4 <= p.max() <= 0.8, p.max()
    assert (p >= 0.01).sum() >= 3
    likely = {tok.display(int(i)) for i in np.nonzero(p >= 0.01)[0]}
    assert {" quickly", " swiftly", " fast"} <= likely, likely


@pytest.mark.parametrize("prompt,adverb", HELDOUT)
def test_heldout_combination_predicts_its_adverb(model, tok, prompt, adverb):
    assert tok.display(int(probs_of(model, tok, prompt).argmax())) == adverb


@pytest.mark.parametrize("prompt,adjective", DISTRACTED)
def test_pronoun_picks_the_right_person(model, tok, lex, prompt, adjective):
    top = tok.display(int(probs_of(model, tok, prompt).argmax())).strip()
    assert lex.adjective_of.get(top) == adjective, top


def test_temperature_sharpens_below_one_and_flattens_above(model, tok):
    """The Predict tab divides the logits by the temperature: entropy of softmax(logits / T)."""

    def entropy(p):
        return float(-(p * np.log(np.maximum(p, 1e-300))).sum())

    h = {t: entropy(probs_of(model, tok, DEMO, t)) for t in (0.25, 0.5, 1.0, 2.0, 4.0)}
    assert h[0.25] < h[0.5] < h[1.0] < h[2.0] < h[4.0], h
    assert h[0.5] < 0.8 * h[1.0] and h[2.0] > 1.25 * h[1.0], h  # visibly, not by a hair
    assert probs_of(model, tok, DEMO, 0.5).max() > probs_of(model, tok, DEMO, 1.0).max() + 0.1


def test_greedy_continuation_writes_two_more_sentences(model, tok):
    """Argmax at each step from the demo prompt: the adverb ends its sentence, then at least two more
    sentences come before <|endoftext|>, which comes before n_positions run out."""
    eot = tok.encoder[ENDOFTEXT]
    ids = tok.encode(DEMO)
    while len(ids) < model.config.n_positions and ids[-1] != eot:
        ids.append(int(gpt2(ids, model.params, model.config)["predict.probs"].argmax()))
    assert ids[-1] == eot, tok.decode(ids)
    added = tok.decode(ids[len(tok.encode(DEMO)) : -1])
    sentences = [s for s in added.split(".")[1:] if s.strip()]
    assert added.startswith(" quickly.") and len(sentences) >= 2, added
    assert added.endswith("."), added


def test_attention_of_moves_peaks_on_quick(model, tok):
    trace = gpt2(tok.encode(DEMO), model.params, model.config)
    texts = [tok.display(i) for i in tok.encode(DEMO)]
    row = trace[f"h.{ATTN_BLOCK}.attn.weights"][ATTN_HEAD, texts.index(" moves")]
    assert texts[int(np.nanargmax(row))] == " quick"
