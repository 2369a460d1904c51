"""Masked-LM pre-training (models/pretraining.py) and fine-tuning from it:
BERT masking, the head and loss checked against numeric gradients in
float64, and the two `run_fn`s chained as the pipeline chains them."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from tfx.components.trainer.fn_args_utils import FnArgs

from models import contract
from models.config import PretrainConfig, TrainConfig
from models.pretraining import MaskedLMHead, mask_tokens, masked_lm_loss
from models.trainer import _build_model
from tests.cli_helpers import refused_in_one_line
from tests.gradient_checks import GRADIENT_TOLERANCE, gradient_error, weights_error
from tests.transformed_fixtures import write_transformed

MASK_ID, VOCAB = 40, 40


def _mask(ids: np.ndarray, seed: int = 0, rate: float = 0.15, predictions: int = 8):  # type: ignore[no-untyped-def]
    inputs, targets, weights = mask_tokens(
        tf.constant(ids), mask_id=MASK_ID, vocab_total=VOCAB, rate=rate, predictions=predictions,
        seed=tf.constant([seed, 0], tf.int64))
    return ({k: v.numpy() for k, v in inputs.items()}, targets.numpy(), weights.numpy())


def test_masking_chooses_real_tokens_only_in_the_configured_share():
    ids = np.zeros((4, 40), dtype="int32")
    lengths = [40, 20, 7, 1]
    rng = np.random.default_rng(0)
    for row, n in enumerate(lengths):
        ids[row, :n] = rng.integers(1, VOCAB, size=n)
    inputs, targets, weights = _mask(ids)
    positions = inputs["positions"]
    for row, n in enumerate(lengths):
        chosen = positions[row][weights[row] == 1]
        assert len(chosen) == min(8, max(1, round(0.15 * n)))
        assert (chosen < n).all(), "padding is never a target"
        assert len(set(chosen.tolist())) == len(chosen)
        np.testing.assert_array_equal(targets[row][weights[row] == 1], ids[row, chosen])
    # Unchosen positions keep their ids.
    untouched = np.ones_like(ids, dtype=bool)
    for row in range(4):
        untouched[row, positions[row][weights[row] == 1]] = False
    np.testing.assert_array_equal(inputs["token_ids"][untouched], ids[untouched])


def test_masking_follows_bert_80_10_10_and_is_deterministic_per_seed():
    ids = np.random.default_rng(1).integers(1, VOCAB, size=(2000, 20)).astype("int32")
    inputs, targets, weights = _mask(ids, predictions=3)
    corrupted = np.take_along_axis(inputs["token_ids"], inputs["positions"], axis=1)
    chosen = weights == 1
    masked = (corrupted == MASK_ID)[chosen].mean()
    kept = (corrupted == targets)[chosen].mean()
    assert 0.77 < masked < 0.83
    # 10% kept on purpose, plus random replacements that hit the same id.
    assert 0.08 < kept < 0.14
    again = _mask(ids, predictions=3)
    np.testing.assert_array_equal(again[0]["token_ids"], inputs["token_ids"])
    assert not np.array_equal(_mask(ids, seed=5, predictions=3)[0]["token_ids"],
                              inputs["token_ids"])


@pytest.mark.usefixtures("float64")
def test_masked_lm_head_gradients_match_numeric_ones():
    head = MaskedLMHead(dim=4, vocab_total=7, dtype="float64")
    rng = np.random.default_rng(2)
    hidden, embeddings = rng.normal(size=(2, 5, 4)), rng.normal(size=(7, 4))
    positions = np.array([[0, 3], [4, 1]], dtype="int32")
    head(tf.constant(hidden), positions, tf.constant(embeddings))
    assert gradient_error(lambda h, e: head(h, positions, e), hidden,
                           embeddings) < GRADIENT_TOLERANCE
    assert weights_error(head, tf.constant(hidden), positions,
                          tf.constant(embeddings)) < GRADIENT_TOLERANCE


def test_masked_lm_loss_gradients_match_numeric_ones_and_ignore_filler_slots():
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(2, 3, 7))
    targets = np.array([[1, 6, 0], [2, 2, 5]])
    weights = np.array([[1, 1, 0], [1, 0, 0]], dtype="float64")
    assert gradient_error(lambda t: masked_lm_loss(targets, t, weights), logits) \
        < GRADIENT_TOLERANCE
    gradient = tf.constant(logits)
    with tf.GradientTape() as tape:
        tape.watch(gradient)
        loss = masked_lm_loss(targets, gradient, weights)
    filler = tape.gradient(loss, gradient).numpy()[weights == 0]
    assert not filler.any()
    shifted = logits.copy()
    shifted[weights == 0] += 10.0
    assert float(masked_lm_loss(targets, shifted, weights)) == pytest.approx(float(loss))


# --- the two run_fns, chained ----------------------------------------------------------------

TRANSFORM = {"vocab_size": 40, "num_oov_buckets": 1, "max_length": 16}
TRAIN = {"model": "transformer", "embedding_dim": 8, "num_heads": 2, "ff_dim": 16,
         "num_layers": 1, "dropout": 0.0, "epochs": 3, "batch_size": 16, "learning_rate": 0.01,
         "early_stopping_patience": 5, "seed": 7}
PRETRAIN = {"pretrain": True, "pretrain_epochs": 2, "pretrain_window": 8,
            "pretrain_batch_size": 16}


@pytest.fixture(scope="module")
def job(tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("pretraining")
    write_transformed(root, TRANSFORM, unsup=256)
    return root


def _fn_args(job: Path, name: str, train_splits: list[str], base_model: str | None = None,
             ) -> FnArgs:
    return FnArgs(train_files=[str(job / s / "*.gz") for s in train_splits],
                  eval_files=[str(job / "valid" / "*.gz")],
                  transform_output=str(job / "transform"),
                  serving_model_dir=str(job / name / "serving"),
                  model_run_dir=str(job / name / "run"), base_model=base_model,
                  custom_config={"train": TRAIN, "transform": TRANSFORM, "pretrain": PRETRAIN})


@pytest.fixture(scope="module")
def pretrained(job: Path) -> Path:
    from models.pretraining import run_fn

    run_fn(_fn_args(job, "pretrainer", ["unsup", "train"]))
    return job / "pretrainer" / "serving"


def test_pretraining_saves_encoder_weights_and_a_falling_masked_lm_loss(pretrained, job):
    assert (pretrained / contract.ENCODER_WEIGHTS_FILE).is_file()
    history = json.loads((job / "pretrainer" / "run" / contract.HISTORY_FILE).read_text())
    assert len(history["loss"]) == PRETRAIN["pretrain_epochs"]
    assert history["loss"][-1] < history["loss"][0]
    assert {"val_loss", "accuracy", "val_accuracy"} <= set(history)


def test_fine_tuning_starts_from_the_pretrained_encoder(pretrained, job):
    """With a base model the classifier's encoder holds the pre-trained
    weights before the first step; without one it is freshly initialised."""
    import tensorflow_transform as tft

    from models import text
    from models.transformer import load_encoder

    vocab_total = text.vocab_total(tft.TFTransformOutput(str(job / "transform"))
                                   .vocabulary_size_by_name(text.VOCAB_NAME), 1)
    config, length = TrainConfig(**TRAIN), TRANSFORM["max_length"]
    keras.utils.set_random_seed(0)
    tuned = _build_model(config, vocab_total, length, str(pretrained))
    fresh = _build_model(config, vocab_total, length, None)
    saved = load_encoder(str(pretrained), config, vocab_total, length)
    for mine, theirs in zip(tuned.get_layer("encoder").weights, saved.weights, strict=True):
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy())
    assert not np.array_equal(fresh.get_layer("encoder").weights[0].numpy(),
                              saved.weights[0].numpy())


def test_the_fine_tuned_transformer_exports_the_agreed_signatures_and_learns(pretrained, job):
    from models.trainer import run_fn

    run_fn(_fn_args(job, "classifier", ["train"], base_model=str(pretrained)))
    loaded = tf.saved_model.load(str(job / "classifier" / "serving"))
    assert set(loaded.signatures) == {contract.SIGNATURE_EXAMPLES, contract.SIGNATURE_TEXT,
                                      contract.SIGNATURE_TOKEN_IDS}
    serve = loaded.signatures[contract.SIGNATURE_TEXT]
    p = serve(**{contract.INPUT_TEXT: tf.constant(["a great wonderful film",
                                                   "awful boring dull mess"])})
    good, bad = p[contract.OUTPUT_KEY].numpy()
    assert good > 0.5 > bad


def test_pretraining_is_refused_for_the_cnn_in_one_line(capsys):
    from pipeline.config import from_args

    error = refused_in_one_line(
        lambda: from_args(["--data=x", "--output_dir=/tmp/o", "--pretrain=true"]), capsys)
    assert "--pretrain: pre-trains the transformer's encoder; --model=cnn has none" in error
    assert PretrainConfig().pretrain is False
    assert from_args(["--data=x", "--output_dir=/tmp/o", "--pretrain=true",
                      "--model=transformer"]).pretrain.pretrain


# --- fine-tuning switches ---------------------------------------------------------------------

def _tiny_classifier(**overrides):  # type: ignore[no-untyped-def]
    from models.transformer import build_transformer

    config = TrainConfig(**{**TRAIN, "num_layers": 2, **overrides})
    keras.utils.set_random_seed(0)
    return config, build_transformer(config, vocab_total=30, max_length=12)


def test_layer_groups_hold_every_trainable_variable_once_from_the_head_down():
    from models.transformer import layer_groups

    _, model = _tiny_classifier()
    groups = layer_groups(model)
    assert len(groups) == 4  # head, block1, block0, embedding
    names = [[v.path for v in g] for g in groups]
    assert any("probability" in n for n in names[0])
    assert all("block1" in n for n in names[1]) and all("block0" in n for n in names[2])
    assert all("embedding" in n for n in names[3])
    flat = [v.path for g in groups for v in g]
    assert sorted(flat) == sorted(v.path for v in model.trainable_variables)


def test_layer_wise_decay_gives_each_group_below_the_head_a_smaller_rate():
    from models.trainer import fine_tuning_plan

    config, model = _tiny_classifier(layer_lr_decay=0.5, lr_schedule="constant",
                                     learning_rate=0.01)
    groups, trained = fine_tuning_plan(model, config, total_steps=10)
    assert trained is None
    assert [float(g.optimizer.learning_rate) for g in groups] == pytest.approx(
        [0.01, 0.005, 0.0025, 0.00125])
    assert fine_tuning_plan(model, TrainConfig(**TRAIN), 10) == (None, None)


def test_gradual_unfreezing_trains_the_head_first_then_one_more_group_per_epoch():
    from models.distribution import make_strategy
    from models.trainer import fine_tuning_plan
    from models.training_loop import fit
    from models.transformer import layer_groups

    strategy = make_strategy({})
    with strategy.scope():
        config, model = _tiny_classifier(gradual_unfreezing=True, lr_schedule="constant")
        model.compile(optimizer="adam")
        groups, trained = fine_tuning_plan(model, config, total_steps=12)
    rng = np.random.default_rng(0)
    ids = rng.integers(1, 30, size=(64, 12)).astype("int32")
    data = tf.data.Dataset.from_tensor_slices((ids, (ids[:, 0] > 15).astype("int64"))).batch(
        16, drop_remainder=True)
    snapshots = [[[v.numpy().copy() for v in g] for g in layer_groups(model)]]

    class Snapshot(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):  # type: ignore[no-untyped-def]
            snapshots.append([[v.numpy().copy() for v in g] for g in layer_groups(model)])

    fit(model, strategy, data, data, epochs=4, steps_per_epoch=4, callbacks=[Snapshot()],
        groups=groups, trained_groups=trained)

    def changed(epoch: int) -> list[bool]:
        return [any(not np.array_equal(a, b) for a, b in zip(before, after, strict=True))
                for before, after in zip(snapshots[epoch], snapshots[epoch + 1], strict=True)]

    assert changed(0) == [True, False, False, False]
    assert changed(1) == [True, True, False, False]
    assert changed(2) == [True, True, True, False]
    assert changed(3) == [True, True, True, True]


def test_fine_tuning_switches_are_refused_for_the_cnn_in_one_line():
    with pytest.raises(ValueError, match="--gradual_unfreezing: applies to the transformer"):
        TrainConfig(gradual_unfreezing=True)
    with pytest.raises(ValueError, match=r"--layer_lr_decay=0\.8: applies to the transformer"):
        TrainConfig(layer_lr_decay=0.8)
