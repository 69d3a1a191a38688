"""The Prompt tab: one token per row (editable text, its id by exact lookup in vocab), the predicting position.

A typed-prompt book shows the text in B4 and fills the token rows from the BPE tab.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from ... import a1
from ...errors import WorkbookError
from ...prompt import read_typed_prompt
from ...tokenizer import ENDOFTEXT, Tokenizer
from .. import editable, readback
from ..layout import INPUT, Layout, Region, Tab
from ..prompt_cells import (  # noqa: F401 (the tab's cells, named here too)
    AFTER_NOTE,
    AFTER_STATUS,
    AFTER_USED,
    ENDED_COL,
    GENERATED_NOTE,
    ID_COL,
    NAME,
    NEXT_COL,
    NOTE_COL,
    PREDICT_AFTER,
    SO_FAR_COL,
    TEXT_COL,
    TOP,
    TYPED_TEXT,
    id_ref,
    predict_after_ref,
    text_ref,
    typed_text_ref,
)
from . import bpe, logits, vocab

if TYPE_CHECKING:
    from ...engine.book import Book, Sheet
    from ...engine.values import Values
    from ...prompt import Prompt
    from ..output import BookWriter
    from ..trace import BookInputs, Build


def live_text_formula(layout: Layout) -> str:
    """The prompt the book reads now, from any tab: the typed text, or the token rows up to the
    predicting position (the text so far, at row C3)."""
    if layout.typed:
        return '""&' + typed_text_ref()
    return prompt_text_formula(layout)


def live_text(prompt: Prompt) -> str:
    """What ``live_text_formula`` gives for the prompt the book is built with."""
    return prompt.text if prompt.typed else "".join(prompt.texts[: prompt.predict_after + 1])


def prompt_text_formula(layout: Layout) -> str:
    """The prompt as the token rows spell it: the text so far at the predicting position."""
    so_far = a1.sheet_prefix(NAME) + a1.span(TOP, SO_FAR_COL, TOP + layout.T - 1, SO_FAR_COL)
    return f"INDEX({so_far},{predict_after_ref()}+1)"


def continuation_text(out: BookWriter) -> tuple[str, str]:
    """(prompt, continuation) as the sheet shows them: token texts, the continuation up to the first
    generated <|endoftext|>."""
    prompt, eot = out.prompt, out.tokenizer.special.get(ENDOFTEXT, -1)
    shown = "".join(prompt.texts[: prompt.predict_after + 1])
    rest = []
    for t in range(prompt.predict_after + 1, len(prompt.ids)):
        if prompt.ids[t] == eot:
            break
        rest.append(prompt.texts[t])
    return shown, "".join(rest)


def continuation_formula(layout: Layout, prompt_cell: str) -> str:
    """The continuation as text (generating books): the last row's text so far after the prompt's."""
    last = a1.sheet_prefix(NAME) + a1.cell(TOP + layout.T - 1, SO_FAR_COL, True, True)
    return f"MID({last},LEN({prompt_cell})+1,32767)"


def next_ref(layout: Layout, t: int) -> str:
    """Row t's next token id as the generated row after it takes it: the Sample tab's choice (the
    argmax unless the Sample tab samples), row relative."""
    return layout.region("sample.next").at(t, 0, NAME, col_abs=True)


def tabs(layout: Layout, placed: dict[str, Region]) -> list[Tab]:
    region = Region("prompt.ids", NAME, TOP, layout.T, 1, left=ID_COL, number_format="0")
    texts = vocab.display_range(layout.config.vocab_size)

    def formula(i: int) -> str:
        text = a1.cell(TOP + i, TEXT_COL, False, True)
        lookup = f"IFERROR(MATCH(TRUE,EXACT({texts},{text}),0)-1,-1)"
        if not layout.generate or i == 0:
            return lookup
        # a row after the predicting position takes the row before's next token (the Sample tab's choice)
        pos, after = a1.cell(TOP + i, 0, False, True), a1.cell(*AFTER_USED, True, True)
        return f"IF({pos}<={after},{lookup},{next_ref(layout, i - 1)})"

    region.array_fn = lambda: [(TOP + i, ID_COL, TOP + i, ID_COL, formula(i)) for i in range(layout.T)]
    if not layout.generate:
        return [Tab(NAME, INPUT, [region])]
    argmax = Region("logits.argmax", NAME, TOP, layout.T, 1, left=NEXT_COL, number_format="0")
    argmax.formula = lambda i, j: f"MATCH(MAX({logits.column_ref(layout, i)}),{logits.column_ref(layout, i)},0)-1"
    return [Tab(NAME, INPUT, [region, argmax])]


def write(out: BookWriter, tab: Tab) -> int:
    ws, fmt, layout, prompt = out.sheet(tab), out.fmt, out.layout, out.prompt
    ws.set_column(0, 0, 8)
    ws.set_column(1, 1, 18)
    ws.set_column(2, 2, 10)
    ws.set_column(3, 3, 60)
    head = tab.regions[0].header_row
    if layout.typed:  # the text in B4; the token rows follow the BPE tab
        ws.write_string(0, 0, "Prompt: type any text into the yellow cell B4, then recalculate", fmt.big)
        ws.write_formula(1, 0, "=" + bpe.status_ref(), fmt.note, bpe.status_text(prompt))
        ws.write_string(PREDICT_AFTER[0], 0, "Predict the token after position", fmt.label)
        ws.write_formula(*PREDICT_AFTER, "=" + own_after_formula(), fmt.token, prompt.predict_after)
        _write_after_used(out, ws, own_after_formula(), "the text's last token")
        ws.write_string(TYPED_TEXT[0], 0, "Text:", fmt.label)
        ws.write_string(*TYPED_TEXT, prompt.text, fmt.edit_text)
        for col, label in enumerate(["pos", "token", "token id", "note"]):
            ws.write_string(head, col, label, fmt.header)
        ws.write_string(
            head,
            SO_FAR_COL + 2 if layout.generate else 4,
            "Column B shows the BPE tab's tokens of the text. You may type over one: column C "
            "looks up whatever column B holds in the vocab tab (exact match), so a typed token "
            "wins. Undo (or copy column B's formula from another row) to go back.",
            fmt.note,
        )
        own = text_formulas(layout)

        def write_text(r: int, t: int) -> None:
            ws.write_formula(r, TEXT_COL, "=" + own[t], fmt.edit, prompt.texts[t])

    else:
        ws.write_string(0, 0, "Prompt: one token per row", fmt.big)
        ws.write_string(
            1, 0, "Edit a token text (yellow), then recalculate: its id is looked up in the vocab tab.", fmt.note
        )
        ws.write_string(PREDICT_AFTER[0], 0, "Predict the token after position", fmt.label)
        ws.write_number(*PREDICT_AFTER, prompt.predict_after, fmt.edit)
        _write_after_used(out, ws, str(layout.T - 1), "the last row")
        for col, label in enumerate(["pos", "token (edit)", "token id", "note"]):
            ws.write_string(head, col, label, fmt.header)

        if not layout.generate:
            ws.write_string(head, SO_FAR_COL, "text so far", fmt.header)
            ws.set_column(SO_FAR_COL, SO_FAR_COL, 40)

        own = text_formulas(layout)

        def write_text(r: int, t: int) -> None:  # token texts are always written as text, never as a formula
            if t > prompt.predict_after and layout.generate:  # a generated row: the row before's next token
                ws.write_formula(r, TEXT_COL, "=" + own[t], fmt.token, prompt.texts[t])
                return
            ws.write_string(r, TEXT_COL, prompt.texts[t], fmt.edit_text)
            if not layout.generate:  # the running text (a generating book writes its own, which stops at the end)
                before = f"{a1.cell(r - 1, SO_FAR_COL)}&" if t else ""
                ws.write_formula(
                    r, SO_FAR_COL, f"={before}{a1.cell(r, TEXT_COL)}", fmt.note, "".join(prompt.texts[: t + 1])
                )

    arrays = tab.regions[0].arrays
    for t in range(len(prompt.ids)):
        r = TOP + t
        ws.write_number(r, 0, t, fmt.label)
        write_text(r, t)
        ws.write_array_formula(r, ID_COL, r, ID_COL, "{=" + arrays[t][4] + "}", None, prompt.ids[t])
        idcell = a1.cell(r, ID_COL)
        after = AFTER_NOTE if not layout.generate else GENERATED_NOTE
        ws.write_formula(
            r,
            NOTE_COL,
            f'=IF({idcell}<0,"not in the vocabulary: this row uses token 0; copy a token text from the vocab tab",'
            f'IF({a1.cell(r, 0)}>{a1.cell(*AFTER_USED, True, True)},"{after}",""))',
            fmt.note,
            "" if t <= prompt.predict_after else after,
        )
    if layout.generate:
        _write_generation(out, ws, tab)
    ws.freeze_panes(TOP, 0)
    return 0


def after_rule(T: int) -> editable.Number:
    """The predicting position's rule (C3): a whole number from 0 to T - 1 (``book.editable``)."""
    return editable.Number(0, T - 1, whole=True)


