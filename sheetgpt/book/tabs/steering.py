"""The Steering tab: activation steering. strength x (wte[A] - wte[B]) is added to every row of the
residual stream at the input of block L (each block tab's first region, ``h.{i}.in``).

Four editable cells (token A, token B, strength, block L), their ids by exact lookup in vocab, one
status message (a bad value is named there and steering is off, instead of errors spreading through
the blocks), the steering vector, and what each block adds at its input. Books built with --generate
or --steer have this tab; strength 0 (the default) adds nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from ... import a1
from ...errors import SheetGPTError
from ...reference import steering
from .. import cells, editable
from ..layout import INPUT, Layout, Region, Tab, stack
from . import embed, sae_weights, vocab

if TYPE_CHECKING:
    from ...engine.book import Book
    from ..output import BookWriter
    from ..trace import BookInputs, Build

NAME = "Steering"
GUIDE_SECTION = "steer"  # the Guide shows this section of regions.ini: what to try here
LABEL_COL, VALUE_COL, ID_COL = 0, 1, 2
A_ROW, B_ROW, STRENGTH_ROW, BLOCK_ROW, STATUS_ROW = 3, 4, 5, 6, 7  # rows 4..8: A, B, strength, block L, status
OK = (STATUS_ROW + 1, VALUE_COL)  # B9: 1 when every value is usable, else 0 (steering off)
FEATURE_ROW = STATUS_ROW + 2  # B10 (books with an SAE): feature k, whose decoder row replaces wte[A] - wte[B]; -1: off
NO_FEATURE = -1  # the feature cell's value that steers along wte[A] - wte[B]
REGIONS_TOP = STATUS_ROW + 6  # the data row of the steering vector (its frame starts two rows below the status)
STRENGTH = editable.Number(-1000.0, 1000.0)  # the strength's rule: far past any useful steering, never an overflow


def block_rule(n_layer: int) -> editable.Number:
    """Block L's rule: a whole number from 0 to n_layer - 1."""
    return editable.Number(0, n_layer - 1, whole=True)


@dataclass(frozen=True)
class Settings:
    """The four editable cells: token texts as the vocab tab shows them, a strength, a block index."""

    a: object = " slow"  # a token text, or what the cell holds (a number, an error: book.editable.token_text)
    b: object = " quick"
    strength: object = 0.0  # what the cell holds (book.editable.held): a number, or else steering is off
    block: object = 0
    feature: object = NO_FEATURE  # books with an SAE: steer along this feature's decoder row instead

    def column(self, ids: np.ndarray | None) -> int:
        """The feature cell's column in the SAE's tabs (what C10 computes): -1 for NO_FEATURE (or a book
        without an SAE), -2 for text or a number that is not one of the book's features."""
        if ids is None or (_number(self.feature) and self.feature == NO_FEATURE):
            return -1
        hit = np.nonzero(ids == self.feature)[0] if _number(self.feature) else []
        return int(hit[0]) if len(hit) else -2

    def valid(self, lookup: dict[str, int], n_layer: int, ids: np.ndarray | None = None) -> tuple[int, int, bool]:
        """(id of A, id of B, usable): ids are -1 for a text not in the vocabulary, as the sheet's lookup;
        usable when the direction is (feature k's row, or both ids found) and strength and block L follow
        their rules (``book.editable``)."""
        a, b = lookup.get(editable.token_text(self.a), -1), lookup.get(editable.token_text(self.b), -1)
        col = self.column(ids)
        direction = col >= 0 or (col == -1 and a >= 0 and b >= 0)
        ok = direction and self.strength_used() is not None and self.block_used(n_layer) is not None
        return a, b, bool(ok)

    def strength_used(self) -> float | None:
        return STRENGTH.usable(self.strength)

    def block_used(self, n_layer: int) -> int | None:
        used = block_rule(n_layer).usable(self.block)
        return None if used is None else int(used)

    def stages(
        self, lookup: dict[str, int], wte: np.ndarray, n_layer: int, sae: tuple[np.ndarray, np.ndarray] | None = None
    ) -> dict[str, np.ndarray]:
        """The tab's checked regions, and ``steer.add`` [n_layer, d], what reference.gpt2 adds; ``sae``: the
        book's (feature numbers [N], W_dec [N, d]) when it has an SAE."""
        ids, W_dec = sae if sae is not None else (None, None)
        a, b, ok = self.valid(lookup, n_layer, ids)
        col = self.column(ids)
        if ok and col >= 0:  # feature steering: the feature's decoder row
            vector = W_dec[col]
        else:
            vector = wte[a] - wte[b] if ok else np.zeros(wte.shape[1])
        strength, block = (self.strength_used(), self.block_used(n_layer)) if ok else (0.0, 0)
        add = np.zeros((n_layer, wte.shape[1]))
        if ok:
            add[block] = strength * vector
            if col < 0:  # the token direction, as reference.steering computes it
                add = steering(wte, a, b, strength, block, n_layer)
        out = {
            "steer.ids": np.array([[a], [b]], dtype=np.float64),
            "steer.ok": np.array([[1.0 if ok else 0.0]]),
            "steer.vector": (strength * vector if ok else vector)[None, :],
            "steer.add": add,
        }
        if sae is not None:
            out["steer.col"] = np.array([[col]], dtype=np.float64)
        return out


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def from_cli(values: tuple[str, str, float, int], lookup: dict[str, int], n_layer: int) -> Settings:
    """``--steer A B STRENGTH L`` as Settings; a token text not in the vocabulary or a block out of range is
    refused (SheetGPTError: one line, exit 2)."""
    a, b, strength, block = values
    for opt, text in (("A", a), ("B", b)):
        if text not in lookup:
            raise SheetGPTError(
                f"--steer: token {opt} {text!r} is not in the vocabulary; give a token text as the vocab tab "
                "shows it (with its leading space), e.g. ' slow'"
            )
    if not 0 <= block < n_layer:
        raise SheetGPTError(
            f"--steer: block L must be from 0 to {n_layer - 1} (the model has {n_layer} blocks), got {block}"
        )
    if STRENGTH.usable(float(strength)) is None:
        raise SheetGPTError(f"--steer: the strength must be {STRENGTH.describe()}, got {strength}")
    return Settings(a, b, float(strength), int(block))


