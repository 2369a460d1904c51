"""The Keras model builders and the distribution strategy."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from components.tflite_converter.convert import VARIANTS, convert, tflite_probabilities
from models.cnn import HashedBigramMean, bigram_bucket, build_cnn
from models.config import TrainConfig
from models.contract import INPUT_TOKEN_IDS, OUTPUT_KEY, SIGNATURE_TOKEN_IDS
from models.distribution import make_strategy

SMALL = TrainConfig(embedding_dim=8, filters=4, dropout=0.0)


def test_strategy_mirrors_over_every_gpu_or_two_logical_cpus():
    """conftest splits the CPU in two when there is no GPU."""
    strategy = make_strategy()
    gpus = tf.config.list_logical_devices("GPU")
    if gpus:
        assert strategy.num_replicas_in_sync == len(gpus)
        assert all("GPU" in d for d in strategy.extended.worker_devices)
    else:
        assert strategy.num_replicas_in_sync == 2
        assert all("CPU" in d for d in strategy.extended.worker_devices)


def test_cnn_maps_token_ids_to_a_probability_per_review():
    model = build_cnn(SMALL, vocab_total=50, max_length=12)
    ids = np.random.default_rng(0).integers(0, 50, size=(5, 12)).astype("int32")
    out = model(ids).numpy()
    assert out.shape == (5, 1)
    assert ((out > 0) & (out < 1)).all()


def test_mean_branches_ignore_padding():
    """The masked mean averages the real tokens' embeddings only, and the
    bigram mean the pairs of real tokens only: padding ids (0) change neither."""
    model = build_cnn(SMALL, vocab_total=50, max_length=12)
    short = tf.constant([[5, 6, 7, 8, 9, 10] + [0] * 6], dtype="int32")
    embedded = tf.random.normal((1, 12, 8), seed=3)
    masked = model.get_layer("masked_mean")(embedded, short)
    np.testing.assert_allclose(masked.numpy(), tf.reduce_mean(embedded[:, :6], axis=1).numpy(),
                               rtol=1e-5)
    bigrams = model.get_layer("bigram_mean")
    padded_more = tf.constant([[5, 6, 7, 8, 9, 10, 0, 0, 0, 0, 0, 0]], dtype="int32")
    unpadded = tf.constant([[5, 6, 7, 8, 9, 10]], dtype="int32")
    np.testing.assert_allclose(bigrams(padded_more).numpy(), bigrams(unpadded).numpy(),
                               rtol=1e-6)


def test_bigram_buckets_are_exact_for_a_100k_vocabulary():
    """(first * vocab_total + second) mod buckets, computed without int32
    overflow: ids near 100k make the pair index ~1e10."""
    vocab_total, buckets = 100_003, 100_003
    first = np.array([[99_999, 100_002, 46_341, 1]], dtype="int32")
    second = np.array([[100_001, 99_998, 46_341, 2]], dtype="int32")
    got = bigram_bucket(tf.constant(first), tf.constant(second), vocab_total, buckets).numpy()
    expected = [(int(a) * vocab_total + int(b)) % buckets for a, b in zip(first[0], second[0],
                                                                           strict=True)]
    assert got.tolist() == [expected]
    assert got.dtype == np.int32 and (got >= 0).all() and (got < buckets).all()


def test_bigram_branch_at_a_100k_vocabulary_converts_to_tflite_builtins_and_agrees(tmp_path):
    """Exported and converted the way the pipeline does it (SavedModel ->
    token_ids signature -> builtins-only TFLite)."""
    ids_in = tf.keras.Input(shape=(8,), dtype="int32")
    module = tf.Module()
    module.model = tf.keras.Model(ids_in, HashedBigramMean(1009, 4, 100_003)(ids_in))
    module.f = tf.function(
        lambda token_ids: {OUTPUT_KEY: tf.reduce_sum(module.model(token_ids), axis=-1)},
        input_signature=[tf.TensorSpec([None, 8], tf.int32, name=INPUT_TOKEN_IDS)])
    tf.saved_model.save(module, str(tmp_path / "m"),
                        signatures={SIGNATURE_TOKEN_IDS: module.f})
    loaded = tf.saved_model.load(str(tmp_path / "m"))
    flatbuffer = convert(loaded, SIGNATURE_TOKEN_IDS, VARIANTS[0])
    ids = np.array([[99_999, 100_002, 46_341, 5, 7, 0, 0, 0]], dtype="int32")
    expected = loaded.signatures[SIGNATURE_TOKEN_IDS](
        **{INPUT_TOKEN_IDS: tf.constant(ids)})[OUTPUT_KEY].numpy()
    np.testing.assert_allclose(tflite_probabilities(flatbuffer, ids), expected, rtol=1e-5,
                               atol=1e-6)


@pytest.mark.parametrize("attempt", ["first strategy", "second strategy in the same process"])
def test_cnn_learns_a_separable_toy_task_under_mirrored_strategy(attempt):
    """Token 3 means positive, token 4 negative: training under MirroredStrategy
    must separate them, also with a second strategy in one process (as when
    the pipeline trains again after a test or a previous run)."""
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, size=256)
    ids = rng.integers(5, 30, size=(256, 12))
    ids[:, 0] = np.where(labels == 1, 3, 4)
    dataset = tf.data.Dataset.from_tensor_slices((ids.astype("int32"), labels)).batch(32)
    with make_strategy().scope():
        model = build_cnn(TrainConfig(embedding_dim=8, filters=8, dropout=0.0), 30, 12)
        model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    history = model.fit(dataset, epochs=6, verbose=0)
    assert history.history["accuracy"][-1] > 0.95
