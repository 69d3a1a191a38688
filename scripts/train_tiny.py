"""Train the bundled teaching model sheetgpt/data/tiny/ from scratch, reproducibly, on CPU.

1. corpus: sheetgpt.corpus.generate (seeded; templates/corpus.ini holds the words);
2. tokenizer: our byte-level BPE (sheetgpt.tokenizer.bpe_learn) learned on that corpus,
   run until every word is one token; asserts that every name, pronoun and adverb is;
3. model: Hugging Face GPT2LMHeadModel (gelu_new, tied embeddings, no dropout), AdamW;
4. evaluation: adverb accuracy on held-out stories, prompts, and which attention head
   looks from " moves" back to " quick";
5. export: config.json + model.safetensors (float32, GPT-2 keys and Conv1D [in, out]
   layout) + vocab.json + merges.txt + MODEL_CARD.md; proves that sheetgpt's loader and
   float64 reference reproduce torch's logits.

    pip install -e '.[oracle]'          # torch==2.13.0, transformers
    python3 scripts/train_tiny.py       # a few minutes on 2 CPU cores

The package never imports torch; tests/test_bundled_model.py checks the result with numpy.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import platform
import time
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
DEMO_PROMPT, DEMO_ADJ, DEMO_VERB, DEMO_ADVERB = "Mike is quick. He moves", " quick", " moves", " quickly"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--out", type=Path, default=ROOT / "sheetgpt" / "data" / "tiny", help="model directory to write")
    p.add_argument("--seed", type=int, default=0, help="seed of the corpus, the initialisation and the batches")
    p.add_argument("--stories", type=int, default=100000, help="training stories")
    p.add_argument("--heldout-stories", type=int, default=800, help="evaluation stories about the held-out triples")
    p.add_argument("--vocab-size", type=int, default=512, help="upper bound; BPE stops once every word is one token")
    p.add_argument("--n-layer", type=int, default=2)
    p.add_argument("--n-head", type=int, default=4)
    p.add_argument("--n-embd", type=int, default=48)
    p.add_argument("--n-positions", type=int, default=32)
    p.add_argument(
        "--steps",
        type=int,
        default=20000,
        help="with 6,000 the same run stalls at choosing either person's adverb (64%% held-out)",
    )
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=5e-3)
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument(
        "--adverb-weight",
        type=float,
        default=20.0,
        help="loss weight of the adverb targets (the only tokens that need attention to the right person)",
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
    """-> (ids [N, n_positions], loss mask [N, n_positions]); each story ends with <|endoftext|> and is padded with it."""
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
    """-> list of (story index, position that predicts the adverb, adverb id)."""
    out = []
    for k, s in enumerate(stories):
        for prefix, adverb in s.targets:
            (aid,) = tok.encode(adverb)
            out.append((k, len(tok.encode(prefix)) - 1, aid))
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
                extra = f"  held-out adverb accuracy {evaluate():.2%}"
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
def adverb_accuracy(model, ids, positions) -> float:
    logits = model(input_ids=torch.from_numpy(ids)).logits
    hits = [int(logits[k, t].argmax()) == aid for k, t, aid in positions]
    return sum(hits) / len(hits)


@torch.no_grad()
def predict(model, tok: Tokenizer, prompt: str) -> tuple[str, float]:
    logits = model(input_ids=torch.tensor([tok.encode(prompt)])).logits[0, -1]
    probs = torch.softmax(logits.double(), -1)
    top = int(probs.argmax())
    return tok.display(top), float(probs[top])


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
    'Tom is quiet. Sally is careful. He sings' and 'Sally is careful. Tom is quiet. He sings'."""
    other = {"male": "Sally", "female": "Mike"}
    out = []
    for first in (True, False):
        for i, (name, adj, verb) in enumerate(lex.heldout):
            gender = lex.names[name]
            other_adj = lex.heldout[(i + 1) % len(lex.heldout)][1]  # varied, so no head can just avoid one word
            target, distractor = f"{name} is {adj}.", f"{other[gender]} is {other_adj}."
            intros = f"{target} {distractor}" if first else f"{distractor} {target}"
            out.append((f"{intros} {lex.pronouns[gender]} {verb}", " " + lex.adverbs[adj]))
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
    assert worst32 < 1e-5, f"reference vs torch float32: max |diff| {worst32:.3g}"
    assert worst64 < 1e-9, f"reference vs torch float64: max |diff| {worst64:.3g}"
    assert worst_hf < 1e-5, f"reference vs HF from_pretrained({out}): max |diff| {worst_hf:.3g}"
    return {"float32": worst32, "float64": worst64, "hf_from_pretrained": worst_hf}


