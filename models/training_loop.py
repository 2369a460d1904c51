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

import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Any

import keras
import tensorflow as tf
from absl import logging

from models.contract import CURVE_PREFIX

__all__ = ["CLASSIFICATION", "Curve", "ParameterGroup", "Task", "TrainedGroups",
           "fit", "with_regularization"]

#: (model, batch, training, metrics) -> this replica's loss; updates `metrics`.
Forward = Callable[[keras.Model, Any, bool, dict[str, keras.metrics.Metric]], tf.Tensor]


@dataclasses.dataclass(frozen=True)
class Task:
    """What one step computes. `metrics` makes the task's metrics (the first
    named "loss"); they are created under the strategy's scope, so reading
    them sums every replica's share. `forward` runs the model on one
    replica's batch, updates the metrics and returns the local loss."""

    metrics: Callable[[], list[keras.metrics.Metric]]
    forward: Forward


def with_regularization(model: keras.Model, loss: tf.Tensor) -> tf.Tensor:
    """`loss` plus the model's regularisation losses (what `fit` adds)."""
    return loss + tf.add_n(model.losses) if model.losses else loss


def _classification_metrics() -> list[keras.metrics.Metric]:
    """Loss, accuracy and AUC as `fit` reports them (Keras's default 200
    AUC thresholds)."""
    return [keras.metrics.Mean(name="loss"), keras.metrics.BinaryAccuracy(name="accuracy"),
            keras.metrics.AUC(name="auc")]


def _classification_forward(model: keras.Model, batch: Any, training: bool,
                            metrics: dict[str, keras.metrics.Metric]) -> tf.Tensor:
    """Mean binary cross-entropy over this replica's (ids, labels) plus the
    regularisation losses: what `fit` computes per replica."""
    ids, labels = batch
    probabilities = model(ids, training=training)
    labels = tf.reshape(tf.cast(labels, probabilities.dtype), tf.shape(probabilities))
    loss = with_regularization(
        model, tf.reduce_mean(keras.losses.binary_crossentropy(labels, probabilities)))
    metrics["loss"].update_state(loss, sample_weight=tf.shape(ids)[0])
    metrics["accuracy"].update_state(labels, probabilities)
    metrics["auc"].update_state(labels, probabilities)
    return loss


#: P(positive) from token ids, trained on binary cross-entropy.
CLASSIFICATION = Task(_classification_metrics, _classification_forward)


@dataclasses.dataclass(frozen=True)
class ParameterGroup:
    """Variables updated by one optimizer, so with one learning rate
    (layer-wise learning-rate decay gives each depth its own group)."""

    variables: tuple[Any, ...]
    optimizer: keras.optimizers.Optimizer


#: epoch (0-based) -> how many groups, from the first, train in that epoch.
TrainedGroups = Callable[[int], int]


@dataclasses.dataclass(frozen=True)
class Curve:
    """The learning curve: the task's metrics on `data` before the first
    step, every `every_steps` steps and at each epoch's end. A fine-tune of
    one epoch has one point per epoch otherwise, which cannot tell how many
    steps (so how much GPU time) a bigger run needs."""

    data: tf.data.Dataset
    every_steps: int


def _step_functions(model: keras.Model, strategy: tf.distribute.Strategy, task: Task,
                    metrics: dict[str, keras.metrics.Metric],
                    groups: Sequence[ParameterGroup], jit_compile: bool = False,
                    ) -> tuple[Callable[[int], Callable[..., None]], Callable[..., None]]:
    """(train step for the first n groups, validation step), each over one
    distributed batch. A train step is traced once per n: its variables
    are fixed when it is traced.

    `jit_compile` compiles each replica's forward and backward pass with XLA
    (fused attention softmax, masks and GELU: measured 3x faster forward for
    MiniLM on 2 CPU cores); the gradient all-reduce and the optimizer update
    stay outside, where the strategy's collectives run."""
    replicas = strategy.num_replicas_in_sync

    def gradients(batch: Any, variables: Sequence[Any]) -> Any:
        with tf.GradientTape() as tape:
            loss = task.forward(model, batch, True, metrics)
            # Each replica's gradient is summed across replicas by the
            # optimizer: dividing by their number makes it the global mean.
            scaled = loss / replicas
        return tape.gradient(scaled, variables)

    def replica_step(active: Sequence[ParameterGroup]) -> Callable[[Any], None]:
        variables = [v for group in active for v in group.variables]

        def of_batch(batch: Any) -> Any:
            return gradients(batch, variables)

        compute = tf.function(of_batch, jit_compile=True) if jit_compile else of_batch

        def train_replica(batch: Any) -> None:
            grads = iter(compute(batch))
            for group in active:
                group.optimizer.apply_gradients([(next(grads), v) for v in group.variables])

        return train_replica

    steps: dict[int, Callable[..., None]] = {}

    def train_step(count: int) -> Callable[..., None]:
        if count not in steps:
            train_replica = replica_step(tuple(groups[:count]))
            steps[count] = tf.function(
                lambda batch: strategy.run(train_replica, args=(batch,)))
        return steps[count]

    return train_step, _evaluation_step(model, strategy, task, metrics, jit_compile)


def _evaluation_step(model: keras.Model, strategy: tf.distribute.Strategy, task: Task,
                     metrics: dict[str, keras.metrics.Metric], jit_compile: bool,
                     ) -> Callable[..., None]:
    """A step that updates `metrics` with one distributed batch, no training."""
    def forward(batch: Any) -> None:
        task.forward(model, batch, False, metrics)

    evaluate = tf.function(forward, jit_compile=True) if jit_compile else forward

    def replica(batch: Any) -> None:
        # A plain function around the XLA one, as in the train step: handed
        # to strategy.run itself, the jit-compiled tf.function fails under two
        # replicas ("Trying to access resource .../replica_1 located in
        # device CPU:1 from device CPU:0"; TF 2.21, tests/test_training_loop).
        evaluate(batch)

    @tf.function
    def step(batch: Any) -> None:
        strategy.run(replica, args=(batch,))

    return step


class _Distributed:
    """Each global batch of `dataset`, iterated on the host, split into
    consecutive equal shares, one per replica (replica r of R gets rows
    r*n//R to (r+1)*n//R; across workers, the global replica id picks the
    share, so every worker reads all files and keeps its share of each batch).

    Why not `strategy.experimental_distribute_dataset`: its iterator stalled
    15 to 60 s with idle cores when an epoch ended (TF 2.21, MirroredStrategy
    over one or two CPU devices; bench/default_run.py's table), which cost
    the default run's Trainer a third of its time. A plain tf.data iterator
    ends at once."""

    def __init__(self, dataset: tf.data.Dataset, strategy: tf.distribute.Strategy) -> None:
        self.dataset, self.strategy = dataset, strategy

    def __iter__(self) -> Any:
        for batch in self.dataset:
            yield self.strategy.experimental_distribute_values_from_function(
                lambda context, batch=batch: _share(batch, context))


def _share(batch: Any, context: tf.distribute.ValueContext) -> Any:
    """This replica's rows of a global batch."""
    replica, replicas = context.replica_id_in_sync_group, context.num_replicas_in_sync

    def rows(tensor: Any) -> Any:
        size = tf.shape(tensor, out_type=tf.int64)[0] if not isinstance(
            tensor, tf.SparseTensor) else tensor.dense_shape[0]
        start, end = size * replica // replicas, size * (replica + 1) // replicas
        if isinstance(tensor, tf.SparseTensor):
            return tf.sparse.slice(tensor, [start, 0], [end - start, tensor.dense_shape[1]])
        return tensor[start:end]

    return tf.nest.map_structure(rows, batch)


def _evaluate(step: Callable[..., None], batches: Any,
              metrics: dict[str, keras.metrics.Metric], prefix: str) -> dict[str, float]:
    """The metrics of one pass of `step` over `batches`."""
    _reset(metrics)
    for batch in batches:
        step(batch)
    return _results(metrics, prefix)


class _StepProgress(keras.callbacks.Callback):
    """One log line at most every `every_s` seconds within an epoch (step,
    steps, elapsed): a masked-LM epoch runs for many minutes on two cores,
    and Keras's per-epoch line alone looks like a hang. It reads no metric:
    under MultiWorkerMirroredStrategy reading one is a collective, which
    workers logging at different moments would deadlock."""

    def __init__(self, epochs: int, steps: int, every_s: float = 60.0) -> None:
        super().__init__()
        self.epochs, self.steps, self.every_s = epochs, steps, every_s
        self.epoch, self.started, self.last = 0, 0.0, 0.0

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self.epoch, self.started = epoch, time.monotonic()
        self.last = self.started

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        now = time.monotonic()
        if now - self.last >= self.every_s:
            self.last = now
            logging.info("epoch %d/%d: step %d/%d, %.0f s", self.epoch + 1, self.epochs,
                         batch + 1, self.steps, now - self.started)


def _results(metrics: dict[str, keras.metrics.Metric], prefix: str = "") -> dict[str, float]:
    return {prefix + name: float(m.result()) for name, m in metrics.items()}


def _reset(metrics: dict[str, keras.metrics.Metric]) -> None:
    for metric in metrics.values():
        metric.reset_state()


def fit(model: keras.Model, strategy: tf.distribute.Strategy, train: tf.data.Dataset,
        valid: tf.data.Dataset, *, epochs: int, steps_per_epoch: int,
        callbacks: list[keras.callbacks.Callback], task: Task = CLASSIFICATION,
        groups: Sequence[ParameterGroup] | None = None,
        trained_groups: TrainedGroups | None = None,
        progress_every_s: float = 60.0, jit_compile: bool = False,
        curve: Curve | None = None) -> dict[str, list[float]]:
    """Trains `model` (compiled with its optimizer, built under `strategy`'s
    scope) on `task` and returns `History.history`: the task's metrics (for
    classification loss, accuracy, auc) and their `val_` twins per epoch.
    Every worker must call it with the same arguments: each step is a
    collective operation.

    `groups` (default: every trainable variable with the model's optimizer)
    split the variables between optimizers; `trained_groups(epoch)` says how
    many of them, from the first, train in an epoch (default: all), which
    is gradual unfreezing when the groups run from the head down. Within an
    epoch a progress line is logged at most every `progress_every_s`.
    `jit_compile`: XLA for each replica's forward and backward pass.
    `curve` adds the learning curve's points to the history (CURVE_PREFIX
    keys), measured with metrics of their own so an epoch's are untouched."""
    groups = groups or [ParameterGroup(tuple(model.trainable_variables), model.optimizer)]
    with strategy.scope():
        metrics = {m.name: m for m in task.metrics()}
        for group in groups:
            group.optimizer.build(list(group.variables))
    train_step, valid_step = _step_functions(model, strategy, task, metrics, groups,
                                             jit_compile)
    train_batches = _Distributed(train, strategy)
    valid_batches = _Distributed(valid, strategy)
    history = keras.callbacks.History()
    progress = _StepProgress(epochs, steps_per_epoch, progress_every_s)
    hooks = keras.callbacks.CallbackList([*callbacks, progress, history], add_progbar=True,
                                         verbose=2,
                                         epochs=epochs, steps=steps_per_epoch, model=model)
    recorder = _CurveRecorder(model, strategy, task, curve, jit_compile) if curve else None
    model.stop_training = False
    hooks.on_train_begin()
    logs: dict[str, float] = {}
    done = 0  # steps over all epochs
    if recorder:
        recorder.record(done)
    for epoch in range(epochs):
        _reset(metrics)
        hooks.on_epoch_begin(epoch)
        step_fn = train_step(trained_groups(epoch) if trained_groups else len(groups))
        for step, batch in enumerate(train_batches):
            hooks.on_train_batch_begin(step)
            step_fn(batch)
            done += 1
            if recorder and done % recorder.every_steps == 0:
                recorder.record(done)
            hooks.on_train_batch_end(step)
        logs = _results(metrics)
        logs.update(_evaluate(valid_step, valid_batches, metrics, prefix="val_"))
        if recorder and done % recorder.every_steps:
            recorder.record(done)  # the epoch's last point
        hooks.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    hooks.on_train_end(logs)
    return {**history.history, **(recorder.points if recorder else {})}


class _CurveRecorder:
    """Measures and keeps the learning curve's points (see `Curve`), with
    metrics of its own. `seconds` is training time: the time spent
    measuring the curve itself is left out."""

    def __init__(self, model: keras.Model, strategy: tf.distribute.Strategy, task: Task,
                 curve: Curve, jit_compile: bool) -> None:
        with strategy.scope():
            self.metrics = {m.name: m for m in task.metrics()}
        self.step = _evaluation_step(model, strategy, task, self.metrics, jit_compile)
        self.batches = _Distributed(curve.data, strategy)
        self.every_steps = curve.every_steps
        self.points: dict[str, list[float]] = {}
        self.started, self.measuring = time.monotonic(), 0.0

    def record(self, done: int) -> None:
        """One point after `done` training steps."""
        start = time.monotonic()
        measured = _evaluate(self.step, self.batches, self.metrics, prefix="")
        logging.info("learning curve: step %d, %s", done,
                     ", ".join(f"{name} {value:.4f}" for name, value in measured.items()))
        point = {"step": float(done), "seconds": start - self.started - self.measuring,
                 **measured}
        for name, value in point.items():
            self.points.setdefault(CURVE_PREFIX + name, []).append(value)
        self.measuring += time.monotonic() - start
