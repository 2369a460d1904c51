"""Combining classifiers' scores: one logistic regression over their logits.

Issue #10 combines the fine-tuned encoder with an NB-weighted n-gram model:
the two disagree on about 9% of reviews and err differently (the encoder reads
context and negation, the n-gram model weighs rare, telling phrases), so a
weighted sum of their logits beats either. The weights are a tiny logistic
regression fitted on `valid` predictions: three numbers, so `valid` (2,600
reviews) pins them down without overfitting, and `eval` never sees a choice.

NumPy only, no TensorFlow: the Trainer fits the weights before exporting and
`bench/combination.py` fits them the same way on a released model's scores.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["EPSILON", "to_logit", "fit_blend", "apply_blend", "accuracy", "Choice",
           "choose_blend"]

Floats = NDArray[np.float64]

#: Probabilities are clipped this far from 0 and 1 before the logit: a float32
#: sigmoid saturates to exactly 1.0 above logit ~17.
EPSILON = 1e-7
#: A whisper of L2 on the weights (not the bias): keeps Newton's step finite
#: when valid happens to be separable by the scores (tiny test corpora).
_RIDGE = 1e-6
_MAX_NEWTON_STEPS = 100


def to_logit(probability: ArrayLike) -> Floats:
    """log(p / (1 - p)), with p clipped to [1e-7, 1 - 1e-7]."""
    p = np.clip(np.asarray(probability, dtype=np.float64), EPSILON, 1 - EPSILON)
    logit: Floats = np.log(p) - np.log1p(-p)
    return logit


def _sigmoid(z: Floats) -> Floats:
    out: Floats = 0.5 * (1.0 + np.tanh(0.5 * z))  # no overflow warning for large |z|
    return out


def fit_blend(logits: ArrayLike, labels: ArrayLike) -> Floats:
    """Weights w (one per column of `logits`) and bias b, as [w..., b], of the
    logistic regression P(positive) = sigmoid(logits @ w + b), by Newton's
    method (exact to float precision in a few steps for so few parameters).

    Raises ValueError on mismatched shapes, non-finite logits, or labels other
    than 0/1, naming what is wrong.
    """
    x = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64).ravel()
    if x.ndim != 2 or x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise ValueError(f"logits must be [reviews, models] with one label per review; got "
                         f"logits {x.shape} and labels {y.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("logits must be finite")
    if not set(np.unique(y)) <= {0.0, 1.0}:
        raise ValueError(f"labels must be 0 or 1, got {np.unique(y)}")
    design = np.hstack([x, np.ones((x.shape[0], 1))])
    ridge = np.full(design.shape[1], _RIDGE * x.shape[0])
    ridge[-1] = 0.0
    weights = np.zeros(design.shape[1])
    for _ in range(_MAX_NEWTON_STEPS):
        p = _sigmoid(design @ weights)
        gradient = design.T @ (p - y) + ridge * weights
        hessian = (design * (p * (1 - p))[:, None]).T @ design + np.diag(ridge)
        step = np.linalg.solve(hessian + 1e-12 * np.eye(len(weights)), gradient)
        weights = weights - step
        if np.max(np.abs(step)) < 1e-10:
            break
    fitted: Floats = weights
    return fitted


def apply_blend(weights: ArrayLike, logits: ArrayLike) -> Floats:
    """P(positive) of the blend `weights` ([w..., b], from fit_blend)."""
    w = np.asarray(weights, dtype=np.float64)
    x = np.asarray(logits, dtype=np.float64)
    return _sigmoid(x @ w[:-1] + w[-1])


def accuracy(weights: ArrayLike, logits: ArrayLike, labels: ArrayLike) -> float:
    """Share of `labels` the blend `weights` gets right (P > 0.5)."""
    predicted = apply_blend(weights, logits) > 0.5
    return float(np.mean(predicted == (np.asarray(labels).ravel() == 1)))


@dataclasses.dataclass(frozen=True)
class Choice:
    """The blend kept, what it is ("blend", or one model's name when that
    model alone did better) and every candidate's accuracy on the data."""

    weights: Floats
    kept: str
    accuracies: dict[str, float]


def choose_blend(logits: ArrayLike, labels: ArrayLike, names: Sequence[str]) -> Choice:
    """The logistic regression over all of `logits`' columns, or one model
    alone as it was trained (weight 1 on its logit, no bias), whichever is
    most accurate on these reviews; ties keep the full blend. (A model alone
    is not refitted: a fitted bias moves its threshold, which on `valid`
    cost NB-LR half a point.)

    Why not always the full blend: it maximises likelihood, not accuracy. A
    weaker, overconfident model gets a weight that lowers accuracy: on the
    default run's `valid`, CNN + NB-LR scored 0.911 where NB-LR alone scored
    0.918. Choosing among three fits on `valid` costs next to nothing in
    selection bias (2,600 reviews)."""
    x = np.asarray(logits, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != len(names):
        raise ValueError(f"logits must have one column per name {list(names)}; got {x.shape}")
    full = fit_blend(x, labels)
    candidates = {"blend": full}
    for column, name in enumerate(names):
        weights = np.zeros(len(names) + 1)
        weights[column] = 1.0
        candidates[name] = weights
    scores = {name: accuracy(w, x, labels) for name, w in candidates.items()}
    kept = max(scores, key=lambda name: (scores[name], name == "blend"))
    return Choice(candidates[kept], kept, scores)
