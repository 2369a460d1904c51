"""Behaviour of models/blend.py: the logistic regression over models' logits
that combines the encoder with the n-gram model (weights fitted on `valid`)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from models import blend


def _two_noisy_models(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    labels = rng.integers(0, 2, n)
    signal = np.where(labels == 1, 1.0, -1.0)
    logits = np.stack([2.0 * signal + rng.normal(0, 2.0, n),
                       0.5 * signal + rng.normal(0, 1.0, n)], axis=1)
    return logits, labels


def test_the_fit_is_the_maximum_likelihood_logistic_regression():
    """Same weights as scikit-learn's unpenalised logistic regression."""
    logits, labels = _two_noisy_models(np.random.default_rng(0), 4000)
    weights = blend.fit_blend(logits, labels)
    reference = LogisticRegression(C=np.inf, tol=1e-12, max_iter=10_000).fit(logits, labels)
    np.testing.assert_allclose(weights[:2], reference.coef_.ravel(), rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(weights[2], reference.intercept_[0], atol=1e-3)


def test_two_models_that_err_differently_blend_better_than_either():
    rng = np.random.default_rng(1)
    fit_logits, fit_labels = _two_noisy_models(rng, 3000)
    test_logits, test_labels = _two_noisy_models(rng, 20_000)
    weights = blend.fit_blend(fit_logits, fit_labels)
    blended = (blend.apply_blend(weights, test_logits) > 0.5) == test_labels
    alone = [((test_logits[:, i] > 0) == test_labels).mean() for i in range(2)]
    assert blended.mean() > max(alone) + 0.01


def test_separable_scores_still_give_finite_weights():
    """A tiny valid split that the scores separate perfectly: the whisper of
    L2 keeps Newton's steps finite."""
    logits = np.array([[-3.0, -1.0], [-2.0, -2.0], [2.0, 1.0], [3.0, 2.0]])
    weights = blend.fit_blend(logits, [0, 0, 1, 1])
    assert np.all(np.isfinite(weights))
    np.testing.assert_array_equal(blend.apply_blend(weights, logits) > 0.5, [0, 0, 1, 1])


def test_probabilities_become_finite_logits_even_when_saturated():
    logits = blend.to_logit([0.0, 0.5, 1.0, 0.8807971])
    assert np.all(np.isfinite(logits))
    np.testing.assert_allclose(logits[1:4:2], [0.0, 2.0], atol=1e-6)
    assert logits[0] < -15 and logits[2] > 15


@pytest.mark.parametrize(("logits", "labels", "message"), [
    (np.zeros((3, 2)), [0, 1], "one label per review"),
    (np.zeros(3), [0, 1, 0], "one label per review"),
    (np.array([[np.nan], [1.0]]), [0, 1], "finite"),
    (np.zeros((2, 1)), [0, 2], "0 or 1"),
])
def test_bad_inputs_are_refused_naming_the_problem(logits, labels, message):
    with pytest.raises(ValueError, match=message):
        blend.fit_blend(logits, labels)


def test_the_blend_is_kept_when_it_is_the_most_accurate():
    logits, labels = _two_noisy_models(np.random.default_rng(2), 4000)
    choice = blend.choose_blend(logits, labels, ("a", "b"))
    assert choice.kept == "blend"
    np.testing.assert_allclose(choice.weights, blend.fit_blend(logits, labels))
    assert choice.accuracies["blend"] > max(choice.accuracies["a"], choice.accuracies["b"])


def test_a_model_that_only_dilutes_a_better_one_is_left_out():
    """A model that knows nothing the better one does not, plus loud,
    heavy-tailed errors: maximum likelihood still gives it some weight,
    which costs accuracy here; the better model alone, as it is, is kept."""
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 2, 3000)
    signal = np.where(labels == 1, 1.0, -1.0)
    good = 2.0 * signal + rng.normal(0, 1.2, 3000)
    loud = 3.0 * good + rng.standard_cauchy(3000)
    logits = np.stack([loud, good], axis=1)
    choice = blend.choose_blend(logits, labels, ("loud", "good"))
    assert choice.kept == "good"
    np.testing.assert_array_equal(choice.weights, [0.0, 1.0, 0.0])
    assert choice.accuracies["good"] > choice.accuracies["blend"]
    assert blend.accuracy(choice.weights, logits, labels) == choice.accuracies["good"]


def test_a_blend_needs_one_name_per_model():
    with pytest.raises(ValueError, match="one column per name"):
        blend.choose_blend(np.zeros((4, 2)), [0, 1, 0, 1], ("only",))
