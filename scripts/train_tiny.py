"""Train the bundled teaching model sheetgpt/data/tiny/ from scratch, reproducibly, on CPU.

1. corpus: sheetgpt.corpus.generate (seeded; sheetgpt/templates/corpus.ini holds the words, the adverb
   frequencies and the story shapes);
2. tokenizer: our byte-level BPE (sheetgpt.tokenizer.bpe_learn) learned on that corpus,
   run until every word is one token; asserts that every name, pronoun and adverb is;
3. model: Hugging Face GPT2LMHeadModel (gelu_new, tied embeddings, no dropout), AdamW on the
   next-token cross-entropy (a proper scoring rule, so the probabilities it learns are the corpus's);
4. evaluation on held-out stories: the adverb distribution against the corpus frequencies (total
   variation), the calibration of the top-1 prediction (ECE, and a reliability plot), whose adjective
   the adverb follows with 2-3 people, the demo prompt's distribution and greedy continuation, and
   which attention head looks from " moves" back to " quick";
5. export: config.json + model.safetensors (float32, GPT-2 keys and Conv1D [in, out]
   layout) + vocab.json + merges.txt + MODEL_CARD.md + calibration.png; proves that sheetgpt's
   loader and float64 reference reproduce torch's logits.

    pip install -e '.[oracle]'          # torch==2.13.0, transformers
    python3 scripts/train_tiny.py       # about 15 minutes on one CPU thread

The package never imports torch; tests/test_bundled_model.py recomputes the held-out figures with numpy.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import platform
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import torch
import transformers
from safetensors.numpy import save_file
from transformers import GPT2Config, GPT2LMHeadModel

from sheetgpt import corpus
from sheetgpt.checkpoint import load_model
from sheetgpt.reference import gpt2 as reference_gpt2
from sheetgpt.tokenizer import ENDOFTEXT, Tokenizer, bpe_learn

ROOT = Path(__file__).resolve().parent.parent
DEMO_PROMPT, DEMO_ADJ, DEMO_VERB = "Mike is quick. He moves", " quick", " moves"
ECE_BINS = 10


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--out", type=Path, default=ROOT / "sheetgpt" / "data" / "tiny", help="model directory to write")
    p.add_argument("--seed", type=int, default=0, help="seed of the corpus, the initialisation and the batches")
    p.add_argument("--stories", type=int, default=100000, help="training stories")
    p.add_argument("--heldout-stories", type=int, default=800, help="evaluation stories about the held-out triples")
    p.add_argument("--vocab-size", type=int, default=1024, help="upper bound; BPE stops once every word is one token")
    p.add_argument("--n-layer", type=int, default=2)
    p.add_argument("--n-head", type=int, default=4)
    p.add_argument("--n-embd", type=int, default=48)
    p.add_argument("--n-positions", type=int, default=48, help="at least the longest story (with <|endoftext|>)")
    p.add_argument("--steps", type=int, default=12000)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=5e-3)
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument(
        "--adverb-weight",
        type=float,
        default=5.0,
        help="loss weight of the adverb targets (the only tokens that need attention to the right person); "
        "weighing a target's cross-entropy does not move its minimum, so the probabilities stay the corpus's",
    )
    p.add_argument(
        "--threads", type=int, default=1, help="torch threads; 1 is fastest for this tiny model on a shared CPU"
    )
    return p.parse_args()


# ---- corpus and tokenizer ------------------------------------------------------------------


def learn_tokenizer(stories: list[corpus.Story], vocab_size: int, lex: corpus.Lexicon) -> Tokenizer:
    text = "".join(s.text + "\n" for s in stories)
    tok = bpe_learn(text, vocab_size)
    must_be_one = [*lex.names, *lex.words()]  # names open stories without a space, too
    split = {w: [tok.display(i) for i in tok.encode(w)] for w in must_be_one if len(tok.encode(w)) != 1}
    assert not split, f"vocab_size {vocab_size} leaves these words in pieces: {split}; raise --vocab-size"
    return tok


def encode_stories(stories: list[corpus.Story], tok: Tokenizer, n_positions: int):
    """-> (ids [N, n_positions], loss mask [N, n_positions]); each story ends with <|endoftext|>, padded with it."""
    eot = tok.encoder[ENDOFTEXT]
    ids = np.full((len(stories), n_positions), eot, dtype=np.int64)
    mask = np.zeros((len(stories), n_positions), dtype=bool)  # mask[t]: the target ids[t + 1] counts
    for k, s in enumerate(stories):
        seq = tok.encode(s.text) + [eot]
        assert len(seq) <= n_positions, (
            f"story {k} is {len(seq)} tokens, more than n_positions {n_positions}: {s.text!r}"
        )
        ids[k, : len(seq)] = seq
        mask[k, : len(seq) - 1] = True
    return ids, mask


def adverb_positions(stories: list[corpus.Story], tok: Tokenizer):
    """-> list of (story index, position that predicts the adverb, adverb id, adjective, people in the story)."""
    out = []
    for k, s in enumerate(stories):
        for target in s.targets:
            (aid,) = tok.encode(target.adverb)
            out.append((k, len(tok.encode(target.prefix)) - 1, aid, target.adjective, s.people))
    return out


# ---- model ---------------------------------------------------------------------------------


def make_model(args, vocab_size: int, eot: int) -> GPT2LMHeadModel:
    config = GPT2Config(
        vocab_size=vocab_size,
        n_positions=args.n_positions,
        n_embd=args.n_embd,
        n_layer=args.n_layer,
        n_head=args.n_head,
        activation_function="gelu_new",
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        tie_word_embeddings=True,
        bos_token_id=eot,
        eos_token_id=eot,
    )
    config._attn_implementation = "eager"  # plain softmax(QK^T/sqrt(d))V, and attention weights to inspect
    return GPT2LMHeadModel(config)


def train(model, ids, weights, args, evaluate=None) -> dict:
    """AdamW on the weighted next-token loss; ``weights[k, t]`` weighs the target ids[k, t + 1] (0: ignored)."""
    gen = torch.Generator().manual_seed(args.seed)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=args.lr,
        betas=(0.9, 0.98),
    )
    warmup = max(1, args.steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, args.steps) / args.steps))
    )
    ids_t, w_t = torch.from_numpy(ids), torch.from_numpy(weights.astype(np.float32))
    model.train()
    losses, started = [], time.perf_counter()
    for step in range(args.steps):
        rows = torch.randint(0, len(ids_t), (args.batch,), generator=gen)
        x, w = ids_t[rows], w_t[rows]
        keep = int((w > 0).sum(1).max()) + 1  # trim the padding every row shares
        x, w = x[:, :keep], w[:, : keep - 1]
        logits = model(input_ids=x).logits[:, :-1]
        ce = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1), reduction="none"
        )
        loss = (ce * w.reshape(-1)).sum() / w.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        if step % 250 == 0 or step == args.steps - 1:
            extra = ""
            if evaluate is not None and (step % 1000 == 0 or step == args.steps - 1):
                model.eval()
                extra = "  " + evaluate()
                model.train()
            print(
                f"step {step:5d}  loss {np.mean(losses[-250:]):.4f}  lr {sched.get_last_lr()[0]:.2e}  "
                f"{time.perf_counter() - started:6.1f} s{extra}",
                flush=True,
            )
    model.eval()
    return {"seconds": time.perf_counter() - started, "final_loss": float(np.mean(losses[-100:])), "losses": losses}


@torch.no_grad()
def mean_loss(model, ids, mask) -> float:
    total, count = 0.0, 0
    for i in range(0, len(ids), 256):
        x, m = torch.from_numpy(ids[i : i + 256]), torch.from_numpy(mask[i : i + 256])
        logits = model(input_ids=x).logits[:, :-1]
        mm = m[:, :-1]
        total += torch.nn.functional.cross_entropy(logits[mm], x[:, 1:][mm], reduction="sum").item()
        count += int(mm.sum())
    return total / count


@torch.no_grad()
def all_probs(model, ids) -> np.ndarray:
    """-> float64 next-token probabilities [N, T, V] of every position."""
    out = []
    for i in range(0, len(ids), 200):
        logits = model(input_ids=torch.from_numpy(ids[i : i + 200])).logits.double()
        out.append(torch.softmax(logits, -1).numpy())
    return np.concatenate(out)


def adverb_figures(probs, positions, lex: corpus.Lexicon, tok: Tokenizer) -> dict:
    """TV distance to the corpus frequencies (per adjective, then averaged), and whose adjective the top adverb
    follows. ``probs`` [N, T, V]; ``positions`` from adverb_positions."""
    adverb_ids = {adj: {tok.encode(" " + a)[0]: f for a, f in advs.items()} for adj, advs in lex.adverbs.items()}
    owner = {i: adj for adj, ids in adverb_ids.items() for i in ids}
    tv, mean_q, right, multi = {a: [] for a in lex.adverbs}, {a: [] for a in lex.adverbs}, 0, 0
    for k, t, _, adj, people in positions:
        q = probs[k, t]
        f = np.zeros_like(q)
        for i, freq in adverb_ids[adj].items():
            f[i] = freq
        tv[adj].append(0.5 * np.abs(q - f).sum())
        mean_q[adj].append([q[i] for i in adverb_ids[adj]])
        if people >= 2:
            multi += 1
            right += owner.get(int(q.argmax())) == adj
    per_adj = {a: float(np.mean(v)) for a, v in tv.items() if v}
    return {
        "tv": float(np.mean(list(per_adj.values()))),
        "tv_per_adj": per_adj,
        "mean_q": {a: np.mean(v, axis=0) for a, v in mean_q.items() if v},
        "counts": {a: len(v) for a, v in tv.items()},
        "right_person": right / multi,
        "multi_positions": multi,
    }


def calibration(probs, ids, mask, bins: int = ECE_BINS) -> dict:
    """Expected calibration error of the top-1 prediction over every position that has a target."""
    k, t = np.nonzero(mask[:, :-1])
    p = probs[k, t]
    conf, correct = p.max(-1), (p.argmax(-1) == ids[k, t + 1])
    which = np.minimum((conf * bins).astype(int), bins - 1)
    rows = []
    for b in range(bins):
        sel = which == b
        if sel.any():
            rows.append((b, int(sel.sum()), float(conf[sel].mean()), float(correct[sel].mean())))
    n = len(conf)
    ece = sum(c / n * abs(acc - cf) for _, c, cf, acc in rows)
    return {"ece": ece, "bins": rows, "positions": n, "accuracy": float(correct.mean())}


@torch.no_grad()
def distribution(model, tok: Tokenizer, prompt: str, temperature: float = 1.0) -> np.ndarray:
    logits = model(input_ids=torch.tensor([tok.encode(prompt)])).logits[0, -1].double()
    return torch.softmax(logits / temperature, -1).numpy()


@torch.no_grad()
def greedy(model, tok: Tokenizer, prompt: str, n_positions: int) -> str:
    ids, eot = tok.encode(prompt), tok.encoder[ENDOFTEXT]
    while len(ids) < n_positions:
        nxt = int(model(input_ids=torch.tensor([ids])).logits[0, -1].argmax())
        ids.append(nxt)
        if nxt == eot:
            break
    return "".join(tok.display(i) for i in ids)


@torch.no_grad()
def attention_rows(model, tok: Tokenizer, prompt: str, query: str) -> tuple[list[str], np.ndarray]:
    """-> (token texts, weights [n_layer, n_head, T]) of the attention row of ``query``'s last occurrence."""
    ids = tok.encode(prompt)
    texts = [tok.display(i) for i in ids]
    t = len(texts) - 1 - texts[::-1].index(query)
    out = model(input_ids=torch.tensor([ids]), output_attentions=True)
    return texts, np.stack([a[0, :, t, :].numpy() for a in out.attentions])


