"""The synthetic corpus of the bundled teaching model: tiny stories about people and how they act.

    Mike is quick. He moves quickly. Then he sings swiftly.
    Sally is slow. Mike is a quick boy. She walks slowly and he reads fast. Then she eats leisurely.
    Tom and Nina are calm. Leo is loud. They read peacefully. He also talks loudly.

Every story introduces one to three people (or a pair sharing one adjective), each with an
adjective, and runs to three to six sentences: after an introduction may come that person's
action at once, and once everyone is introduced, more actions ("Then ...", "... and ...",
"... also ..."). Each adverb is drawn from the adverbs of the acting person's adjective with
the frequencies corpus.ini gives (quick: quickly 0.6, swiftly 0.25, fast 0.15), so a model
trained on it should predict those frequencies. With two people in a story, only the pronoun
(He/She) or the name says whose adjective counts, so a model must attend back to the right
person's adjective to predict the adverb. A pronoun is used only when it is unambiguous (the
person's gender is unique in the story).

The words, frequencies, sentence forms and story shapes live in ``templates/corpus.ini``. The
``[heldout]`` triples (name, adjective, verb) are for evaluation: their (name, adjective) pairs
never occur in the training split, in any role.

    python3 -m sheetgpt.corpus --stories 20 --seed 1          # print training stories
    python3 -m sheetgpt.corpus --split heldout -o heldout.txt
"""

from __future__ import annotations

import configparser
import random
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import click

TEMPLATE = Path(__file__).parent / "templates" / "corpus.ini"


def _weights(text: str) -> dict[str, float]:
    """'1:30, 2:45, pair:13' (or 'quickly 0.6, swiftly 0.4') -> {'1': 30.0, '2': 45.0, 'pair': 13.0}."""
    out = {}
    for item in text.split(","):
        key, _, weight = item.strip().replace(":", " ").partition(" ")
        out[key] = float(weight)
    return out


@dataclass(frozen=True)
class Lexicon:
    """Everything corpus.ini says: people by gender, adjective -> adverbs, verb forms, sentences, held-out triples."""

    names: dict[str, str]  # name -> "male" / "female"
    pronouns: dict[str, str]  # "male" / "female" / "plural" -> "He" / "She" / "They"
    adverbs: dict[str, dict[str, float]]  # adjective -> {adverb: frequency}, frequencies add up to 1
    verbs: dict[str, str]  # singular ("moves") -> plural ("move")
    nouns: dict[str, str]  # "male" / "female" -> "boy" / "girl"
    sentences: dict[str, str]  # "intro", ..., "action", "action_then", ... -> format string
    story: dict[str, dict[str, float]]  # "people", "sentences", "actions" -> weights; "act_after_intro" -> {"p": p}
    heldout: tuple[tuple[str, str, str], ...]  # (name, adjective, verb)

    @property
    def heldout_pairs(self) -> set[tuple[str, str]]:
        return {(n, a) for n, a, _ in self.heldout}

    @property
    def adjective_of(self) -> dict[str, str]:
        """adverb -> the adjective it belongs to."""
        return {adv: adj for adj, advs in self.adverbs.items() for adv in advs}

    def words(self) -> list[str]:
        """Every word a story can contain, with the leading space it has inside a sentence."""
        pronouns = [*self.pronouns.values(), *(p.lower() for p in self.pronouns.values())]
        glue = {w for s in self.sentences.values() for w in s.replace(".", " ").split() if "{" not in w}
        out = [" " + w for w in (*self.names, *pronouns, *self.adverbs, *self.adjective_of, *sorted(glue))]
        out += [" " + w for pair in self.verbs.items() for w in pair] + [" " + w for w in self.nouns.values()]
        return out


def load_lexicon(path: str | Path = TEMPLATE) -> Lexicon:
    ini = configparser.ConfigParser(interpolation=None)
    ini.optionxform = str  # keep the case of keys
    if not ini.read(path, encoding="utf-8"):
        raise FileNotFoundError(f"{path}: missing; the corpus needs its word lists")
    names = {n: gender for gender in ("male", "female") for n in ini["people"][gender].split()}
    adverbs = {adj: _weights(line) for adj, line in ini["adjectives"].items()}
    for adj, freqs in adverbs.items():
        if abs(sum(freqs.values()) - 1) > 1e-9:
            raise ValueError(f"{path}: [adjectives] {adj}: the frequencies add up to {sum(freqs.values())}, not 1")
    owners = [adv for freqs in adverbs.values() for adv in freqs]
    if len(owners) != len(set(owners)):
        raise ValueError(f"{path}: [adjectives]: an adverb belongs to two adjectives")
    heldout = []
    for key, line in ini["heldout"].items():
        name, adj, verb = line.split()
        if name not in names or adj not in adverbs or verb not in ini["verbs"]:
            raise ValueError(f"{path}: [heldout] {key} = {line}: unknown name, adjective or verb")
        heldout.append((name, adj, verb))
    st = ini["story"]
    story = {k: _weights(st[k]) for k in ("people", "sentences", "actions")}
    story["act_after_intro"] = {"p": float(st["act_after_intro"])}
    return Lexicon(
        names,
        dict(ini["pronouns"]),
        adverbs,
        dict(ini["verbs"]),
        dict(ini["nouns"]),
        dict(ini["sentences"]),
        story,
        tuple(heldout),
    )


class Target(NamedTuple):
    """An adverb of a story: the text before it, the adverb (with its space), the adjective it comes from."""

    prefix: str
    adverb: str
    adjective: str


