"""The Trainer module: `run_fn` builds, fits and exports a model.

Referenced by dotted path (`models.trainer.run_fn`). It reads the `train` and
`valid` splits only: early stopping and checkpoints watch `valid` (movies
held out of the official train/ set). The eval split is the official test
set, which nothing may be tuned on; the pipeline never hands it to the Trainer.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from typing import Any

import keras
import tensorflow as tf
import tensorflow_transform as tft
from absl import logging
from tfx.components.trainer.fn_args_utils import FnArgs

from models import contract, features, minilm, wordpiece
from models.cnn import build_cnn
from models.config import TOKENIZERS, TrainConfig
from models.distribution import cluster_role, make_strategy
from models.job import count_batches, global_batch, read_job, write_history
from models.training_loop import ParameterGroup, TrainedGroups, fit
from models.transformer import build_transformer, load_encoder
from models.transformer import layer_groups as transformer_layer_groups

__all__ = ["run_fn", "make_optimizer", "export_serving_model"]

_TOKEN_IDS = features.transformed_name(features.TOKEN_IDS)
_LABEL = features.transformed_name(features.LABEL)


def _dataset(files: list[str], spec: dict[str, Any], batch_size: int,
             shuffle_seed: int | None) -> tf.data.Dataset:
    """(token ids, label) batches of transformed examples.

    Training batches (shuffled) drop the last partial batch: MirroredStrategy
    splits each batch across replicas, and an uneven split gives the replicas
    embedding gradients of different shapes, which the collective all-reduce
    rejects ("Shape mismatch in the collective instance").
    """
    paths = [p for pattern in files for p in tf.io.gfile.glob(pattern)]
    ds = tf.data.TFRecordDataset(paths, compression_type="GZIP")
    options = tf.data.Options()
    # Every worker reads all files and keeps its share of each global batch,
    # so a step sees the same examples however many workers there are (file
    # sharding would need at least one file per worker).
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    ds = ds.with_options(options)
    ds = ds.map(lambda raw: tf.io.parse_single_example(raw, spec),
                num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.map(lambda ex: (tf.cast(ex[_TOKEN_IDS], tf.int32), ex[_LABEL])).cache()
    if shuffle_seed is not None:
        ds = ds.shuffle(20_000, seed=shuffle_seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size, drop_remainder=shuffle_seed is not None).prefetch(tf.data.AUTOTUNE)


def _build_model(config: TrainConfig, vocab_total: int, max_length: int,
                 base_model: str | None) -> keras.Model:
    """The configured architecture; the transformer starts from the
    Pretrainer's encoder when the pipeline hands one over (`base_model`),
    MiniLM from the packaged weights. Layers compute in `config.precision`
    (a mixed policy keeps float32 weights)."""
    previous = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_dtype_policy(config.precision)
    try:
        if config.model == "minilm":
            return minilm.build_minilm(config, max_length)
        if config.model == "transformer":
            encoder = (load_encoder(base_model, config, vocab_total, max_length)
                       if base_model else None)
            return build_transformer(config, vocab_total, max_length, encoder)
        return build_cnn(config, vocab_total, max_length)
    finally:  # the policy is process-wide: leave it as it was
        keras.mixed_precision.set_dtype_policy(previous)


def float32_copy(model: keras.Model, config: TrainConfig, vocab_total: int,
                 max_length: int) -> keras.Model:
    """`model` itself when it computes in float32, else the same
    architecture built in float32 with its weights: what is exported, since
    TFLite and TF Serving's CPUs have no bfloat16 kernels for most ops."""
    if config.precision == "float32":
        return model
    copy = _build_model(dataclasses.replace(config, precision="float32"), vocab_total,
                        max_length, base_model=None)
    copy.set_weights(model.get_weights())
    return copy


def make_optimizer(config: TrainConfig, total_steps: int) -> keras.optimizers.Optimizer:
    """Adam or AdamW with optional global-norm clipping; with the cosine
    schedule the rate decays to 0 over all epochs (the last, low-rate steps
    settle into a flatter minimum than a constant rate does), after an
    optional linear warm-up over `warmup_fraction` of the steps (large early
    updates would wreck a pre-trained encoder)."""
    clip = {"global_clipnorm": config.clipnorm} if config.clipnorm else {}
    rate: float | keras.optimizers.schedules.LearningRateSchedule = config.learning_rate
    warmup = int(total_steps * config.warmup_fraction)
    if config.lr_schedule == "cosine" or warmup:
        # Keras's CosineDecay warms up from its initial rate to `warmup_target`;
        # alpha=1 keeps the "constant" schedule flat after the warm-up.
        start = 0.0 if warmup else config.learning_rate
        rate = keras.optimizers.schedules.CosineDecay(
            start, max(1, total_steps - warmup), alpha=1.0 if config.lr_schedule == "constant"
            else 0.0, warmup_target=config.learning_rate if warmup else None,
            warmup_steps=warmup)
    if config.optimizer == "adamw":
        return keras.optimizers.AdamW(rate, weight_decay=config.weight_decay, **clip)
    return keras.optimizers.Adam(rate, **clip)


class _ServingModule(tf.Module):
    """The exported object: the transform graph and the model, three signatures."""

    def __init__(self, model: keras.Model, tft_output: tft.TFTransformOutput) -> None:
        super().__init__()
        self.model = model
        self.tft_layer = tft_output.transform_features_layer()

    def _from_raw(self, raw: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        ids = self.tft_layer(raw)[_TOKEN_IDS]
        return self._from_ids(tf.cast(ids, tf.int32))

    def _from_ids(self, ids: tf.Tensor) -> dict[str, tf.Tensor]:
        return {contract.OUTPUT_KEY: tf.reshape(self.model(ids, training=False), [-1])}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=contract.INPUT_EXAMPLES)])
    def serve_examples(self, examples: tf.Tensor) -> dict[str, tf.Tensor]:
        spec = {features.TEXT: tf.io.FixedLenFeature([1], tf.string)}
        return self._from_raw(tf.io.parse_example(examples, spec))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=contract.INPUT_TEXT)])
    def serve_text(self, text: tf.Tensor) -> dict[str, tf.Tensor]:
        # The transform graph takes the schema's shape: one string per example.
        return self._from_raw({features.TEXT: tf.reshape(text, [-1, 1])})


