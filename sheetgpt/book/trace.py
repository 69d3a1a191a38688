"""The book's trace: every value a book shows, computed once from the book's inputs.

``book_trace(inputs)`` is the one function that builds it. The writer caches its values in the
book (``book.writer``); the checker proves the recomputed book against it (``sheetgpt.check``).
Both hand it a ``BookInputs``: each tab module's inputs, by the module's name. The writer fills it
from the command line's options (each module's ``given(build, inputs)``), the checker from the book
(each module's ``read_back(book, layout, inputs)``), so the same tab gives the same inputs either way.

The forward pass reads the Prompt tab's token ids, the weight tabs and the Predict tab's temperature;
a tab that acts on the forward pass (steering) gives its stages before it (``before_forward``), a tab
that says how generated rows choose their tokens gives its settings (``generation``: the Sample tab;
greedy without one), and every tab adds the stages only it shows after it (``stages``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np

from .. import sampling
from ..checkpoint import Model
from ..reference import gpt2, with_generation_stages, with_selected_position

if TYPE_CHECKING:
    from ..config import GPT2Config
    from ..prompt import Prompt
    from ..tokenizer import Tokenizer
    from .layout import Layout

# The stage a ``before_forward`` hook gives that the forward pass adds to the residual stream at each
# block's input ([n_layer, d]; reference.gpt2's ``steer``).
RESIDUAL_ADD = "steer.add"


def tab_name(module: ModuleType) -> str:
    """A tab module's key in BookInputs: the last part of its name ('steering')."""
    return module.__name__.rsplit(".", 1)[-1]


class BookInputs(Mapping):
    """Each tab module's inputs (what it returns from ``given`` or ``read_back``), by ``tab_name``.

    An entry is computed when it is first asked for, so a tab may read another's inputs whatever
    their order in the book (the Prompt tab reads the vocab tab's); ``load()`` computes them all.
    Only the modules that placed a tab in this book (``layout.present``) have inputs.
    """

    def __init__(self, layout: Layout, read: Callable[[ModuleType, BookInputs], object], hook: str):
        self.layout = layout
        self._read, self._hook = read, hook
        self._modules = {tab_name(m): m for m in layout.present if hasattr(m, hook)}
        self._values: dict[str, object] = {}
        self._busy: set[str] = set()

    def __getitem__(self, name: str):
        if name not in self._values:
            if name not in self._modules:
                raise KeyError(f"no tab module {name!r} with {self._hook} in this book")
            if name in self._busy:
                raise RuntimeError(f"the inputs of {name!r} need themselves")
            self._busy.add(name)
            try:
                self._values[name] = self._read(self._modules[name], self)
            finally:
                self._busy.discard(name)
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._modules)

    def __len__(self) -> int:
        return len(self._modules)

    def load(self) -> BookInputs:
        for name in self._modules:
            self[name]
        return self

    def replace(self, name: str, value) -> BookInputs:
        """A copy with one tab's inputs replaced (all others computed first)."""
        self.load()
        other = BookInputs(self.layout, self._read, self._hook)
        other._values = dict(self._values, **{name: value})
        return other


@dataclass
class Build:
    """What the writer knows when it fills a book's inputs: the model (as the book stores its numbers),
    the tokenizer, the prompt and the command line's per-tab values (``--steer``: {"steering": ...})."""

    config: GPT2Config
    tokenizer: Tokenizer
    prompt: Prompt
    weights: dict[str, np.ndarray]
    settings: dict[str, object] = field(default_factory=dict)


def given_inputs(layout: Layout, build: Build) -> BookInputs:
    """A book being built: each tab module's ``given(build, inputs)``."""
    return BookInputs(layout, lambda m, inputs: m.given(build, inputs), "given").load()


def read_inputs(layout: Layout, book) -> BookInputs:
    """A written book: each tab module's ``read_back(book, layout, inputs)``."""
    return BookInputs(layout, lambda m, inputs: m.read_back(book, layout, inputs), "read_back").load()


def _hooks(layout: Layout, hook: str) -> list:
    return [getattr(m, hook) for m in layout.present if hasattr(m, hook)]


def forward_stages(ids, params, config: GPT2Config, t: int, temperature: float) -> dict:
    """The forward pass's stages at predicting row t, as the book's tabs show them (without generation or
    steering): the training book's forward pass over the updated parameters (book.tabs.train)."""
    return with_selected_position(gpt2(ids, params, config), t, temperature)


def book_trace(inputs: BookInputs) -> dict:
    """Every stage of the book, float64, keyed by its region's name; ``ids``: the token ids the forward
    pass ran on (a generating book's rows after the prompt: the reference's own continuation, greedy or
    sampled as the ``generation`` hook says; the default settings give the greedy one)."""
    layout = inputs.layout
    config = layout.config
    tokens, weights = inputs["prompt"], inputs["weights"]
    params = Model(config, weights, Path(".")).params
    before: dict = {}
    for hook in _hooks(layout, "before_forward"):
        before |= hook(inputs)
    add = before.get(RESIDUAL_ADD)
    used = [max(i, 0) for i in tokens.ids]  # an id the vocabulary does not hold: the sheet uses token 0
    ids = list(tokens.ids)
    if any(tokens.generated):  # the one place a book's continuation is computed
        rules = [hook(inputs) for hook in _hooks(layout, "generation")]
        rule = rules[0] if rules else sampling.Settings()
        used = sampling.fill(used, tokens.generated, params, config, rule, tokens.predict_after, add)
        ids = [u if g else i for i, u, g in zip(ids, used, tokens.generated)]
    trace = gpt2(used, params, config, steer=add) | before
    trace = with_selected_position(trace, tokens.predict_after, inputs["predict"])
    if layout.generate:
        trace = with_generation_stages(trace, config.n_layer)
    for hook in _hooks(layout, "stages"):
        trace |= hook(inputs, trace)
    trace["prompt.ids"] = np.asarray(ids, dtype=np.float64)[:, None]  # -1 where a text is not in the vocabulary
    return trace