def from_feature_cli(values: tuple[int, float, int], lookup: dict[str, int], n_layer: int, d_sae: int) -> Settings:
    """``--steer-feature K STRENGTH L`` as Settings (the token cells keep their defaults); a feature, block
    or strength that cannot be used is refused (SheetGPTError: one line, exit 2)."""
    feature, strength, block = values
    if not 0 <= feature < d_sae:
        raise SheetGPTError(f"--steer-feature: K must be a feature number from 0 to {d_sae - 1}, got {feature}")
    if not 0 <= block < n_layer:
        raise SheetGPTError(f"--steer-feature: block L must be from 0 to {n_layer - 1}, got {block}")
    if STRENGTH.usable(float(strength)) is None:
        raise SheetGPTError(f"--steer-feature: the strength must be {STRENGTH.describe()}, got {strength}")
    s = default_settings(lookup)
    return Settings(s.a, s.b, float(strength), int(block), int(feature))


def default_settings(lookup: dict[str, int]) -> Settings:
    """ " slow" - " quick" when the vocabulary has both (the bundled model), else the first token twice."""
    s = Settings()
    return s if s.a in lookup and s.b in lookup else Settings(next(iter(lookup), ""), next(iter(lookup), ""))


def _cell(r: int, c: int) -> str:
    return a1.cell(r, c, True, True)


