"""NB-LR inside the pipeline (models/ngrams.py): Transform hands over every
word's id, the Trainer's n-gram counting and fit match the scikit-learn
NB-LR the bench scores, the exported TensorFlow model computes the same
logit from the serving graph's word ids, and the blend is served."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.pipeline import Pipeline

from bench import ngram_baselines as nb
from models import contract, features, ngrams, text
from models.preprocessing import preprocessing_fn
from models.text import tokenize_py

WORD_IDS = features.transformed_name(features.WORD_IDS)
TOKEN_IDS = features.transformed_name(features.TOKEN_IDS)
RAW_SPEC = {
    features.TEXT: tf.io.FixedLenFeature([], tf.string),
    features.LABEL: tf.io.FixedLenFeature([], tf.int64),
}
TEXTS = [
    "A great film.<br /><br />Great acting, great fun!",
    "Great fun: a wonderful cast.",
    "Not great. Dull and boring, an awful film.",
    "Awful film, awful acting; dull.",
    "A wonderful, moving film.",
    "Boring film. Not fun.",
    "A great film, great fun.",
]
LABELS = np.array([1, 1, 0, 0, 1, 0, 1])
MAX_LENGTH = 4  # shorter than most reviews: word_ids must not be cut there
CONFIG = {"vocab_size": 50, "num_oov_buckets": 1, "max_length": MAX_LENGTH,
          "ngram_blend": True, "ngram_order": 3}
BASE = text.vocab_total(50, 1)


@pytest.fixture(scope="module")
def transformed(tmp_path_factory):
    temp = tmp_path_factory.mktemp("tft_ngrams")
    rows = [{features.TEXT: t.encode(), features.LABEL: int(y)}
            for t, y in zip(TEXTS, LABELS, strict=True)]
    metadata = tft.DatasetMetadata.from_feature_spec(RAW_SPEC)
    with tft_beam.Context(temp_dir=str(temp / "tmp"), force_tf_compat_v1=False):
        (out_rows, _), transform_fn = (rows, metadata) | \
            tft_beam.AnalyzeAndTransformDataset(
                lambda inputs: preprocessing_fn(inputs, CONFIG), output_record_batches=False)
        _ = transform_fn | tft_beam.WriteTransformFn(str(temp / "out"))
    return out_rows, tft.TFTransformOutput(str(temp / "out"))


def _ids_by_hand(output, review: str) -> list[int]:
    vocabulary = [w.decode() for w in output.vocabulary_by_name(text.VOCAB_NAME)]
    return [vocabulary.index(w) + text.ID_OFFSET if w in vocabulary
            else text.first_oov_id(len(vocabulary)) for w in tokenize_py(review)]


def test_transform_hands_over_every_word_id_untruncated_beside_the_padded_ids(transformed):
    rows, output = transformed
    for row, review in zip(rows, TEXTS, strict=True):
        expected = _ids_by_hand(output, review)
        assert list(row[WORD_IDS]) == expected
        padded = expected[:MAX_LENGTH] + [text.PAD_ID] * (MAX_LENGTH - len(expected))
        assert list(row[TOKEN_IDS]) == padded
    assert max(len(r[WORD_IDS]) for r in rows) > MAX_LENGTH


def test_word_ids_are_a_variable_length_feature_served_from_text_alone(transformed):
    _, output = transformed
    assert isinstance(output.transformed_feature_spec()[WORD_IDS], tf.io.VarLenFeature)
    layer = output.transform_features_layer()
    result = layer({features.TEXT: tf.constant([TEXTS[2], ""])})
    ragged = tf.RaggedTensor.from_sparse(result[WORD_IDS])
    assert ragged.to_list() == [_ids_by_hand(output, TEXTS[2]), []]


def test_every_ngram_of_a_review_gets_its_own_key_and_none_spans_two_reviews():
    starts, keys = ngrams.ngram_keys(np.array([1, 2, 3, 0, 4], np.int64), order=3, base=10)
    assert sorted(keys.tolist()) == [1, 2, 3, 4, 12, 23, 123]
    assert dict(zip(keys.tolist(), starts.tolist(), strict=True))[23] == 1


def test_an_ngram_said_twice_in_a_review_counts_once():
    rows, keys = ngrams.document_pairs([np.array([5, 5, 5]), np.array([5])], order=2, base=10)
    assert list(zip(rows.tolist(), keys.tolist(), strict=True)) == [(0, 5), (0, 55), (1, 5)]


def test_counting_a_few_reviews_at_a_time_finds_the_same_pairs():
    rng = np.random.default_rng(1)
    reviews = [rng.integers(1, 9, size=rng.integers(0, 12)) for _ in range(50)]
    whole = ngrams.document_pairs(reviews, order=3, base=10, chunk=1000)
    for chunk in (1, 7):
        rows, keys = ngrams.document_pairs(reviews, order=3, base=10, chunk=chunk)
        np.testing.assert_array_equal(rows, whole[0])
        np.testing.assert_array_equal(keys, whole[1])


def test_pairs_are_ordered_by_review_then_key_with_review_indices_as_int32():
    rows, keys = ngrams.document_pairs([np.array([3, 1]), np.array([], np.int64),
                                        np.array([2])], order=2, base=10)
    assert rows.dtype == np.int32 and keys.dtype == np.int64
    assert list(zip(rows.tolist(), keys.tolist(), strict=True)) == [(0, 1), (0, 3), (0, 31),
                                                                   (2, 2)]


def test_a_key_s_column_is_its_place_in_the_vocabulary_or_minus_one_when_absent():
    vocabulary = np.array([2, 5, 9], np.int64)
    keys = np.array([9, 1, 5, 10, 2, 5], np.int64)
    for chunk in (1, 4, 100):
        assert ngrams.columns(vocabulary, keys, chunk=chunk).tolist() == [2, -1, 1, -1, 0, 1]
    assert ngrams.columns(np.zeros(0, np.int64), keys).tolist() == [-1] * 6


def _sklearn_nb_lr(reviews: list[str], labels, min_df: int, c: float):
    counts = CountVectorizer(tokenizer=tokenize_py, lowercase=False, token_pattern=None,
                             ngram_range=(1, 3), min_df=min_df)
    model = Pipeline([("counts", counts), ("nb", nb.NBFeatures()), ("lr", nb._logistic(c))])
    return model.fit(reviews, labels)


def test_the_fit_is_the_bench_s_nb_lr_over_uni_bi_and_trigrams(transformed):
    """Same n-grams kept (seen in >= 2 reviews), same ratios, same liblinear
    regression: the logits agree with scikit-learn's decision function."""
    rows, _ = transformed
    reviews = [np.asarray(r[WORD_IDS], np.int64) for r in rows]
    l2 = 0.05
    model = ngrams.fit_ngram_model(reviews, LABELS, order=3, base=BASE, vocab_size=1000,
                                   min_count=2, l2=l2)
    reference = _sklearn_nb_lr(TEXTS, LABELS, min_df=2, c=1 / (2 * l2 * len(TEXTS)))
    assert len(model.keys) == len(reference.named_steps["counts"].vocabulary_)
    probe = ["a great film", "awful film not fun", "never seen"]
    vocabulary = [w.decode() for w in transformed[1].vocabulary_by_name(text.VOCAB_NAME)]
    probe_ids = [np.array([vocabulary.index(w) + 1 if w in vocabulary else len(vocabulary) + 1
                           for w in tokenize_py(p)], np.int64) for p in probe]
    np.testing.assert_allclose(model.logits(probe_ids), reference.decision_function(probe),
                               rtol=1e-4, atol=1e-5)


