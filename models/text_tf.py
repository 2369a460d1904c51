"""The word tokenizer of models/text.py in TensorFlow: the one graph twin of
`text.tokenize_py`, used by Transform (models/preprocessing.py) and by the
serving demo model (serving/demo_model.py), so both split reviews exactly
as the pipeline does. Imports TensorFlow only (no TFT, no Keras)."""

from __future__ import annotations

import tensorflow as tf

from models import text

__all__ = ["tokenize_tf"]


def tokenize_tf(raw_text: tf.Tensor) -> tf.RaggedTensor:
    """Reviews (any shape, flattened) -> their tokens, one row per review."""
    # No encoding: ASCII-only lower-casing (ICU's UTF-8 lower-casing stops at a NUL).
    lowered = tf.strings.lower(tf.reshape(raw_text, [-1]))
    spaced = tf.strings.regex_replace(lowered, text.DELIMITER, " ")
    # Every ASCII whitespace character is a delimiter, so only the spaces put
    # in above remain to split on.
    return tf.strings.split(spaced)
