"""The Embeddings tab: editable tokens with their wte rows; cosine of pairs; the nearest tokens to a query and to
the analogy a - b + c."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ... import a1
from ...reference import embedding_similarity
from ...tokenizer import Tokenizer
from .. import cells, editable
from ..layout import COMPUTE, FRAME_ROWS, Layout, Region, Tab, stack, weight_range
from . import vocab

if TYPE_CHECKING:
    from ...engine.book import Book
    from ...prompt import Prompt
    from ..output import BookWriter
    from ..trace import BookInputs, Build

NAME = "Embeddings"
TOP = 5  # first row of the editable tokens
TEXT_COL, ID_COL, LEN_COL, VEC_COL = 1, 2, 3, 4
PAIRS = 4
NEAREST = 10
# The label of each editable token row, in order: the pairs, the query, the analogy's a, b, c.
ROLES = [f"pair {k + 1}: {ab}" for k in range(PAIRS) for ab in "ab"] + [
    "nearest to",
    "analogy: a",
    "analogy: minus b",
    "analogy: plus c",
]
QUERY = 2 * PAIRS  # the token row (within ROLES) of the "nearest to" token

# Default tokens: the first of each list whose words are all single tokens.
DEFAULT_PAIRS = [
    (" king", " queen"),
    (" man", " woman"),
    (" He", " She"),
    (" quick", " quickly"),
    (" slow", " slowly"),
    (" cat", " dog"),
    (" Paris", " France"),
    (" Mike", " Sally"),
    (" the", " a"),
    (" big", " small"),
]
DEFAULT_ANALOGIES = [
    (" king", " man", " woman"),
    (" quickly", " quick", " slow"),
    (" He", " Mike", " Sally"),
    (" Paris", " France", " Italy"),
]


def input_cells() -> list[tuple[int, int]]:
    """(row, col) of every editable token text."""
    return [(TOP + k, TEXT_COL) for k in range(len(ROLES))]


def default_tokens(tokenizer: Tokenizer, prompt: Prompt) -> list[int]:
    """Token ids for the tab: pairs, a query and an analogy (a, b, c) that the vocabulary has."""

    def known(words):
        ids = [tokenizer.id_for_display(w) for w in words]
        return None if None in ids else ids

    pairs = [ids for ids in map(known, DEFAULT_PAIRS) if ids]
    analogy = next((ids for ids in map(known, DEFAULT_ANALOGIES) if ids), None)
    spare = list(dict.fromkeys(prompt.ids[: prompt.n_prompt])) + list(
        range(tokenizer.vocab_size - 2, -1, -1)
    )  # not <|endoftext|>
    while len(pairs) < PAIRS:  # a model without these words: pair up the prompt's tokens, then any
        pairs.append([spare[(2 * len(pairs)) % len(spare)], spare[(2 * len(pairs) + 1) % len(spare)]])
    if analogy is None:
        analogy = [spare[k % len(spare)] for k in range(3)]
    return [i for pair in pairs[:PAIRS] for i in pair] + [analogy[0]] + analogy


def tabs(layout: Layout, placed: dict[str, Region]) -> list[Tab]:
    V, d, N = layout.config.vocab_size, layout.config.n_embd, len(ROLES)
    shown = vocab.display_range(V)
    ids = Region("emb.ids", NAME, TOP, N, 1, left=ID_COL, number_format="0")
    vectors = Region("emb.vectors", NAME, TOP, N, d, left=VEC_COL)
    analogy = Region("emb.analogy", NAME, TOP + N, 1, d, left=VEC_COL)
    lengths = Region("emb.lengths", NAME, TOP, N + 1, 1, left=LEN_COL)
    pairs = Region("emb.pairs", NAME, 0, PAIRS, 1, left=3, number_format="0.000")
    near_q = Region("emb.near.query", NAME, 0, NEAREST, 1, left=3, number_format="0.000")
    near_q_id = Region("emb.near.query.id", NAME, 0, NEAREST, 1, left=2, number_format="0")
    near_a = Region("emb.near.analogy", NAME, 0, NEAREST, 1, left=9, number_format="0.000")
    near_a_id = Region("emb.near.analogy.id", NAME, 0, NEAREST, 1, left=8, number_format="0")
    norms = Region("emb.norms", NAME, 0, V, 1, left=2, number_format="0.000")
    cos = Region("emb.cos", NAME, 0, V, 2, left=3, number_format="0.000")
    stack([pairs, near_q, norms], TOP + N + 1 + FRAME_ROWS + 1)
    for twin, of in ((near_q_id, near_q), (near_a, near_q), (near_a_id, near_q), (cos, norms)):
        twin.top = of.top
    wte = weight_range(layout.config, "wte")

    def text(k: int) -> str:
        return a1.cell(TOP + k, TEXT_COL, False, True)

    ids.array_fn = lambda: [
        (TOP + k, ids.left, TOP + k, ids.left, f"IFERROR(MATCH(TRUE,EXACT({shown},{text(k)}),0)-1,-1)")
        for k in range(N)
    ]

    def wte_col(j: int) -> str:  # one column of wte, rows absolute: wte!B$1:B$300
        return a1.sheet_prefix("wte") + a1.span(0, j, V - 1, j, (True, True), (False, False))

    vectors.formula = lambda i, j: f"INDEX({wte_col(j)},MAX({ids.at(i, 0, NAME, col_abs=True)},0)+1)"
    a, b, c = (vectors.top + N - 3 + n for n in range(3))  # rows of the analogy's a, b, c
    analogy.formula = lambda i, j: (
        f"{a1.cell(a, vectors.left + j)}-{a1.cell(b, vectors.left + j)}+{a1.cell(c, vectors.left + j)}"
    )
    # The analogy row sits right below the token rows, in the same columns: row N of `vectors`.
    lengths.formula = lambda i, j: f"SQRT(SUMPRODUCT({vectors.row(i, NAME)},{vectors.row(i, NAME)}))"
    pairs.formula = lambda i, j: (
        f"SUMPRODUCT({vectors.row(2 * i, NAME)},{vectors.row(2 * i + 1, NAME)})"
        f"/({lengths.at(2 * i, 0, NAME, True, True)}*{lengths.at(2 * i + 1, 0, NAME, True, True)})"
    )

    # Every vocabulary row's length, then cosine with the query token and with the analogy vector:
    # {=MMULT(wte, TRANSPOSE(v)) / (lengths * |v|)}, one CSE array per column.
    def wte_row(i: int) -> str:
        return a1.sheet_prefix("wte") + a1.span(i, 0, i, d - 1, (False, False))

    norms.formula = lambda i, j: f"SQRT(SUMPRODUCT({wte_row(i)},{wte_row(i)}))"

    def cosine(j: int, row: int):
        v = a1.span(row, vectors.left, row, vectors.right)
        return (
            cos.top,
            cos.left + j,
            cos.bottom,
            cos.left + j,
            f"MMULT({wte},TRANSPOSE({v}))/({norms.block(NAME)}*{a1.cell(row, lengths.left, True, True)})",
        )

    cos.array_fn = lambda: [cosine(0, TOP + QUERY), cosine(1, analogy.top)]

    def nearest(region: Region, id_region: Region, j: int) -> None:
        column = cos.block(NAME, j0=j, j1=j)
        region.formula = lambda i, _: f"LARGE({column},{i + 1})"
        id_region.formula = lambda i, _: f"MATCH({region.at(i, 0, NAME)},{column},0)-1"

    nearest(near_q, near_q_id, 0)
    nearest(near_a, near_a_id, 1)
    regions = [ids, vectors, analogy, lengths, pairs, near_q, near_q_id, near_a, near_a_id, norms, cos]
    return [Tab(NAME, COMPUTE, regions)]


def write(out: BookWriter, tab: Tab) -> int:
    """Editable tokens with their wte rows; pair cosines; nearest tokens to a query and to a - b + c."""
    ws, fmt, layout, trace, tokenizer = out.sheet(tab), out.fmt, out.layout, out.trace, out.tokenizer
    V, d = layout.config.vocab_size, layout.config.n_embd
    cells.define_names(out, tab)
    R = {r.name: r for r in tab.regions}
    ids = [int(x) for x in trace["emb.ids"][:, 0]]
    texts = layout.texts["emb"] if layout.texts.has_section("emb") else {}
    ws.write_string(0, 0, texts.get("title", "Token embeddings"), fmt.big)
    ws.write_string(1, 0, texts.get("explain", ""), fmt.note)
    count = 0
    for region in tab.regions:
        count += cells.write_formulas(ws, region, trace, fmt.number(region.number_format))

    def frame(region: Region, col: int, headers: list[str]) -> None:
        ws.write_string(region.title_row, col, region.text["title"], fmt.title)
        cells.note(ws, region.title_row, col, region.text["explain"])
        ws.write_string(region.explain_row, col, region.text["explain"], fmt.note)
        for k, label in enumerate(headers):
            ws.write_string(region.header_row, col + k, label, fmt.header)

    # Section 1: the editable tokens, their ids, lengths and embedding vectors; a - b + c below them.
    vec = R["emb.vectors"]
    frame(vec, 0, ["role", "token (edit)", "id", "length"])
    for j in range(d):
        ws.write_number(vec.header_row, vec.left + j, j, fmt.header)
    for k, role in enumerate(ROLES):
        ws.write_string(TOP + k, 0, role, fmt.label)
        ws.write_string(TOP + k, TEXT_COL, tokenizer.display(max(ids[k], 0)), fmt.edit_text)
    ws.write_string(R["emb.analogy"].top, 0, "a - b + c", fmt.title)
    ws.write_string(R["emb.analogy"].top, 1, "(analogy)", fmt.label)
    for region in (R["emb.ids"], R["emb.lengths"], R["emb.analogy"]):
        cells.note(ws, region.header_row if region.top == TOP else region.top, region.left, region.text["explain"])

    def token_text(row: int) -> str:
        return a1.cell(row, TEXT_COL, False, True)

    # Section 2: cosine similarity of each pair.
    pairs = R["emb.pairs"]
    frame(pairs, 0, ["pair", "token a", "token b", "cosine"])
    for k in range(PAIRS):
        r = pairs.top + k
        ws.write_number(r, 0, k + 1, fmt.label)
        for side in range(2):
            ws.write_formula(
                r,
                1 + side,
                "=" + token_text(TOP + 2 * k + side),
                fmt.token,
                tokenizer.display(max(ids[2 * k + side], 0)),
            )
    ws.conditional_format(
        pairs.top,
        pairs.left,
        pairs.bottom,
        pairs.left,
        {
            "type": "3_color_scale",
            "min_color": "#5B9BD5",
            "mid_color": "#FFFFFF",
            "max_color": "#C00000",
            "min_type": "num",
            "min_value": -1,
            "mid_type": "num",
            "mid_value": 0,
            "max_type": "num",
            "max_value": 1,
        },
    )

    # Section 3: the nearest tokens (LARGE / MATCH / INDEX) to the query token and to a - b + c.
    shown = vocab.display_range(V)
    q_row = TOP + QUERY
    abc = [R["emb.ids"].at(len(ids) - 3 + n, 0, NAME, True, True) for n in range(3)]
    for which, col, note, marked, mark in (
        (
            "query",
            0,
            f'IF({{id}}={R["emb.ids"].at(QUERY, 0, NAME, True, True)},"(the token itself)","")',
            {ids[QUERY]},
            "(the token itself)",
        ),
        (
            "analogy",
            6,
            f'IF(OR({{id}}={abc[0]},{{id}}={abc[1]},{{id}}={abc[2]}),"(a, b or c)","")',
            set(ids[-3:]),
            "(a, b or c)",
        ),
    ):
        region, id_region = R[f"emb.near.{which}"], R[f"emb.near.{which}.id"]
        frame(region, col, ["rank", "token", "id", "cosine", ""])
        for k in range(NEAREST):
            r = region.top + k
            tid = int(trace[f"emb.near.{which}.id"][k, 0])
            idc = a1.cell(r, id_region.left)
            ws.write_number(r, col, k + 1, fmt.label)
            ws.write_formula(r, col + 1, f"=INDEX({shown},{idc}+1)", fmt.token, tokenizer.display(tid))
            ws.write_formula(r, col + 4, "=" + note.format(id=idc), fmt.note, mark if tid in marked else "")
        ws.conditional_format(
            region.top,
            region.left,
            region.bottom,
            region.left,
            {
                "type": "data_bar",
                "bar_color": "#9DC3E6",
                "min_type": "num",
                "min_value": 0,
                "max_type": "num",
                "max_value": 1,
            },
        )
    ws.write_formula(
        R["emb.near.query"].title_row,
        0,
        f'="Nearest tokens to "&{token_text(q_row)}',
        fmt.title,
        "Nearest tokens to " + tokenizer.display(max(ids[QUERY], 0)),
    )

    # Section 4: every vocabulary row: its length and its cosine with the query and with a - b + c.
    norms, cos = R["emb.norms"], R["emb.cos"]
    frame(norms, 0, ["id", "token", "length"])
    ws.write_formula(
        cos.header_row,
        cos.left,
        f'="cosine with "&{token_text(q_row)}',
        fmt.header,
        "cosine with " + tokenizer.display(max(ids[QUERY], 0)),
    )
    ws.write_string(cos.header_row, cos.left + 1, "cosine with a - b + c", fmt.header)
    cells.note(ws, cos.header_row, cos.left, cos.text["explain"])
    for i in range(V):
        ws.write_number(norms.top + i, 0, i, fmt.label)
        ws.write_string(norms.top + i, 1, tokenizer.display(i), fmt.token)
    ws.freeze_panes(0, 2)
    ws.set_column(0, 0, 16)
    ws.set_column(1, 1, 16)
    ws.set_column(2, 2, 8)
    ws.set_column(3, 4, 12)
    ws.set_column(5, max(9, vec.right), 9)
    ws.set_column(7, 7, 16)
    return count


def given(build: Build, inputs: BookInputs) -> list[int]:
    """The ids of the editable tokens in a book being built (``default_tokens``)."""
    return default_tokens(build.tokenizer, build.prompt)


def read_back(book: Book, layout: Layout, inputs: BookInputs) -> list:
    """The ids of the editable tokens (-1: a text not in the vocabulary): each cell's text as EXACT
    compares it (``editable.token_text``: a number as the General format shows it); a formula is read
    in ``recomputed``, after the engine computed it."""
    sheet, lookup = book.sheets[NAME], inputs["vocab"].lookup
    held = [editable.held(sheet, r, c) for r, c in input_cells()]
    return [h if h is editable.FORMULA else lookup.get(editable.token_text(h), -1) for h in held]


def recomputed(ids: list, values, inputs: BookInputs) -> list[int]:
    """Each token cell that holds a formula, as the engine computed it."""
    if not any(i is editable.FORMULA for i in ids):
        return ids
    lookup = inputs["vocab"].lookup
    return [
        lookup.get(editable.token_text(editable.computed(values, NAME, r, c)), -1) if i is editable.FORMULA else i
        for i, (r, c) in zip(ids, input_cells())
    ]


def stages(inputs: BookInputs, trace: dict) -> dict:
    """Cosines of the pairs, the nearest tokens of the query and of the analogy."""
    wte = np.asarray(inputs["weights"]["wte"], dtype=np.float64)
    return embedding_similarity(wte, inputs["embeddings"], PAIRS, NEAREST)
