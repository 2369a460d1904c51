"""The Trainer module: `run_fn` builds, fits and exports a model.

Referenced by dotted path (`models.trainer.run_fn`). It reads the `train` and
`valid` splits only: early stopping and checkpoints watch `valid` (movies
held out of the official train/ set). The eval split is the official test
set, which nothing may be tuned on; the pipeline never hands it to the Trainer.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import time
from typing import Any

import keras
import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
from absl import logging
from tfx.components.trainer.fn_args_utils import FnArgs

from models import blend, contract, features, minilm, ngrams, text, wordpiece
from models.cnn import build_cnn
from models.config import TOKENIZERS, TrainConfig
from models.distribution import cluster_role, make_strategy
from models.job import Job, count_batches, global_batch, read_job, write_history
from models.training_loop import Curve, ParameterGroup, TrainedGroups, fit
from models.transformer import build_transformer, load_encoder
from models.transformer import layer_groups as transformer_layer_groups

__all__ = ["run_fn", "compiled_model", "make_optimizer", "export_serving_model", "Blend"]

_TOKEN_IDS = features.transformed_name(features.TOKEN_IDS)
_LABEL = features.transformed_name(features.LABEL)
_WORD_IDS = features.transformed_name(features.WORD_IDS)
#: The learning curve draws its reviews uniformly from the first this many of valid.
_CURVE_SHUFFLE_BUFFER = 100_000


def _records(files: list[str], spec: dict[str, Any]) -> tf.data.Dataset:
    """Parsed transformed examples, in file order."""
    paths = [p for pattern in files for p in tf.io.gfile.glob(pattern)]
    ds = tf.data.TFRecordDataset(paths, compression_type="GZIP")
    options = tf.data.Options()
    # Every worker reads all files and keeps its share of each global batch,
    # so a step sees the same examples however many workers there are (file
    # sharding would need at least one file per worker).
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    ds = ds.with_options(options)
    return ds.map(lambda raw: tf.io.parse_single_example(raw, spec),
                  num_parallel_calls=tf.data.AUTOTUNE)


def _token_ids(example: dict[str, Any]) -> tuple[tf.Tensor, tf.Tensor]:
    return tf.cast(example[_TOKEN_IDS], tf.int32), example[_LABEL]


def _dataset(files: list[str], spec: dict[str, Any], batch_size: int,
             shuffle_seed: int | None) -> tf.data.Dataset:
    """(token ids, label) batches of transformed examples.

    Training batches (shuffled) drop the last partial batch: MirroredStrategy
    splits each batch across replicas, and an uneven split gives the replicas
    embedding gradients of different shapes, which the collective all-reduce
    rejects ("Shape mismatch in the collective instance").
    """
    ds = _records(files, spec).map(_token_ids).cache()
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


def compiled_model(config: TrainConfig, vocab_total: int, max_length: int,
                   base_model: str | None, total_steps: int) -> keras.Model:
    """The configured architecture compiled as the Trainer trains it: its
    optimizer and schedule over `total_steps`, binary cross-entropy, accuracy
    and AUC. Call inside the strategy's scope. Benchmarks time this model,
    so they measure what the pipeline trains."""
    model = _build_model(config, vocab_total, max_length, base_model)
    model.compile(optimizer=make_optimizer(config, total_steps), loss="binary_crossentropy",
                  metrics=[keras.metrics.BinaryAccuracy(name="accuracy"),
                           keras.metrics.AUC(name="auc")])
    return model


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


@dataclasses.dataclass(frozen=True)
class Blend:
    """NB-LR over the review's word-id n-grams and the weights [classifier,
    n-grams, bias] that blend its logit with the classifier's."""

    ngram_model: ngrams.NgramModel
    weights: tuple[float, float, float]


def _logit(probability: tf.Tensor) -> tf.Tensor:
    """models.blend.to_logit in TensorFlow (the same clipping)."""
    p = tf.clip_by_value(tf.cast(probability, tf.float32), blend.EPSILON, 1 - blend.EPSILON)
    return tf.math.log(p) - tf.math.log1p(-p)


