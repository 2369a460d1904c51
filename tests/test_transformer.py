"""The transformer (models/transformer.py): shapes, masking, TFLite, and the
chain rule of every custom layer checked against numeric gradients in float64."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from components.tflite_converter.convert import VARIANTS, convert, tflite_probabilities
from models.config import TrainConfig
from models.contract import INPUT_TOKEN_IDS, OUTPUT_KEY, SIGNATURE_TOKEN_IDS
from models.transformer import (
    EncoderBlock,
    MultiHeadSelfAttention,
    build_encoder,
    build_transformer,
)
from tests.gradient_checks import GRADIENT_TOLERANCE, gradient_error, weights_error
from tests.token_ids_export import save_token_ids_model

TINY = TrainConfig(model="transformer", embedding_dim=8, num_heads=2, ff_dim=16, num_layers=2,
                   dropout=0.0)


def _ids(rows: int, length: int, real: int, seed: int = 0) -> np.ndarray:
    """Token ids in [1, 30) for the first `real` positions, padding after."""
    ids = np.random.default_rng(seed).integers(1, 30, size=(rows, length)).astype("int32")
    ids[:, real:] = 0
    return ids


def _reviews(rows: int, length: int, seed: int) -> np.ndarray:
    """Reviews of 5 to `length` real tokens, padded to `length`."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, 60, size=(rows, length)).astype("int32")
    for row in ids:
        row[rng.integers(5, length):] = 0
    return ids


def test_transformer_maps_token_ids_to_a_probability_per_review():
    model = build_transformer(TINY, vocab_total=30, max_length=12)
    out = model(_ids(5, 12, 9)).numpy()
    assert out.shape == (5, 1)
    assert ((out > 0) & (out < 1)).all()


def test_padding_changes_no_real_token_state():
    """Attention gives padded keys no weight: the states of the real tokens
    are the same whether 2 or 10 padding ids follow them."""
    encoder = build_encoder(TINY, vocab_total=30, max_length=16)
    short, long = _ids(3, 8, 6), np.zeros((3, 16), dtype="int32")
    long[:, :8] = short
    np.testing.assert_allclose(encoder(short).numpy()[:, :6], encoder(long).numpy()[:, :6],
                               atol=1e-5)


def test_heads_that_do_not_divide_the_width_are_refused_in_one_line():
    with pytest.raises(ValueError, match="--num_heads=3: must divide --embedding_dim=8"):
        TrainConfig(model="transformer", embedding_dim=8, num_heads=3)


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.name)
def test_every_tflite_variant_of_the_transformer_agrees_within_its_tolerance(tmp_path, variant):
    """Exported the way the pipeline does it (token_ids signature), converted
    with builtin ops only, and within the variant's default tolerance, int8
    included: padding is masked after the softmax, so no -1e9 ever enters a
    quantised tensor. The head is scaled so probabilities spread over (0, 1)
    and a rounding error can flip decisions."""
    keras.utils.set_random_seed(0)
    config = TrainConfig(model="transformer", embedding_dim=16, num_heads=2, ff_dim=32,
                         num_layers=1, dropout=0.0)
    model = build_transformer(config, vocab_total=60, max_length=48)
    head = model.get_layer(OUTPUT_KEY)
    kernel, bias = head.get_weights()
    head.set_weights([kernel * 20, bias])
    loaded = save_token_ids_model(model, tmp_path / "m", max_length=48)
    check, calibration = _reviews(60, 48, seed=1), _reviews(200, 48, seed=2)
    expected = loaded.signatures[SIGNATURE_TOKEN_IDS](
        **{INPUT_TOKEN_IDS: tf.constant(check)})[OUTPUT_KEY].numpy()
    flatbuffer = convert(loaded, SIGNATURE_TOKEN_IDS, variant,
                         calibration if variant.needs_calibration else None)
    got = tflite_probabilities(flatbuffer, check)
    assert np.abs(got - expected).max() <= variant.max_abs_diff
    assert ((got > 0.5) == (expected > 0.5)).mean() >= variant.min_agreement


# --- the chain rule, in float64 ---------------------------------------------------------------

def _states(rows: int = 2, length: int = 5, dim: int = 4) -> np.ndarray:
    return np.random.default_rng(3).normal(size=(rows, length, dim))


def _mask() -> np.ndarray:
    """The first row ends in two padding positions."""
    return np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=bool)


@pytest.mark.usefixtures("float64")
def test_attention_gradients_match_numeric_ones():
    layer = MultiHeadSelfAttention(dim=4, heads=2, dtype="float64")
    x, mask = _states(), _mask()
    layer(tf.constant(x), mask)
    assert gradient_error(lambda t: layer(t, mask), x) < GRADIENT_TOLERANCE
    assert weights_error(layer, tf.constant(x), mask) < GRADIENT_TOLERANCE


@pytest.mark.usefixtures("float64")
def test_encoder_block_gradients_match_numeric_ones():
    layer = EncoderBlock(dim=4, heads=2, ff_dim=6, dtype="float64")
    x, mask = _states(), _mask()
    layer(tf.constant(x), mask)
    assert gradient_error(lambda t: layer(t, mask), x) < GRADIENT_TOLERANCE
    assert weights_error(layer, tf.constant(x), mask) < GRADIENT_TOLERANCE
