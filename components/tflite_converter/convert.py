"""SavedModel -> TFLite: conversion variants and the agreement check.

The TFLite model starts from the SavedModel's `token_ids` signature (int32 ids
-> probability): builtin ops only, so any LiteRT runtime can run it. Raw-text
input would need Flex (select TF) ops, which mobile runtimes do not ship, so
tokenisation happens in the app with the shipped vocabulary and tokenizer spec.

Why not `TFLiteConverter.from_saved_model`: on a Keras 3 SavedModel it drops
the weights (a 7 KB model that outputs NaN). `from_concrete_functions` with the
loaded object as trackable keeps them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

__all__ = ["Variant", "VARIANTS", "convert", "tflite_probabilities", "agreement"]


@dataclasses.dataclass(frozen=True)
class Variant:
    """One TFLite flavour. How closely it must follow the SavedModel is
    configuration (pipeline/config.py: CheckConfig), not a property of it."""

    name: str
    configure: Callable[[tf.lite.TFLiteConverter], None]


def _float32(converter: tf.lite.TFLiteConverter) -> None:
    del converter


def _dynamic_range(converter: tf.lite.TFLiteConverter) -> None:
    converter.optimizations = [tf.lite.Optimize.DEFAULT]


VARIANTS = (
    Variant("float32", configure=_float32),
    Variant("dynamic_range", configure=_dynamic_range),
)


def convert(loaded: Any, signature: str, variant: Variant) -> bytes:
    """TFLite flatbuffer of one signature of a loaded SavedModel, builtin ops only."""
    concrete = loaded.signatures[signature]
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], loaded)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    variant.configure(converter)
    return bytes(converter.convert())


def tflite_probabilities(model: bytes, token_ids: np.ndarray) -> np.ndarray:
    """Runs the TFLite model one review at a time, as a phone would."""
    from ai_edge_litert.interpreter import Interpreter  # only conversion needs LiteRT

    interpreter = Interpreter(model_content=model)
    interpreter.allocate_tensors()
    [inp] = interpreter.get_input_details()
    [out] = interpreter.get_output_details()
    result = []
    for row in token_ids.astype(np.int32):
        interpreter.set_tensor(inp["index"], row[None, :])
        interpreter.invoke()
        result.append(float(np.reshape(interpreter.get_tensor(out["index"]), [-1])[0]))
    return np.asarray(result, dtype=np.float32)


def agreement(reference: np.ndarray, candidate: np.ndarray) -> dict[str, float]:
    return {
        "max_abs_diff": float(np.max(np.abs(reference - candidate))) if len(reference) else 0.0,
        "label_agreement": float(np.mean((reference >= 0.5) == (candidate >= 0.5)))
        if len(reference) else 1.0,
        "examples": len(reference),
    }
