"""The pre-trained encoder (models/minilm.py) and its WordPiece tokenizer
(models/wordpiece.py): weights loaded right, ids the same in the Transform
graph and in plain Python, the chain rule of its layers, one training step
and a float32 export of a bfloat16 model."""

from __future__ import annotations

import dataclasses
import json
import math
import struct
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from models import minilm, wordpiece
from models.config import TrainConfig
from models.contract import OUTPUT_KEY
from models.trainer import _build_model, float32_copy, make_optimizer
from models.training_loop import fit
from tests.gradient_checks import GRADIENT_TOLERANCE, gradient_error, weights_error

FOLDER = minilm.package_dir()
VOCAB = minilm.read_vocabulary(FOLDER)
INDEX = {token: i for i, token in enumerate(VOCAB)}
TINY = TrainConfig(model="minilm", encoder_init="random", embedding_dim=16, num_heads=2,
                   ff_dim=32, num_layers=2, dropout=0.0)

SENTENCES = [
    "A wonderful, moving film.<br /><br />The cast is superb!",
    "I didn't like it: boring, far too long & badly acted...",
    "Crème brûlée, naïve café; ÉMIGRÉ über-cool.",
    "Stunning 日本語 cinematography \u2014 10/10 \U0001F600",
    "",
    "tab\tnew\nline\u00a0nbsp\u200bzero-width\x07bell",
    "unbelievablyyyyyyy " + "x" * 120 + " supercalifragilisticexpialidocious",
]


# --- the weights ------------------------------------------------------------------------------

def _numpy_bert(tensors: dict[str, np.ndarray], spec: minilm.BertSpec,
                ids: np.ndarray) -> np.ndarray:
    """BERT's forward pass written from the paper with NumPy and Hugging
    Face's tensor names: additive -inf masking, torch's [out, in] matrices."""
    def dense(x, name):  # type: ignore[no-untyped-def]
        return x @ tensors[name + ".weight"].T + tensors[name + ".bias"]

    def norm(x, name):  # type: ignore[no-untyped-def]
        mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
        return ((x - mean) / np.sqrt(var + spec.layer_norm_eps) * tensors[name + ".weight"]
                + tensors[name + ".bias"])

    erf = np.vectorize(math.erf)
    e = "embeddings."
    x = (tensors[e + "word_embeddings.weight"][ids]
         + tensors[e + "position_embeddings.weight"][None, :ids.shape[1]]
         + tensors[e + "token_type_embeddings.weight"][0])
    x = norm(x.astype("float64"), e + "LayerNorm")
    heads = spec.num_attention_heads
    depth = spec.hidden_size // heads
    bias = np.where(ids == 0, -np.inf, 0.0)[:, None, None, :]
    for i in range(spec.num_hidden_layers):
        p = f"encoder.layer.{i}."

        def split(t):  # type: ignore[no-untyped-def]
            return t.reshape(t.shape[0], t.shape[1], heads, depth).transpose(0, 2, 1, 3)

        q, k, v = (split(dense(x, p + "attention.self." + n)) for n in ("query", "key", "value"))
        scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(depth) + bias
        weights = np.exp(scores - scores.max(-1, keepdims=True))
        weights /= weights.sum(-1, keepdims=True)
        context = (weights @ v).transpose(0, 2, 1, 3).reshape(x.shape)
        x = norm(x + dense(context, p + "attention.output.dense"), p + "attention.output.LayerNorm")
        inner = dense(x, p + "intermediate.dense")
        inner = 0.5 * inner * (1 + erf(inner / math.sqrt(2)))
        x = norm(x + dense(inner, p + "output.dense"), p + "output.LayerNorm")
    return x


def test_packaged_encoder_matches_a_numpy_forward_pass_over_the_same_safetensors():
    spec = minilm.read_spec(FOLDER)
    encoder = minilm.build_bert_encoder(spec)
    minilm.load_pretrained(encoder, FOLDER / "model.safetensors", spec)
    ids = np.array([wordpiece.ids_py(s, INDEX, 24) for s in SENTENCES[:4]], dtype="int32")
    expected = _numpy_bert(minilm.read_safetensors(FOLDER / "model.safetensors"), spec, ids)
    got = encoder(ids).numpy()
    real = ids != 0
    assert np.abs(got - expected)[real].max() < 1e-3
    assert spec == minilm.BertSpec(30522, 384, 6, 12, 1536, 512)


