"""Masked-LM pre-training of the transformer encoder: the Pretrainer's `run_fn`.

Referenced by dotted path (`models.pretraining.run_fn`) from a second TFX
Trainer that reads the transformed `unsup` (50,000 unlabeled reviews) and
`train` splits and never `valid` or `eval`. Its model artifact holds the
encoder's weights (`contract.ENCODER_WEIGHTS_FILE`); the classifier Trainer
gets that artifact as its `base_model` and starts from them, so ML Metadata
records which pre-training a released model grew from, and a cached
Pretrainer is reused like any component.

BERT's recipe, scaled to two CPU cores: a random window of each review
(`pretrain_window` tokens), `mask_rate` of its real tokens chosen as
targets; of those 80% become [MASK], 10% a random token, 10% stay. The head
predicts only the chosen positions (at most `max_predictions` per window),
through the embedding matrix transposed (tied weights), so the output layer
costs [batch, predictions, vocabulary] rather than [batch, window, vocabulary].
A fixed ~2% of the reviews (by a hash of their first tokens) is held out to
watch the masked-LM loss; early stopping and the best checkpoint follow it.
"""

from __future__ import annotations

import math
import os
from typing import Any

import keras
import tensorflow as tf
from keras import layers
from tfx.components.trainer.fn_args_utils import FnArgs

from models import contract, features
from models.config import PretrainConfig
from models.distribution import make_strategy
from models.job import count_batches, global_batch, read_job, write_history
from models.training_loop import Task, fit, with_regularization
from models.transformer import build_encoder, encoder_vocab_total

__all__ = ["MaskedLMHead", "MaskedLanguageModel", "MASKED_LM", "mask_tokens", "masked_lm_loss",
           "max_predictions", "run_fn"]

_TOKEN_IDS = features.transformed_name(features.TOKEN_IDS)
#: One review in this many is held out to watch the masked-LM loss.
_HOLDOUT_EVERY = 50


def max_predictions(window: int, rate: float) -> int:
    """Masked positions per window: enough for `rate` of a full window."""
    return max(1, math.ceil(window * rate))


def mask_tokens(ids: tf.Tensor, *, mask_id: int, vocab_total: int, rate: float,
                predictions: int, seed: tf.Tensor) -> tuple[dict[str, tf.Tensor], tf.Tensor,
                                                            tf.Tensor]:
    """BERT masking of a batch of windows [batch, window] (0 = padding).

    Returns ({token_ids: the corrupted ids, positions: [batch, predictions]},
    targets [batch, predictions], weights [batch, predictions] (1 for a
    real target, 0 for a filler slot)). `seed` is a stateless-RNG seed
    [2], so a given batch is masked the same way on every worker.
    """
    seeds = tf.random.experimental.stateless_split(seed, 3)
    real = tf.not_equal(ids, 0)
    noise = tf.random.stateless_uniform(tf.shape(ids), seeds[0])
    scores, positions = tf.math.top_k(tf.where(real, noise, -1.0), k=predictions)
    count = tf.reduce_sum(tf.cast(real, tf.float32), axis=1)
    wanted = tf.clip_by_value(tf.round(count * rate), 1.0, float(predictions))
    slots = tf.range(predictions, dtype=tf.float32)[None, :]
    chosen = tf.logical_and(slots < wanted[:, None], scores >= 0.0)
    targets = tf.gather(ids, positions, batch_dims=1)
    action = tf.random.stateless_uniform(tf.shape(positions), seeds[1])
    random_ids = tf.random.stateless_uniform(tf.shape(positions), seeds[2], minval=1,
                                             maxval=vocab_total, dtype=ids.dtype)
    replacement = tf.where(action < 0.8, tf.cast(mask_id, ids.dtype),
                           tf.where(action < 0.9, random_ids, targets))
    replacement = tf.where(chosen, replacement, targets)
    rows = tf.broadcast_to(tf.range(tf.shape(ids)[0])[:, None], tf.shape(positions))
    corrupted = tf.tensor_scatter_nd_update(ids, tf.stack([rows, positions], axis=-1),
                                            replacement)
    return ({features.TOKEN_IDS: corrupted, "positions": positions}, targets,
            tf.cast(chosen, tf.float32))


