"""Train the sparse autoencoder bundled with the teaching model: sheetgpt/data/tiny/sae/, reproducibly, on CPU.

1. activations: the residual stream at the input of block 1 (``blocks.1.hook_resid_pre``, the output
   of block 0) of the bundled model, float64 reference (sheetgpt.reference.gpt2), on every token of
   corpus stories (sheetgpt.corpus.generate; training stories seed --seed, evaluation stories another seed);
2. SAE: f = ReLU((x - b_dec) W_enc + b_enc), x_hat = f W_dec + b_dec, decoder rows of unit norm
   (renormalised after every step, their gradient's radial part removed first); loss = mean squared
   error summed over the stream + l1 x sum(f); Adam; W_enc initialised as W_dec^T, b_dec as the mean;
   features dead at the half-way point re-initialised once on badly reconstructed inputs;
3. l1 chosen by a sweep: the largest coefficient whose evaluation FVE stays >= --min-fve
   (the sparsest dictionary that still explains the stream);
4. labels: each feature's top-activating tokens in context, made automatically (see ``label``);
5. export: cfg.json + sae_weights.safetensors (SAELens's published layout, float32) + labels.json
   + SAE_CARD.md, with the figures computed by sheetgpt.sae (float64) from the exported weights,
   which tests/test_sae.py recomputes.

    python3 scripts/train_sae.py        # about 5 minutes on one CPU thread (4 runs of the sweep)
"""

from __future__ import annotations

import argparse
import collections
import json
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import save_file

from sheetgpt import corpus, reference
from sheetgpt.checkpoint import default_model_dir, load_model
from sheetgpt.sae import fraction_of_variance_explained, load_sae, resid_pre
from sheetgpt.tokenizer import Tokenizer

ROOT = Path(__file__).resolve().parent.parent
BLOCK = 1
EVAL_SEED_OFFSET = 1000


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--out", type=Path, default=ROOT / "sheetgpt" / "data" / "tiny" / "sae")
    p.add_argument("--seed", type=int, default=0, help="seed of the training stories, the initialisation, the batches")
    p.add_argument("--stories", type=int, default=2000, help="training stories")
    p.add_argument("--eval-stories", type=int, default=300, help="evaluation stories (seed + 1000)")
    p.add_argument(
        "--features",
        type=int,
        default=4,
        help="d_sae as a multiple of n_embd; 4 x 48 = 192 covers the corpus's ~140 words once each "
        "plus room for context features, and keeps the shipped file under 80 kB",
    )
    p.add_argument("--l1", type=float, nargs="+", default=[0.3, 1.0, 3.0, 10.0], help="sweep")
    p.add_argument("--min-fve", type=float, default=0.9, help="the sweep keeps the largest l1 with FVE >= this")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--lr", type=float, default=3e-3)
    return p.parse_args()


# ---- activations ---------------------------------------------------------------------------


def activations(model, tok: Tokenizer, stories: list[corpus.Story]):
    """-> (x [N, d] float64, tokens [(story, position)], ids per story) over every token of each story."""
    params = model.params
    xs, where, all_ids = [], [], []
    for k, s in enumerate(stories):
        ids = tok.encode(s.text)
        trace = reference.gpt2(ids, params, model.config)
        xs.append(resid_pre(trace, BLOCK))
        where += [(k, t) for t in range(len(ids))]
        all_ids.append(ids)
    return np.concatenate(xs), where, all_ids


# ---- training ------------------------------------------------------------------------------


