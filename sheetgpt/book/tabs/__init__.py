"""One module per tab. Each has ``tabs(layout, placed)`` (its tabs and regions, placed below
one another), ``write(out, tab)`` (its frame, labels and formulas) and, where ``sheetgpt check``
needs something from it, ``read_back``.

Adding a tab: a new module here, its texts in templates/regions.ini, and one line in TABS.
"""

from . import (
    block,
    bpe,
    bytes_table,
    embed,
    embeddings,
    final_norm,
    guide,
    logit_lens,
    logits,
    merges,
    neurons,
    predict,
    prompt,
    sample,
    steering,
    tokenize,
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
    sample,  # Sample: how each generated row chooses its token, greedy or sampled (--generate books)
    logit_lens,  # Logit lens: what each block would predict
    neurons,  # Neurons: each row's most active MLP neurons in a chosen block, a heatmap (--generate/--steer books)
    embeddings,  # Embeddings: cosine similarity of token vectors
    vocab,  # vocab: every token's id, text and GPT-2 form
    merges,  # merges: the BPE merge ranks (typed-prompt books)
    bytes_table,  # bytes: character classes and byte symbols (typed-prompt books)
    weights,  # one tab per parameter, wte ... ln_f.b
)