def _write_safetensors(path: Path, tensors: dict[str, np.ndarray]) -> None:
    header, chunks, offset = {}, [], 0
    for name, array in tensors.items():
        raw = array.astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(array.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    encoded = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(encoded)) + encoded + b"".join(chunks))


def test_a_checkpoint_missing_a_tensor_is_refused_naming_the_file_and_tensor(tmp_path):
    spec = minilm.tiny_spec(TINY, vocab_size=40, max_length=8)
    encoder = minilm.build_bert_encoder(spec)
    path = tmp_path / "model.safetensors"
    _write_safetensors(path, {"embeddings.word_embeddings.weight": np.zeros((40, 16))})
    with pytest.raises(ValueError, match=r"model\.safetensors: no tensor "
                                         r"'embeddings\.position_embeddings\.weight'"):
        minilm.load_pretrained(encoder, path, spec)


def test_a_checkpoint_of_another_width_is_refused_naming_the_layer(tmp_path):
    spec = minilm.tiny_spec(TINY, vocab_size=40, max_length=8)
    path = tmp_path / "model.safetensors"
    _write_safetensors(path, {"embeddings.word_embeddings.weight": np.zeros((40, 8))})
    with pytest.raises(ValueError, match=r"embedding/words: shape \(40, 8\) does not fit"):
        minilm.load_pretrained(minilm.build_bert_encoder(spec), path, spec)


def test_a_truncated_safetensors_file_is_refused_naming_it(tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(struct.pack("<Q", 1000) + b"{")
    with pytest.raises(ValueError, match=r"model\.safetensors: unreadable safetensors header"):
        minilm.read_safetensors(path)


# --- the tokenizer ----------------------------------------------------------------------------

def test_wordpiece_ids_of_the_transform_graph_and_of_plain_python_agree():
    """Accents, HTML breaks, CJK, emoji, control and zero-width characters,
    over-long words: the Transform graph's ids are the Python twin's."""
    got = wordpiece.tokenize_tf(tf.constant(SENTENCES), VOCAB, 40).numpy()
    expected = [wordpiece.ids_py(s, INDEX, 40) for s in SENTENCES]
    assert got.tolist() == expected


def test_reviews_are_framed_by_cls_and_sep_and_padded_with_id_0():
    row = wordpiece.ids_py("The acting was great!<br />", INDEX, 12)
    assert [VOCAB[i] for i in row] == ["[CLS]", "the", "acting", "was", "great", "!", "[SEP]",
                                       "[PAD]", "[PAD]", "[PAD]", "[PAD]", "[PAD]"]
    assert INDEX["[PAD]"] == 0


def test_a_long_review_keeps_its_first_quarter_and_its_end():
    words = [f"w{i}" for i in range(100)]
    row = wordpiece.ids_py(" ".join(words) + " worst ending ever", INDEX, 22)
    pieces = [VOCAB[i] for i in row[1:-1]]
    head, tail = wordpiece.head_tail(22)
    assert (head, tail) == (5, 15)
    assert pieces[-3:] == ["worst", "ending", "ever"]
    assert pieces[:2] == ["w", "##0"] and len(pieces) == 20


def test_a_vocabulary_whose_padding_is_not_id_0_is_refused():
    with pytest.raises(ValueError, match=r"\[PAD\] at id 1, not 0"):
        wordpiece.special_ids(["[UNK]", "[PAD]", "[CLS]", "[SEP]"])


# --- the layers' chain rule -------------------------------------------------------------------

def _spec64() -> dict:
    return dataclasses.asdict(minilm.BertSpec(vocab_size=7, hidden_size=4, num_hidden_layers=1,
                                              num_attention_heads=2, intermediate_size=6,
                                              max_position_embeddings=5))


@pytest.mark.usefixtures("float64")
def test_bert_block_gradients_match_numeric_ones():
    layer = minilm.BertBlock(_spec64(), dtype="float64")
    x = np.random.default_rng(3).normal(size=(2, 5, 4))
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=bool)
    layer(tf.constant(x), mask)
    assert gradient_error(lambda t: layer(t, mask), x) < GRADIENT_TOLERANCE
    assert weights_error(layer, tf.constant(x), mask) < GRADIENT_TOLERANCE