def train(x: np.ndarray, d_sae: int, l1: float, args, log=print) -> dict[str, np.ndarray]:
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    X = torch.from_numpy(x.astype(np.float32))
    d = X.shape[1]
    W_dec = torch.randn(d_sae, d, generator=gen)
    W_dec /= W_dec.norm(dim=1, keepdim=True)
    W_dec = W_dec.requires_grad_()
    W_enc = W_dec.detach().T.clone().requires_grad_()
    b_enc = torch.zeros(d_sae, requires_grad=True)
    b_dec = X.mean(0).clone().requires_grad_()
    opt = torch.optim.Adam([W_enc, W_dec, b_enc, b_dec], lr=args.lr)
    started = time.perf_counter()
    for step in range(args.steps):
        rows = torch.randint(0, len(X), (args.batch,), generator=gen)
        xb = X[rows]
        f = torch.relu((xb - b_dec) @ W_enc + b_enc)
        x_hat = f @ W_dec + b_dec
        mse = ((x_hat - xb) ** 2).sum(1).mean()
        loss = mse + l1 * f.sum(1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        with torch.no_grad():  # keep the rows on the unit sphere: drop the gradient's radial part
            W_dec.grad -= (W_dec.grad * W_dec).sum(1, keepdim=True) * W_dec
        opt.step()
        with torch.no_grad():
            W_dec /= W_dec.norm(dim=1, keepdim=True)
        if step == args.steps // 2:
            resample_dead(X, W_enc, W_dec, b_enc, b_dec, gen)
        if step % 1000 == 0 or step == args.steps - 1:
            log(
                f"  l1 {l1:g} step {step:5d}  mse {mse.item():.5f}  L0 {(f > 0).float().sum(1).mean().item():6.2f}"
                f"  {time.perf_counter() - started:5.1f} s"
            )
    return {
        # contiguous: safetensors.numpy writes a transposed view's memory in the wrong order
        k: np.ascontiguousarray(v.detach().numpy(), dtype=np.float32)
        for k, v in (("W_enc", W_enc), ("W_dec", W_dec), ("b_enc", b_enc), ("b_dec", b_dec))
    }


@torch.no_grad()
def resample_dead(X, W_enc, W_dec, b_enc, b_dec, gen) -> None:
    """Features that fire on none of the training tokens restart on the worst-reconstructed ones."""
    f = torch.relu((X - b_dec) @ W_enc + b_enc)
    dead = torch.nonzero(f.max(0).values <= 0).flatten()
    if not len(dead):
        return
    err = ((f @ W_dec + b_dec - X) ** 2).sum(1)
    picks = torch.multinomial(err, len(dead), replacement=False, generator=gen)
    v = X[picks] - b_dec
    v = v / v.norm(dim=1, keepdim=True)
    W_dec[dead] = v
    alive_norm = W_enc[:, f.max(0).values > 0].norm(dim=0).mean()
    W_enc[:, dead] = v.T * alive_norm * 0.2
    b_enc[dead] = 0.0


# ---- labels --------------------------------------------------------------------------------

TOP = 20  # contexts a label is made from


def label(contexts: list[tuple[str, str]], lex_groups: dict[str, list[str]]) -> str:
    """A label from a feature's top-activating (previous token, token) pairs:

    - the tokens that make up >= 80% of them, most frequent first ("' She'/' her'"), or, when more
      than three tokens are needed, the narrowest word class that 80% of them share ("an adverb of quick");
    - "after X" when >= 60% of them follow one token, or else one word class ("after a female name").
    """
    n = len(contexts)
    cur = collections.Counter(c for _, c in contexts)
    words, covered = [], 0
    for w, c in cur.most_common():
        words.append(w)
        covered += c
        if covered >= 0.8 * n:
            break
    if len(words) <= 3:
        what = "/".join(repr(w) for w in words)
    else:
        group = _shared_group([c for _, c in contexts], lex_groups, 0.8)
        what = (
            f"{group} ({'/'.join(repr(w) for w in words[:3])}/...)"
            if group
            else "/".join(repr(w) for w in words[:3]) + "/..."
        )
    prev, pn = collections.Counter(p for p, _ in contexts).most_common(1)[0]
    if pn >= 0.6 * n:
        return f"{what} after {prev!r}"
    group = _shared_group([p for p, _ in contexts], lex_groups, 0.6)
    return f"{what} after {group}" if group else what


def _shared_group(tokens: list[str], lex_groups: dict[str, list[str]], share: float) -> str:
    """The narrowest word class that at least ``share`` of the tokens belong to ("" if none)."""
    counts = collections.Counter(g for t in tokens for g in lex_groups.get(t, []))
    fits = [(lex_groups_rank(g), g) for g, c in counts.items() if c >= share * len(tokens)]
    return min(fits)[1] if fits else ""


def lex_groups_rank(group: str) -> int:  # narrow classes first
    return 0 if " of " in group or group.startswith(("a male", "a female")) else 1


def word_groups(lex: corpus.Lexicon) -> dict[str, list[str]]:
    """token text -> its word classes in the corpus, narrow to broad ("an adverb of quick", "an adverb")."""
    out: dict[str, list[str]] = collections.defaultdict(list)
    for name, gender in lex.names.items():
        for t in (name, " " + name):
            out[t] += [f"a {gender} name", "a name"]
    for adj, advs in lex.adverbs.items():
        out[" " + adj] += [f"a form of {adj}", "an adjective"]
        for a in advs:
            out[" " + a] += [f"an adverb of {adj}", f"a form of {adj}", "an adverb"]
    for sing, plur in lex.verbs.items():
        out[" " + sing] += [f"a form of {sing}", "a verb"]
        out[" " + plur] += [f"a form of {sing}", "a verb"]
    for kind, p in lex.pronouns.items():
        for t in (p, " " + p, " " + p.lower()):
            out[t] += [f"a {kind} pronoun", "a pronoun"]
    for kind, p in lex.pronouns.items():
        if kind in ("male", "female"):
            for t in (p, " " + p, " " + p.lower()):
                out[t] += [f"a {kind} name or pronoun"]
    for name, gender in lex.names.items():
        for t in (name, " " + name):
            out[t] += [f"a {gender} name or pronoun"]
    return dict(out)


def feature_contexts(f: np.ndarray, where, all_ids, tok: Tokenizer, stories) -> list[dict]:
    """Per feature: its top TOP activations' (previous token, token) and a short text snippet each."""
    out = []
    for k in range(f.shape[1]):
        col = f[:, k]
        order = [i for i in np.argsort(-col, kind="stable")[:TOP] if col[i] > 0]
        pairs, snippets = [], []
        for i in order:
            s, t = where[i]
            ids = all_ids[s]
            prev = tok.display(ids[t - 1]) if t > 0 else "^"
            pairs.append((prev, tok.display(ids[t])))
            if len(snippets) < 5:
                before = "".join(tok.display(j) for j in ids[max(0, t - 6) : t])
                snippets.append(f"{before}[[{tok.display(ids[t])}]] {col[i]:.2f}")
        out.append({"pairs": pairs, "snippets": snippets, "fires": int((col > 0).sum())})
    return out


# ---- main ----------------------------------------------------------------------------------


def evaluate(sae, x) -> dict:
    f = sae.encode(x)
    x_hat = sae.decode(f)
    return {
        "fve": fraction_of_variance_explained(x, x_hat),
        "l0": float((f > 0).sum(1).mean()),
        "dead": int((f.max(0) <= 0).sum()),
        "f": f,
    }


def write_sae(out: Path, tensors: dict, d_in: int, d_sae: int, extra: dict | None = None):
    out.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out / "sae_weights.safetensors"))
    cfg = {
        "architecture": "standard",
        "d_in": d_in,
        "d_sae": d_sae,
        "activation_fn_str": "relu",
        "apply_b_dec_to_input": True,
        "normalize_activations": "none",
        "hook_name": f"blocks.{BLOCK}.hook_resid_pre",
        "hook_layer": BLOCK,
        "model_name": "sheetgpt/data/tiny",
        "dtype": "float32",
        **(extra or {}),
    }
    (out / "cfg.json").write_text(json.dumps(cfg, indent=2) + "\n", encoding="utf-8")


