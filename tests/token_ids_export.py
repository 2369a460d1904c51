"""A model saved with only the trainer's `token_ids` signature: what the
TFLite tests convert, without the transform graph a full export needs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from models import contract

__all__ = ["save_token_ids_model"]


def save_token_ids_model(model: keras.Model, directory: Path, max_length: int) -> Any:
    """Saves `model` as int32 ids [None, max_length] -> probability [None]
    under contract.SIGNATURE_TOKEN_IDS and returns the loaded SavedModel."""
    module = tf.Module()
    module.model = model
    module.token_ids = tf.function(
        lambda token_ids: {contract.OUTPUT_KEY: tf.reshape(
            module.model(token_ids, training=False), [-1])},
        input_signature=[tf.TensorSpec([None, max_length], tf.int32,
                                       name=contract.INPUT_TOKEN_IDS)])
    tf.saved_model.save(module, str(directory),
                        signatures={contract.SIGNATURE_TOKEN_IDS: module.token_ids})
    return tf.saved_model.load(str(directory))
