"""One module per tab, and ``TABS``, the registry: the tabs in book order.

What a tab module declares (only ``tabs`` and ``write`` are required; the rest where the tab has it):

- ``tabs(layout, placed) -> list[Tab]``: its tabs and their regions, placed (``placed``: every region
  of the tabs before it, by name); no tab for a book without it.
- ``write(out, tab) -> int``: its frame, labels and formulas (``out``: ``book.output.BookWriter``);
  ``finish(out, tab)``: cached values that need tabs written after it.
- ``given(build, inputs)`` and ``read_back(book, layout, inputs)``: its inputs (what its editable cells
  hold) in a book being built and in a written book, the same object either way (``book.trace``).
- ``before_forward(inputs) -> dict`` and ``stages(inputs, trace) -> dict``: the trace's stages it adds
  (``book.trace.book_trace``); ``recomputed(its_inputs, values, inputs)``: inputs that are formulas, as
  an engine computed them (``sheetgpt check``).
- ``generation(inputs) -> sampling.Settings``: how a generating book's rows after the prompt choose
  their tokens (``book.trace``; greedy when no tab says).
- ``TOO_BIG``: the option to change when it crosses a spreadsheet limit; ``extent(layout)`` and
  ``long_formulas(layout)``: cells beyond its regions (``book.limits``).
- ``EXERCISES``: its exercise families ({family: stage names without the block prefix}); a tab with
  it can have exercises (``sheetgpt.exercises``).
- ``GUIDE_SECTION``: a regions.ini section the Guide shows (what to try on the tab).
- ``SWITCH``: a ``layout.Switch``: the book has the tab only when switched on (``--NAME/--no-NAME``,
  ``build_workbook(tabs={NAME: ...})``, one row of the Guide's configuration table); ``wanted(layout)``
  then asks ``layout.has(SWITCH.name)``, and ``given`` finds the command line's value in
  ``build.settings[NAME]`` when it is more than on/off.
"""

from ..layout import Layout
from . import (
    block,
    bpe,
    bytes_table,
    embed,
    embeddings,
    features,
    final_norm,
    guide,
    logit_lens,
    logits,
    merges,
    neurons,
    predict,
    prompt,
    sae_weights,
    saliency,
    sample,
    steering,
    tokenize,
    train,
    train_weights,
    vocab,
    weights,
)

# The tabs, in the order the book shows them and the writer fills them.
TABS = (
    guide,  # Guide: what the book is, the model's configuration, a link to every tab
    prompt,  # Prompt: the token rows (or the typed text) and their ids
    tokenize,  # Tokenize: how the prompt became token ids, as values
    bpe,  # BPE: GPT-2's tokenizer in formulas (typed-prompt books)
    embed,  # Embed: token + position embeddings
    steering,  # Steering: strength x (wte[A] - wte[B]) added at a block's input (--generate/--steer books)
    block,  # Block 0, Block 1, ...: one transformer block each
    final_norm,  # Final norm: ln_f and the predicting position's row
    logits,  # Logits: the tied unembedding
    predict,  # Predict: softmax with a temperature, the top tokens
    saliency,  # Saliency: the backward pass of the prediction to the token embeddings, Ecco's grad_x_input (--saliency)
    sample,  # Sample: how each generated row chooses its token, greedy or sampled (--generate books)
    train,  # Train: one step of gradient descent on a target's loss, and the forward pass after it (--train)
    logit_lens,  # Logit lens: what each block would predict
    neurons,  # Neurons: each row's most active MLP neurons in a chosen block, a heatmap (--generate/--steer books)
    features,  # Features: a sparse autoencoder's top features per token, a heat map of one (--features, --sae)
    embeddings,  # Embeddings: cosine similarity of token vectors
    vocab,  # vocab: every token's id, text and GPT-2 form
    merges,  # merges: the BPE merge ranks (typed-prompt books)
    bytes_table,  # bytes: character classes and byte symbols (typed-prompt books)
    weights,  # one tab per parameter, wte ... ln_f.b
    sae_weights,  # the SAE's weights: sae.ids, sae.W_enc, sae.b_enc, sae.W_dec, sae.b_dec (--features, --sae)
    train_weights,  # d wte ..., new wte ...: each parameter's gradient and updated value (--train)
)


def layout(config, options) -> Layout:
    """The layout of a book with these tabs."""
    return Layout(config, options, TABS)


def read_layout(book) -> Layout:
    """The layout of a written book, from its Guide's configuration table."""
    return layout(*guide.read_config(book, switches()))


def switches() -> list:
    """Every tab's ``SWITCH`` (``layout.Switch``), in book order."""
    return [m.SWITCH for m in TABS if hasattr(m, "SWITCH")]
