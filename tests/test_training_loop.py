"""The training loop of every run (models/training_loop.py): what `Model.fit`
does, under MirroredStrategy over the two logical CPUs conftest declares."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from models.distribution import make_strategy
from models.training_loop import Curve, fit


def _data(seed: int = 0) -> tuple[tf.data.Dataset, np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, 30, size=(64, 8)).astype("int32")
    labels = (ids[:, 0] > 15).astype("int64")
    return tf.data.Dataset.from_tensor_slices((ids, labels)).batch(16, drop_remainder=True), ids


def _model(strategy: tf.distribute.Strategy, optimizer: keras.optimizers.Optimizer) -> keras.Model:
    keras.utils.set_random_seed(1)
    with strategy.scope():
        model = keras.Sequential([keras.Input((8,), dtype="int32"), keras.layers.Embedding(30, 4),
                                  keras.layers.GlobalAveragePooling1D(),
                                  keras.layers.Dense(1, activation="sigmoid")])
        model.compile(optimizer=optimizer, loss="binary_crossentropy",
                      metrics=[keras.metrics.BinaryAccuracy(name="accuracy")])
    return model


def test_the_loop_applies_the_same_updates_and_reports_the_same_metrics_as_fit():
    """Same weights after two epochs and the same per-epoch loss and accuracy
    as `Model.fit` on a dataset fit cannot reorder (no shuffle)."""
    strategy = make_strategy({})
    data, ids = _data()
    by_fit = _model(strategy, keras.optimizers.SGD(0.5))
    fit_history = by_fit.fit(data, validation_data=data, epochs=2, shuffle=False, verbose=0).history
    by_loop = _model(strategy, keras.optimizers.SGD(0.5))
    loop_history = fit(by_loop, strategy, data, data, epochs=2, steps_per_epoch=4, callbacks=[])

    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        np.testing.assert_allclose(loop_history[key], fit_history[key], rtol=1e-5, err_msg=key)
    np.testing.assert_allclose(by_loop(ids).numpy(), by_fit(ids).numpy(), rtol=1e-5)
    assert set(loop_history) == {"loss", "accuracy", "auc", "val_loss", "val_accuracy", "val_auc"}


def test_early_stopping_ends_the_loop_and_restores_the_best_epoch():
    """A rate so high that the validation loss gets worse: EarlyStopping stops
    after `patience` bad epochs and puts back the best epoch's weights."""
    strategy = make_strategy({})
    data, ids = _data()
    valid, _ = _data(seed=1)
    model = _model(strategy, keras.optimizers.SGD(400.0))
    best: dict[str, np.ndarray] = {}

    class RecordBest(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):  # type: ignore[no-untyped-def]
            if logs["val_loss"] <= min(self.model.history.history.get("val_loss", [np.inf])):
                best["probabilities"] = self.model(ids).numpy()

    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=1,
                                         restore_best_weights=True)
    history = fit(model, strategy, data, valid, epochs=20, steps_per_epoch=4,
                  callbacks=[stop, RecordBest()])

    losses = history["val_loss"]
    assert len(losses) < 20
    assert min(losses[:-1]) < losses[-1]
    np.testing.assert_allclose(model(ids).numpy(), best["probabilities"], rtol=1e-6)


def test_the_learning_curve_is_measured_at_its_steps_and_changes_nothing_else():
    """Points before training, every 3 steps and at each epoch's end (5
    steps an epoch: 0, 3, 5, 6, 9, 10). Measuring them leaves the weights
    and the epochs' metrics as they are without a curve; the point at an
    epoch's end, on the valid data, is that epoch's val_ metrics."""
    strategy = make_strategy({})
    data, ids = _data()
    data = data.unbatch().batch(12, drop_remainder=True)  # 5 steps an epoch
    valid, _ = _data(seed=1)
    plain = _model(strategy, keras.optimizers.SGD(0.5))
    without = fit(plain, strategy, data, valid, epochs=2, steps_per_epoch=5, callbacks=[])
    curved = _model(strategy, keras.optimizers.SGD(0.5))
    history = fit(curved, strategy, data, valid, epochs=2, steps_per_epoch=5, callbacks=[],
                  curve=Curve(valid, every_steps=3))

    assert history["curve_step"] == [0, 3, 5, 6, 9, 10]
    for key, values in without.items():
        np.testing.assert_allclose(history[key], values, rtol=1e-6, err_msg=key)
    np.testing.assert_allclose(curved(ids).numpy(), plain(ids).numpy(), rtol=1e-6)
    for metric in ("loss", "accuracy", "auc"):
        at_epoch_ends = [history[f"curve_{metric}"][i] for i in (2, 5)]
        np.testing.assert_allclose(at_epoch_ends, history[f"val_{metric}"], rtol=1e-6)
    assert history["curve_accuracy"][0] != history["curve_accuracy"][-1]  # it learned
    seconds = history["curve_seconds"]
    assert seconds[0] < 1 and seconds == sorted(seconds)