def main() -> None:
    args = parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    model = load_model(default_model_dir())
    tok = Tokenizer.from_dir(model.path)
    lex = corpus.load_lexicon()
    d = model.config.n_embd
    d_sae = args.features * d
    t0 = time.perf_counter()
    train_stories = corpus.generate(args.stories, args.seed)
    eval_stories = corpus.generate(args.eval_stories, args.seed + EVAL_SEED_OFFSET)
    x_train, _, _ = activations(model, tok, train_stories)
    x_eval, where, all_ids = activations(model, tok, eval_stories)
    print(
        f"activations: {len(x_train)} training tokens, {len(x_eval)} evaluation tokens, "
        f"{time.perf_counter() - t0:.1f} s"
    )

    sweep, results = [], {}
    tmp = args.out.parent / "_sae_sweep"
    for l1 in args.l1:
        tensors = train(x_train, d_sae, l1, args)
        write_sae(tmp, tensors, d, d_sae)
        r = evaluate(load_sae(tmp, model.config), x_eval)
        sweep.append({"l1": l1, "fve": r["fve"], "l0": r["l0"], "dead": r["dead"]})
        results[l1] = tensors
        print(f"l1 {l1:g}: FVE {r['fve']:.4f}  L0 {r['l0']:.2f}  dead {r['dead']}")
    for p in tmp.iterdir():
        p.unlink()
    tmp.rmdir()
    ok = [s for s in sweep if s["fve"] >= args.min_fve]
    chosen = max(ok, key=lambda s: s["l1"]) if ok else max(sweep, key=lambda s: s["fve"])
    l1 = chosen["l1"]
    tensors = results[l1]
    write_sae(args.out, tensors, d, d_sae, {"l1_coefficient": l1, "seed": args.seed})
    sae = load_sae(args.out, model.config)
    r = evaluate(sae, x_eval)
    groups = word_groups(lex)
    ctx = feature_contexts(r["f"], where, all_ids, tok, eval_stories)
    labels = [label(c["pairs"], groups) if c["pairs"] else "" for c in ctx]
    payload = {
        "labels": labels,
        "fires": [c["fires"] for c in ctx],
        "contexts": [c["snippets"] for c in ctx],
    }
    (args.out / "labels.json").write_text(json.dumps(payload, indent=0, ensure_ascii=False) + "\n", encoding="utf-8")
    write_card(args, sweep, chosen, r, labels, ctx, len(x_train), len(x_eval), d, d_sae)
    for p in args.out.iterdir():
        p.chmod(0o644)  # shipped in the package, readable by all
    print(f"chose l1 {l1:g}: FVE {r['fve']:.4f}, L0 {r['l0']:.2f}, dead {r['dead']}; wrote {args.out}")