class _ServingModule(tf.Module):
    """The exported object: the transform graph and the model (blended with
    NB-LR when there is a `Blend`), three signatures."""

    def __init__(self, model: keras.Model, tft_output: tft.TFTransformOutput,
                 mixed: Blend | None = None) -> None:
        super().__init__()
        # The models' weights are tracked, not the models: a compiled model
        # carries its optimizer, whose Adam slots would triple the export's
        # size (the fine-tuned MiniLM: 263 MB for 91 MB of weights) and TF
        # Serving's memory.
        # The functions below reach the models through closures.
        self.classifier_weights = list(model.weights)
        self._ngrams = ngrams.NgramLogit(mixed.ngram_model) if mixed else None
        setattr(self, contract.NGRAM_WEIGHTS_ATTR, [self._ngrams.keys, self._ngrams.weights,
                                                    self._ngrams.bias] if self._ngrams else [])
        self.tft_layer = tft_output.transform_features_layer()
        self.blend_weights = tf.constant(mixed.weights if mixed else (1.0, 0.0, 0.0),
                                         tf.float32)
        self._classify = lambda ids: model(ids, training=False)

    def _from_raw(self, raw: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        transformed = self.tft_layer(raw)
        probability = self._from_ids(tf.cast(transformed[_TOKEN_IDS], tf.int32))
        if self._ngrams is None:
            return probability
        ngram = self._ngrams(transformed[_WORD_IDS])
        w = self.blend_weights
        logit = w[0] * _logit(probability[contract.OUTPUT_KEY]) + w[1] * ngram + w[2]
        return {contract.OUTPUT_KEY: tf.sigmoid(logit)}

    def _from_ids(self, ids: tf.Tensor) -> dict[str, tf.Tensor]:
        return {contract.OUTPUT_KEY: tf.reshape(self._classify(ids), [-1])}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=contract.INPUT_EXAMPLES)])
    def serve_examples(self, examples: tf.Tensor) -> dict[str, tf.Tensor]:
        spec = {features.TEXT: tf.io.FixedLenFeature([1], tf.string)}
        return self._from_raw(tf.io.parse_example(examples, spec))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=contract.INPUT_TEXT)])
    def serve_text(self, text: tf.Tensor) -> dict[str, tf.Tensor]:
        # The transform graph takes the schema's shape: one string per example.
        return self._from_raw({features.TEXT: tf.reshape(text, [-1, 1])})


def export_serving_model(model: keras.Model, tft_output: tft.TFTransformOutput,
                         directory: str, max_length: int, mixed: Blend | None = None) -> None:
    """SavedModel with the transform graph inside: no training/serving skew.
    With a `Blend`, raw-text and tf.Example requests get the blended
    probability; `token_ids` (what TFLite converts: ids are all a phone has)
    stays the classifier alone."""
    module = _ServingModule(model, tft_output, mixed)
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


def _curve(config: TrainConfig, valid: tf.data.Dataset, batch: int) -> Curve | None:
    """The learning curve's settings: `curve_reviews` of valid drawn at
    random once with the run's seed (valid files come grouped, the first
    reviews can be of one class), the same reviews at every point."""
    if not config.curve_every_steps:
        return None
    if not config.curve_reviews:
        return Curve(valid, config.curve_every_steps)
    sample = (valid.unbatch().shuffle(_CURVE_SHUFFLE_BUFFER, seed=config.seed,
                                      reshuffle_each_iteration=False)
              .take(config.curve_reviews).batch(batch).cache())
    return Curve(sample, config.curve_every_steps)


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
    # NB-LR first: its counting and fit are the Trainer's largest arrays,
    # freed before the classifier's training grows the process.
    fitted = _fit_ngrams(fn_args, job) if job.transform.ngram_blend else None
    if TOKENIZERS[train_config.model] == "wordpiece":
        wordpiece.register_ops()  # before the transform graph is loaded for the export
    batch = global_batch(train_config.batch_size, strategy.num_replicas_in_sync)
    train_ds = _dataset(fn_args.train_files, job.spec, batch, shuffle_seed=train_config.seed)
    valid_ds = _dataset(fn_args.eval_files, job.spec, batch, shuffle_seed=None)
    # One pass fills the cache and tells the schedule how long an epoch is.
    steps_per_epoch = count_batches(train_ds)
    total_steps = steps_per_epoch * train_config.epochs
    with strategy.scope():
        model = compiled_model(train_config, job.vocab_total, max_length, fn_args.base_model,
                               total_steps)
        groups, trained_groups = fine_tuning_plan(model, train_config, total_steps)
    model.summary(print_fn=logging.info)
    callbacks = _callbacks(run_dir, train_config.early_stopping_patience)
    history = fit(model, strategy, train_ds, valid_ds, epochs=train_config.epochs,
                  steps_per_epoch=steps_per_epoch, callbacks=callbacks, groups=groups,
                  trained_groups=trained_groups, jit_compile=bool(train_config.jit_compile),
                  curve=_curve(train_config, valid_ds, batch))
    write_history(run_dir, history)
    exported = float32_copy(model, train_config, job.vocab_total, max_length)
    mixed = None if fitted is None else _blend(fn_args, job, fitted, exported, valid_ds, run_dir)
    export_serving_model(exported, job.tft_output, serving_dir, max_length, mixed)