def distractor_prompts(lex: corpus.Lexicon) -> list[tuple[str, str]]:
    """Each held-out triple with a person of the other gender, introduced after it and before it:
    'Tom is quiet. Sally is careful. He sings' and 'Sally is careful. Tom is quiet. He sings' -> (prompt, adjective)."""
    other = {"male": "Sally", "female": "Mike"}
    out = []
    for first in (True, False):
        for i, (name, adj, verb) in enumerate(lex.heldout):
            gender = lex.names[name]
            other_adj = lex.heldout[(i + 1) % len(lex.heldout)][1]  # varied, so no head can just avoid one word
            target, distractor = f"{name} is {adj}.", f"{other[gender]} is {other_adj}."
            intros = f"{target} {distractor}" if first else f"{distractor} {target}"
            out.append((f"{intros} {lex.pronouns[gender]} {verb}", adj))
    return out


# ---- export --------------------------------------------------------------------------------


def export(model, tok: Tokenizer, out: Path) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    state = model.transformer.state_dict()
    tensors = {
        k: v.detach().to(torch.float32).contiguous().numpy()
        for k, v in state.items()
        if not k.endswith((".attn.bias", ".attn.masked_bias"))
    }
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    c = model.config
    config = {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": c.vocab_size,
        "n_positions": c.n_positions,
        "n_ctx": c.n_positions,
        "n_embd": c.n_embd,
        "n_layer": c.n_layer,
        "n_head": c.n_head,
        "n_inner": None,
        "activation_function": "gelu_new",
        "layer_norm_epsilon": c.layer_norm_epsilon,
        "resid_pdrop": 0.0,
        "embd_pdrop": 0.0,
        "attn_pdrop": 0.0,
        "initializer_range": c.initializer_range,
        "scale_attn_weights": True,
        "tie_word_embeddings": True,
        "bos_token_id": c.bos_token_id,
        "eos_token_id": c.eos_token_id,
        "torch_dtype": "float32",
    }
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    tok.save(out)
    return tensors


