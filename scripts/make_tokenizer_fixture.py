#!/usr/bin/env python3
"""Write tests/fixtures/tokenizer_cases.json: varied strings and the ids Hugging Face gives them.

It also records the merges that Hugging Face's BPE trainer learns on some of those
strings, the oracle for `bpe_learn` (same pre-tokenizer, same tie-break).

The oracle is Hugging Face `transformers` (its GPT2Tokenizer, backed by the Rust
`tokenizers` library), loaded from the vendored OpenAI files. Only this script needs
it (`pip install transformers`, no torch); the tests read the JSON it writes.

    python3 scripts/make_tokenizer_fixture.py [--n 2400] [--seed 2019]
"""

from __future__ import annotations

import argparse
import datetime
import json
import random
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GPT2_DIR = ROOT / "tests" / "fixtures" / "gpt2-tokenizer"
OUT = ROOT / "tests" / "fixtures" / "tokenizer_cases.json"

WORDS = (
    "the quick brown fox jumps over lazy dog a an of to in is was it that for on with as by at from "
    "transformer attention softmax layer norm token embedding spreadsheet formula cell column row "
    "Hello World GPT OpenAI Python numpy Excel LibreOffice hello world I you he she we they "
    "running jumped happily unbelievable antidisestablishmentarianism internationalization "
    "naïve café résumé coöperate façade jalapeño Zürich Ångström"
).split()
CONTRACTIONS = [
    "'s",
    "'t",
    "'re",
    "'ve",
    "'m",
    "'ll",
    "'d",
    "'S",
    "'T",
    "'RE",
    "'VE",
    "'M",
    "'LL",
    "'D",
    "’s",
    "'x",
    "''",
    "'",
]
PUNCT = list(".,;:!?-—–()[]{}<>\"'`~@#$%^&*_+=|\\/…«»„“”‘’¡¿")
SPACES = [
    " ",
    "  ",
    "   ",
    "\t",
    "\n",
    "\n\n",
    "\r\n",
    " \n",
    "\n ",
    "\t\t",
    " \t ",
    "\u00a0",
    "\u2003",
    "\u3000",
    "\u0085",
    "\u2028",
    "\u200b",
    "\x0b",
    "\x0c",
]
SCRIPTS = [
    "Привет мир, как дела?",
    "Γειά σου Κόσμε",
    "مرحبا بالعالم",
    "שלום עולם",
    "नमस्ते दुनिया",
    "你好，世界！",
    "こんにちは世界",
    "カタカナとひらがな",
    "안녕하세요 세계",
    "สวัสดีชาวโลก",
    "ሰላም ልዑል",
    "Բարեւ աշխարհ",
    "გამარჯობა",
    "ᚠᚢᚦᚨᚱᚲ",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
    "Tiếng Việt có dấu",
    "İstanbul'da ılık",
    "Straße ß ẞ",
    "ﷺ ﷽",
    "١٢٣ ٤٥٦ ۷۸۹",
    "१२३",
    "①②③ Ⅻ ½ ¾ ²",
]
EMOJI = ["😀", "👍🏽", "👨‍👩‍👧‍👦", "🇫🇷", "🏳️‍🌈", "❤️", "🤖", "🧑🏿‍💻", "☕", "✨", "🔥🔥🔥", "🙂🙃", "𓀀", "🀄"]
COMBINING = [
    "e\u0301",
    "a\u0308",
    "n\u0303",
    "Z\u0351\u0352\u0353\u0354",
    "o\u0336\u0336",
    "\u0301",
    "\u20dd",
    "क\u093f",
    "ก\u0e34",
]
CODE = [
    "def f(x):\n    return x * 2\n",
    "for (int i = 0; i < n; ++i) { a[i] += b[i]; }",
    "if x != None and y == 3:",
    "const add = (a, b) => a + b;",
    "SELECT * FROM users WHERE id = 42;",
    '<div class="x">Hi</div>',
    "=SUMPRODUCT(A1:A10, B1:B10)/COUNT(C:C)",
    "x = {'a': [1, 2.5e-3], \"b\": None}",
    "#include <stdio.h>\nint main(){}",
    "    indented\n\tand tabbed\n",
    "// comment\n/* block */",
    "$ ls -la | grep '.py$'",
    "λx. x x",
    "a_b_c__d",
    "CamelCaseWordsHere",
    "https://example.com/path?q=1&r=two#frag",
    "user@example.org",
    "C:\\Users\\name\\file.txt",
]


