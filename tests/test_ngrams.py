"""NB-LR inside the pipeline (models/ngrams.py): Transform's n-gram rows
match the scikit-learn reference the bench scores, the serving graph needs
no label, and the sparse logistic model learns them, under MirroredStrategy."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.preprocessing import binarize

from bench import ngram_baselines as nb
from models import contract, features, ngrams
from models.preprocessing import preprocessing_fn
from models.text import tokenize_py

NGRAMS = features.transformed_name(features.NGRAMS)
LABEL = features.transformed_name(features.LABEL)
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
]
LABELS = [1, 1, 0, 0, 1, 0]
VOCAB_SIZE = 40  # more room than there are n-grams seen twice: the spare ids stay empty
CONFIG = {"vocab_size": 50, "num_oov_buckets": 1, "max_length": 8, "ngram_blend": True,
          "ngram_vocab_size": VOCAB_SIZE, "ngram_min_count": 2}


@pytest.fixture(scope="module")
def transformed(tmp_path_factory):
    temp = tmp_path_factory.mktemp("tft_ngrams")
    rows = [{features.TEXT: t.encode(), features.LABEL: y}
            for t, y in zip(TEXTS, LABELS, strict=True)]
    metadata = tft.DatasetMetadata.from_feature_spec(RAW_SPEC)
    with tft_beam.Context(temp_dir=str(temp / "tmp"), force_tf_compat_v1=False):
        (out_rows, _), transform_fn = (rows, metadata) | \
            tft_beam.AnalyzeAndTransformDataset(
                lambda inputs: preprocessing_fn(inputs, CONFIG), output_record_batches=False)
        _ = transform_fn | tft_beam.WriteTransformFn(str(temp / "out"))
    return out_rows, tft.TFTransformOutput(str(temp / "out"))


def _reference(output):
    """scikit-learn's binarized uni+bigram matrix over Transform's vocabulary,
    scaled by the bench's nb_log_count_ratio: NB-LR's features."""
    vocabulary = [g.decode() for g in output.vocabulary_by_name(ngrams.VOCAB_NAME)]
    vectorizer = CountVectorizer(tokenizer=tokenize_py, lowercase=False, token_pattern=None,
                                 ngram_range=features.NGRAM_RANGE, vocabulary=vocabulary)
    binary = binarize(vectorizer.transform(TEXTS))
    ratio = nb.nb_log_count_ratio(binary, LABELS)
    return vocabulary, binary.toarray() * ratio


def _dense(sparse_row):
    dense = np.zeros(VOCAB_SIZE)
    dense[sparse_row[f"{NGRAMS}$sparse_indices_0"]] = sparse_row[f"{NGRAMS}$sparse_values"]
    return dense


def test_the_vocabulary_is_the_uni_and_bigrams_seen_at_least_min_count_times(transformed):
    _, output = transformed
    vocabulary = [g.decode() for g in output.vocabulary_by_name(ngrams.VOCAB_NAME)]
    counts = CountVectorizer(tokenizer=tokenize_py, lowercase=False, token_pattern=None,
                             ngram_range=(1, 2)).fit(TEXTS)
    totals = dict(zip(counts.get_feature_names_out(),
                      np.asarray(counts.transform(TEXTS).sum(axis=0)).ravel(), strict=True))
    assert set(vocabulary) == {g for g, n in totals.items() if n >= 2}
    assert "great fun" in vocabulary and "great" in vocabulary and "br" not in vocabulary


def test_each_review_is_its_binarized_ngrams_scaled_by_the_nb_ratio(transformed):
    """Exactly the bench's NB-LR feature row: present once however often,
    add-one smoothed log-count ratios learnt on the analysed reviews."""
    rows, output = transformed
    _, expected = _reference(output)
    got = np.stack([_dense(row) for row in rows])
    np.testing.assert_allclose(got[:, :expected.shape[1]], expected, rtol=1e-5, atol=1e-6)
    assert not got[:, expected.shape[1]:].any()


def test_the_schema_records_a_fixed_width_sparse_row(transformed):
    _, output = transformed
    spec = output.transformed_feature_spec()[NGRAMS]
    assert isinstance(spec, tf.io.SparseFeature)
    assert list(spec.size) == [VOCAB_SIZE] and spec.dtype == tf.float32


def test_serving_computes_the_same_row_from_text_alone(transformed):
    """The ratios are constants of the serving graph: no label is needed."""
    _, output = transformed
    layer = output.transform_features_layer()
    result = layer({features.TEXT: tf.constant([TEXTS[2], "never seen words"])})
    row = tf.sparse.to_dense(result[NGRAMS]).numpy()
    _, expected = _reference(output)
    np.testing.assert_allclose(row[0, :expected.shape[1]], expected[2], rtol=1e-5, atol=1e-6)
    assert row.shape == (2, VOCAB_SIZE) and not row[1].any()


def test_the_logistic_model_on_sparse_rows_separates_the_classes(transformed):
    rows, output = transformed
    spec = output.transformed_feature_spec()
    serialized = [tft.coders.ExampleProtoCoder(output.transformed_metadata.schema).encode(r)
                  for r in rows]
    parsed = tf.io.parse_example(serialized, {NGRAMS: spec[NGRAMS], LABEL: spec[LABEL]})
    model = ngrams.build_ngram_model(VOCAB_SIZE, l2=1e-4)
    model.compile(optimizer="adam", loss="binary_crossentropy")
    x, y = parsed[NGRAMS], tf.cast(parsed[LABEL], tf.float32)
    for _ in range(200):
        model.train_on_batch(x, y)
    probabilities = model(x).numpy().ravel()
    np.testing.assert_array_equal(probabilities > 0.5, np.array(LABELS) == 1)


# --- the Trainer: NB-LR fitted beside the classifier, blended in the export -------------------

JOB_TRANSFORM = {"vocab_size": 40, "num_oov_buckets": 1, "max_length": 16, "ngram_blend": True,
                 "ngram_vocab_size": 200, "ngram_min_count": 1}
JOB_TRAIN = {"model": "cnn", "embedding_dim": 4, "filters": 4, "bigram_buckets": 0,
             "epochs": 2, "batch_size": 16, "seed": 3, "ngram_epochs": 4,
             "ngram_learning_rate": 0.05}


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
    assert len(report["ngram_history"]["val_loss"]) == JOB_TRAIN["ngram_epochs"]


def test_raw_text_gets_the_blend_and_token_ids_the_classifier_alone(blended):
    """serving_text = sigmoid(w_c * logit(classifier) + w_n * logit(NB-LR) + b),
    with the classifier's probability from the token_ids signature and NB-LR's
    recomputed by hand from the transform graph's n-gram row."""
    import json

    from models import blend
    texts = ["a great wonderful film", "awful boring dull plot", "the film was"]
    loaded = tf.saved_model.load(str(blended / "serving"))
    served = loaded.signatures["serving_text"](text=tf.constant(texts))["probability"].numpy()
    output = tft.TFTransformOutput(str(blended / "transform"))
    transformed = output.transform_features_layer()({features.TEXT: tf.constant(texts)[:, None]})
    ids = tf.cast(transformed[features.transformed_name(features.TOKEN_IDS)], tf.int32)
    classifier = loaded.signatures["token_ids"](token_ids=ids)["probability"].numpy()
    # NB-LR's kernel and bias as saved
    variables = str(blended / "serving" / "variables" / "variables")
    checkpoint = tf.train.load_checkpoint(variables)
    weights = {tuple(shape): checkpoint.get_tensor(name)
               for name, shape in tf.train.list_variables(variables)
               if name.startswith(f"{contract.NGRAM_WEIGHTS_ATTR}/")}
    assert len(weights) == 2
    row = tf.sparse.to_dense(transformed[NGRAMS]).numpy()
    ngram = 1 / (1 + np.exp(-(row @ weights[(200, 1)][:, 0] + weights[(1,)][0])))
    mix = json.loads((blended / "run" / contract.BLEND_FILE).read_text())["weights"]
    expected = blend.apply_blend([mix["classifier"], mix["ngrams"], mix["bias"]],
                                 np.stack([blend.to_logit(classifier), blend.to_logit(ngram)], 1))
    np.testing.assert_allclose(served, expected, rtol=1e-4, atol=1e-5)
    assert served[0] > 0.5 > served[1]
    assert not np.allclose(served, classifier)


def test_the_export_holds_the_weights_but_not_the_optimizer_state(blended):
    """Adam's two slots per weight would triple the SavedModel's size."""
    variables = tf.train.list_variables(str(blended / "serving" / "variables" / "variables"))
    names = [name for name, _ in variables]
    assert not any("optimizer" in name for name in names), names
    assert any(name.startswith("classifier_weights/") for name in names)