def test_the_vocabulary_keeps_the_ngrams_in_most_reviews_ties_by_key():
    reviews = [np.array([1, 2]), np.array([1, 3]), np.array([1, 2]), np.array([3])]
    model = ngrams.fit_ngram_model(reviews, np.array([1, 0, 1, 0]), order=2, base=10,
                                   vocab_size=3, min_count=2, l2=0.1)
    # df: 1 -> 3 reviews, 2 -> 2, 3 -> 2, 12 -> 2, 13 -> 1: the top three, keys ascending
    assert model.keys.tolist() == [1, 2, 3]


def test_tensorflow_computes_the_numpy_logit_for_known_unknown_and_empty_rows():
    rng = np.random.default_rng(0)
    reviews = [rng.integers(1, 30, size=rng.integers(1, 40)) for _ in range(60)]
    labels = np.array([int(r.mean() > 15) for r in reviews])
    model = ngrams.fit_ngram_model(reviews, labels, order=3, base=32, vocab_size=500,
                                   min_count=1, l2=0.01)
    probe = [*reviews[:5], np.array([31, 31, 31]), np.array([], np.int64)]
    ragged = tf.ragged.constant([r.tolist() for r in probe], dtype=tf.int64)
    served = ngrams.NgramLogit(model)(ragged.to_sparse()).numpy()
    np.testing.assert_allclose(served, model.logits(probe), rtol=1e-5, atol=1e-5)
    assert served[-1] == pytest.approx(model.bias)


