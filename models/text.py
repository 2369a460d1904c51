"""Text normalisation and tokenisation rules, written once.

`preprocessing_fn` applies them with tf.strings (inside the Transform graph,
so serving sees exactly what training saw); `tokenize_py`/`lookup_ids` apply the same
rules in plain Python for TF-free clients (the TFLite mobile runner), and the
tokenizer spec shipped with the TFLite model is generated from these
constants. Tests check both paths agree.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["HTML_TAG", "PUNCTUATION", "PAD_ID", "ID_OFFSET", "VOCAB_NAME", "first_oov_id",
           "vocab_total", "tokenize_py", "tokenizer_spec", "lookup_ids"]

# The raw reviews contain HTML break tags (`<br /><br />`) and other markup:
# they carry no sentiment, so each tag becomes a space.
HTML_TAG = r"<[^>]*>"
# Punctuation becomes its own token ("great!" -> "great !"): "!" and "?" carry
# sentiment, and glued punctuation would split one word into many vocab entries.
PUNCTUATION = r"""([!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~])"""
# The token-id scheme, shared by Transform, the models, TFLite and mobile apps:
#   0                                   padding
#   1 .. V                              vocabulary entry i (0-based) -> i + ID_OFFSET
#   V + 1 .. V + num_oov_buckets        out-of-vocabulary buckets
#: Token id of padding.
PAD_ID = 0
#: Vocabulary ids are shifted by this much so that 0 stays free for padding.
ID_OFFSET = 1
#: Name of the Transform vocabulary (its file name in the transform graph).
VOCAB_NAME = "tokens"


def first_oov_id(vocab_size: int) -> int:
    """Id of the first out-of-vocabulary bucket for a vocabulary of `vocab_size` entries."""
    return vocab_size + ID_OFFSET


def vocab_total(vocab_size: int, num_oov_buckets: int) -> int:
    """Number of distinct ids (padding, vocabulary, OOV buckets): the embedding rows."""
    return first_oov_id(vocab_size) + num_oov_buckets

_HTML = re.compile(HTML_TAG)
_PUNCT = re.compile(PUNCTUATION)


def tokenize_py(text: str) -> list[str]:
    """The tf.strings normalisation of preprocessing_fn, in plain Python."""
    lowered = text.lower()
    return _PUNCT.sub(r" \1 ", _HTML.sub(" ", lowered)).split()


def lookup_ids(tokens: list[str], vocab: dict[str, int], max_length: int) -> list[int]:
    """Token ids as Transform computes them: vocab index + 1, out-of-vocabulary
    -> len(vocab) + 1 (one OOV bucket), truncated then padded with PAD_ID."""
    oov = first_oov_id(len(vocab))
    ids = [vocab[token] + ID_OFFSET if token in vocab else oov for token in tokens][:max_length]
    return ids + [PAD_ID] * (max_length - len(ids))


def tokenizer_spec(max_length: int, vocab_file: str, num_oov_buckets: int) -> dict[str, Any]:
    """What a mobile app needs to turn text into the model's int32 input."""
    return {
        "lowercase": True,
        "strip_regex": HTML_TAG,
        "strip_replacement": " ",
        "punctuation_regex": PUNCTUATION,
        "punctuation_replacement": r" \1 ",
        "split": "whitespace",
        "vocab_file": vocab_file,
        "vocab_id_offset": ID_OFFSET,
        "pad_id": PAD_ID,
        "num_oov_buckets": num_oov_buckets,
        "oov_id": "len(vocab) + 1",
        "max_length": max_length,
        "truncate": "end",
        "input_dtype": "int32",
        "input_shape": [1, max_length],
    }