def make_model_like(model):
    clone = GPT2LMHeadModel(model.config)
    clone.load_state_dict(model.state_dict())
    return clone.eval()


def limits(prompt_results) -> str:
    single = [r for r in prompt_results[1:] if r[0].count(".") == 1]
    multi = [r for r in prompt_results if r[0].count(".") == 2]
    ok = lambda rs: sum(r[1] == r[2] for r in rs)  # noqa: E731
    said = (
        f"With one person the adverb is right in {ok(single)} of {len(single)} held-out prompts; with two people, "
        f"where only the pronoun says whose adjective counts, in {ok(multi)} of {len(multi)} distractor prompts."
    )
    if ok(multi) < len(multi):
        said += (
            " Where it is wrong, the verb position has not learned to look up its subject: p is near 0.5, i.e. it "
            "picks one of the two adjectives."
        )
    return said + (
        " The model knows only its corpus: the names, adjectives and verbs of `templates/corpus.ini`, its four sentence "
        "forms, stories of at most three people. A new name, an adverb asked for after any other sentence, or a "
        "position past the longest story is outside anything it has seen, and its prediction there means nothing."
    )


# ---- the model card ------------------------------------------------------------------------


def write_card(out: Path, r: dict) -> None:
    c = r["config"]
    lines = [
        "# tiny: sheetgpt's bundled teaching model",
        "",
        "A 2-block GPT-2 trained from scratch on a synthetic corpus of tiny stories, small enough that its",
        "whole workbook opens at once in LibreOffice, and trained so that its attention and prediction make",
        f'sense: after **"{DEMO_PROMPT}"** it predicts **"{r["demo"][0]}"** (p = {r["demo"][1]:.3f}).',
        "",
        "## Sizes",
        "",
        "| | |",
        "|---|---|",
        f"| blocks (n_layer) | {c['n_layer']} |",
        f"| heads (n_head) | {c['n_head']} (head size {c['n_embd'] // c['n_head']}) |",
        f"| n_embd | {c['n_embd']} (MLP {4 * c['n_embd']}) |",
        f"| n_positions | {c['n_positions']} (stories are at most {r['max_story_tokens']} tokens; later positions are untrained) |",
        f"| vocabulary | {c['vocab_size']} tokens: 256 bytes + {c['vocab_size'] - 257} merges + `<|endoftext|>` |",
        f"| parameters | {r['n_params']:,} (lm_head tied to wte) |",
        f"| model.safetensors | {r['file_bytes']:,} bytes, float32, GPT-2 keys (`h.0.attn.c_attn.weight`, Conv1D [in, out]) |",
        "",
        "## Corpus",
        "",
        f"{r['stories']:,} stories ({r['corpus_chars']:,} characters, {r['corpus_tokens']:,} tokens, {r['adverb_positions']:,} adverbs)",
        f"from `sheetgpt.corpus` (seed {r['seed']}; words and sentence forms in `templates/corpus.ini`):",
        f"{len(r['lex'].names)} names (male -> He, female -> She, pairs -> They), {len(r['lex'].adverbs)} adjective/adverb pairs,",
        f"{len(r['lex'].verbs)} verbs. One to three people per story, each with an adjective; then one or two",
        "sentences say how someone acts, and the adverb comes from that person's adjective. A pronoun is used",
        "only when it is unambiguous, so with two people the model must look back to the right one. Examples:",
        "",
        *[f"    {s}" for s in r["examples"]],
        "",
        "Held out: these (name, adjective) pairs never occur in the training stories, in any role:",
        ", ".join(f"{n}/{a}" for n, a, _ in r["lex"].heldout) + ".",
        "",
        "## Tokenizer",
        "",
        "Byte-level BPE learned on the training corpus by `sheetgpt.tokenizer.bpe_learn`, run until every",
        "word is a single token (names with and without a leading space, pronouns, adjectives, adverbs, verbs).",
        "",
        "## Training",
        "",
        f"transformers {r['versions']['transformers']} `GPT2LMHeadModel` (gelu_new, tied embeddings, no dropout), torch {r['versions']['torch']},",
        f"{r['threads']} CPU threads. AdamW (lr {r['lr']}, betas 0.9/0.98, weight decay {r['weight_decay']} on matrices), warmup then cosine",
        f"decay, batch {r['batch']} stories, {r['steps']:,} steps, {r['train_seconds']:.0f} s. Each story is its own sequence,",
        "starting at position 0 with no BOS token (as the workbook's prompt does) and ending with `<|endoftext|>`.",
        "",
        f"- final training loss (every token of the training corpus, after training): **{r['final_loss']:.4f}** nats/token",
        "  (most tokens are random choices of name, adjective and verb, so the loss cannot go near 0);",
        f"  the objective, which weighs adverb targets {r['adverb_weight']:g}x, averaged {r['objective']:.4f} over the last 100 steps",
        f"- held-out stories' loss: {r['heldout_loss']:.4f}",
        f"- adverb accuracy, training stories: {r['train_acc']:.2%}",
        f"- **adverb accuracy, held-out stories ({r['heldout_stories']} stories, {r['heldout_positions']} adverbs): {r['heldout_acc']:.2%}**",
        "",
        "Held-out prompts (top token and its probability):",
        "",
        "| prompt | expected | predicted | p |",
        "|---|---|---|---|",
        *[f"| {p} | `{e}` | `{t}` | {q:.3f} |" for p, e, t, q in r["prompt_results"]],
        "",
        "## Attention",
        "",
        f'In "{DEMO_PROMPT}", the attention row of `{DEMO_VERB.strip()}` (the position that predicts the',
        f"next token) puts its largest weight on `{DEMO_ADJ.strip()}` in: {r['attn_heads_text']}.",
        f"Block {r['attn_block']}, head {r['attn_head']} (counting from 0) is the clearest: weights",
        "",
        "| " + " | ".join(f"`{t}`" for t in r["attn_tokens"]) + " |",
        "|" + "---|" * len(r["attn_tokens"]),
        "| " + " | ".join(f"{w:.3f}" for w in r["attn_row"]) + " |",
        "",
        "Over the held-out prompts (alone, then with a person of the other gender introduced after and before),",
        f"the same head's row of the verb peaks on the right person's adjective in {r['attn_general']}.",
        "",
        "## Limits",
        "",
        f"{r['limits']}",
        "",
        "## Reproduce",
        "",
        "    pip install -e '.[oracle]'      # torch==2.13.0, transformers",
        f"    python3 scripts/train_tiny.py   # seed {r['seed']}; writes this directory",
        "",
        "The script proves the export: `sheetgpt.checkpoint.load_model` + `sheetgpt.reference.gpt2` (float64)",
        f"equal torch's float32 logits to {r['proof']['float32']:.1e}, torch float64 on the same weights to {r['proof']['float64']:.1e},",
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
    train_pos, held_pos = adverb_positions(stories[:2000], tok), adverb_positions(heldout, tok)
    weights = mask.astype(np.float64)
    for k, t, _ in adverb_positions(stories, tok):
        weights[k, t] = args.adverb_weight
    result = train(model, ids, weights, args, evaluate=lambda: adverb_accuracy(model, h_ids, held_pos))

    train_acc = adverb_accuracy(model, ids[:2000], train_pos)
    heldout_acc = adverb_accuracy(model, h_ids, held_pos)
    heldout_loss = mean_loss(model, h_ids, h_mask)
    final_loss = mean_loss(model, ids, mask)  # unweighted, every training token, after training

    prompts = [(DEMO_PROMPT, DEMO_ADVERB), *corpus.heldout_prompts(lex), *distractor_prompts(lex)]
    prompt_results = []
    for prompt, expected in prompts:
        top, p = predict(model, tok, prompt)
        prompt_results.append((prompt, expected, top, p))
        print(f"{'ok ' if top == expected else 'BAD'} {prompt!r:55} -> {top!r} (p = {p:.3f}; expected {expected!r})")

    # attention: which (block, head) looks from " moves" to " quick" in the demo prompt
    texts, rows = attention_rows(model, tok, DEMO_PROMPT, DEMO_VERB)
    adj_at = texts.index(DEMO_ADJ)
    heads = [(b, h) for b in range(rows.shape[0]) for h in range(rows.shape[1]) if rows[b, h].argmax() == adj_at]
    for b in range(rows.shape[0]):
        for h in range(rows.shape[1]):
            print(f"block {b} head {h}: " + "  ".join(f"{t!r}:{w:.2f}" for t, w in zip(texts, rows[b, h])))
    # of those, the head whose verb row peaks on the right person's adjective in most prompts (then: the largest weight)
    hits = {bh: 0 for bh in heads}
    for prompt, expected in prompts:
        t2, r2 = attention_rows(model, tok, prompt, tok.display(tok.encode(prompt)[-1]))
        adjective = " " + next(a for a, adv in lex.adverbs.items() if " " + adv == expected)
        for bh in heads:
            hits[bh] += int(t2[int(r2[bh].argmax())] == adjective)
    attn_block, attn_head = max(heads, key=lambda bh: (hits[bh], rows[bh][adj_at])) if heads else (None, None)
    general = f"{hits[attn_block, attn_head]} of {len(prompts)} prompts" if heads else "no head (none found)"
    print(
        f"attention: heads whose {DEMO_VERB!r} row peaks on {DEMO_ADJ!r} (right adjective in how many of "
        f"{len(prompts)} prompts): {hits}; chosen: block {attn_block} head {attn_head}"
    )

    export(model, tok, args.out)
    proof = prove_export(model, args.out, [p for p, _ in prompts], tok)
    print(f"export proven: {proof}")

    examples = [s.text for s in stories[:6]]
    record = {
        "config": {
            "n_layer": args.n_layer,
            "n_head": args.n_head,
            "n_embd": args.n_embd,
            "n_positions": args.n_positions,
            "vocab_size": tok.vocab_size,
        },
        "demo": prompt_results[0][2:],
        "n_params": n_params,
        "file_bytes": (args.out / "model.safetensors").stat().st_size,
        "max_story_tokens": int(mask.sum(1).max()) + 1,
        "stories": len(stories),
        "corpus_chars": sum(len(s.text) + 1 for s in stories),
        "corpus_tokens": int(mask.sum()) + len(stories),
        "adverb_positions": sum(len(s.targets) for s in stories),
        "seed": args.seed,
        "lex": lex,
        "examples": examples,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        "threads": args.threads,
        "adverb_weight": args.adverb_weight,
        "lr": args.lr,
        "weight_decay": args.weight_decay,
        "batch": args.batch,
        "steps": args.steps,
        "train_seconds": result["seconds"],
        "final_loss": final_loss,
        "objective": result["final_loss"],
        "heldout_loss": heldout_loss,
        "train_acc": train_acc,
        "heldout_acc": heldout_acc,
        "heldout_stories": len(heldout),
        "heldout_positions": len(held_pos),
        "prompt_results": prompt_results,
        "attn_block": attn_block,
        "attn_head": attn_head,
        "attn_heads_text": ", ".join(f"block {b} head {h}" for b, h in heads) or "no head",
        "attn_tokens": texts,
        "attn_row": rows[attn_block, attn_head] if heads else rows[0, 0],
        "attn_general": general,
        "limits": limits(prompt_results),
        "proof": proof,
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()} {platform.system()}",
    }
    write_card(args.out, record)
    size = sum(f.stat().st_size for f in args.out.iterdir())
    print(f"\nwrote {args.out} ({size / 1e3:.0f} kB)")
    print(
        f"training: {result['seconds']:.0f} s, final loss {final_loss:.4f} (weighted objective {result['final_loss']:.4f}); "
        f"held-out loss {heldout_loss:.4f}"
    )
    print(f"adverb accuracy: train {train_acc:.2%}, held-out {heldout_acc:.2%} ({len(held_pos)} adverbs)")
    bad = [p for p, e, t, _ in prompt_results if t != e]
    print(
        f"prompts right: {len(prompt_results) - len(bad)} of {len(prompt_results)}" + (f"; wrong: {bad}" if bad else "")
    )
    print(f"attention head: block {attn_block} head {attn_head}")


if __name__ == "__main__":
    main()
