"""Option types that click checks at parse time: finite numbers in a range (no nan, no inf)."""

from __future__ import annotations

import math

import click


class FiniteFloat(click.ParamType):
    """A finite float in [low, high] (``low_open``: above low), or exactly ``zero`` when given.

    click.FloatRange lets nan through (every comparison with nan is false) and accepts inf;
    this type refuses both, and denormal or tiny values below ``low``.
    """

    name = "number"

    def __init__(self, low: float, high: float, *, low_open: bool = False, zero: bool = False, what: str = ""):
        self.low, self.high, self.low_open, self.zero, self.what = low, high, low_open, zero, what

    def convert(self, value, param, ctx):
        if isinstance(value, float):
            x = value
        else:
            try:
                x = float(value)
            except (TypeError, ValueError):
                self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(x):
            self.fail(f"{value!r} is not a finite number; {self.describe()}", param, ctx)
        if self.zero and x == 0:
            return 0.0
        too_low = x <= self.low if self.low_open else x < self.low
        if too_low or x > self.high:
            self.fail(f"{value!r} is out of range; {self.describe()}", param, ctx)
        return x

    def describe(self) -> str:
        span = f"{'above' if self.low_open else 'from'} {self.low:g} to {self.high:g}"
        if self.zero:
            return f"give 0{f' ({self.what})' if self.what else ''} or a number {span}"
        return f"give a number {span}"

    def __repr__(self) -> str:
        return f"FiniteFloat({self.low}, {self.high})"


def sampling_options(fn):
    """--sample, --temperature, --top-k, --top-p, --seed: taken as typed, checked by
    ``sheetgpt.sampling.from_cli`` (one line, exit 2) with the rules the book's Sample tab applies."""
    from .sampling import CAP, MAX_SEED, MAX_TEMPERATURE, MIN_TEMPERATURE

    options = [
        click.option(
            "--sample",
            is_flag=True,
            default=False,
            help="Sample the continuation as the book's Sample tab does (sheetgpt.sampling: a Park-Miller "
            f"generator, temperature, top-k, top-p over the top {CAP} candidates). Without it: greedy.",
        ),
        click.option(
            "--temperature",
            default=None,
            metavar="T",
            help=f"With --sample: 0 is greedy; from {MIN_TEMPERATURE:g} to {MAX_TEMPERATURE:g} samples from "
            "softmax(logits / T).  [default: 1]",
        ),
        click.option(
            "--top-k",
            "top_k",
            default=None,
            metavar="K",
            help="With --sample: keep the K most likely (0: off).  [default: 0]",
        ),
        click.option(
            "--top-p",
            "top_p",
            default=None,
            metavar="P",
            help="With --sample: keep the fewest most likely tokens whose probability reaches P, above 0 and at "
            "most 1 (1: off).  [default: 1]",
        ),
        click.option(
            "--seed",
            default=None,
            metavar="S",
            help=f"With --sample: the generator's seed, a whole number from 0 to {MAX_SEED}.  [default: 0]",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn
