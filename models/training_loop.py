"""The training loop of every run: `Model.fit`'s epoch loop, written out.

Why not `Model.fit`: Keras 3's `fit` and `evaluate` do not run under
MultiWorkerMirroredStrategy:
the step function they build reduces the per-replica logs in a way that
fails on worker 0 with "Attempt to convert a value (PerReplica...)"
(keras-team/keras#20585, tensorflow/tensorflow#72388, open with Keras 3.15).
This loop is the custom training loop the TensorFlow distributed-training
guide describes: the model's forward pass, the same loss, the same optimizer
step (which clips and all-reduces the gradients exactly as under `fit`), and
metrics whose variables the strategy sums across replicas and workers when
they are read. It drives the same Keras callbacks, so early stopping,
restoring the best weights, checkpoints and TensorBoard logs behave as with
`fit`, and it returns the same history keys.

One loop for every strategy means a cluster run computes what a local run
computes: a test trains the same job as two worker processes and as one
process with two replicas and compares the predictions. It is also
deterministic for a given seed, which `fit` here is not (it draws one batch
to build the model before training, and its epoch-2 losses vary between
identical runs), so comparing candidates seed by seed means something.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import tensorflow as tf

__all__ = ["fit"]


class _Metrics:
    """Loss, accuracy and AUC as `fit` reports them (AUC with Keras's default
    200 thresholds), created under the strategy's scope so that reading them
    sums every replica's share."""

    def __init__(self) -> None:
        self.loss = keras.metrics.Mean(name="loss")
        self.accuracy = keras.metrics.BinaryAccuracy(name="accuracy")
        self.auc = keras.metrics.AUC(name="auc")

    def update(self, loss: tf.Tensor, batch: tf.Tensor, labels: tf.Tensor,
               probabilities: tf.Tensor) -> None:
        self.loss.update_state(loss, sample_weight=batch)
        self.accuracy.update_state(labels, probabilities)
        self.auc.update_state(labels, probabilities)

    def results(self, prefix: str = "") -> dict[str, float]:
        return {prefix + m.name: float(m.result()) for m in (self.loss, self.accuracy, self.auc)}

    def reset(self) -> None:
        for metric in (self.loss, self.accuracy, self.auc):
            metric.reset_state()


def _local_loss(model: keras.Model, labels: tf.Tensor, probabilities: tf.Tensor) -> tf.Tensor:
    """Mean binary cross-entropy over this replica's examples plus the
    model's regularisation losses: what `fit` computes per replica."""
    labels = tf.reshape(tf.cast(labels, probabilities.dtype), tf.shape(probabilities))
    loss = tf.reduce_mean(keras.losses.binary_crossentropy(labels, probabilities))
    if model.losses:
        loss += tf.add_n(model.losses)
    return loss


def _step_functions(model: keras.Model, strategy: tf.distribute.Strategy,
                    metrics: _Metrics) -> tuple[Callable[..., None], Callable[..., None]]:
    """(train step, validation step) over one distributed batch each."""
    replicas = strategy.num_replicas_in_sync

    def train_replica(ids: tf.Tensor, labels: tf.Tensor) -> None:
        with tf.GradientTape() as tape:
            probabilities = model(ids, training=True)
            loss = _local_loss(model, labels, probabilities)
            # Each replica's gradient is summed across replicas by the
            # optimizer: dividing by their number makes it the global mean.
            scaled = model.optimizer.scale_loss(loss / replicas)
        gradients = tape.gradient(scaled, model.trainable_variables)
        model.optimizer.apply_gradients(zip(gradients, model.trainable_variables, strict=True))
        metrics.update(loss, tf.shape(ids)[0], labels, probabilities)

    def valid_replica(ids: tf.Tensor, labels: tf.Tensor) -> None:
        probabilities = model(ids, training=False)
        metrics.update(_local_loss(model, labels, probabilities), tf.shape(ids)[0], labels,
                       probabilities)

    @tf.function
    def train_step(batch: tuple[tf.Tensor, tf.Tensor]) -> None:
        strategy.run(train_replica, args=batch)

    @tf.function
    def valid_step(batch: tuple[tf.Tensor, tf.Tensor]) -> None:
        strategy.run(valid_replica, args=batch)

    return train_step, valid_step


def fit(model: keras.Model, strategy: tf.distribute.Strategy,
                     train: tf.data.Dataset, valid: tf.data.Dataset, *, epochs: int,
                     steps_per_epoch: int, callbacks: list[keras.callbacks.Callback],
                     ) -> dict[str, list[float]]:
    """Trains `model` (compiled with its optimizer, built under `strategy`'s
    scope) and returns `History.history`: loss, accuracy, auc and their
    `val_` twins per epoch. Every worker must call it with the same
    arguments: each step is a collective operation."""
    with strategy.scope():
        metrics = _Metrics()
        model.optimizer.build(model.trainable_variables)
    train_step, valid_step = _step_functions(model, strategy, metrics)
    train_batches = strategy.experimental_distribute_dataset(train)
    valid_batches = strategy.experimental_distribute_dataset(valid)
    history = keras.callbacks.History()
    hooks = keras.callbacks.CallbackList([*callbacks, history], add_progbar=True, verbose=2,
                                         epochs=epochs, steps=steps_per_epoch, model=model)
    model.stop_training = False
    hooks.on_train_begin()
    logs: dict[str, float] = {}
    for epoch in range(epochs):
        metrics.reset()
        hooks.on_epoch_begin(epoch)
        for step, batch in enumerate(train_batches):
            hooks.on_train_batch_begin(step)
            train_step(batch)
            hooks.on_train_batch_end(step)
        logs = metrics.results()
        metrics.reset()
        for batch in valid_batches:
            valid_step(batch)
        logs.update(metrics.results(prefix="val_"))
        hooks.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    hooks.on_train_end(logs)
    return history.history