def own_after_formula() -> str:
    """C3's formula in a typed-prompt book, and the fallback of both kinds: the text's last token."""
    return f"IF({bpe.ok_ref()}=1,{bpe.count_ref()}-1,#N/A)"


def _write_after_used(out: BookWriter, ws, fallback: str, fallback_text: str) -> None:
    """D3, the message when C3 breaks its rule, and E3, the position used: C3 rounded, else ``fallback``."""
    fmt, T, p = out.fmt, out.layout.T, out.prompt.predict_after
    rule, c3 = after_rule(T), a1.cell(*PREDICT_AFTER, True, True)
    ok = rule.ok_formula(c3)
    message = f"C3 must be {rule.describe()}: predicting after {fallback_text} instead"
    ws.write_formula(*AFTER_STATUS, f'=IF({ok}=1,"","{message}")', fmt.note, "")
    ws.write_formula(*AFTER_USED, f"=IF({ok}=1,{rule.used_formula(c3)},{fallback})", fmt.number("0"), p)


def _write_generation(out: BookWriter, ws, tab: Tab) -> None:
    """Columns E..G of a generating book: each row's next token (argmax), the text so far, the end flag."""
    fmt, layout, prompt, trace = out.fmt, out.layout, out.prompt, out.trace
    argmax = tab.regions[1]
    head = argmax.header_row
    for col, label in ((NEXT_COL, "most likely next id"), (SO_FAR_COL, "text so far"), (ENDED_COL, "ended")):
        ws.write_string(head, col, label, fmt.header)
    ws.set_column(NEXT_COL, NEXT_COL, 16)  # "most likely next" and the used position (E3)
    ws.set_column(SO_FAR_COL, SO_FAR_COL, 60)
    eot = out.tokenizer.special.get(ENDOFTEXT, -1)
    after = a1.cell(*AFTER_USED, True, True)
    nxt = trace["logits.argmax"][:, 0]
    so_far, ended = "", 0
    for t in range(layout.T):
        r = TOP + t
        ws.write_formula(r, NEXT_COL, "=" + argmax.formula(t, 0), fmt.number("0"), int(nxt[t]))
        pos, text, tid = a1.cell(r, 0), a1.cell(r, TEXT_COL), a1.cell(r, ID_COL)
        if t == 0:
            ws.write_formula(r, ENDED_COL, "=0", fmt.number("0"), 0)
            ws.write_formula(r, SO_FAR_COL, f"={text}", fmt.text, prompt.texts[0])
            so_far = prompt.texts[0]
            continue
        if t > prompt.predict_after and prompt.ids[t] == eot:
            ended = 1
        up = a1.cell(r - 1, ENDED_COL)
        ws.write_formula(r, ENDED_COL, f"=IF({up}=1,1,IF(AND({pos}>{after},{tid}={eot}),1,0))", fmt.number("0"), ended)
        so_far += "" if ended else prompt.texts[t]
        ws.write_formula(
            r, SO_FAR_COL, f'={a1.cell(r - 1, SO_FAR_COL)}&IF({a1.cell(r, ENDED_COL)}=1,"",{text})', fmt.text, so_far
        )