@keras.saving.register_keras_serializable(package="imdb")
class MaskedLMHead(layers.Layer):
    """Hidden states at the masked positions -> Dense + GELU -> LayerNorm ->
    logits over the vocabulary through the (tied) embedding matrix + a bias."""

    def __init__(self, dim: int, vocab_total: int, **kwargs):  # type: ignore[no-untyped-def]
        super().__init__(**kwargs)
        self.dim, self.vocab_total = dim, vocab_total
        policy = self.dtype_policy
        self.transform = layers.Dense(dim, activation="gelu", name="transform", dtype=policy)
        self.norm = layers.LayerNormalization(epsilon=1e-6, name="norm", dtype=policy)

    def build(self, hidden_shape, positions_shape=None, embeddings_shape=None):  # type: ignore[no-untyped-def]
        self.transform.build(hidden_shape)
        self.norm.build((*hidden_shape[:-1], self.dim))
        self.bias = self.add_weight(shape=(self.vocab_total,), initializer="zeros", name="bias")

    def call(self, hidden, positions, embeddings):  # type: ignore[no-untyped-def]
        gathered = tf.gather(hidden, positions, batch_dims=1)  # [batch, predictions, dim]
        states = self.norm(self.transform(gathered))
        return keras.ops.matmul(states, keras.ops.transpose(embeddings)) + self.bias

    def get_config(self):  # type: ignore[no-untyped-def]
        return {**super().get_config(), "dim": self.dim, "vocab_total": self.vocab_total}


class MaskedLanguageModel(keras.Model):
    """The encoder with a masked-LM head tied to its token embedding."""

    def __init__(self, encoder: keras.Model, **kwargs):  # type: ignore[no-untyped-def]
        super().__init__(**kwargs)
        self.encoder = encoder
        self.embedding = encoder.get_layer("embedding").tokens
        self.head = MaskedLMHead(self.embedding.output_dim, self.embedding.input_dim,
                                 name="mlm_head")

    def call(self, inputs, training=False):  # type: ignore[no-untyped-def]
        hidden = self.encoder(inputs[features.TOKEN_IDS], training=training)
        return self.head(hidden, inputs["positions"], self.embedding.embeddings)


def masked_lm_loss(targets: tf.Tensor, logits: tf.Tensor, weights: tf.Tensor) -> tf.Tensor:
    """Mean cross-entropy over the real targets (weight 1) only."""
    per_slot = keras.losses.sparse_categorical_crossentropy(targets, logits, from_logits=True)
    weights = tf.cast(weights, per_slot.dtype)
    return tf.reduce_sum(per_slot * weights) / tf.maximum(tf.reduce_sum(weights), 1.0)


def _mlm_metrics() -> list[keras.metrics.Metric]:
    return [keras.metrics.Mean(name="loss"),
            keras.metrics.SparseCategoricalAccuracy(name="accuracy")]


def _mlm_forward(model: keras.Model, batch: Any, training: bool,
                 metrics: dict[str, keras.metrics.Metric]) -> tf.Tensor:
    inputs, targets, weights = batch
    logits = model(inputs, training=training)
    loss = with_regularization(model, masked_lm_loss(targets, logits, weights))
    metrics["loss"].update_state(loss, sample_weight=tf.reduce_sum(weights))
    metrics["accuracy"].update_state(targets, logits, sample_weight=weights)
    return loss


#: Masked-LM: the loss and the accuracy over the masked positions.
MASKED_LM = Task(_mlm_metrics, _mlm_forward)


def _held_out(ids: tf.Tensor) -> tf.Tensor:
    """Whether a review is in the fixed ~2% watched for the masked-LM loss."""
    key = tf.strings.reduce_join(tf.strings.as_string(ids[:16]), separator=" ")
    return tf.equal(tf.strings.to_hash_bucket_fast(key, _HOLDOUT_EVERY), 0)


