"""The synthetic corpus of the bundled teaching model: tiny stories about people and adverbs.

    Mike is quick. He moves quickly.
    Sally is slow. Mike is quick. She walks slowly.
    Tom and Nina are calm. Leo is loud. They read calmly.

Every story introduces one to three people, each with an adjective, then says how one
or two of them do something: the adverb comes from that person's adjective. With two
people in a story, only the pronoun (He/She) or the name says whose adjective counts,
so a model must attend back to the right person's adjective to predict the adverb.
A pronoun is used only when it is unambiguous (the person's gender is unique in the story).

The words and sentence forms live in ``templates/corpus.ini``. The ``[heldout]`` triples
(name, adjective, verb) are for evaluation: their (name, adjective) pairs never occur in
the training split, in any role.

    python3 -m sheetgpt.corpus --stories 20 --seed 1          # print training stories
    python3 -m sheetgpt.corpus --split heldout -o heldout.txt
"""

from __future__ import annotations

import configparser
import random
from dataclasses import dataclass
from pathlib import Path

import click

TEMPLATE = Path(__file__).parent / "templates" / "corpus.ini"


@dataclass(frozen=True)
class Lexicon:
    """Everything corpus.ini says: people by gender, adjective -> adverb, verb forms, sentences, held-out triples."""

    names: dict[str, str]  # name -> "male" / "female"
    pronouns: dict[str, str]  # "male" / "female" / "plural" -> "He" / "She" / "They"
    adverbs: dict[str, str]  # adjective -> adverb
    verbs: dict[str, str]  # singular ("moves") -> plural ("move")
    nouns: dict[str, str]  # "male" / "female" -> "boy" / "girl"
    sentences: dict[str, str]  # "intro", "intro_very", "pair_intro", "action" -> format string
    heldout: tuple[tuple[str, str, str], ...]  # (name, adjective, verb)

    @property
    def heldout_pairs(self) -> set[tuple[str, str]]:
        return {(n, a) for n, a, _ in self.heldout}

    def words(self) -> list[str]:
        """Every word a story can contain, with the leading space it has inside a sentence."""
        out = [" " + w for w in (*self.names, *self.pronouns.values(), *self.adverbs, *self.adverbs.values())]
        out += [" " + w for pair in self.verbs.items() for w in pair] + [" " + w for w in self.nouns.values()]
        return out


def load_lexicon(path: str | Path = TEMPLATE) -> Lexicon:
    ini = configparser.ConfigParser(interpolation=None)
    ini.optionxform = str  # keep the case of keys
    if not ini.read(path, encoding="utf-8"):
        raise FileNotFoundError(f"{path}: missing; the corpus needs its word lists")
    names = {n: gender for gender in ("male", "female") for n in ini["people"][gender].split()}
    adverbs = dict(ini["adjectives"])
    heldout = []
    for key, line in ini["heldout"].items():
        name, adj, verb = line.split()
        if name not in names or adj not in adverbs or verb not in ini["verbs"]:
            raise ValueError(f"{path}: [heldout] {key} = {line}: unknown name, adjective or verb")
        heldout.append((name, adj, verb))
    return Lexicon(
        names,
        dict(ini["pronouns"]),
        adverbs,
        dict(ini["verbs"]),
        dict(ini["nouns"]),
        dict(ini["sentences"]),
        tuple(heldout),
    )


@dataclass
class Story:
    """One story and where its adverbs are: ``targets`` holds (text before the adverb, adverb)."""

    text: str
    targets: list[tuple[str, str]]


class _Writer:
    """Builds a story sentence by sentence, remembering the text before each adverb."""

    def __init__(self, lex: Lexicon):
        self.lex, self.parts, self.targets = lex, [], []

    def say(self, kind: str, **words) -> None:
        self.parts.append(self.lex.sentences[kind].format(**words))

    def act(self, subject: str, verb: str, adverb: str) -> None:
        sentence = self.lex.sentences["action"].format(subject=subject, verb=verb, adverb=adverb)
        head = sentence[: sentence.index(adverb)]
        self.targets.append((" ".join([*self.parts, head]).rstrip(" "), " " + adverb))
        self.parts.append(sentence)

    def story(self) -> Story:
        return Story(" ".join(self.parts), self.targets)


