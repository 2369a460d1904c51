"""The Keras 3 CNN text classifier: token ids -> P(positive)."""

from __future__ import annotations

import keras
from keras import layers

from models import contract, features
from models.config import TrainConfig

__all__ = ["build_cnn", "bigram_bucket", "MaskedMean", "HashedBigramMean"]

KERNEL_SIZES = (3, 4, 5)


@keras.saving.register_keras_serializable(package="imdb")
class MaskedMean(layers.Layer):
    """Mean of the embeddings of real tokens (ids != 0), ignoring padding.

    A bag-of-embeddings view beside the n-gram convolutions: cheap, and it
    carries the review's overall tone that max-pooled n-grams can miss.
    """

    def call(self, embedded, ids):  # type: ignore[no-untyped-def]
        real = keras.ops.cast(keras.ops.not_equal(ids, 0), embedded.dtype)
        mask = keras.ops.expand_dims(real, -1)
        total = keras.ops.sum(embedded * mask, axis=1)
        return total / keras.ops.maximum(keras.ops.sum(mask, axis=1), 1.0)


def bigram_bucket(first, second, vocab_total: int, buckets: int):  # type: ignore[no-untyped-def]
    """Bucket of the id pair (first, second): (first * vocab_total + second) mod buckets.

    In int64: the pair index reaches vocab_total**2, which overflows int32
    once the vocabulary passes ~46k ids. Only the bucket (< buckets) goes
    back to int32 for the embedding lookup.
    """
    pair = (keras.ops.cast(first, "int64") * vocab_total + keras.ops.cast(second, "int64"))
    return keras.ops.cast(keras.ops.mod(pair, buckets), "int32")


@keras.saving.register_keras_serializable(package="imdb")
class HashedBigramMean(layers.Layer):
    """Mean embedding of the review's hashed token-id bigrams (fastText-style).

    Word pairs ("not good", "at all") carry sentiment that single tokens do
    not; hashing keeps the table bounded. Integer ops and a gather only, so
    it converts to TFLite builtins.
    """

    def __init__(self, buckets: int, dim: int, vocab_total: int, **kwargs):  # type: ignore[no-untyped-def]
        super().__init__(**kwargs)
        self.buckets, self.dim, self.vocab_total = buckets, dim, vocab_total
        self.embedding = layers.Embedding(buckets, dim)

    def call(self, ids):  # type: ignore[no-untyped-def]
        first, second = ids[:, :-1], ids[:, 1:]
        hashed = bigram_bucket(first, second, self.vocab_total, self.buckets)
        real = keras.ops.cast(keras.ops.logical_and(keras.ops.not_equal(first, 0),
                                                    keras.ops.not_equal(second, 0)), "float32")
        mask = keras.ops.expand_dims(real, -1)
        total = keras.ops.sum(self.embedding(hashed) * mask, axis=1)
        return total / keras.ops.maximum(keras.ops.sum(mask, axis=1), 1.0)

    def get_config(self):  # type: ignore[no-untyped-def]
        return {**super().get_config(), "buckets": self.buckets, "dim": self.dim,
                "vocab_total": self.vocab_total}


def build_cnn(config: TrainConfig, vocab_total: int, max_length: int) -> keras.Model:
    """Embedding -> parallel Conv1D n-gram detectors (max-pooled), masked mean
    of the embeddings and (optionally) of hashed bigrams -> dense head with
    dropout and optional L2 -> sigmoid probability."""
    l2 = keras.regularizers.L2(config.l2) if config.l2 else None
    ids = keras.Input(shape=(max_length,), dtype="int32", name=features.TOKEN_IDS)
    embedded = layers.Embedding(vocab_total, config.embedding_dim, name="embedding")(ids)
    dropped = layers.SpatialDropout1D(config.dropout / 2)(embedded)
    pooled = [
        layers.GlobalMaxPooling1D()(
            layers.Conv1D(config.filters, size, activation="relu", kernel_regularizer=l2,
                          name=f"conv{size}")(dropped))
        for size in KERNEL_SIZES
    ]
    pooled.append(MaskedMean(name="masked_mean")(dropped, ids))
    if config.bigram_buckets:
        bigrams = HashedBigramMean(config.bigram_buckets, config.bigram_dim, vocab_total,
                                   name="bigram_mean")(ids)
        pooled.append(layers.Dropout(config.dropout / 2)(bigrams))
    hidden = layers.Dropout(config.dropout)(layers.Concatenate()(pooled))
    hidden = layers.Dense(64, activation="relu", kernel_regularizer=l2)(hidden)
    hidden = layers.Dropout(config.dropout)(hidden)
    probability = layers.Dense(1, activation="sigmoid", kernel_regularizer=l2,
                               name=contract.OUTPUT_KEY)(hidden)
    return keras.Model(ids, probability, name="cnn")