@torch.no_grad()
def prove_export(model, out: Path, prompts: list[str], tok: Tokenizer) -> dict:
    """sheetgpt's loader + float64 reference against torch (float32 as trained, and float64 on the same weights)."""
    loaded = load_model(out)
    model64 = make_model_like(model).double()
    hf = GPT2LMHeadModel.from_pretrained(out, attn_implementation="eager").eval()
    worst32 = worst64 = worst_hf = 0.0
    for prompt in prompts:
        ids = tok.encode(prompt)
        ref = reference_gpt2(ids, loaded.params, loaded.config)["logits"]
        x = torch.tensor([ids])
        worst32 = max(worst32, float(np.abs(model(input_ids=x).logits[0].double().numpy() - ref).max()))
        worst64 = max(worst64, float(np.abs(model64(input_ids=x).logits[0].numpy() - ref).max()))
        worst_hf = max(worst_hf, float(np.abs(hf(input_ids=x).logits[0].double().numpy() - ref).max()))
    # float32 rounding grows with the sequence (the continuation is 30 tokens); float64 is the proof
    assert worst32 < 1e-4, f"reference vs torch float32: max |diff| {worst32:.3g}"
    assert worst64 < 1e-9, f"reference vs torch float64: max |diff| {worst64:.3g}"
    assert worst_hf < 1e-4, f"reference vs HF from_pretrained({out}): max |diff| {worst_hf:.3g}"
    return {"float32": worst32, "float64": worst64, "hf_from_pretrained": worst_hf}


