"""GPT-2's tokenizer: equal to Hugging Face on the fixture, lossless, traceable; our BPE learner."""

import hashlib
import json
import random
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from sheetgpt.cli import main
from sheetgpt.errors import TokenizerError
from sheetgpt.tokenizer import PAT, Tokenizer, bpe_learn, byte_symbol_order, bytes_to_unicode, check

FIXTURES = Path(__file__).parent / "fixtures"
GPT2_DIR = FIXTURES / "gpt2-tokenizer"


@pytest.fixture(scope="module")
def gpt2():
    return Tokenizer.from_dir(GPT2_DIR)


@pytest.fixture(scope="module")
def cases():
    data = json.loads((FIXTURES / "tokenizer_cases.json").read_text())
    assert "transformers" in data["made_by"]
    return data["cases"]


# ---- the byte map and the pattern -------------------------------------------------------------


def test_bytes_to_unicode_is_gpt2s():
    m = bytes_to_unicode()
    assert len(m) == 256 and len(set(m.values())) == 256
    assert m[ord(" ")] == "Ġ" and m[ord("\n")] == "Ċ" and m[0] == "Ā" and m[ord("a")] == "a"
    assert all(c.isprintable() and not c.isspace() for c in m.values())
    order = byte_symbol_order()
    assert order[0] == "!" and order[220] == "Ġ" and sorted(order) == sorted(m.values())


def test_pat_splits_like_gpt2():
    assert PAT.findall("Hello world, it's 2019!!  ok\n\n") == [
        "Hello",
        " world",
        ",",
        " it",
        "'s",
        " 2019",
        "!!",
        " ",
        " ok",
        "\n\n",
    ]
    assert PAT.findall("IT'S") == ["IT", "'", "S"]  # the contractions are lower case only


# ---- equal to Hugging Face ----------------------------------------------------------------------


def test_loads_real_gpt2(gpt2):
    assert gpt2.vocab_size == 50257 and len(gpt2.merges) == 50000
    assert gpt2.encode("Hello world") == [15496, 995]
    assert gpt2.encode(" Hello world") == [18435, 995]
    assert gpt2.encode("<|endoftext|>") == [50256]


def test_fixture_is_big_and_varied(cases):
    assert len(cases) >= 2000
    texts = [c["text"] for c in cases]
    assert any("\t" in t for t in texts) and any("'S" in t for t in texts) and any(len(t) >= 2000 for t in texts)
    assert any(ord(ch) > 0xFFFF for t in texts for ch in t)


def test_encode_equals_hugging_face_on_every_case(gpt2, cases):
    bad = [
        (c["text"][:60], c["ids"][:10], gpt2.encode(c["text"])[:10])
        for c in cases
        if gpt2.encode(c["text"]) != c["ids"]
    ]
    assert not bad, f"{len(bad)} cases differ, first: {bad[:3]}"


def test_decode_round_trips_the_fixture(gpt2, cases):
    for c in cases:
        assert gpt2.decode(c["ids"]) == c["text"]
        assert gpt2.decode_bytes(c["ids"]) == c["text"].encode("utf-8")


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_round_trip_any_text(s):
    tok = _gpt2_cached()
    ids = tok.encode(s)
    assert tok.decode(ids) == s
    assert "".join(tok.pretokenize(s)) == s
    assert [i for w in tok.trace(s) for i in w.ids] == ids


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(list("ab '\n") + ["<|endoftext|>", "<|", "endoftext"]), max_size=30))
def test_round_trip_with_special_token(parts):
    s = "".join(parts)
    tok = _gpt2_cached()
    assert tok.decode(tok.encode(s)) == s


_GPT2 = []


def _gpt2_cached():  # hypothesis tests cannot take function-scoped fixtures
    if not _GPT2:
        _GPT2.append(Tokenizer.from_dir(GPT2_DIR))
    return _GPT2[0]


def test_lone_surrogate_is_a_one_line_error(gpt2):
    with pytest.raises(TokenizerError, match="lone surrogate U\\+D800 at character 1"):
        gpt2.encode("a\ud800b")