def tabs(layout: Layout, placed: dict[str, Region]) -> list[Tab]:
    if not layout.steer:
        return []
    c = layout.config
    d, V, n = c.n_embd, c.vocab_size, c.n_layer
    ids = Region("steer.ids", NAME, A_ROW, 2, 1, left=ID_COL, number_format="0")
    ok = Region("steer.ok", NAME, OK[0], 1, 1, left=OK[1], number_format="0")
    col = Region("steer.col", NAME, FEATURE_ROW, 1, 1, left=ID_COL, number_format="0")
    vector = Region("steer.vector", NAME, 0, 1, d)
    add = Region("steer.add", NAME, 0, n, d)
    stack([vector, add], REGIONS_TOP)
    texts = vocab.display_range(V)

    def lookup(i: int) -> str:
        return f"IFERROR(MATCH(TRUE,EXACT({texts},{_cell(A_ROW + i, VALUE_COL)}),0)-1,-1)"

    ids.array_fn = lambda: [(A_ROW + i, ID_COL, A_ROW + i, ID_COL, lookup(i)) for i in range(2)]
    a_id, b_id = _cell(A_ROW, ID_COL), _cell(B_ROW, ID_COL)
    strength, block = _cell(STRENGTH_ROW, VALUE_COL), _cell(BLOCK_ROW, VALUE_COL)
    # the rules of book.editable: a text or an error typed as strength or block never reaches the arithmetic
    rules = f"{STRENGTH.ok_formula(strength)}=1,{block_rule(n).ok_formula(block)}=1"
    ok.formula = lambda i, j: f"IF(AND({a_id}>=0,{b_id}>=0,{rules}),1,0)"
    ok_cell = _cell(*OK)

    def wte_at(idcell: str, j: int) -> str:
        return f"INDEX({embed.weight_column('wte', V, j)},{idcell}+1)"

    times = editable.number_formula(strength)
    vector.formula = lambda i, j: f"IF({ok_cell}=1,{times}*({wte_at(a_id, j)}-{wte_at(b_id, j)}),0)"
    regions = [ids, ok, vector, add]
    if layout.sae:  # a second direction: feature k's decoder row (the SAE's tab sae.W_dec)
        feature, col_cell = _cell(FEATURE_ROW, VALUE_COL), _cell(FEATURE_ROW, ID_COL)
        col.formula = lambda i, j: (
            f"IF(ISNUMBER({feature}),IF({feature}={NO_FEATURE},-1,"
            f"IFERROR(MATCH({feature},{sae_weights.row(layout, sae_weights.IDS)},0)-1,-2)),-2)"
        )
        ok.formula = lambda i, j: f"IF(AND(OR({col_cell}>=0,AND({col_cell}=-1,{a_id}>=0,{b_id}>=0)),{rules}),1,0)"
        vector.formula = lambda i, j: (
            f"IF({ok_cell}=1,{times}*IF({col_cell}>=0,"
            f"INDEX({sae_weights.column(layout, sae_weights.W_DEC, j)},MAX({col_cell},0)+1),"
            f"{wte_at(a_id, j)}-{wte_at(b_id, j)}),0)"
        )
        regions.insert(2, col)
    add.formula = lambda i, j: (
        f"IF({ok_cell}=1,IF({a1.cell(add.top + i, 0, col_abs=True)}={block_rule(n).used_formula(block)},"
        f"{a1.cell(vector.top, vector.left + j, row_abs=True)},0),0)"
    )
    return [Tab(NAME, INPUT, regions)]


def _shown(ref: str) -> str:
    """A token cell inside a message: its text, or 'an error value' (an error would spread into the message)."""
    return f'IF(ISERROR({ref}),"an error value",{ref})'


def status_formula(n_layer: int, sae: bool = False) -> str:
    a, b = _cell(A_ROW, VALUE_COL), _cell(B_ROW, VALUE_COL)
    a_id, b_id = _cell(A_ROW, ID_COL), _cell(B_ROW, ID_COL)
    strength, block = _cell(STRENGTH_ROW, VALUE_COL), _cell(BLOCK_ROW, VALUE_COL)
    rule, copy = block_rule(n_layer), "is not in the vocabulary; copy a token text from the vocab tab"
    times = editable.number_formula(strength)
    if sae:  # the feature cell first: a feature direction needs no tokens
        feature, col = _cell(FEATURE_ROW, VALUE_COL), _cell(FEATURE_ROW, ID_COL)
        return (
            f"IF({col}=-2,\"Steering off: the feature must be one of the SAE's feature numbers (tab sae.ids), "
            f'or {NO_FEATURE} to steer along wte[A] - wte[B]",'
            f"IF({col}=-1,{status_formula(n_layer)},"
            f'IF({STRENGTH.ok_formula(strength)}=0,"Steering off: the strength must be {STRENGTH.describe()}",'
            f'IF({rule.ok_formula(block)}=0,"Steering off: block L must be {rule.describe()}",'
            f'IF({times}=0,"Strength 0: nothing is added",'
            f'"On: "&{times}&" x W_dec[feature "&{feature}&"] is added to every row at the input of block "'
            f"&{rule.used_formula(block)})))))"
        )
    return (
        f'IF({a_id}<0,"Steering off: token A ("&{_shown(a)}&") {copy}",'
        f'IF({b_id}<0,"Steering off: token B ("&{_shown(b)}&") {copy}",'
        f'IF({STRENGTH.ok_formula(strength)}=0,"Steering off: the strength must be {STRENGTH.describe()}",'
        f'IF({rule.ok_formula(block)}=0,"Steering off: block L must be {rule.describe()}",'
        f'IF({times}=0,"Strength 0: nothing is added",'
        f'"On: "&{times}&" x (wte[A] - wte[B]) is added to every row at the input of block "'
        f"&{rule.used_formula(block)})))))"
    )