def numbers(rng: random.Random) -> str:
    pick = rng.randrange(8)
    if pick == 0:
        return str(rng.randrange(10 ** rng.randrange(1, 25)))
    if pick == 1:
        return f"{rng.uniform(-1e6, 1e6):.{rng.randrange(0, 8)}f}"
    if pick == 2:
        return f"{rng.randrange(1, 1000):,}{rng.randrange(1000):03d}"
    if pick == 3:
        return f"{rng.randrange(1900, 2100)}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}"
    if pick == 4:
        return f"{rng.random():e}"
    if pick == 5:
        return f"${rng.randrange(100)}.{rng.randrange(100):02d}"
    if pick == 6:
        return f"v{rng.randrange(10)}.{rng.randrange(20)}.{rng.randrange(100)}"
    return f"{rng.randrange(-50, 50)}%"


def random_char(rng: random.Random) -> str:
    while True:
        r = rng.random()
        if r < 0.3:
            cp = rng.randrange(0x20, 0x250)
        elif r < 0.4:
            cp = rng.randrange(0, 0x20)
        elif r < 0.7:
            cp = rng.randrange(0x250, 0x10000)
        else:
            cp = rng.randrange(0x10000, 0x110000)
        if not 0xD800 <= cp <= 0xDFFF:  # lone surrogates are not text (see sheetgpt/tokenizer.py)
            return chr(cp)


def piece(rng: random.Random) -> str:
    kind = rng.randrange(12)
    if kind == 0:
        return rng.choice(WORDS) + rng.choice(CONTRACTIONS)
    if kind == 1:
        return rng.choice(PUNCT) * rng.randrange(1, 4)
    if kind == 2:
        return rng.choice(SPACES) * rng.randrange(1, 4)
    if kind == 3:
        return rng.choice(SCRIPTS)
    if kind == 4:
        return rng.choice(EMOJI)
    if kind == 5:
        return rng.choice(COMBINING)
    if kind == 6:
        return rng.choice(CODE)
    if kind == 7:
        return numbers(rng)
    if kind == 8:
        return "".join(random_char(rng) for _ in range(rng.randrange(1, 6)))
    if kind == 9:
        return rng.choice(WORDS).upper()
    if kind == 10:
        return chr(rng.randrange(0, 0x20)) if rng.random() < 0.7 else "\x7f"
    return rng.choice(WORDS)


def prose(rng: random.Random) -> str:
    sentences = []
    for _ in range(rng.randrange(1, 5)):
        words = [rng.choice(WORDS) for _ in range(rng.randrange(3, 15))]
        if rng.random() < 0.5:
            i = rng.randrange(len(words))
            words[i] += rng.choice(CONTRACTIONS)
        sentences.append(" ".join(words).capitalize() + rng.choice([".", "!", "?", "...", ":", ""]))
    return rng.choice([" ", "  ", "\n", "\n\n"]).join(sentences)