def _random_window(ids: tf.Tensor, window: int, seed: tf.Tensor) -> tf.Tensor:
    """`window` consecutive ids starting at a random token of the review
    (windows of short reviews end in padding)."""
    real = tf.reduce_sum(tf.cast(tf.not_equal(ids, 0), tf.int32))
    last_start = tf.maximum(real - window, 0) + 1
    start = tf.random.stateless_uniform([], seed, minval=0, maxval=last_start, dtype=tf.int32)
    padded = tf.concat([ids, tf.zeros([window], ids.dtype)], axis=0)
    return padded[start:start + window]


def _windows(files: list[str], spec: dict[str, Any], config: PretrainConfig, *, mask_id: int,
             vocab_total: int, batch_size: int, held_out: bool, seed: int) -> tf.data.Dataset:
    """Batches of masked windows from the transformed reviews."""
    paths = [p for pattern in files for p in tf.io.gfile.glob(pattern)]
    ds = tf.data.TFRecordDataset(paths, compression_type="GZIP")
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    ds = ds.with_options(options)
    ds = ds.map(lambda raw: tf.cast(tf.io.parse_single_example(raw, spec)[_TOKEN_IDS], tf.int32),
                num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.filter(lambda ids: tf.equal(_held_out(ids), held_out)).cache()
    if not held_out:
        ds = ds.shuffle(20_000, seed=seed, reshuffle_each_iteration=True)
    predictions = max_predictions(config.pretrain_window, config.mask_rate)
    # Held-out windows are drawn and masked the same way every epoch.
    windows = ds.enumerate().map(
        lambda i, ids: _random_window(ids, config.pretrain_window,
                                      tf.stack([tf.constant(seed, tf.int64), i])))
    batched = windows.batch(batch_size, drop_remainder=not held_out)
    masked = batched.enumerate().map(lambda i, ids: mask_tokens(
        ids, mask_id=mask_id, vocab_total=vocab_total, rate=config.mask_rate,
        predictions=predictions, seed=tf.stack([tf.constant(seed + 1, tf.int64), i])))
    return masked.prefetch(tf.data.AUTOTUNE)


def run_fn(fn_args: FnArgs) -> None:
    """Pre-trains the encoder on `unsup` + `train` windows and saves its
    weights (and the masked-LM history) into the model artifact."""
    strategy = make_strategy()
    job = read_job(fn_args)
    train_config, vocab_total = job.train, job.vocab_total
    config = PretrainConfig(**fn_args.custom_config["pretrain"])
    batch = global_batch(config.pretrain_batch_size, strategy.num_replicas_in_sync)
    common = {"spec": job.spec, "config": config,
              "mask_id": encoder_vocab_total(vocab_total) - 1, "vocab_total": vocab_total,
              "batch_size": batch, "seed": train_config.seed}
    train_ds = _windows(fn_args.train_files, held_out=False, **common)
    watch_ds = _windows(fn_args.train_files, held_out=True, **common)
    steps_per_epoch = count_batches(train_ds)
    with strategy.scope():
        encoder = build_encoder(train_config, vocab_total, job.transform.max_length)
        model = MaskedLanguageModel(encoder, name="masked_lm")
        schedule = keras.optimizers.schedules.CosineDecay(
            0.0, max(1, steps_per_epoch * config.pretrain_epochs),
            warmup_target=config.pretrain_learning_rate,
            warmup_steps=max(1, steps_per_epoch * config.pretrain_epochs // 10))
        model.compile(optimizer=keras.optimizers.AdamW(
            schedule, weight_decay=train_config.weight_decay,
            global_clipnorm=train_config.clipnorm or None))
        model(next(iter(train_ds))[0])  # builds the head's variables under the scope
    run_dir = fn_args.model_run_dir
    callbacks = [keras.callbacks.EarlyStopping(monitor="val_loss", patience=1,
                                               restore_best_weights=True),
                 keras.callbacks.TensorBoard(log_dir=os.path.join(run_dir, "tensorboard"))]
    history = fit(model, strategy, train_ds, watch_ds, epochs=config.pretrain_epochs,
                  steps_per_epoch=steps_per_epoch, callbacks=callbacks, task=MASKED_LM)
    write_history(run_dir, history)
    tf.io.gfile.makedirs(fn_args.serving_model_dir)
    encoder.save_weights(os.path.join(fn_args.serving_model_dir, contract.ENCODER_WEIGHTS_FILE))