def status_text(s: Settings, lookup: dict[str, int], n_layer: int, ids: np.ndarray | None = None) -> str:
    """What ``status_formula`` shows for these settings, a book being built: texts and numbers (``ids``: the
    book's SAE feature numbers)."""
    col = s.column(ids)
    if col == -2:
        return (
            "Steering off: the feature must be one of the SAE's feature numbers (tab sae.ids), "
            f"or {NO_FEATURE} to steer along wte[A] - wte[B]"
        )
    if col >= 0:
        if s.strength_used() is None:
            return f"Steering off: the strength must be {STRENGTH.describe()}"
        if s.block_used(n_layer) is None:
            return f"Steering off: block L must be {block_rule(n_layer).describe()}"
        if s.strength == 0:
            return "Strength 0: nothing is added"
        where = f"is added to every row at the input of block {s.block_used(n_layer)}"
        return f"On: {s.strength:g} x W_dec[feature {s.feature:g}] {where}"
    a, b, ok = s.valid(lookup, n_layer)
    if a < 0:
        return f"Steering off: token A ({s.a}) is not in the vocabulary; copy a token text from the vocab tab"
    if b < 0:
        return f"Steering off: token B ({s.b}) is not in the vocabulary; copy a token text from the vocab tab"
    if s.strength_used() is None:
        return f"Steering off: the strength must be {STRENGTH.describe()}"
    if s.block_used(n_layer) is None:
        return f"Steering off: block L must be {block_rule(n_layer).describe()}"
    if s.strength == 0:
        return "Strength 0: nothing is added"
    return f"On: {s.strength:g} x (wte[A] - wte[B]) is added to every row at the input of block {s.block_used(n_layer)}"


