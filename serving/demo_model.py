"""A stand-in for the released SavedModel: the same three signatures, inputs
and output as `models.trainer.export_serving_model`, built in seconds.

Tests, the serving benchmark and `make serve` on a machine without a run need
a real SavedModel; training one needs the pipeline (minutes). This one
tokenises with the pipeline's own tokenizer (`models.text_tf.tokenize_tf`,
the graph Transform runs) through a lookup table of a small generated
vocabulary (`demo_vocabulary`) and scores with either a bag of embeddings
(`filters=0`, tiny and fast) or the CNN's shape (embedding -> Conv1D n-grams
-> max-pool -> dense), so that the benchmark measures a model of realistic
cost. `seed` picks the weights: two seeds are two distinguishable versions.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from models import features, text
from models.contract import (
    INPUT_EXAMPLES,
    INPUT_TEXT,
    INPUT_TOKEN_IDS,
    OUTPUT_KEY,
    SIGNATURE_EXAMPLES,
    SIGNATURE_TEXT,
    SIGNATURE_TOKEN_IDS,
)
from models.text_tf import tokenize_tf

__all__ = ["POSITIVE_WORDS", "NEGATIVE_WORDS", "demo_vocabulary", "build_demo_model"]

#: Words the demo model scores positive / negative: reviews made of them have
#: a known direction, so tests can check answers, not just shapes.
POSITIVE_WORDS = ("good", "great", "excellent", "love", "wonderful", "best")
NEGATIVE_WORDS = ("bad", "awful", "terrible", "boring", "worst", "waste")


def demo_vocabulary(vocab_size: int) -> list[str]:
    """The demo model's vocabulary, in id order (word i has id i + ID_OFFSET):
    the sentiment words, then fillers up to `vocab_size`."""
    words = list(POSITIVE_WORDS + NEGATIVE_WORDS)
    return words + [f"w{i}" for i in range(max(0, vocab_size - len(words)))]


class _DemoModule(tf.Module):
    """Tokeniser, lookup table and weights; three signatures over one scorer."""

    def __init__(self, seed: int, max_length: int, vocab_size: int, embedding_dim: int,
                 filters: int) -> None:
        super().__init__()
        rng = np.random.default_rng(seed)
        words = demo_vocabulary(vocab_size)
        ids = np.arange(len(words), dtype=np.int64) + text.ID_OFFSET
        self.max_length = max_length
        self.table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(tf.constant(words), tf.constant(ids)),
            default_value=text.first_oov_id(len(words)))
        rows = text.vocab_total(len(words), 1)
        embedding = rng.normal(0.0, 0.1, (rows, embedding_dim)).astype(np.float32)
        # The sentiment direction lives in the first embedding column, scaled
        # by the seed, so each version answers differently but sensibly.
        strength = 1.0 + (seed % 7)
        embedding[text.ID_OFFSET:text.ID_OFFSET + len(POSITIVE_WORDS), 0] = strength
        start = text.ID_OFFSET + len(POSITIVE_WORDS)
        embedding[start:start + len(NEGATIVE_WORDS), 0] = -strength
        embedding[text.PAD_ID] = 0.0
        self.embedding = tf.Variable(embedding, name="embedding")
        self.filters = filters
        if filters:
            self.conv = [tf.Variable(rng.normal(0.0, 0.05, (k, embedding_dim, filters))
                                     .astype(np.float32), name=f"conv{k}") for k in (3, 4, 5)]
            self.dense = tf.Variable(rng.normal(0.0, 0.05, (3 * filters, 1)).astype(np.float32))
        self.bias = tf.Variable(float(rng.normal(0.0, 0.1)), name="bias")

    def _ids(self, reviews: tf.Tensor) -> tf.Tensor:
        tokens = tokenize_tf(reviews)
        ids = tf.cast(tf.ragged.map_flat_values(self.table.lookup, tokens), tf.int32)
        return ids[:, :self.max_length].to_tensor(
            default_value=text.PAD_ID, shape=[None, self.max_length])

    def _score(self, ids: tf.Tensor) -> dict[str, tf.Tensor]:
        embedded = tf.gather(self.embedding, ids)
        real = tf.cast(tf.not_equal(ids, text.PAD_ID), tf.float32)[:, :, None]
        mean = tf.reduce_sum(embedded * real, 1) / tf.maximum(tf.reduce_sum(real, 1), 1.0)
        logit = mean[:, 0] * 4.0 + self.bias
        if self.filters:
            pooled = [tf.reduce_max(tf.nn.relu(tf.nn.conv1d(embedded, kernel, 1, "VALID")), 1)
                      for kernel in self.conv]
            logit += 0.01 * tf.reshape(tf.concat(pooled, 1) @ self.dense, [-1])
        return {OUTPUT_KEY: tf.sigmoid(logit)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=INPUT_EXAMPLES)])
    def serve_examples(self, examples: tf.Tensor) -> dict[str, tf.Tensor]:
        parsed = tf.io.parse_example(
            examples, {features.TEXT: tf.io.FixedLenFeature([1], tf.string)})
        return self._score(self._ids(tf.reshape(parsed[features.TEXT], [-1])))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=INPUT_TEXT)])
    def serve_text(self, reviews: tf.Tensor) -> dict[str, tf.Tensor]:
        return self._score(self._ids(reviews))


def build_demo_model(directory: str, *, seed: int = 1, max_length: int = 16,
                     vocab_size: int = 64, embedding_dim: int = 8, filters: int = 0) -> str:
    """Exports the demo SavedModel into `directory` (a version dir) and returns it."""
    module = _DemoModule(seed, max_length, vocab_size, embedding_dim, filters)
    from_ids: Any = tf.function(module._score, input_signature=[
        tf.TensorSpec([None, max_length], tf.int32, name=INPUT_TOKEN_IDS)])
    tf.saved_model.save(module, directory, signatures={
        SIGNATURE_EXAMPLES: module.serve_examples.get_concrete_function(),
        SIGNATURE_TEXT: module.serve_text.get_concrete_function(),
        SIGNATURE_TOKEN_IDS: from_ids.get_concrete_function(),
    })
    return directory