def make_model_like(model):
    clone = GPT2LMHeadModel(model.config)
    clone.load_state_dict(model.state_dict())
    return clone.eval()


# ---- the calibration plot (a PNG written with numpy and zlib; no plotting package) ---------------

FONT = {  # 3x5 pixel glyphs, rows top to bottom
    "0": "111101101101111", "1": "010110010010111", "2": "111001111100111", "3": "111001111001111",
    "4": "101101111001001", "5": "111100111001111", "6": "111100111101111", "7": "111001001001001",
    "8": "111101111101111", "9": "111101111001111", ".": "000000000000010", " ": "000000000000000",
    "=": "000111000111000", "A": "010101111101101", "C": "111100100100111", "D": "110101101101110",
    "E": "111100110100111", "F": "111100110100100", "I": "111010010010111", "N": "110101101101101",
    "O": "111101101101111", "R": "110101110101101", "T": "111010010010010", "U": "101101101101111",
    "Y": "101101010010010", "B": "110101110101110", "S": "111100111001111", "P": "111101111100100",
    "L": "100100100100111", "G": "111100101101111", "M": "101111111101101", "H": "101101111101101",
}  # fmt: skip


def text(img, x: int, y: int, s: str, scale: int = 3, color=(0, 0, 0)) -> None:
    for i, ch in enumerate(s.upper()):
        glyph = np.array([int(b) for b in FONT[ch]], dtype=bool).reshape(5, 3)
        block = np.kron(glyph, np.ones((scale, scale), dtype=bool))
        x0 = x + i * 4 * scale
        img[y : y + 5 * scale, x0 : x0 + 3 * scale][block] = color