def write(out: BookWriter, tab: Tab) -> int:
    ws, fmt, layout, trace = out.sheet(tab), out.fmt, out.layout, out.trace
    s: Settings = out.inputs["steering"]
    n = layout.config.n_layer
    lookup = {t: i for i, t in reversed(list(enumerate(out.tokenizer.display_table())))}
    ws.set_column(0, 0, 22)
    ws.set_column(1, 1, 16)
    ws.set_column(2, 2, 9)
    ws.write_string(0, 0, layout.texts["steer"]["title"] if layout.texts.has_section("steer") else NAME, fmt.big)
    ws.write_string(1, 0, layout.texts["steer"]["explain"] if layout.texts.has_section("steer") else "", fmt.note)
    for r, label in ((A_ROW, "token A"), (B_ROW, "token B"), (STRENGTH_ROW, "strength"), (BLOCK_ROW, "block L")):
        ws.write_string(r, LABEL_COL, label, fmt.label)
    ws.write_string(A_ROW - 1, ID_COL, "token id", fmt.header)
    ws.write_string(A_ROW, VALUE_COL, s.a, fmt.edit_text)  # user text: a Text cell, never a formula
    ws.write_string(B_ROW, VALUE_COL, s.b, fmt.edit_text)
    ws.write_number(STRENGTH_ROW, VALUE_COL, float(s.strength), fmt.edit)
    ws.write_number(BLOCK_ROW, VALUE_COL, int(s.block), fmt.edit)
    ids, ok, vector, add = tab.regions[:2] + tab.regions[-2:]
    for i in range(2):
        r = A_ROW + i
        ws.write_array_formula(r, ID_COL, r, ID_COL, "{=" + ids.arrays[i][4] + "}", None, int(trace["steer.ids"][i, 0]))
    ws.write_string(STATUS_ROW, LABEL_COL, "status", fmt.label)
    ids_held = _sae_ids(out.inputs)
    ws.write_formula(
        STATUS_ROW, VALUE_COL, "=" + status_formula(n, bool(layout.sae)), fmt.note, status_text(s, lookup, n, ids_held)
    )
    ws.write_string(OK[0], LABEL_COL, "usable (1) or off (0)", fmt.label)
    ws.write_formula(*OK, "=" + ok.formula(0, 0), fmt.number("0"), int(trace["steer.ok"][0, 0]))
    count = 3
    if layout.sae:  # the feature direction: its cell, and its column in the SAE's tabs
        col = tab.regions[2]
        ws.write_string(FEATURE_ROW, LABEL_COL, f"feature k ({NO_FEATURE}: A - B)", fmt.label)
        if _number(s.feature):
            ws.write_number(FEATURE_ROW, VALUE_COL, s.feature, fmt.edit)
        else:
            ws.write_string(FEATURE_ROW, VALUE_COL, str(s.feature), fmt.edit_text)
        ws.write_formula(FEATURE_ROW, ID_COL, "=" + col.formula(0, 0), fmt.number("0"), int(trace["steer.col"][0, 0]))
        ws.write_string(FEATURE_ROW, ID_COL + 1, "its column in sae.W_dec (-1: A - B, -2: not a feature)", fmt.note)
        count += 1
    for region in (vector, add):
        count += cells.write_region(out, ws, region)
        cells.note(ws, region.title_row, 0, region.text["explain"])
    ws.write_string(add.header_row, 0, "block", fmt.header)
    ws.write_string(add.header_row, 1, "", fmt.header)
    for i in range(n):
        ws.write_number(add.top + i, 0, i, fmt.label)
        ws.write_string(add.top + i, 1, f"block {i}", fmt.token)
    cells.define_names(out, tab)
    out.done(tab)
    return count


def given(build: Build, inputs: BookInputs) -> Settings:
    """The cells of a book being built: ``--steer``'s values, else strength 0 (``default_settings``)."""
    return build.settings.get("steering") or default_settings(inputs["vocab"].lookup)


def before_forward(inputs: BookInputs) -> dict[str, np.ndarray]:
    """The tab's checked regions, and ``steer.add``, what the forward pass adds at each block's input."""
    wte = np.asarray(inputs["weights"]["wte"], np.float64)
    sae = None
    if inputs.layout.sae:
        held = inputs["sae_weights"]
        sae = (held[sae_weights.IDS][0], held[sae_weights.W_DEC])
    return inputs["steering"].stages(inputs["vocab"].lookup, wte, inputs.layout.config.n_layer, sae)


def _sae_ids(inputs: BookInputs) -> np.ndarray | None:
    return inputs["sae_weights"][sae_weights.IDS][0] if inputs.layout.sae else None


def read_back(book: Book, layout: Layout, inputs: BookInputs) -> Settings:
    """The editable cells as the book holds them (``book.editable.held``: a formula is read after the
    engine computed it, in ``recomputed``); the rules apply in ``Settings.valid``."""
    sheet = book.sheets[NAME]
    a, b, strength, block = (editable.held(sheet, r, VALUE_COL) for r in (A_ROW, B_ROW, STRENGTH_ROW, BLOCK_ROW))
    feature = editable.held(sheet, FEATURE_ROW, VALUE_COL) if layout.sae else NO_FEATURE
    return Settings(a, b, strength, block, feature)


def recomputed(s: Settings, values, inputs: BookInputs) -> Settings:
    """The settings with each cell that holds a formula replaced by the value the engine computed for it."""
    cells_ = dict(zip(("a", "b", "strength", "block", "feature"), (A_ROW, B_ROW, STRENGTH_ROW, BLOCK_ROW, FEATURE_ROW)))
    changes = {
        name: editable.computed(values, NAME, r, VALUE_COL)
        for name, r in cells_.items()
        if getattr(s, name) is editable.FORMULA
    }
    return replace(s, **changes) if changes else s
