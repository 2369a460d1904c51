"""What both `run_fn`s (models/trainer.py, models/pretraining.py) read from
TFX's FnArgs and write back: written once so that the classifier and the
Pretrainer read the same configs, seed and vocabulary the same way."""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import keras
import tensorflow as tf
import tensorflow_transform as tft
from tfx.components.trainer.fn_args_utils import FnArgs

from models import contract, minilm, text
from models.config import TOKENIZERS, TrainConfig, TransformConfig

__all__ = ["Job", "read_job", "global_batch", "count_batches", "write_history"]


@dataclasses.dataclass(frozen=True)
class Job:
    """The configs of a Trainer run and the Transform output it reads."""

    train: TrainConfig
    transform: TransformConfig
    tft_output: tft.TFTransformOutput
    vocab_total: int

    @property
    def spec(self) -> dict[str, Any]:
        """Feature spec of the transformed examples."""
        return self.tft_output.transformed_feature_spec()


def read_job(fn_args: FnArgs) -> Job:
    """Configs from custom_config, the Transform output, the id count; seeds
    every random generator with the run's seed."""
    train = TrainConfig(**fn_args.custom_config["train"])
    transform = TransformConfig(**fn_args.custom_config["transform"])
    keras.utils.set_random_seed(train.seed)
    tft_output = tft.TFTransformOutput(fn_args.transform_output)
    return Job(train, transform, tft_output, _vocab_total(train, transform, tft_output))


def _vocab_total(train: TrainConfig, transform: TransformConfig,
                 tft_output: tft.TFTransformOutput) -> int:
    """Distinct token ids: the encoder's WordPiece vocabulary, or padding +
    the vocabulary Transform learnt + the OOV buckets."""
    if TOKENIZERS[train.model] == "wordpiece":
        return len(minilm.read_vocabulary(minilm.package_dir()))
    return text.vocab_total(tft_output.vocabulary_size_by_name(text.VOCAB_NAME),
                            transform.num_oov_buckets)


def global_batch(size: int, replicas: int) -> int:
    """`size` rounded down to a multiple of the replica count (at least one
    example per replica), so every replica gets an equal share."""
    return max(replicas, size // replicas * replicas)


def count_batches(dataset: tf.data.Dataset) -> int:
    """Batches in one pass; the pass also fills the dataset's cache."""
    return int(dataset.reduce(0, lambda count, _: count + 1))


def write_history(run_dir: str, history: dict[str, list[float]]) -> None:
    """Per-epoch metrics into the run folder (contract.HISTORY_FILE)."""
    tf.io.gfile.makedirs(run_dir)
    with tf.io.gfile.GFile(os.path.join(run_dir, contract.HISTORY_FILE), "w") as handle:
        json.dump({k: [float(v) for v in vs] for k, vs in history.items()}, handle)