def _predictions(model: keras.Model, batches: tf.data.Dataset, jit_compile: bool,
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(P(positive), labels) of every example, in dataset order."""
    predict = tf.function(lambda x: model(x, training=False), jit_compile=jit_compile)
    probabilities, labels = [], []
    for x, y in batches:
        probabilities.append(np.reshape(predict(x).numpy(), [-1]))
        labels.append(y.numpy())
    return np.concatenate(probabilities), np.concatenate(labels)


def _word_id_rows(files: list[str], spec: dict[str, Any],
                  ) -> tuple[list[np.ndarray], np.ndarray]:
    """Every review's word ids (untruncated) and its label, in file order."""
    ds = _records(files, spec).map(lambda e: (e[_WORD_IDS].values, e[_LABEL]))
    reviews, labels = [], []
    for ids, label in ds.as_numpy_iterator():
        reviews.append(ids.astype(np.int64))
        labels.append(int(np.reshape(label, [-1])[0]))
    return reviews, np.asarray(labels, np.int64)


@dataclasses.dataclass(frozen=True)
class _FittedNgrams:
    model: ngrams.NgramModel
    train_reviews: int
    seconds: float


def _fit_ngrams(fn_args: FnArgs, job: Job) -> _FittedNgrams:
    """NB-LR on train's word-id n-grams (models/ngrams.py). Every worker of
    a cluster fits the same model (NumPy and liblinear are deterministic)."""
    transform = job.transform
    order = transform.ngram_order
    if order is None:  # PipelineConfig fills the model's default
        raise ValueError("the Trainer's transform config has no ngram_order")
    started = time.monotonic()
    train_reviews, train_labels = _word_id_rows(fn_args.train_files, job.spec)
    model = ngrams.fit_ngram_model(
        train_reviews, train_labels, order=order,
        base=text.vocab_total(transform.vocab_size, transform.num_oov_buckets),
        vocab_size=transform.ngram_vocab_size, min_count=transform.ngram_min_count,
        l2=job.train.ngram_l2)
    seconds = time.monotonic() - started
    logging.info("NB-LR: %d 1- to %d-grams of %d train reviews, fitted in %.1f s",
                 len(model.keys), order, len(train_reviews), seconds)
    return _FittedNgrams(model, len(train_reviews), seconds)


def _blend(fn_args: FnArgs, job: Job, fitted: _FittedNgrams, classifier: keras.Model,
           valid_ds: tf.data.Dataset, run_dir: str) -> Blend:
    """The blend weights on both models' valid logits (the fitted blend, or
    one model alone when it is more accurate: models/blend.choose_blend);
    writes both parts' and the blend's valid accuracy into the run folder."""
    ngram_model = fitted.model
    p_classifier, labels = _predictions(classifier, valid_ds, bool(job.train.jit_compile))
    valid_reviews, ngram_labels = _word_id_rows(fn_args.eval_files, job.spec)
    if not np.array_equal(np.ravel(labels), ngram_labels):  # both read valid in file order
        raise RuntimeError("valid examples came in different orders for the two models")
    ngram_logits = ngram_model.logits(valid_reviews)
    logits = np.stack([blend.to_logit(p_classifier), ngram_logits], axis=1)
    choice = blend.choose_blend(logits, labels, ("classifier", "ngrams"))
    weights = choice.weights
    report = {
        "weights": {"classifier": weights[0], "ngrams": weights[1], "bias": weights[2]},
        "kept": choice.kept,
        "valid_accuracy": {
            "classifier": float(np.mean((p_classifier > 0.5) == labels)),
            "ngrams": float(np.mean((ngram_logits > 0) == labels)),
            "blend": choice.accuracies[choice.kept], "fitted_blend": choice.accuracies["blend"]},
        "valid_reviews": int(labels.size),
        "ngrams": {"order": ngram_model.order, "kept": len(ngram_model.keys),
                   "train_reviews": fitted.train_reviews, "fit_seconds": fitted.seconds},
    }
    logging.info("blend on valid: %s", report["valid_accuracy"])
    tf.io.gfile.makedirs(run_dir)
    with tf.io.gfile.GFile(os.path.join(run_dir, contract.BLEND_FILE), "w") as handle:
        json.dump(report, handle, indent=2, default=float)
    return Blend(ngram_model, (float(weights[0]), float(weights[1]), float(weights[2])))