@pytest.mark.usefixtures("float64")
def test_bert_embedding_gradients_match_numeric_ones():
    layer = minilm.BertEmbedding(_spec64(), dtype="float64")
    ids = tf.constant([[1, 2, 3, 0, 0], [4, 5, 6, 1, 2]], tf.int32)
    layer(ids)
    assert weights_error(layer, ids) < GRADIENT_TOLERANCE


# --- training and export ----------------------------------------------------------------------

def _batches(rows: int, length: int, seed: int) -> tf.data.Dataset:
    """Reviews whose label is whether they contain 'great' (a learnable rule)."""
    rng = np.random.default_rng(seed)
    words = ["good", "great", "movie", "plot", "the", "was", "bad"]
    texts, labels = [], []
    for _ in range(rows):
        chosen = list(rng.choice(words, size=6))
        texts.append(" ".join(chosen))
        labels.append(float("great" in chosen))
    ids = wordpiece.tokenize_tf(tf.constant(texts), VOCAB, length)
    return tf.data.Dataset.from_tensor_slices((tf.cast(ids, tf.int32), labels)).batch(16)


def test_training_in_bfloat16_lowers_the_loss_and_exports_a_float32_twin():
    keras.utils.set_random_seed(0)
    config = dataclasses.replace(TINY, precision="mixed_bfloat16", learning_rate=3e-3)
    strategy = tf.distribute.get_strategy()
    train, valid = _batches(64, 12, seed=1), _batches(32, 12, seed=2)
    model = _build_model(config, len(VOCAB), 12, base_model=None)
    assert model.get_layer("encoder").get_layer("block0").compute_dtype == "bfloat16"
    model.compile(optimizer=make_optimizer(config, 4 * 4), loss="binary_crossentropy",
                  metrics=[keras.metrics.BinaryAccuracy(name="accuracy")])
    history = fit(model, strategy, train, valid, epochs=4, steps_per_epoch=4, callbacks=[])
    assert history["loss"][-1] < history["loss"][0]
    exported = float32_copy(model, config, len(VOCAB), 12)
    assert exported.get_layer("encoder").get_layer("block0").compute_dtype == "float32"
    ids, _ = next(iter(valid))
    np.testing.assert_allclose(exported(ids).numpy(), model(ids).numpy(), atol=0.02)
    assert exported.get_layer(OUTPUT_KEY).get_weights()[0].dtype == np.float32


def test_minilm_defaults_are_the_fine_tuning_ones():
    config = TrainConfig(model="minilm")
    assert (config.learning_rate, config.batch_size, config.epochs, config.warmup_fraction,
            config.dropout, config.jit_compile) == (6e-5, 32, 1, 0.1, 0.1, True)
    assert TrainConfig(model="transformer").learning_rate == 1e-3
    assert TrainConfig().precision == "float32"


def _trained_losses(jit_compile: bool) -> list[float]:
    keras.utils.set_random_seed(0)
    config = dataclasses.replace(TINY, learning_rate=3e-3)
    model = _build_model(config, len(VOCAB), 12, base_model=None)
    model.compile(optimizer=make_optimizer(config, 3 * 4), loss="binary_crossentropy",
                  metrics=[keras.metrics.BinaryAccuracy(name="accuracy")])
    history = fit(model, tf.distribute.get_strategy(), _batches(64, 12, seed=1),
                  _batches(32, 12, seed=2), epochs=3, steps_per_epoch=4, callbacks=[],
                  jit_compile=jit_compile)
    return history["loss"] + history["val_loss"]


def test_xla_compiled_steps_train_the_same_model_as_plain_ones():
    """--jit_compile changes how the steps run, not what they compute."""
    np.testing.assert_allclose(_trained_losses(True), _trained_losses(False), atol=1e-4)