@dataclass
class Story:
    """One story, where its adverbs are, and how many people it has (a pair counts as two)."""

    text: str
    targets: list[Target]
    people: int = 1


class _Writer:
    """Builds a story sentence by sentence, remembering the text before each adverb."""

    def __init__(self, lex: Lexicon):
        self.lex, self.parts, self.targets = lex, [], []

    def say(self, kind: str, adjectives: dict[str, str] | None = None, **words) -> None:
        """``adjectives`` maps each adverb field ("adverb", "adverb2") to the adjective it was drawn from."""
        template = self.lex.sentences[kind]
        for field, adj in (adjectives or {}).items():
            head = template[: template.index("{" + field + "}")].format(**words).rstrip(" ")
            self.targets.append(Target(" ".join([*self.parts, head]), " " + words[field], adj))
        self.parts.append(template.format(**words))

    def story(self, people: int) -> Story:
        return Story(" ".join(self.parts), self.targets, people)


def _pick(rng: random.Random, weights: dict[str, float]) -> str:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def _story(rng: random.Random, lex: Lexicon, focus: tuple[str, str, str] | None, banned: set[tuple[str, str]]) -> Story:
    """One random story; ``focus`` = (name, adj, verb) forces that person, adjective and action in."""
    names, adjs = list(lex.names), list(lex.adverbs)
    kind = _pick(rng, lex.story["people"])
    if focus is not None and kind == "pair":
        kind = "2"
    n_people = 3 if kind == "pair" else int(kind)
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
        if n_people == 2 and lex.names[people[0]] == lex.names[people[1]] and rng.random() < 0.5:
            continue  # two people of one gender need names, not pronouns; make them rarer
        if not any((p, a) in banned for p, a in zip(people, chosen)):
            break
    adj_of = dict(zip(people, chosen))
    genders = [lex.names[p] for p in people]
    # who acts: a person (a name), or the pair (a tuple of two names)
    units: list = [tuple(people[:2]), people[2]] if kind == "pair" else people[:]
    rng.shuffle(units)

    def subject(u, start: bool) -> str:  # a pronoun only if nobody else in the story shares it
        if isinstance(u, tuple):
            pronoun = lex.pronouns["plural"]
        elif genders.count(lex.names[u]) == 1 and rng.random() < 0.85:
            pronoun = lex.pronouns[lex.names[u]]
        else:
            return u
        return pronoun if start else pronoun.lower()

    def adjective(u) -> str:
        return adj_of[u[0] if isinstance(u, tuple) else u]

    def verb(u, forced: str | None = None) -> str:
        v = forced or rng.choice(list(lex.verbs))
        return lex.verbs[v] if isinstance(u, tuple) else v

    def adverb(u) -> str:
        return _pick(rng, lex.adverbs[adjective(u)])

    w = _Writer(lex)
    n_units = len(units)
    allowed = {k: v for k, v in lex.story["sentences"].items() if int(k) > n_units}
    total = int(_pick(rng, allowed))
    focus_unit = focus[0] if focus is not None else None
    acted = set()

    def act(kind: str, a, b=None) -> None:
        fields = {"subject": subject(a, lex.sentences[kind].startswith("{subject}"))}
        fields["verb"] = verb(a, focus[2] if a == focus_unit and a not in acted else None)
        fields["adverb"], adjectives = adverb(a), {"adverb": adjective(a)}
        acted.add(a)
        if "{adverb2}" in lex.sentences[kind]:
            b = a if b is None else b
            if "{subject2}" in lex.sentences[kind]:
                fields["subject2"] = subject(b, False)
            fields["verb2"] = verb(b, focus[2] if b == focus_unit and b not in acted else None)
            fields["adverb2"], adjectives["adverb2"] = adverb(b), adjective(b)
            acted.add(b)
        w.say(kind, adjectives, **fields)

    used = 0
    for i, u in enumerate(units):
        if isinstance(u, tuple):
            w.say("pair_intro", name=u[0], name2=u[1], adj=adj_of[u[0]])
        else:
            intro = rng.choices(["intro", "intro_very", "intro_noun"], weights=[50, 15, 35])[0]
            article = "an" if adj_of[u][0] in "aeiou" else "a"
            w.say(intro, name=u, adj=adj_of[u], article=article, noun=lex.nouns[lex.names[u]])
        used += 1
        intros_left = n_units - 1 - i
        # an action at once, if that still leaves a sentence for every intro to come and one action after them
        if total - used > intros_left + 1 and rng.random() < lex.story["act_after_intro"]["p"]:
            act("action", u)
            used += 1
    while used < total:
        form = _pick(rng, lex.story["actions"])
        idle = [u for u in units if u not in acted]
        if focus_unit is not None and focus_unit not in acted:
            a = focus_unit
        else:
            a = rng.choice(idle if idle and rng.random() < 0.8 else units)  # mostly someone who has not acted yet
        b = None
        if form == "action_and":
            if n_units == 1:
                form = "action_twice"
            else:
                b = rng.choice([u for u in units if u != a])
        act(form, a, b)
        used += 1
    return w.story(n_people)


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
    """(prompt, most frequent adverb) for each held-out triple: 'Tom is quiet. He sings' -> ' quietly'."""
    lex = lex or load_lexicon()
    return [
        (
            f"{name} is {adj}. {lex.pronouns[lex.names[name]]} {verb}",
            " " + max(lex.adverbs[adj], key=lex.adverbs[adj].get),
        )
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