def _story(rng: random.Random, lex: Lexicon, focus: tuple[str, str, str] | None, banned: set[tuple[str, str]]) -> Story:
    """One random story; ``focus`` = (name, adj, verb) forces that person, adjective and action in."""
    names, adjs = list(lex.names), list(lex.adverbs)
    kind = rng.choices(["one", "two", "three", "pair"], weights=[20, 55, 12, 13])[0]
    if focus is not None and kind == "pair":
        kind = "two"
    n_people = {"one": 1, "two": 2, "three": 3, "pair": 3}[kind]
    while True:
        people = rng.sample(names, n_people)
        chosen = rng.sample(adjs, n_people)
        if kind == "pair":
            chosen[1] = chosen[0]  # the pair shares one adjective
        if focus is not None:
            at = rng.randrange(n_people)
            if focus[0] in people[:at] + people[at + 1 :] or focus[1] in chosen[:at] + chosen[at + 1 :]:
                continue
            people[at], chosen[at] = focus[0], focus[1]
        if kind == "two" and lex.names[people[0]] == lex.names[people[1]] and rng.random() < 0.5:
            continue  # two people of one gender need names, not pronouns; make them rarer
        if not any((p, a) in banned for p, a in zip(people, chosen)):
            break
    adj_of = dict(zip(people, chosen))
    genders = [lex.names[p] for p in people]

    def subject(p: str) -> str:  # a pronoun only if nobody else in the story shares it
        unique = genders.count(lex.names[p]) == 1
        return lex.pronouns[lex.names[p]] if unique and rng.random() < 0.85 else p

    def intro(w: _Writer, p: str) -> None:
        kind = rng.choices(["intro", "intro_very", "intro_noun"], weights=[50, 15, 35])[0]
        article = "an" if adj_of[p][0] in "aeiou" else "a"
        w.say(kind, name=p, adj=adj_of[p], article=article, noun=lex.nouns[lex.names[p]])

    w = _Writer(lex)
    if kind == "pair":
        pair, other = people[:2], people[2]
        intros = [("pair", None), ("one", other)] if rng.random() < 0.6 else [("pair", None)]
        rng.shuffle(intros)
        for what, p in intros:
            if what == "pair":
                w.say("pair_intro", name=pair[0], name2=pair[1], adj=adj_of[pair[0]])
            else:
                intro(w, p)
        actors = [("pair", pair)] + ([("one", other)] if len(intros) == 2 and rng.random() < 0.4 else [])
        rng.shuffle(actors)
        for what, who in actors:
            if what == "pair":
                w.act(lex.pronouns["plural"], lex.verbs[rng.choice(list(lex.verbs))], lex.adverbs[adj_of[who[0]]])
            else:
                w.act(subject(who), rng.choice(list(lex.verbs)), lex.adverbs[adj_of[who]])
        return w.story()

    order = people[:]
    rng.shuffle(order)
    for p in order:
        intro(w, p)
    if focus is not None:
        actors = [focus[0]] + (
            [rng.choice([p for p in people if p != focus[0]])] if n_people > 1 and rng.random() < 0.3 else []
        )
    else:
        actors = rng.sample(people, 2 if n_people > 1 and rng.random() < 0.4 else 1)
    for p in actors:
        verb = focus[2] if focus is not None and p == focus[0] else rng.choice(list(lex.verbs))
        w.act(subject(p), verb, lex.adverbs[adj_of[p]])
    return w.story()


def generate(n: int, seed: int, split: str = "train", lex: Lexicon | None = None) -> list[Story]:
    """``n`` stories, reproducible from ``seed``.

    split "train": the held-out (name, adjective) pairs never occur.
    split "heldout": each story acts out one held-out triple (in turn), among 0-2 other people.
    """
    lex = lex or load_lexicon()
    rng = random.Random(f"{split}:{seed}")
    if split == "train":
        return [_story(rng, lex, None, lex.heldout_pairs) for _ in range(n)]
    if split == "heldout":
        others = lex.heldout_pairs
        return [
            _story(rng, lex, lex.heldout[i % len(lex.heldout)], others - {lex.heldout[i % len(lex.heldout)][:2]})
            for i in range(n)
        ]
    raise ValueError(f"split must be 'train' or 'heldout', got {split!r}")


def heldout_prompts(lex: Lexicon | None = None) -> list[tuple[str, str]]:
    """(prompt, expected adverb) for each held-out triple: 'Tom is quiet. He sings' -> ' quietly'."""
    lex = lex or load_lexicon()
    return [
        (f"{name} is {adj}. {lex.pronouns[lex.names[name]]} {verb}", " " + lex.adverbs[adj])
        for name, adj, verb in lex.heldout
    ]


@click.command()
@click.option("--stories", default=20000, show_default=True, help="How many stories to write.")
@click.option("--seed", default=0, show_default=True, help="Random seed; the same seed gives the same corpus.")
@click.option(
    "--split",
    type=click.Choice(["train", "heldout"]),
    default="train",
    show_default=True,
    help="train: without the held-out pairs; heldout: stories about the held-out triples.",
)
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None, help="Write here instead of stdout.")
def main(stories: int, seed: int, split: str, output: str | None) -> None:
    """Write the synthetic corpus, one story per line."""
    text = "".join(s.text + "\n" for s in generate(stories, seed, split))
    if output:
        Path(output).write_text(text, encoding="utf-8")
        click.echo(f"wrote {stories} stories ({len(text):,} characters) to {output}", err=True)
    else:
        click.echo(text, nl=False)


if __name__ == "__main__":
    main()