def test_decode_replaces_broken_utf8(gpt2):
    snowman = gpt2.encode("☃")  # E2 98 83: two tokens, the first one half a character
    assert len(snowman) == 2 and gpt2.decode(snowman[:1]) == "\ufffd" and gpt2.decode(snowman) == "☃"
    with pytest.raises(TokenizerError, match="not in the vocabulary"):
        gpt2.decode([50257])


# ---- display -------------------------------------------------------------------------------------


def test_display_is_unique_printable_and_invertible(gpt2):
    table = gpt2.display_table()
    assert len(table) == 50257 and len(set(table)) == 50257
    assert all(s and s.isprintable() for s in table)
    assert all(gpt2.id_for_display(s) == i for i, s in enumerate(table))
    assert gpt2.id_for_display("no such token, surely") is None


def test_display_forms(gpt2):
    quick = gpt2.encoder["Ġquick"]
    assert (
        gpt2.token_str(quick) == "Ġquick" and gpt2.token_bytes(quick) == b" quick" and gpt2.display(quick) == " quick"
    )
    assert gpt2.display(gpt2.encoder["Ċ"]) == "<0A>"  # a control character
    assert gpt2.display(gpt2.encoder["âĢ"]) == "<E2 80>"  # half a UTF-8 character
    assert gpt2.display(50256) == "<|endoftext|>"
    assert gpt2.display(gpt2.encoder["Ġ"]) == " "


def test_display_never_collides_with_a_hex_form():
    enc = {c: i for i, c in enumerate(byte_symbol_order())}
    sym = "".join(bytes_to_unicode()[b] for b in b"<0A>")
    merges = [("<", "0"), ("<0", "A"), ("<0A", ">")]
    for a, b in merges:
        enc[a + b] = len(enc)
    tok = Tokenizer(enc, merges)
    assert tok.display(enc[sym]) == "<3C 30 41 3E>" and tok.display(enc["Ċ"]) == "<0A>"


# ---- trace ---------------------------------------------------------------------------------------


def test_trace_reproduces_encode(gpt2, cases):
    for c in cases[::7]:
        words = gpt2.trace(c["text"])
        assert [i for w in words for i in w.ids] == c["ids"]
        for w in words:
            if w.text == "<|endoftext|>":
                continue
            assert "".join(w.symbols) == "".join(bytes_to_unicode()[b] for b in w.text.encode("utf-8"))
            prev = w.symbols
            for step in w.steps:
                assert gpt2.merges[step.rank] == step.pair
                assert len(step.symbols) < len(prev) and "".join(step.symbols) == "".join(prev)
                assert step.pair[0] + step.pair[1] in step.symbols
                prev = step.symbols
            assert w.tokens == prev and w.ids == [gpt2.encoder[t] for t in prev]


def test_trace_of_hello(gpt2):
    (w,) = gpt2.trace("Hello")
    assert w.symbols == list("Hello")
    assert [(s.pair, s.rank) for s in w.steps] == [
        (("l", "l"), 41),
        (("e", "ll"), 439),
        (("ell", "o"), 10853),
        (("H", "ello"), 15240),
    ]
    assert w.ids == [15496]


# ---- files ---------------------------------------------------------------------------------------


def test_save_writes_what_hugging_face_writes(gpt2, tmp_path):
    gpt2.save(tmp_path)
    # merges.txt: byte for byte OpenAI's vocab.bpe, which is also what `tokenizers` writes
    assert (tmp_path / "merges.txt").read_bytes() == (GPT2_DIR / "vocab.bpe").read_bytes()
    # vocab.json: the sha256 of tokenizers 0.23.3's `model.save()` output for GPT-2 (compact, id order, UTF-8)
    digest = hashlib.sha256((tmp_path / "vocab.json").read_bytes()).hexdigest()
    assert digest == "3ba3c3109ff33976c4bd966589c11ee14fcaa1f4c9e5e154c2ed7f99d80709e7"
    again = Tokenizer.from_dir(tmp_path)
    assert again.encoder == gpt2.encoder and again.merges == gpt2.merges