def make_cases(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    fixed = [
        "",
        " ",
        "Hello world",
        " Hello world",
        "Hello <|endoftext|> world",
        "<|endoftext|>",
        "a<|endoftext|>b  <|endoftext|> x",
        "<|endoftext|><|endoftext|>",
        "<|endoftext",
        "I'M HERE, IT'S FINE, WE'LL SEE",
        "don't won't can't I'd you've",
        "x" * 5000,
        "1" * 3000,
        "!" * 2000,
        " " * 100,
        "\n" * 50,
        "\t \t \n " * 20,
        "a\r\nb\rc\n",
        "ab" * 1500,
        "\x1c\x1d\x1e\x1f",
        "\x1c \x1d  x",
        "a \x0b b \x0c c \x85 d \u00a0 e",
        "\u2028\u2029",
        "  hello  ",
        "hello   world",
    ]
    fixed += [chr(c) for c in range(0, 0x180)]  # every single character of the first 384 code points
    fixed += [" " + chr(c) for c in range(0, 0x180, 7)]
    cases = list(fixed)
    while len(cases) < n:
        r = rng.random()
        if r < 0.25:
            cases.append(prose(rng))
        elif r < 0.35:
            cases.append(rng.choice(CODE) + piece(rng))
        elif r < 0.42:
            cases.append("".join(random_char(rng) for _ in range(rng.randrange(1, 40))))
        elif r < 0.46:
            cases.append(rng.choice(WORDS) * rng.randrange(20, 200))
        else:
            parts = [piece(rng) for _ in range(rng.randrange(1, 12))]
            joins = [rng.choice(["", " ", " ", "\n", "  "]) for _ in parts]
            cases.append("".join(p + j for p, j in zip(parts, joins)))
    return cases


def oracle():
    import transformers
    from transformers import GPT2Tokenizer

    tmp = Path(tempfile.mkdtemp())
    shutil.copy(GPT2_DIR / "encoder.json", tmp / "vocab.json")
    shutil.copy(GPT2_DIR / "vocab.bpe", tmp / "merges.txt")
    tok = GPT2Tokenizer.from_pretrained(str(tmp))
    shutil.rmtree(tmp)

    def encode(text: str) -> list[int]:
        return tok.encode(text, add_special_tokens=False)

    # transformers 5.x can build an empty tokenizer without complaint: make sure this one is GPT-2
    assert len(tok) == 50257, len(tok)
    assert encode("Hello world") == [15496, 995], encode("Hello world")
    assert encode(" Hello world") == [18435, 995]
    assert encode("<|endoftext|>") == [50256]
    return (
        encode,
        f"transformers {transformers.__version__} GPT2Tokenizer (tokenizers {__import__('tokenizers').__version__})",
    )


def hf_bpe_learn(text: str, n_merges: int) -> list[list[str]]:
    """Merges that Hugging Face's own BPE trainer learns with GPT-2's byte-level pre-tokenizer."""
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import models, pre_tokenizers, trainers

    tok = HFTokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(vocab_size=256 + n_merges, initial_alphabet=alphabet, show_progress=False)
    tok.train_from_iterator([text], trainer=trainer)
    merges = json.loads(tok.to_str())["model"]["merges"]
    merges = [m.split(" ") if isinstance(m, str) else m for m in merges]
    assert len(merges) == n_merges, len(merges)
    return merges


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2400, help="number of cases")
    ap.add_argument("--seed", type=int, default=2019, help="random seed")
    ap.add_argument("-o", "--out", type=Path, default=OUT)
    args = ap.parse_args()

    encode, who = oracle()
    texts = make_cases(args.n, args.seed)
    cases = [{"text": t, "ids": encode(t)} for t in texts]
    made_by = (
        f"scripts/make_tokenizer_fixture.py --n {args.n} --seed {args.seed}; ids from Hugging Face {who} "
        f"on tests/fixtures/gpt2-tokenizer; {datetime.date.today().isoformat()}"
    )
    # bpe_learn's oracle: the text is the concatenation of cases[first:last]
    first, last, n_merges = 400, 1400, 400
    learned = {
        "cases": [first, last],
        "n_merges": n_merges,
        "merges": hf_bpe_learn("".join(texts[first:last]), n_merges),
    }
    lines = ",\n".join(json.dumps(c) for c in cases)
    args.out.write_text(
        '{"made_by": '
        + json.dumps(made_by)
        + ',\n"bpe_learn": '
        + json.dumps(learned)
        + ',\n"cases": [\n'
        + lines
        + "\n]}\n",
        encoding="ascii",
    )

    sys.path.insert(0, str(ROOT))  # report, for the author, where sheetgpt disagrees (the tests fail there)
    from sheetgpt.tokenizer import Tokenizer

    ours = Tokenizer.from_dir(GPT2_DIR)
    bad = [c for c in cases if ours.encode(c["text"]) != c["ids"]]
    n_tokens = sum(len(c["ids"]) for c in cases)
    print(f"wrote {args.out}: {len(cases)} cases, {n_tokens} tokens; sheetgpt disagrees on {len(bad)}")
    for c in bad[:20]:
        print("  ", repr(c["text"][:80]), c["ids"][:12], ours.encode(c["text"])[:12])


if __name__ == "__main__":
    main()