def export_serving_model(model: keras.Model, tft_output: tft.TFTransformOutput,
                         directory: str, max_length: int) -> None:
    """SavedModel with the transform graph inside: no training/serving skew."""
    module = _ServingModule(model, tft_output)
    token_ids = tf.function(
        module._from_ids,
        input_signature=[tf.TensorSpec([None, max_length], tf.int32,
                                       name=contract.INPUT_TOKEN_IDS)])
    tf.saved_model.save(module, directory, signatures={
        contract.SIGNATURE_EXAMPLES: module.serve_examples.get_concrete_function(),
        contract.SIGNATURE_TEXT: module.serve_text.get_concrete_function(),
        contract.SIGNATURE_TOKEN_IDS: token_ids.get_concrete_function(),
    })


def fine_tuning_plan(model: keras.Model, config: TrainConfig, total_steps: int,
                     ) -> tuple[list[ParameterGroup] | None, TrainedGroups | None]:
    """Parameter groups and the unfreezing schedule for the transformer's
    fine-tuning switches; (None, None) = one optimizer, all layers, every
    epoch. Call under the strategy's scope (it makes optimizers)."""
    if config.model == "cnn" or (config.layer_lr_decay == 1.0 and not config.gradual_unfreezing):
        return None, None
    by_depth = (minilm.layer_groups if config.model == "minilm" else transformer_layer_groups)
    groups = [ParameterGroup(tuple(variables), make_optimizer(dataclasses.replace(
        config, learning_rate=config.learning_rate * config.layer_lr_decay ** depth), total_steps))
        for depth, variables in enumerate(by_depth(model))]
    if not config.gradual_unfreezing:
        return groups, None
    return groups, lambda epoch: min(len(groups), epoch + 1)


def _callbacks(run_dir: str, patience: int) -> list[keras.callbacks.Callback]:
    """Early stopping on `valid` loss (the best epoch's weights are kept),
    the best checkpoint and TensorBoard logs in the run folder."""
    return [
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience,
                                      restore_best_weights=True),
        keras.callbacks.TensorBoard(log_dir=os.path.join(run_dir, "tensorboard")),
        keras.callbacks.ModelCheckpoint(
            os.path.join(run_dir, "checkpoints", "best.weights.h5"),
            monitor="val_loss", save_best_only=True, save_weights_only=True),
    ]


def run_fn(fn_args: FnArgs) -> None:
    """Fits the configured model under the strategy TF_CONFIG calls for and
    exports it. Every worker of a multi-worker run saves (saving is a
    collective step), but only the chief into the TFX output folders; the
    others write to a temporary folder that is then deleted."""
    # First: the multi-worker strategy must exist before the TF runtime starts.
    strategy = make_strategy()
    role = cluster_role()
    scratch = None if role.is_chief else tempfile.mkdtemp(prefix="non_chief_")
    run_dir = fn_args.model_run_dir if scratch is None else os.path.join(scratch, "run")
    serving_dir = fn_args.serving_model_dir if scratch is None else os.path.join(scratch, "model")
    try:
        _train_and_export(fn_args, strategy, run_dir, serving_dir)
    finally:
        if scratch is not None:
            tf.io.gfile.rmtree(scratch)


def _train_and_export(fn_args: FnArgs, strategy: tf.distribute.Strategy, run_dir: str,
                      serving_dir: str) -> None:
    """Reads the transformed splits, fits under `strategy`, writes the
    history into `run_dir` and the SavedModel into `serving_dir`."""
    job = read_job(fn_args)
    train_config, max_length = job.train, job.transform.max_length
    if TOKENIZERS[train_config.model] == "wordpiece":
        wordpiece.register_ops()  # before the transform graph is loaded for the export
    batch = global_batch(train_config.batch_size, strategy.num_replicas_in_sync)
    train_ds = _dataset(fn_args.train_files, job.spec, batch, shuffle_seed=train_config.seed)
    valid_ds = _dataset(fn_args.eval_files, job.spec, batch, shuffle_seed=None)
    # One pass fills the cache and tells the schedule how long an epoch is.
    steps_per_epoch = count_batches(train_ds)
    total_steps = steps_per_epoch * train_config.epochs
    with strategy.scope():
        model = _build_model(train_config, job.vocab_total, max_length, fn_args.base_model)
        model.compile(optimizer=make_optimizer(train_config, total_steps),
                      loss="binary_crossentropy",
                      metrics=[keras.metrics.BinaryAccuracy(name="accuracy"),
                               keras.metrics.AUC(name="auc")])
        groups, trained_groups = fine_tuning_plan(model, train_config, total_steps)
    model.summary(print_fn=logging.info)
    callbacks = _callbacks(run_dir, train_config.early_stopping_patience)
    history = fit(model, strategy, train_ds, valid_ds, epochs=train_config.epochs,
                  steps_per_epoch=steps_per_epoch, callbacks=callbacks, groups=groups,
                  trained_groups=trained_groups, jit_compile=bool(train_config.jit_compile))
    write_history(run_dir, history)
    exported = float32_copy(model, train_config, job.vocab_total, max_length)
    export_serving_model(exported, job.tft_output, serving_dir, max_length)