def _write(d: Path, vocab, merges) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "vocab.json").write_text(vocab if isinstance(vocab, str) else json.dumps(vocab), encoding="utf-8")
    (d / "merges.txt").write_text(merges, encoding="utf-8")
    return d


def _small_vocab():
    return {c: i for i, c in enumerate(byte_symbol_order())} | {"ab": 256}


@pytest.mark.parametrize(
    "vocab, merges, where, what",
    [
        ("{not json", "#version: 0.2\n", "vocab.json", "not JSON"),
        ("[1, 2]", "#version: 0.2\n", "vocab.json", "expected a JSON object"),
        ({"a": "x"}, "#version: 0.2\n", "vocab.json", "ids must be integers"),
        (_small_vocab() | {"zz": 5}, "#version: 0.2\n", "vocab.json", "id 5 is used twice"),
        ({"a": 0}, "#version: 0.2\n", "vocab.json", "byte symbol 'Ā' \\(byte 0x00\\) is missing"),
        (_small_vocab(), "#version: 0.2\na b c\n", "merges.txt, line 2", "two tokens"),
        (_small_vocab(), "#version: 0.2\nab\n", "merges.txt, line 2", "two tokens"),
        (_small_vocab(), "#version: 0.2\na b\nabc d\n", "merges.txt, line 3", "'abc' is not in the vocabulary"),
        (_small_vocab(), "#version: 0.2\na c\n", "merges.txt, line 2", "result 'ac' is not in the vocabulary"),
        (_small_vocab(), "#version: 0.2\na b\na b\n", "merges.txt, line 3", "repeats line 2"),
    ],
)
def test_bad_files_raise_one_line(tmp_path, vocab, merges, where, what):
    d = _write(tmp_path / "m", vocab, merges)
    with pytest.raises(TokenizerError, match=what) as e:
        Tokenizer.from_dir(d)
    msg = e.value.format_message()
    assert "\n" not in msg and where in msg and e.value.exit_code == 2


def test_missing_files(tmp_path):
    with pytest.raises(TokenizerError, match="not a directory"):
        Tokenizer.from_dir(tmp_path / "nope")
    with pytest.raises(TokenizerError, match="no tokenizer files"):
        Tokenizer.from_dir(tmp_path)
    (tmp_path / "vocab.json").write_text("{}")
    with pytest.raises(TokenizerError, match="merges.txt: missing"):
        Tokenizer.from_dir(tmp_path)


def test_openai_layout_and_both_layouts_load(tmp_path):
    d = _write(tmp_path, _small_vocab(), "#version: 0.2\na b\n")
    (d / "vocab.json").rename(d / "encoder.json")
    (d / "merges.txt").rename(d / "vocab.bpe")
    tok = Tokenizer.from_dir(d)
    assert tok.encode("abc") == [256, tok.encoder["c"]]


# ---- learning BPE --------------------------------------------------------------------------------


