"""Where the Prompt tab's cells are: its name, the token rows and their columns, the predicting position,
the typed text. The Prompt tab (``book.tabs.prompt``) writes them; the other tabs and ``book.cells`` refer
to them from here. A leaf: it imports no tab, so that every module may import it.
"""

from __future__ import annotations

from .. import a1

NAME = "Prompt"
TOP = 5  # first token row (sheet row 6)
TEXT_COL, ID_COL, NOTE_COL = 1, 2, 3  # column A: position; B: token text (editable); C: token id; D: note
# Generating books: E: the most likely next token's id (argmax of the row's logits; the next row takes the
# Sample tab's choice, this one unless it samples); F: the text so far, up to the
# first generated <|endoftext|>; G: 1 once a generated <|endoftext|> has been met.
NEXT_COL, SO_FAR_COL, ENDED_COL = 4, 5, 6
PREDICT_AFTER = (2, 2)  # C3: the position whose next token is predicted (editable)
AFTER_STATUS = (2, 3)  # D3: why C3 cannot be used (book.editable's rule), else empty
AFTER_USED = (2, 4)  # E3: the position the book uses: C3 rounded, or the fallback; every formula reads this one
TYPED_TEXT = (3, 1)  # B4: the text a learner types, in typed-prompt books
AFTER_NOTE = "(after the predicting position: ignored)"
GENERATED_NOTE = "generated: the row before's next token"


def text_ref(t: int) -> str:
    """Token t's text, from any tab: Prompt!$B$6."""
    return a1.sheet_prefix(NAME) + a1.cell(TOP + t, TEXT_COL, True, True)


def id_ref(t: int) -> str:
    """Token t's id, from any tab, row relative: Prompt!$C6."""
    return a1.sheet_prefix(NAME) + a1.cell(TOP + t, ID_COL, False, True)


def predict_after_ref() -> str:
    """The predicting position the book uses (E3: C3 when it follows its rule, else the fallback), from any tab."""
    return a1.sheet_prefix(NAME) + a1.cell(*AFTER_USED, True, True)


def typed_text_ref() -> str:
    return a1.sheet_prefix(NAME) + a1.cell(*TYPED_TEXT, True, True)