def write_png(path: Path, img: np.ndarray) -> None:
    """RGB uint8 [H, W, 3] -> PNG (8-bit truecolor, no filter), deterministic bytes."""
    h, w, _ = img.shape
    raw = b"".join(b"\x00" + img[r].tobytes() for r in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
    path.write_bytes(png + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def calibration_png(path: Path, cal: dict, bins: int = ECE_BINS) -> None:
    """Reliability diagram: per confidence bin, the accuracy (bar) against the mean confidence (dot);
    the diagonal is perfect calibration; the bar's shade is how many positions fall in the bin."""
    size, left, top = 400, 70, 60
    img = np.full((size + top + 70, size + left + 30, 3), 255, dtype=np.uint8)
    y0 = top + size  # pixel row of accuracy 0

    def px(v: float) -> int:
        return int(round(v * size))

    for g in range(11):  # grid
        img[y0 - px(g / 10), left : left + size + 1] = (230, 230, 230)
        img[top : y0 + 1, left + px(g / 10)] = (230, 230, 230)
    most = max(c for _, c, _, _ in cal["bins"])
    for b, count, conf, acc in cal["bins"]:
        shade = 0.35 + 0.65 * math.sqrt(count / most)
        color = tuple(int(255 - shade * (255 - c)) for c in (40, 90, 200))
        img[y0 - px(acc) : y0, left + px(b / bins) + 2 : left + px((b + 1) / bins) - 1] = color
        cx, cy = left + px(conf), y0 - px(conf)
        img[max(cy - 3, 0) : cy + 4, cx - 3 : cx + 4] = (0, 0, 0)
        img[y0 - px(acc) - 1 : y0 - px(acc) + 2, left + px(b / bins) + 2 : left + px((b + 1) / bins) - 1] = (
            200,
            40,
            40,
        )
    for i in range(size + 1):  # the diagonal
        img[y0 - i - 1 : y0 - i + 1, left + i] = (120, 120, 120)
    img[top : y0 + 1, left - 1 : left + 1] = 0  # axes
    img[y0 : y0 + 2, left : left + size + 1] = 0
    for v in ("0", "0.5", "1"):
        f = float(v)
        text(img, left + px(f) - 6 * len(v), y0 + 10, v)
        text(img, left - 12 * len(v) - 8, y0 - px(f) - 7, v)
    text(img, left + size // 2 - 100, y0 + 40, "TOP1 CONFIDENCE")
    text(img, left, 12, f"ACCURACY   ECE = {cal['ece']:.3f}")
    write_png(path, img)


# ---- the model card ------------------------------------------------------------------------


def table(header: list[str], rows: list[list]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *["| " + " | ".join(map(str, r)) + " |" for r in rows],
    ]


def write_card(out: Path, r: dict) -> None:
    c, lex, fig, cal = r["config"], r["lex"], r["adverbs"], r["calibration"]
    demo = r["demo_top"]
    lines = [
        "# tiny: sheetgpt's bundled teaching model",
        "",
        "A 2-block GPT-2 trained from scratch on a synthetic corpus of tiny stories, small enough that its",
        "whole workbook opens at once in LibreOffice, and trained so that its attention, its probabilities and",
        f'its continuations make sense: after **"{DEMO_PROMPT}"** it predicts',
        ", ".join(f'**"{t}"** {p:.3f}' for t, p in demo[:3]) + " (the corpus says 0.6, 0.25, 0.15),",
        f"and greedy decoding goes on: **{r['continuation']!r}**.",
        "",
        "## Sizes",
        "",
        *table(
            ["", ""],
            [
                ["blocks (n_layer)", c["n_layer"]],
                ["heads (n_head)", f"{c['n_head']} (head size {c['n_embd'] // c['n_head']})"],
                ["n_embd", f"{c['n_embd']} (MLP {4 * c['n_embd']})"],
                [
                    "n_positions",
                    f"{c['n_positions']} (the longest training story is {r['max_story_tokens']} tokens with "
                    "`<|endoftext|>`; later positions are untrained)",
                ],
                [
                    "vocabulary",
                    f"{c['vocab_size']} tokens: 256 bytes + {c['vocab_size'] - 257} merges + `<|endoftext|>`",
                ],
                ["parameters", f"{r['n_params']:,} (lm_head tied to wte)"],
                [
                    "model.safetensors",
                    f"{r['file_bytes']:,} bytes, float32, GPT-2 keys (`h.0.attn.c_attn.weight`, Conv1D [in, out])",
                ],
            ],
        ),
        "",
        "Why this size: the blocks, heads and n_embd are those of the earlier 1-2 sentence model (2, 4, 48) and",
        "still reach the figures below. n_positions grew from 32 to 48 because stories now run to 3-6 sentences",
        f"(up to {r['max_story_tokens']} tokens), and the vocabulary from 470 to {c['vocab_size']} tokens because each",
        "adjective has 2-3 adverbs and the sentences have new words (Then, also, and, lower-case pronouns).",
        "",
        "## Corpus",
        "",
        f"{r['stories']:,} stories ({r['corpus_chars']:,} characters, {r['corpus_tokens']:,} tokens, "
        f"{r['adverb_positions']:,} adverbs)",
        f"from `sheetgpt.corpus` (seed {r['seed']}; words, frequencies and sentence forms in `templates/corpus.ini`):",
        f"{len(lex.names)} names (male -> He, female -> She, pairs -> They), {len(lex.adverbs)} adjectives with",
        f"{len(lex.adjective_of)} adverbs, {len(lex.verbs)} verbs. One to three people per story (or a pair sharing an",
        "adjective and one more person), each introduced with an adjective; 3-6 sentences, in which someone acts:",
        "right after their introduction, or later with `Then`, `also`, `and`, `and then`. Each adverb is drawn",
        "from the acting person's adjective's adverbs with the frequencies of corpus.ini. A pronoun is used",
        "only when it is unambiguous, so with two people the model must look back to the right one. Examples:",
        "",
        *[f"    {s}" for s in r["examples"]],
        "",
        "Held out: these (name, adjective) pairs never occur in the training stories, in any role:",
        ", ".join(f"{n}/{a}" for n, a, _ in lex.heldout) + ".",
        f"The held-out set is {r['heldout_stories']} stories (seed {r['seed']}), each acting out one of these triples",
        f"among 0-2 other people: {cal['positions']:,} predicted positions, {r['heldout_positions']} of them adverbs.",
        "",
        "## Tokenizer",
        "",
        "Byte-level BPE learned on the training corpus by `sheetgpt.tokenizer.bpe_learn`, run until every",
        "word is a single token (names with and without a leading space, pronouns, adjectives, adverbs, verbs).",
        "",
        "## Training",
        "",
        f"transformers {r['versions']['transformers']} `GPT2LMHeadModel` (gelu_new, tied embeddings, no dropout),",
        f"torch {r['versions']['torch']}, {r['threads']} CPU thread(s). AdamW (lr {r['lr']}, betas 0.9/0.98,",
        f"weight decay {r['weight_decay']} on matrices), warmup then cosine decay, batch {r['batch']} stories,",
        f"{r['steps']:,} steps, {r['train_seconds']:.0f} s. Each story is its own sequence,",
        "starting at position 0 with no BOS token (as the workbook's prompt does) and ending with `<|endoftext|>`.",
        f"The loss is the next-token cross-entropy with adverb targets weighed {r['adverb_weight']:g}x (they are the",
        "only tokens that need attention to the right person); weighing a target does not move the minimum of its",
        "cross-entropy, so the probabilities the model learns are still the corpus's frequencies.",
        "",
        f"- training loss (every token of the training corpus, after training): {r['final_loss']:.4f} nats/token",
        "  (most tokens are random choices of name, adjective, verb and adverb, so it cannot go near 0)",
        f"- held-out stories' loss: {r['heldout_loss']:.4f}",
        "",
        "## Held-out figures",
        "",
        "tests/test_bundled_model.py recomputes each of these with the numpy float64 reference (no torch).",
        "",
        "- **adverb distribution**: total variation distance between the model's next-token distribution at each",
        "  adverb position and the corpus frequencies of that adjective's adverbs (mass on any other token counts",
        f"  as distance), averaged over the positions of each adjective, then over adjectives: **{fig['tv']:.3f}**",
        f"- **calibration**: expected calibration error of the top-1 prediction over all {cal['positions']:,} held-out",
        f"  positions ({ECE_BINS} equal-width confidence bins): **{cal['ece']:.4f}**"
        f" (top-1 accuracy {cal['accuracy']:.3f});",
        "  [calibration.png](calibration.png) is the reliability diagram: per bin the accuracy (bar, darker for",
        "  more positions, red top) against the mean confidence (black dot), and the diagonal of perfect calibration",
        "- **whose adjective counts**: in held-out stories with 2-3 people, the top adverb belongs to the acting",
        f"  person's adjective at **{fig['right_person']:.2%}** of {fig['multi_positions']} adverb positions",
        "",
        "![Reliability diagram](calibration.png)",
        "",
        "Per adjective (mean probability of each adverb at its positions, against the corpus frequency):",
        "",
        *table(
            ["adjective", "positions", "TV", "adverbs: model (corpus)"],
            [
                [
                    a,
                    fig["counts"][a],
                    f"{fig['tv_per_adj'][a]:.3f}",
                    ", ".join(
                        f"{adv} {q:.2f} ({f:.2f})" for (adv, f), q in zip(lex.adverbs[a].items(), fig["mean_q"][a])
                    ),
                ]
                for a in lex.adverbs
                if a in fig["tv_per_adj"]
            ],
        ),
        "",
        "Calibration bins:",
        "",
        *table(
            ["confidence", "positions", "mean confidence", "accuracy"],
            [
                [f"{b / ECE_BINS:.1f}-{(b + 1) / ECE_BINS:.1f}", n, f"{cf:.3f}", f"{acc:.3f}"]
                for b, n, cf, acc in cal["bins"]
            ],
        ),
        "",
        f'## "{DEMO_PROMPT}"',
        "",
        "The ten most likely next tokens, at temperature 1:",
        "",
        *table(["token", "p"], [[f"`{t}`", f"{p:.4f}"] for t, p in demo]),
        "",
        f"{r['demo_at_least_001']} tokens have p >= 0.01. The Predict tab's temperature divides the logits before the",
        "softmax:"
        " the entropy of the next-token distribution is "
        + ", ".join(f"{h:.3f} nats at T = {t:g}" for t, h in r["entropies"])
        + " (below 1 sharper, above 1 flatter).",
        "",
        f"Greedy continuation (argmax at each step, until `<|endoftext|>`): {r['continuation']!r}",
        "",
        "Held-out prompts (top token and its probability; right = an adverb of the expected adjective):",
        "",
        *table(
            ["prompt", "adjective", "predicted", "p", "right"],
            [[p, a, f"`{t}`", f"{q:.3f}", "yes" if ok else "NO"] for p, a, t, q, ok in r["prompt_results"]],
        ),
        "",
        "## Attention",
        "",
        f'In "{DEMO_PROMPT}", the attention row of `{DEMO_VERB.strip()}` (the position that predicts the',
        f"next token) puts its largest weight on `{DEMO_ADJ.strip()}` in: {r['attn_heads_text']}.",
        f"**Block {r['attn_block']}, head {r['attn_head']}** (counting from 0) is the clearest: weights",
        "",
        *table([f"`{t}`" for t in r["attn_tokens"]], [[f"{w:.3f}" for w in r["attn_row"]]]),
        "",
        "Over the held-out prompts (alone, then with a person of the other gender introduced after and before),",
        f"the same head's row of the verb peaks on the right person's adjective in {r['attn_general']}.",
        "",
        "## Limits",
        "",
        "The model knows only its corpus: the names, adjectives, adverbs and verbs of `templates/corpus.ini`,",
        "its sentence forms, stories of at most three people and six sentences. A new name, an adverb asked",
        "for after any other sentence, or a position past the longest story is outside anything it has seen,",
        "and its prediction there means nothing. Which adverb of an adjective comes is a coin the corpus",
        "throws, so the model can only give its odds; with two people of one gender the corpus uses names,",
        "and the model must match the name, not the pronoun.",
        "",
        "## Reproduce",
        "",
        "    pip install -e '.[oracle]'      # torch==2.13.0, transformers",
        f"    python3 scripts/train_tiny.py   # seed {r['seed']}; writes this directory",
        "",
        "The script proves the export: `sheetgpt.checkpoint.load_model` + `sheetgpt.reference.gpt2` (float64)",
        f"equal torch's float32 logits to {r['proof']['float32']:.1e}, torch float64 on the same weights to "
        f"{r['proof']['float64']:.1e},",
        f"and Hugging Face `from_pretrained` on this directory to {r['proof']['hf_from_pretrained']:.1e}.",
        f"Trained {r['date']} on {r['machine']}. On one thread the run is deterministic: run twice on that machine,",
        "it wrote byte-identical weights.",
        "",
    ]
    (out / "MODEL_CARD.md").write_text("\n".join(lines), encoding="utf-8")


# ---- main ----------------------------------------------------------------------------------


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    lex = corpus.load_lexicon()

    stories = corpus.generate(args.stories, args.seed, "train", lex)
    heldout = corpus.generate(args.heldout_stories, args.seed, "heldout", lex)
    tok = learn_tokenizer(stories, args.vocab_size, lex)
    eot = tok.encoder[ENDOFTEXT]
    ids, mask = encode_stories(stories, tok, args.n_positions)
    h_ids, h_mask = encode_stories(heldout, tok, args.n_positions)
    print(
        f"corpus: {len(stories)} stories, {int(mask.sum()) + len(stories)} tokens; vocab {tok.vocab_size}; "
        f"longest story {int(mask.sum(1).max()) + 1} tokens",
        flush=True,
    )

    model = make_model(args, tok.vocab_size, eot)
    n_params = sum(p.numel() for p in model.transformer.parameters())
    print(
        f"model: {args.n_layer} blocks, {args.n_head} heads, n_embd {args.n_embd}, {n_params:,} parameters", flush=True
    )
    held_pos = adverb_positions(heldout, tok)
    weights = mask.astype(np.float64)
    for k, t, *_ in adverb_positions(stories, tok):
        weights[k, t] = args.adverb_weight

    def evaluate() -> str:
        probs = all_probs(model, h_ids)
        fig, cal = adverb_figures(probs, held_pos, lex, tok), calibration(probs, h_ids, h_mask)
        demo = distribution(model, tok, DEMO_PROMPT)
        return (
            f"held-out TV {fig['tv']:.3f}  ECE {cal['ece']:.4f}  right person {fig['right_person']:.2%}  "
            f"demo {tok.display(int(demo.argmax()))!r} {demo.max():.3f}"
        )

    result = train(model, ids, weights, args, evaluate=evaluate)

    probs = all_probs(model, h_ids)
    fig, cal = adverb_figures(probs, held_pos, lex, tok), calibration(probs, h_ids, h_mask)
    heldout_loss = mean_loss(model, h_ids, h_mask)
    final_loss = mean_loss(model, ids, mask)  # unweighted, every training token, after training
    demo = distribution(model, tok, DEMO_PROMPT)
    order = np.argsort(-demo, kind="stable")
    demo_top = [(tok.display(int(i)), float(demo[i])) for i in order[:10]]
    entropies = []
    for t in (0.5, 1.0, 2.0):
        q = distribution(model, tok, DEMO_PROMPT, t)
        entropies.append((t, float(-(q * np.log(np.maximum(q, 1e-300))).sum())))
    continuation = greedy(model, tok, DEMO_PROMPT, args.n_positions)
    print(f"demo: {demo_top[:5]}\nentropy: {entropies}\ncontinuation: {continuation!r}")
    print(f"held-out: TV {fig['tv']:.4f}, ECE {cal['ece']:.4f}, right person {fig['right_person']:.4f}")

    owner = lex.adjective_of
    prompts = [(DEMO_PROMPT, "quick")]
    prompts += [(f"{n} is {a}. {lex.pronouns[lex.names[n]]} {v}", a) for n, a, v in lex.heldout]
    prompts += distractor_prompts(lex)
    prompt_results = []
    for prompt, adj in prompts:
        q = distribution(model, tok, prompt)
        top = tok.display(int(q.argmax()))
        ok = owner.get(top.strip()) == adj
        prompt_results.append((prompt, adj, top, float(q.max()), ok))
        print(f"{'ok ' if ok else 'BAD'} {prompt!r:55} -> {top!r} (p = {q.max():.3f}; expected {adj})")

    # attention: which (block, head) looks from " moves" to " quick" in the demo prompt
    texts, rows = attention_rows(model, tok, DEMO_PROMPT, DEMO_VERB)
    adj_at = texts.index(DEMO_ADJ)
    heads = [(b, h) for b in range(rows.shape[0]) for h in range(rows.shape[1]) if rows[b, h].argmax() == adj_at]
    for b in range(rows.shape[0]):
        for h in range(rows.shape[1]):
            print(f"block {b} head {h}: " + "  ".join(f"{t!r}:{w:.2f}" for t, w in zip(texts, rows[b, h])))
    # of those, the head whose verb row peaks on the right person's adjective in most prompts (then: the largest weight)
    hits = {bh: 0 for bh in heads}
    for prompt, adj in prompts:
        t2, r2 = attention_rows(model, tok, prompt, tok.display(tok.encode(prompt)[-1]))
        for bh in heads:
            hits[bh] += int(t2[int(r2[bh].argmax())] == " " + adj)
    attn_block, attn_head = max(heads, key=lambda bh: (hits[bh], rows[bh][adj_at])) if heads else (None, None)
    general = f"{hits[attn_block, attn_head]} of {len(prompts)} prompts" if heads else "no head (none found)"
    print(
        f"attention: heads whose {DEMO_VERB!r} row peaks on {DEMO_ADJ!r} (right adjective in how many of "
        f"{len(prompts)} prompts): {hits}; chosen: block {attn_block} head {attn_head}"
    )

    export(model, tok, args.out)
    proof = prove_export(model, args.out, [p for p, _ in prompts] + [continuation.replace(ENDOFTEXT, "")], tok)
    print(f"export proven: {proof}")
    calibration_png(args.out / "calibration.png", cal)

    record = {
        "config": {
            "n_layer": args.n_layer,
            "n_head": args.n_head,
            "n_embd": args.n_embd,
            "n_positions": args.n_positions,
            "vocab_size": tok.vocab_size,
        },
        "n_params": n_params,
        "file_bytes": (args.out / "model.safetensors").stat().st_size,
        "max_story_tokens": int(mask.sum(1).max()) + 1,
        "stories": len(stories),
        "corpus_chars": sum(len(s.text) + 1 for s in stories),
        "corpus_tokens": int(mask.sum()) + len(stories),
        "adverb_positions": sum(len(s.targets) for s in stories),
        "seed": args.seed,
        "lex": lex,
        "examples": [s.text for s in stories[:8]],
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        "threads": args.threads,
        "adverb_weight": args.adverb_weight,
        "lr": args.lr,
        "weight_decay": args.weight_decay,
        "batch": args.batch,
        "steps": args.steps,
        "train_seconds": result["seconds"],
        "final_loss": final_loss,
        "heldout_loss": heldout_loss,
        "heldout_stories": len(heldout),
        "heldout_positions": len(held_pos),
        "adverbs": fig,
        "calibration": cal,
        "demo_top": demo_top,
        "demo_at_least_001": int((demo >= 0.01).sum()),
        "entropies": entropies,
        "continuation": continuation,
        "prompt_results": prompt_results,
        "attn_block": attn_block,
        "attn_head": attn_head,
        "attn_heads_text": ", ".join(f"block {b} head {h}" for b, h in heads) or "no head",
        "attn_tokens": texts,
        "attn_row": rows[attn_block, attn_head] if heads else rows[0, 0],
        "attn_general": general,
        "proof": proof,
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()} {platform.system()}",
    }
    write_card(args.out, record)
    size = sum(f.stat().st_size for f in args.out.iterdir())
    print(f"\nwrote {args.out} ({size / 1e3:.0f} kB)")
    print(f"training: {result['seconds']:.0f} s, final loss {final_loss:.4f}; held-out loss {heldout_loss:.4f}")
    bad = [p for p, _, _, _, ok in prompt_results if not ok]
    print(
        f"prompts right: {len(prompt_results) - len(bad)} of {len(prompt_results)}" + (f"; wrong: {bad}" if bad else "")
    )
    print(f"attention head: block {attn_block} head {attn_head}")


if __name__ == "__main__":
    main()