def test_bpe_learn_textbook_example():
    # Sennrich et al.'s corpus: low x5, lower x2, newest x6, widest x3. GPT-2's pre-tokenizer
    # keeps the leading space, so each word is written " word" and starts with the symbol 'Ġ'
    # (byte 32, id 220); letters have id = byte - 33 (e 68, s 82, t 83, l 75, o 78, w 86, ...),
    # and new tokens get ids 256, 257, ... Worked by hand, highest count first, ties to the
    # smallest (left id, right id):
    #   e+s 9 (ties s+t 9; (68,82) < (82,83))   es+t 9             l+o 7 (ties Ġ+l, o+w; (75,78) smallest)
    #   Ġ+lo 7 (ties lo+w; 220 < 258)           Ġlo+w 7            e+w 6 (ties Ġ+n, n+e, w+est; (68,86))
    #   n+ew 6 ((77,261) < (220,77), (261,257))  Ġ+new 6 ((220,262) < (262,257))  Ġnew+est 6
    #   d+est 3 ((67,257) smallest of Ġ+w, w+i, i+d, d+est)    i+dest 3    w+idest 3    Ġ+widest 3
    #   e+r 2 ((68,81) < (260,68))               Ġlow+er 2          then every word is one token.
    text = " low" * 5 + " lower" * 2 + " newest" * 6 + " widest" * 3
    seen = []
    tok = bpe_learn(text, 1000, on_merge=lambda rank, pair, new, count: seen.append((rank, pair, new, count)))
    expected = [
        ("e", "s", 9), ("es", "t", 9), ("l", "o", 7), ("Ġ", "lo", 7), ("Ġlo", "w", 7),
        ("e", "w", 6), ("n", "ew", 6), ("Ġ", "new", 6), ("Ġnew", "est", 6),
        ("d", "est", 3), ("i", "dest", 3), ("w", "idest", 3), ("Ġ", "widest", 3),
        ("e", "r", 2), ("Ġlow", "er", 2),
    ]  # fmt: skip
    assert [(p[0], p[1], c) for _, p, _, c in seen] == expected
    assert [r for r, *_ in seen] == list(range(15)) and all(new == a + b for _, (a, b), new, _ in seen)
    assert tok.merges == [(a, b) for a, b, _ in expected]
    assert tok.vocab_size == 256 + 15 + 1 and tok.token_str(tok.vocab_size - 1) == "<|endoftext|>"
    assert tok.encode(" lowest newer") == [
        tok.encoder["Ġlow"],
        tok.encoder["est"],
        tok.encoder["Ġnew"],
        tok.encoder["er"],
    ]


def test_bpe_learn_equals_hugging_faces_trainer():
    # the fixture holds the merges that `tokenizers`' BpeTrainer (ByteLevel pre-tokenizer, the 256
    # byte symbols as initial alphabet) learned on the concatenation of some fixture strings
    data = json.loads((FIXTURES / "tokenizer_cases.json").read_text())
    first, last = data["bpe_learn"]["cases"]
    text = "".join(c["text"] for c in data["cases"][first:last])
    tok = bpe_learn(text, 256 + data["bpe_learn"]["n_merges"] + 1)
    assert [list(m) for m in tok.merges] == data["bpe_learn"]["merges"]


@settings(max_examples=50, deadline=None)
@given(st.text(max_size=300), st.integers(257, 400))
def test_bpe_learn_any_text_gives_a_valid_lossless_tokenizer(text, vocab_size):
    tok = bpe_learn(text, vocab_size)
    assert tok.vocab_size <= vocab_size and sorted(tok.encoder.values()) == list(range(tok.vocab_size))
    check(tok.encoder, tok.merges, Path("vocab.json"), Path("merges.txt"))
    assert tok.decode(tok.encode(text)) == text


def test_bpe_learn_stops_at_vocab_size_and_keeps_gpt2_byte_ids():
    tok = bpe_learn("hello hello help", 256 + 2 + 1)
    assert len(tok.merges) == 2 and tok.vocab_size == 259
    assert [tok.token_str(i) for i in range(256)] == byte_symbol_order()
    with pytest.raises(TokenizerError, match="at least 257"):
        bpe_learn("x", 100)


