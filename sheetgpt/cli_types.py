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