@pytest.mark.parametrize(("labels", "min_count", "says"), [
    (np.array([1, 0]), 1, "one 0/1 label per review"),
    (np.array([1, 2, 0]), 1, "one 0/1 label per review"),
    (np.array([1, 0, 1]), 5, "--ngram_min_count"),
])
def test_bad_training_input_is_refused_naming_what_is_wrong(labels, min_count, says):
    reviews = [np.array([1, 2]), np.array([2, 3]), np.array([3, 4])]
    with pytest.raises(ValueError, match=says):
        ngrams.fit_ngram_model(reviews, labels, order=2, base=10, vocab_size=10,
                               min_count=min_count, l2=0.1)


# --- the Trainer: NB-LR fitted beside the classifier, blended in the export -------------------

JOB_TRANSFORM = {"vocab_size": 40, "num_oov_buckets": 1, "max_length": 16, "ngram_blend": True,
                 "ngram_vocab_size": 200, "ngram_min_count": 1, "ngram_order": 2}
JOB_TRAIN = {"model": "cnn", "embedding_dim": 4, "filters": 4, "bigram_buckets": 0,
             "epochs": 2, "batch_size": 16, "seed": 3, "ngram_l2": 0.01}


@pytest.fixture(scope="module")
def blended(tmp_path_factory):
    """run_fn on a tiny transformed job with --ngram_blend, as the pipeline calls it."""
    from tfx.components.trainer.fn_args_utils import FnArgs

    from models.trainer import run_fn
    from tests.transformed_fixtures import write_transformed

    root = tmp_path_factory.mktemp("blend_job")
    write_transformed(root, JOB_TRANSFORM)
    run_fn(FnArgs(train_files=[str(root / "train" / "*.gz")],
                  eval_files=[str(root / "valid" / "*.gz")],
                  transform_output=str(root / "transform"),
                  serving_model_dir=str(root / "serving"), model_run_dir=str(root / "run"),
                  custom_config={"train": JOB_TRAIN, "transform": JOB_TRANSFORM}))
    return root


def test_the_trainer_writes_the_blend_weights_and_each_part_s_valid_accuracy(blended):
    import json

    report = json.loads((blended / "run" / contract.BLEND_FILE).read_text())
    assert set(report["weights"]) == {"classifier", "ngrams", "bias"}
    assert report["valid_reviews"] == 32
    accuracy = report["valid_accuracy"]
    assert accuracy["ngrams"] >= 0.9  # two class words per review: NB-LR finds them
    assert accuracy["blend"] >= max(accuracy["classifier"], accuracy["ngrams"]) - 1 / 32
    assert report["ngrams"]["order"] == 2 and report["ngrams"]["train_reviews"] == 128
    assert 0 < report["ngrams"]["kept"] <= JOB_TRANSFORM["ngram_vocab_size"]


def test_raw_text_gets_the_blend_and_token_ids_the_classifier_alone(blended):
    """serving_text = sigmoid(w_c * logit(classifier) + w_n * NB-LR logit + b),
    with the classifier's probability from the token_ids signature and NB-LR's
    logit recomputed in NumPy from the exported keys and weights."""
    import json

    from models import blend
    texts = ["a great wonderful film", "awful boring dull plot", "the film was"]
    loaded = tf.saved_model.load(str(blended / "serving"))
    served = loaded.signatures["serving_text"](text=tf.constant(texts))["probability"].numpy()
    output = tft.TFTransformOutput(str(blended / "transform"))
    transformed = output.transform_features_layer()({features.TEXT: tf.constant(texts)[:, None]})
    ids = tf.cast(transformed[TOKEN_IDS], tf.int32)
    classifier = loaded.signatures["token_ids"](token_ids=ids)["probability"].numpy()
    keys, weights, bias = (v.numpy() for v in getattr(loaded, contract.NGRAM_WEIGHTS_ATTR))
    exported = ngrams.NgramModel(keys=keys, weights=weights, bias=float(bias), order=2,
                                 base=text.vocab_total(40, 1))
    words = tf.RaggedTensor.from_sparse(transformed[WORD_IDS]).to_list()
    ngram = exported.logits([np.asarray(w, np.int64) for w in words])
    mix = json.loads((blended / "run" / contract.BLEND_FILE).read_text())["weights"]
    expected = blend.apply_blend([mix["classifier"], mix["ngrams"], mix["bias"]],
                                 np.stack([blend.to_logit(classifier), ngram], 1))
    np.testing.assert_allclose(served, expected, rtol=1e-4, atol=1e-5)
    assert served[0] > 0.5 > served[1]
    assert not np.allclose(served, classifier)


def test_the_export_holds_the_weights_but_not_the_optimizer_state(blended):
    """Adam's two slots per weight would triple the SavedModel's size."""
    variables = tf.train.list_variables(str(blended / "serving" / "variables" / "variables"))
    names = [name for name, _ in variables]
    assert not any("optimizer" in name for name in names), names
    assert any(name.startswith("classifier_weights/") for name in names)