def _corpus(n_words: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    syll = ["ka", "lo", "ri", "mun", "tes", "ba", "the", "ing", "er", "ou", "st", "pre", "é", "中", "🙂"]
    words = ["".join(rng.choice(syll) for _ in range(rng.randrange(1, 5))) for _ in range(3000)]
    weights = [rng.paretovariate(1.0) for _ in words]
    seps = [" ", " ", " ", ", ", ". ", "\n", "  "]
    return "".join(w + rng.choice(seps) for w in rng.choices(words, weights=weights, k=n_words))


def test_bpe_learn_saved_and_reloaded_encodes_the_same(tmp_path):
    text = _corpus(20000)
    tok = bpe_learn(text, 256 + 300 + 1)
    assert len(tok.merges) == 300
    tok.save(tmp_path)
    assert (tmp_path / "merges.txt").read_text().startswith("#version: 0.2\n")
    again = Tokenizer.from_dir(tmp_path)
    sample = text[:3000] + " unseen wørds 123 <|endoftext|> ok"
    assert again.encode(sample) == tok.encode(sample)
    assert again.decode(again.encode(sample)) == sample
    assert len(tok.encode(text[:3000])) < len(text[:3000].encode("utf-8")) / 2  # it learned something


def test_bpe_learn_is_fast_on_2mb():
    text = _corpus(330000, seed=1)
    assert len(text) > 2_000_000
    t0 = time.perf_counter()
    tok = bpe_learn(text, 256 + 500 + 1)
    assert len(tok.merges) == 500
    assert time.perf_counter() - t0 < 20  # about 1 s on a 2-core machine


# ---- command line --------------------------------------------------------------------------------


def test_cli_tokenize_text(tmp_path):
    r = CliRunner().invoke(main, ["tokenize", "--model", str(GPT2_DIR), "Hello world"])
    assert r.exit_code == 0, r.output
    assert "15496" in r.output and "Ġworld" in r.output and "' world'" in r.output
    assert "Ġw + or" in r.output  # the merge trace


def test_cli_tokenize_json_file_and_stdin(tmp_path):
    f = tmp_path / "t.txt"
    f.write_text("It's\tfine 🙂", encoding="utf-8")
    r = CliRunner().invoke(main, ["tokenize", "--model", str(GPT2_DIR), "--file", str(f), "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    tok = _gpt2_cached()
    assert out["ids"] == tok.encode("It's\tfine 🙂") and out["tokens"][0] == "It"
    assert [w["text"] for w in out["trace"]] == tok.pretokenize("It's\tfine 🙂")
    r = CliRunner().invoke(main, ["tokenize", "--model", str(GPT2_DIR), "--json", "-"], input="Hello world")
    assert json.loads(r.output)["ids"] == [15496, 995]


def test_cli_tokenize_user_errors(tmp_path):
    r = CliRunner().invoke(main, ["tokenize", "--model", str(GPT2_DIR)])
    assert r.exit_code == 2 and "no text" in r.output
    r = CliRunner().invoke(main, ["tokenize", "--model", str(GPT2_DIR), "--file", str(tmp_path / "nope.txt")])
    assert r.exit_code == 2 and "no such file" in r.output
    r = CliRunner().invoke(main, ["tokenize", "--model", str(tmp_path), "hi"])
    assert r.exit_code == 2 and "no tokenizer files" in r.output and "Traceback" not in r.output


def test_cli_bpe_learn_prints_each_merge_and_overwrites_only_with_force(tmp_path):
    f = tmp_path / "corpus.txt"
    f.write_text(" low" * 5 + " lower" * 2 + " newest" * 6 + " widest" * 3, encoding="utf-8")
    out = tmp_path / "tok"
    r = CliRunner().invoke(main, ["bpe-learn", str(f), "--vocab-size", "260", "-o", str(out)])
    assert r.exit_code == 0, r.output
    lines = r.output.strip().splitlines()
    assert lines[0].split() == ["0", "'e'", "+", "'s'", "->", "'es'", "(count", "9)"]
    assert lines[-1].startswith("learned 3 merges, vocab size 260") and str(out) in lines[-1]
    assert Tokenizer.from_dir(out).merges == [("e", "s"), ("es", "t"), ("l", "o")]
    r = CliRunner().invoke(main, ["bpe-learn", str(f), "--vocab-size", "260", "-o", str(out)])
    assert r.exit_code == 2 and "--force" in r.output
    r = CliRunner().invoke(main, ["bpe-learn", str(f), "--vocab-size", "1000", "-o", str(out), "--force"])
    assert r.exit_code == 0 and "learned 15 merges, vocab size 272 (asked 1000" in r.output
    assert sorted(p.name for p in out.iterdir()) == ["merges.txt", "vocab.json"]  # no temp files left
    r = CliRunner().invoke(main, ["bpe-learn", str(f), "--vocab-size", "10", "-o", str(out), "--force"])
    assert r.exit_code == 2 and "at least 257" in r.output