def test_xla_gives_the_same_epochs_and_curve_under_two_replicas():
    """--jit_compile compiles each replica's steps, evaluation included: the
    history and the curve match the loop without XLA (two replicas, whose
    variables live on two devices)."""
    strategy = make_strategy({})
    assert strategy.num_replicas_in_sync == 2
    data, _ = _data()
    histories = [fit(_model(strategy, keras.optimizers.SGD(0.5)), strategy, data, data,
                     epochs=2, steps_per_epoch=4, callbacks=[], jit_compile=jit,
                     curve=Curve(data, every_steps=2)) for jit in (False, True)]
    for key, values in histories[0].items():
        if key != "curve_seconds":
            np.testing.assert_allclose(histories[1][key], values, rtol=1e-4, err_msg=key)


def test_the_curve_measures_the_same_random_valid_reviews_at_every_point():
    """valid comes grouped (here: all negatives first): the curve's reviews
    are drawn at random once, so both classes are in them, and every point
    sees the same ones."""
    from models.config import TrainConfig
    from models.trainer import _curve

    labels = np.repeat([0, 1], 200)
    valid = tf.data.Dataset.from_tensor_slices((np.arange(400)[:, None], labels)).batch(32)
    config = TrainConfig(curve_every_steps=10, curve_reviews=64, seed=3)
    curve = _curve(config, valid, batch=16)

    def drawn() -> list[int]:
        return [int(i) for ids, _ in curve.data for i in ids.numpy()[:, 0]]

    first = drawn()
    assert len(first) == 64 and first == drawn() and curve.every_steps == 10
    assert 16 < int((np.array(first) >= 200).sum()) < 48  # both classes, not the first 64
    assert _curve(TrainConfig(), valid, batch=16) is None


def _rate_at(optimizer: keras.optimizers.Optimizer, step: int) -> float:
    optimizer.iterations.assign(step)
    return float(optimizer.learning_rate)


def test_warm_up_rises_linearly_to_the_peak_then_the_schedule_takes_over():
    from models.config import TrainConfig
    from models.trainer import make_optimizer

    cosine = make_optimizer(TrainConfig(learning_rate=1e-3, warmup_fraction=0.1), 100)
    assert _rate_at(cosine, 0) == 0.0
    assert _rate_at(cosine, 5) == pytest.approx(5e-4)
    assert _rate_at(cosine, 10) == pytest.approx(1e-3)
    assert _rate_at(cosine, 100) == pytest.approx(0.0, abs=1e-9)
    flat = make_optimizer(TrainConfig(learning_rate=1e-3, warmup_fraction=0.1,
                                      lr_schedule="constant"), 100)
    assert _rate_at(flat, 5) == pytest.approx(5e-4)
    assert _rate_at(flat, 60) == pytest.approx(1e-3)
    plain = make_optimizer(TrainConfig(learning_rate=1e-3), 100)
    assert _rate_at(plain, 0) == pytest.approx(1e-3)


def test_long_epochs_log_their_progress_without_reading_metrics():
    """A line per interval (here every step) naming epoch and step, so a
    many-minute epoch does not look like a hang."""
    import logging

    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if ": step " in record.getMessage():
                lines.append(record.getMessage())

    # On absl's own logger: other tests install handlers that stop it
    # propagating to the root logger pytest's caplog listens on.
    absl_logger, keep = logging.getLogger("absl"), Keep()
    level = absl_logger.level
    absl_logger.addHandler(keep)
    absl_logger.setLevel(logging.INFO)
    try:
        strategy = make_strategy({})
        data, _ = _data()
        model = _model(strategy, keras.optimizers.SGD(0.5))
        fit(model, strategy, data, data, epochs=2, steps_per_epoch=4, callbacks=[],
            progress_every_s=0)
    finally:
        absl_logger.removeHandler(keep)
        absl_logger.setLevel(level)
    assert lines[0].startswith("epoch 1/2: step 1/4")
    assert lines[-1].startswith("epoch 2/2: step 4/4")
    assert len(lines) == 8