def write_card(args, sweep, chosen, r, labels, ctx, n_train, n_eval, d, d_sae) -> None:
    live = [k for k in range(d_sae) if ctx[k]["fires"]]
    order = sorted(live, key=lambda k: -ctx[k]["fires"])
    lines = [
        "# The bundled sparse autoencoder",
        "",
        f"A sparse autoencoder on the residual stream of `sheetgpt/data/tiny` at the input of block {BLOCK} "
        f"(`blocks.{BLOCK}.hook_resid_pre`, the output of block 0), in SAELens's published layout "
        "(`cfg.json` + `sae_weights.safetensors`; sheetgpt/sae.py reads it). Trained by `scripts/train_sae.py` "
        f"(torch, one thread, seed {args.seed}: the same seed gives the same bytes).",
        "",
        "- encoder `f = ReLU((x - b_dec) W_enc + b_enc)`, decoder `x_hat = f W_dec + b_dec`, "
        "decoder rows of unit norm;",
        f"- d_in = n_embd = {d}, d_sae = {d_sae} = {args.features} x n_embd: the corpus has about 140 words, "
        "so this is room for one feature per word and some for context, in a file of "
        f"{d_sae * d * 2 * 4 // 1000} kB;",
        f"- activations: every token of {args.stories} corpus stories (seed {args.seed}, {n_train} tokens); figures "
        f"below on {args.eval_stories} other stories (seed {args.seed + EVAL_SEED_OFFSET}, {n_eval} tokens);",
        f"- Adam, lr {args.lr:g}, {args.steps} steps of {args.batch} tokens, loss = squared error summed over the "
        "stream + l1 x sum(f); dead features re-initialised once at half-way.",
        "",
        "## Figures (evaluation stories; tests/test_sae.py recomputes them from the shipped weights)",
        "",
        f"- fraction of variance explained (1 - SSE / SST about the mean): **{r['fve']:.4f}**",
        f"- mean L0 (active features per token): **{r['l0']:.2f}**",
        f"- dead features (never active on the evaluation tokens): **{r['dead']}** of {d_sae}",
        "",
        f"## How l1 was chosen: the largest with FVE >= {args.min_fve} (chosen: {chosen['l1']:g})",
        "",
        "| l1 | FVE | L0 | dead |",
        "|---|---|---|---|",
        *[f"| {s['l1']:g} | {s['fve']:.4f} | {s['l0']:.2f} | {s['dead']} |" for s in sweep],
        "",
        "## Labels",
        "",
        "`labels.json` holds per feature: `labels` (made by `label` in scripts/train_sae.py from the 20 "
        "top-activating tokens: the tokens that make up 80% of them, and `after X` when 60% follow one token "
        "or word class), `fires` (evaluation tokens it is active on) and `contexts` (its top five, the token "
        "in [[ ]], with the activation). The twenty features active most often:",
        "",
        "| feature | fires on | label | top context |",
        "|---|---|---|---|",
        *[
            f"| {k} | {ctx[k]['fires']} | {labels[k]} | `{ctx[k]['snippets'][0]}` |".replace("|'", "| '")
            for k in order[:20]
        ],
        "",
    ]
    (args.out / "SAE_CARD.md").write_text("\n".join(lines), encoding="utf-8")


if __name__ == "__main__":
    main()
