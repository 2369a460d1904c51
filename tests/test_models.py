"""The Keras model builders and the distribution strategy."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from models.cnn import build_cnn
from models.distribution import make_strategy
from pipeline.config import TrainConfig

SMALL = TrainConfig(embedding_dim=8, filters=4, dropout=0.0)


def test_strategy_mirrors_over_two_logical_cpus_without_a_gpu():
    strategy = make_strategy()
    assert strategy.num_replicas_in_sync == 2
    assert all("CPU" in d for d in strategy.extended.worker_devices)


def test_cnn_maps_token_ids_to_a_probability_per_review():
    model = build_cnn(SMALL, vocab_total=50, max_length=12)
    ids = np.random.default_rng(0).integers(0, 50, size=(5, 12)).astype("int32")
    out = model(ids).numpy()
    assert out.shape == (5, 1)
    assert ((out > 0) & (out < 1)).all()


def test_padding_does_not_change_the_prediction():
    """Appending padding ids (0) to a review leaves the mean branch unchanged
    and only adds zero-embedding windows; the model output stays close."""
    model = build_cnn(SMALL, vocab_total=50, max_length=12)
    short = np.array([[5, 6, 7, 8, 9, 10] + [0] * 6], dtype="int32")
    assert model(short).numpy().shape == (1, 1)
    layer = model.get_layer("masked_mean")
    embedded = tf.random.normal((1, 12, 8))
    with_pad = layer(embedded, tf.constant(short))
    expected = tf.reduce_mean(embedded[:, :6], axis=1)
    np.testing.assert_allclose(with_pad.numpy(), expected.numpy(), rtol=1e-5)


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
