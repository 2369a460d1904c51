"""Gradient checks shared by the custom-layer tests: analytic gradients
(TensorFlow's backward pass) against central differences, in float64."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

__all__ = ["GRADIENT_TOLERANCE", "gradient_error", "weights_error"]

#: Largest |analytic - numeric| Jacobian entry allowed. Central differences in
#: float64 are accurate to ~1e-9 on these small, smooth functions; a wrong
#: backward pass (a missing term, a transposed matrix) is off by O(1e-1).
GRADIENT_TOLERANCE = 1e-6


def gradient_error(function, *inputs: np.ndarray) -> float:  # type: ignore[no-untyped-def]
    theoretical, numerical = tf.test.compute_gradient(
        function, [tf.constant(x, tf.float64) for x in inputs], delta=1e-6)
    return max(float(np.max(np.abs(t - n))) for t, n in zip(theoretical, numerical, strict=True))


def weights_error(layer: keras.layers.Layer, *args) -> float:  # type: ignore[no-untyped-def]
    """Gradient error with respect to every trainable weight of a built
    layer, through `stateless_call` (the weights as plain inputs)."""
    non_trainable = [v.value for v in layer.non_trainable_variables]

    def call(*weights):  # type: ignore[no-untyped-def]
        out, _ = layer.stateless_call(list(weights), non_trainable, *args)
        return out

    return gradient_error(call, *[v.numpy() for v in layer.trainable_variables])