@dataclass(frozen=True)
class TokenRows:
    """The Prompt tab's inputs: what the forward pass runs on."""

    texts: list[str]  # each row's token text
    ids: list[int]  # each row's id; -1 where the text is not in the vocabulary
    predict_after: int  # the position whose next token is predicted
    generated: list[bool]  # rows whose id is the argmax of the row before's logits (generating books)
    teacher_rows: list[int] = field(default_factory=list)  # rows whose text a teacher's formula gives
    bpe: dict = field(default_factory=dict)  # typed-prompt books: the BPE tab's checked regions
    after_formula: bool = False  # C3 holds a formula the book did not write: its value comes from the engine
    after_fallback: int = 0  # the position used when C3 breaks its rule
    formula_texts: list[bool] = field(default_factory=list)  # token-row generating books: rows whose text is a formula


def given(build: Build, inputs: BookInputs) -> TokenRows:
    p, layout = build.prompt, inputs.layout
    generated = [bool(layout.generate) and t > p.predict_after for t in range(len(p.ids))]
    return TokenRows(list(p.texts), list(p.ids), p.predict_after, generated, [], p.bpe_reference() if p.typed else {})


def read_back(book: Book, layout: Layout, inputs: BookInputs) -> TokenRows:
    """The token rows as the book's formulas see them."""
    texts, ids, (after, fallback), bpe_stages = _read_rows(book, layout, inputs)
    formula_texts = _formula_texts(book, layout)
    predict_after = fallback if after is editable.FORMULA else after
    generated = _generated(layout, predict_after, formula_texts)
    # a teacher's formula in a token cell; a generated row's own formula is the book's, not a teacher's
    teacher = [t for t in teacher_formulas(book, layout) if not generated[t]]
    return TokenRows(
        texts, ids, predict_after, generated, teacher, bpe_stages, after is editable.FORMULA, fallback, formula_texts
    )


