"""The Keras 3 CNN text classifier: token ids -> P(positive)."""

from __future__ import annotations

import keras
from keras import layers

from models import features
from pipeline.config import TrainConfig

__all__ = ["build_cnn", "MaskedMean"]

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


def build_cnn(config: TrainConfig, vocab_total: int, max_length: int) -> keras.Model:
    """Embedding -> parallel Conv1D n-gram detectors (max-pooled) + masked mean
    -> dense head with dropout and optional L2 -> sigmoid probability."""
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
    hidden = layers.Dropout(config.dropout)(layers.Concatenate()(pooled))
    hidden = layers.Dense(64, activation="relu", kernel_regularizer=l2)(hidden)
    hidden = layers.Dropout(config.dropout)(hidden)
    probability = layers.Dense(1, activation="sigmoid", kernel_regularizer=l2,
                               name="probability")(hidden)
    return keras.Model(ids, probability, name="cnn")
