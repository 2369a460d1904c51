"""The Keras 3 transformer encoder and its sentiment classifier: token ids -> P(positive).

Written with plain Dense/LayerNormalization/softmax/matmul ops (no
`keras.layers.MultiHeadAttention`, no einsum) so that each piece has a
gradient test of its own and the whole model converts to TFLite builtins,
like the CNN.

Pre-layer-norm blocks (normalise, attend or feed forward, add): they train
stably without a learning-rate warm-up being strictly needed, which matters
when a run is a few epochs on two CPU cores. Positions are sinusoidal, not
learned: masked-LM pre-training runs on short windows, and sinusoidal
positions give the fine-tuned model the same encoding at every position up
to `max_length` whatever window it was pre-trained on.
"""

from __future__ import annotations

import math
import os
from typing import Any

import keras
import numpy as np
from absl import logging
from keras import layers

from models import contract, features
from models.cnn import MaskedMean
from models.config import TrainConfig

__all__ = ["TokenAndPositionEmbedding", "MultiHeadSelfAttention", "EncoderBlock",
           "build_encoder", "build_transformer", "layer_groups", "load_encoder", "ENCODER_NAME",
           "encoder_vocab_total"]

#: Name of the encoder sub-model inside the classifier (pre-training saves it).
ENCODER_NAME = "encoder"


def encoder_vocab_total(vocab_total: int) -> int:
    """Rows of the encoder's embedding: the token ids plus one [MASK] id
    (`vocab_total`) that only masked-LM pre-training feeds it."""
    return vocab_total + 1