def recomputed(rows: TokenRows, values: Values, inputs: BookInputs) -> TokenRows:
    """The rows with each teacher's token formula replaced by what the engine computed for its cell,
    and C3 (a formula the book did not write) by its value, under its rule."""
    layout = inputs.layout
    if rows.after_formula:
        used = after_rule(layout.T).usable(editable.computed(values, NAME, *PREDICT_AFTER))
        after = rows.after_fallback if used is None else int(used)
        generated = _generated(layout, after, rows.formula_texts)
        teacher = [t for t in rows.teacher_rows if not generated[t]]
        rows = replace(rows, predict_after=after, generated=generated, teacher_rows=teacher, after_formula=False)
    if not rows.teacher_rows:
        return rows
    lookup = inputs["vocab"].lookup
    texts, ids = list(rows.texts), list(rows.ids)
    for t in rows.teacher_rows:
        r, c = TOP + t, TEXT_COL
        texts[t] = value_text(editable.computed(values, NAME, r, c))
        ids[t] = lookup.get(texts[t], -1)
    return replace(rows, texts=texts, ids=ids)


def _position(book: Book, layout: Layout, fallback: int, own: str | None = None):
    """(C3 under its rule, or ``editable.FORMULA`` for a formula the book did not write, ``fallback``)."""
    sheet = book.sheets[NAME]
    held = editable.held(sheet, *PREDICT_AFTER)
    if held is editable.FORMULA:
        text = editable.formula_text(sheet, *PREDICT_AFTER)
        if own is not None and text is not None and _same_formula(text) == _same_formula(own):
            return fallback, fallback
        return editable.FORMULA, fallback
    used = after_rule(layout.T).usable(held)
    return (fallback if used is None else int(used)), fallback


def _read_rows(book: Book, layout: Layout, inputs: BookInputs) -> tuple[list[str], list[int], tuple, dict]:
    """(token texts, ids, predicting position, the BPE tab's reference stages) as the book's formulas see them.

    Token-row books: each row's text, its id by exact lookup, the predicting position in C3.
    Typed-prompt books: our tokenizer (from the vocab and merges tabs) on B4's text, padded; a
    token row whose text is a constant typed over the BPE's formula uses that text's id, as the
    sheet does. The predicting position (``_position``): C3 under its rule, else the fallback: the
    text's last token, the last row in a token-row book.
    """
    words = inputs["vocab"]
    sheet = book.sheets[NAME]
    typed_over = [constant_text(sheet, TOP + t, TEXT_COL) for t in range(layout.T)]
    if not layout.typed:
        texts = ["" if text is None else text for text in typed_over]
        return texts, [words.lookup.get(text, -1) for text in texts], _position(book, layout, layout.T - 1), {}
    r, c = TYPED_TEXT
    text = sheet.strings.get((r, c))
    if text is None:
        held = readback.held(sheet, r, c)
        text = "" if held is None else _number_text(held)
    encoder, pairs = words.encoder(), inputs["merges"]
    if None in encoder or any(None in pair for pair in pairs):
        raise WorkbookError(
            "the vocab tab (column C) or the merges tab (columns B, C) has an empty cell; "
            "the typed prompt cannot be checked"
        )
    prompt = read_typed_prompt(text, Tokenizer(encoder, pairs), layout.typed, layout.T)
    why = prompt.problem(layout.typed, layout.T)
    if why:
        raise WorkbookError(
            f"{NAME}!{a1.cell(r, c)}: the BPE tab cannot tokenize this text ({why}); it shows a "
            "message instead of tokens: type a shorter text or rebuild with sheetgpt build --prompt"
        )
    ids = list(prompt.ids)
    texts = []
    for t, over in enumerate(typed_over):
        if over is not None:
            ids[t] = words.lookup.get(over, -1)
        texts.append(over if over is not None else words.display[ids[t]] or "")
    position = _position(book, layout, prompt.predict_after, own_after_formula())
    return texts, ids, position, prompt.bpe_reference()


def constant_text(sheet: Sheet, r: int, c: int) -> str | None:
    """The text a constant token cell gives the id lookup (``editable.token_text``: a text itself, a
    number as the General format shows it ('2'), TRUE/FALSE, an error a text no vocabulary holds);
    None for nothing or a formula."""
    held = editable.constant(sheet, r, c)
    return None if held is None else editable.token_text(held)


def value_text(value) -> str:
    """The text the id lookup sees in a token cell whose formula gave ``value`` (an engine's value:
    float, str, None for empty): ``editable.token_text``."""
    return editable.token_text(value)


def text_formulas(layout: Layout) -> list[str | None]:
    """The formula the book writes in each token row's text cell (None where it writes the text):
    typed-prompt books look the BPE tab's token up in the vocab tab; in a generating book a row
    after the prompt shows the row before's next token (a token-row book writes that formula only
    after its predicting position, which the writer knows)."""
    texts = vocab.display_range(layout.config.vocab_size)
    b = bpe.BpeSheet(layout) if layout.typed else None
    own: list[str | None] = []
    for t in range(layout.T):
        r = TOP + t
        nxt = f"INDEX({texts},{next_ref(layout, t - 1)}+1)" if layout.generate and t else None
        if b is None:
            own.append(nxt)
            continue
        text = f"INDEX({texts},{b.id_ref(t)}+1)"
        own.append(text if nxt is None else f"IF({a1.cell(r, 0)}<={a1.cell(*AFTER_USED, True, True)},{text},{nxt})")
    return own


def teacher_formulas(book: Book, layout: Layout) -> list[int]:
    """Token rows whose text cell holds a formula the book did not write there (``=vocab!B300``):
    the text is then what an engine computes for that cell."""
    sheet = book.sheets[NAME]
    own = {TOP + t: f or "" for t, f in enumerate(text_formulas(layout))}
    rows = []
    for r, c, text, _ref in sheet.formulas:
        if c == TEXT_COL and TOP <= r < TOP + layout.T and _same_formula(text) != _same_formula(own.get(r, "")):
            rows.append(r - TOP)
    return sorted(rows)


def _same_formula(text: str) -> str:
    return text.replace(" ", "").upper()


def _formula_texts(book: Book, layout: Layout) -> list[bool]:
    """Token-row generating books: the rows after the first whose text is not a typed token (a formula)."""
    if not layout.generate or layout.typed:
        return [False] * layout.T
    strings = book.sheets[NAME].strings
    return [t > 0 and (TOP + t, TEXT_COL) not in strings for t in range(layout.T)]


def _generated(layout: Layout, predict_after: int, formula_texts: list[bool]) -> list[bool]:
    """The rows whose id is the argmax of the row before's logits: in a generating book, those after the
    predicting position, and (token-row books) those whose text is a formula, not a typed token."""
    if not layout.generate:
        return [False] * layout.T
    return [t > predict_after or formula_texts[t] for t in range(layout.T)]


def generated_rows(book: Book, layout: Layout, predict_after: int) -> list[bool]:
    """``_generated`` of a written book."""
    return _generated(layout, predict_after, _formula_texts(book, layout))


def _number_text(x: float) -> str:
    """A number typed into the text cell, as the sheet's ""&B4 shows it."""
    return str(int(x)) if x == int(x) else repr(x)