def sinusoidal_positions(length: int, dim: int) -> np.ndarray:
    """[length, dim] float32: sin on even, cos on odd channels (Vaswani et al.)."""
    position = np.arange(length)[:, None]
    rate = np.exp(-math.log(10_000.0) * (np.arange(0, dim, 2) / dim))
    table = np.zeros((length, dim), dtype="float32")
    table[:, 0::2] = np.sin(position * rate)
    table[:, 1::2] = np.cos(position * rate)[:, : dim // 2]
    return table


@keras.saving.register_keras_serializable(package="imdb")
class TokenAndPositionEmbedding(layers.Layer):
    """Token embedding (scaled by sqrt(dim)) plus fixed sinusoidal positions."""

    def __init__(self, vocab_total: int, max_length: int, dim: int, **kwargs):  # type: ignore[no-untyped-def]
        super().__init__(**kwargs)
        self.vocab_total, self.max_length, self.dim = vocab_total, max_length, dim
        self.tokens = layers.Embedding(vocab_total, dim, name="tokens", dtype=self.dtype_policy)
        self.positions = sinusoidal_positions(max_length, dim)

    def call(self, ids):  # type: ignore[no-untyped-def]
        length = keras.ops.shape(ids)[1]
        embedded = self.tokens(ids) * math.sqrt(self.dim)
        positions = keras.ops.cast(self.positions, embedded.dtype)[None, :length]
        return embedded + positions

    def get_config(self):  # type: ignore[no-untyped-def]
        return {**super().get_config(), "vocab_total": self.vocab_total,
                "max_length": self.max_length, "dim": self.dim}


@keras.saving.register_keras_serializable(package="imdb")
class MultiHeadSelfAttention(layers.Layer):
    """Scaled dot-product self-attention over `heads` heads; padding keys
    (mask 0) get no weight."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0, **kwargs):  # type: ignore[no-untyped-def]
        super().__init__(**kwargs)
        if dim % heads:
            raise ValueError(f"model width {dim} is not divisible by {heads} heads")
        self.dim, self.heads, self.dropout_rate = dim, heads, dropout
        self.qkv = layers.Dense(3 * dim, name="qkv", dtype=self.dtype_policy)
        self.out = layers.Dense(dim, name="out", dtype=self.dtype_policy)
        self.dropout = layers.Dropout(dropout, dtype=self.dtype_policy)

    def call(self, x, mask, training=False):  # type: ignore[no-untyped-def]
        batch, length = keras.ops.shape(x)[0], keras.ops.shape(x)[1]
        depth = self.dim // self.heads
        qkv = keras.ops.reshape(self.qkv(x), (batch, length, 3, self.heads, depth))
        qkv = keras.ops.transpose(qkv, (2, 0, 3, 1, 4))  # [3, batch, heads, length, depth]
        query, key, value = qkv[0], qkv[1], qkv[2]
        scores = keras.ops.matmul(query, keras.ops.transpose(key, (0, 1, 3, 2)))
        scores = scores / math.sqrt(depth)
        # Padding keys are masked by zeroing their weights after the softmax
        # and renormalising, not by adding -1e9 to their scores: the same
        # weights, but an int8 TFLite model would give the scores a
        # quantisation range of ~1e9 and round every real score to 0.
        # A review of padding only has no key to keep: its weights stay 0 by
        # dividing by 1 there, not by a floor like 1e-9, which a float16
        # TFLite file stores as 0 (0/0: NaN for the empty review).
        keep = keras.ops.cast(mask, scores.dtype)[:, None, None, :]
        weights = keras.ops.softmax(scores, axis=-1) * keep
        no_key = 1.0 - keras.ops.max(keep, axis=-1, keepdims=True)
        weights = weights / (keras.ops.sum(weights, axis=-1, keepdims=True) + no_key)
        weights = self.dropout(weights, training=training)
        context = keras.ops.matmul(weights, value)  # [batch, heads, length, depth]
        context = keras.ops.reshape(keras.ops.transpose(context, (0, 2, 1, 3)),
                                    (batch, length, self.dim))
        return self.out(context)

    def get_config(self):  # type: ignore[no-untyped-def]
        return {**super().get_config(), "dim": self.dim, "heads": self.heads,
                "dropout": self.dropout_rate}


@keras.saving.register_keras_serializable(package="imdb")
class EncoderBlock(layers.Layer):
    """x + Attention(LN(x)), then h + FFN(LN(h)), with dropout on both branches."""

    def __init__(self, dim: int, heads: int, ff_dim: int, dropout: float = 0.0, **kwargs):  # type: ignore[no-untyped-def]
        super().__init__(**kwargs)
        self.dim, self.heads, self.ff_dim, self.dropout_rate = dim, heads, ff_dim, dropout
        policy = self.dtype_policy
        self.attention_norm = layers.LayerNormalization(epsilon=1e-6, name="attention_norm",
                                                        dtype=policy)
        self.attention = MultiHeadSelfAttention(dim, heads, dropout, name="attention",
                                                dtype=policy)
        self.ffn_norm = layers.LayerNormalization(epsilon=1e-6, name="ffn_norm", dtype=policy)
        self.ffn_in = layers.Dense(ff_dim, activation="gelu", name="ffn_in", dtype=policy)
        self.ffn_out = layers.Dense(dim, name="ffn_out", dtype=policy)
        self.dropout = layers.Dropout(dropout, dtype=self.dtype_policy)

    def call(self, x, mask, training=False):  # type: ignore[no-untyped-def]
        attended = self.attention(self.attention_norm(x), mask, training=training)
        h = x + self.dropout(attended, training=training)
        fed = self.ffn_out(self.ffn_in(self.ffn_norm(h)))
        return h + self.dropout(fed, training=training)

    def get_config(self):  # type: ignore[no-untyped-def]
        return {**super().get_config(), "dim": self.dim, "heads": self.heads,
                "ff_dim": self.ff_dim, "dropout": self.dropout_rate}


def build_encoder(config: TrainConfig, vocab_total: int, max_length: int) -> keras.Model:
    """ids [batch, length] -> hidden states [batch, length, embedding_dim].

    `length` is free (up to `max_length`): pre-training feeds short windows,
    the classifier whole padded reviews."""
    ids = keras.Input(shape=(None,), dtype="int32", name=features.TOKEN_IDS)
    mask = keras.ops.not_equal(ids, 0)
    hidden = TokenAndPositionEmbedding(encoder_vocab_total(vocab_total), max_length,
                                       config.embedding_dim, name="embedding")(ids)
    hidden = layers.Dropout(config.dropout)(hidden)
    for i in range(config.num_layers):
        hidden = EncoderBlock(config.embedding_dim, config.num_heads, config.ff_dim,
                              config.dropout, name=f"block{i}")(hidden, mask)
    hidden = layers.LayerNormalization(epsilon=1e-6, name="final_norm")(hidden)
    return keras.Model(ids, hidden, name=ENCODER_NAME)


def build_transformer(config: TrainConfig, vocab_total: int, max_length: int,
                      encoder: keras.Model | None = None) -> keras.Model:
    """Encoder -> mean of the real tokens' states -> dropout -> sigmoid.

    `encoder` is a pre-trained one (masked-LM step); None builds a fresh one."""
    encoder = encoder or build_encoder(config, vocab_total, max_length)
    ids = keras.Input(shape=(max_length,), dtype="int32", name=features.TOKEN_IDS)
    pooled = MaskedMean(name="masked_mean")(encoder(ids), ids)
    pooled = layers.Dropout(config.dropout)(pooled)
    probability = layers.Dense(1, activation="sigmoid", name=contract.OUTPUT_KEY)(pooled)
    return keras.Model(ids, probability, name="transformer")


def layer_groups(model: keras.Model) -> list[list[Any]]:
    """The classifier's trainable variables by depth, from the top: the head
    (output layer and the encoder's final norm), then each encoder block
    from the last to the first, then the embedding. Every trainable
    variable is in exactly one group."""
    encoder = model.get_layer(ENCODER_NAME)
    blocks = [layer for layer in encoder.layers if isinstance(layer, EncoderBlock)]
    head = [*model.get_layer(contract.OUTPUT_KEY).trainable_variables,
            *encoder.get_layer("final_norm").trainable_variables]
    return [head, *[list(block.trainable_variables) for block in reversed(blocks)],
            list(encoder.get_layer("embedding").trainable_variables)]


def load_encoder(base_model: str, config: TrainConfig, vocab_total: int,
                 max_length: int) -> keras.Model:
    """A fresh encoder with the pre-trained weights of a Pretrainer model
    artifact; weights of another shape are refused naming the file."""
    encoder = build_encoder(config, vocab_total, max_length)
    path = os.path.join(base_model, contract.ENCODER_WEIGHTS_FILE)
    try:
        encoder.load_weights(path)
    except ValueError as err:
        raise ValueError(f"{path}: the pre-trained encoder does not fit this run's "
                         f"--embedding_dim/--num_layers/--num_heads/--ff_dim or vocabulary "
                         f"({str(err).splitlines()[0]})") from err
    logging.info("Encoder initialised from the pre-trained weights in %s", base_model)
    return encoder
