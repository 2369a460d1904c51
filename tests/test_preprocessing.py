"""preprocessing_fn run for real with tft_beam on a handful of reviews."""

from __future__ import annotations

import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam

from models import features, text
from models.preprocessing import preprocessing_fn
from models.text import VOCAB_NAME

TOKEN_IDS = features.transformed_name(features.TOKEN_IDS)
LABEL = features.transformed_name(features.LABEL)

RAW_SPEC = {
    features.TEXT: tf.io.FixedLenFeature([], tf.string),
    features.LABEL: tf.io.FixedLenFeature([], tf.int64),
    features.RATING: tf.io.FixedLenFeature([], tf.int64),
    features.REVIEW_ID: tf.io.FixedLenFeature([], tf.string),
    features.MOVIE_ID: tf.io.FixedLenFeature([], tf.string),
}
ROWS = [
    {"text": b"Great film!<br /><br />GREAT acting.", "label": 1, "rating": 9,
     "review_id": b"train/pos/0", "movie_id": b"tt1"},
    {"text": b"Dull, dull film.", "label": 0, "rating": 2,
     "review_id": b"train/neg/0", "movie_id": b"tt2"},
    {"text": b"great great great great great great great", "label": 1, "rating": 10,
     "review_id": b"train/pos/1", "movie_id": b"tt1"},
]
CONFIG = {"vocab_size": 4, "num_oov_buckets": 1, "max_length": 6}


@pytest.fixture(scope="module")
def transformed(tmp_path_factory):
    temp = tmp_path_factory.mktemp("tft")
    metadata = tft.DatasetMetadata.from_feature_spec(RAW_SPEC)
    with tft_beam.Context(temp_dir=str(temp / "tmp"), force_tf_compat_v1=False):
        (rows, out_metadata), transform_fn = (ROWS, metadata) | tft_beam.AnalyzeAndTransformDataset(
            lambda inputs: preprocessing_fn(inputs, CONFIG), output_record_batches=False)
        _ = transform_fn | tft_beam.WriteTransformFn(str(temp / "out"))
    return rows, out_metadata, tft.TFTransformOutput(str(temp / "out"))


def test_vocabulary_is_the_top_k_tokens_by_frequency(transformed):
    _, _, output = transformed
    # great x9, film x2, dull x2, acting once; punctuation is no token
    vocab = output.vocabulary_by_name(VOCAB_NAME)
    assert [t.decode() for t in vocab[:1]] == ["great"]
    assert {t.decode() for t in vocab} == {"great", "film", "dull", "acting"}


def test_text_becomes_padded_ids_with_html_and_punctuation_as_separators(transformed):
    rows, _, output = transformed
    vocab = {t.decode(): i for i, t in enumerate(output.vocabulary_by_name(VOCAB_NAME))}
    expected = text.lookup_ids(text.tokenize_py(ROWS[0]["text"].decode()), vocab, 6)
    assert text.tokenize_py(ROWS[0]["text"].decode()) == ["great", "film", "great", "acting"]
    np.testing.assert_array_equal(rows[0][TOKEN_IDS], expected)
    assert list(rows[0][TOKEN_IDS][4:]) == [text.PAD_ID] * 2  # short review is padded with 0
    assert list(rows[2][TOKEN_IDS]) == [vocab["great"] + 1] * 6  # long review is truncated


def test_label_passes_through(transformed):
    rows, _, _ = transformed
    assert [int(r[LABEL]) for r in rows] == [1, 0, 1]


def test_transformed_schema_is_fixed_length_ids_and_label(transformed):
    _, metadata, _ = transformed
    spec = metadata.schema and tft.tf_metadata.schema_utils.schema_as_feature_spec(
        metadata.schema).feature_spec
    assert spec == {
        TOKEN_IDS: tf.io.FixedLenFeature([6], tf.int64),
        LABEL: tf.io.FixedLenFeature([], tf.int64),
    }


def test_serving_layer_needs_only_the_text(transformed):
    """A raw-text request is transformed without label or movie id."""
    _, _, output = transformed
    layer = output.transform_features_layer()
    result = layer({features.TEXT: tf.constant([b"Great film, unseen!"])})
    assert set(result) == {TOKEN_IDS}
    vocab = {t.decode(): i for i, t in enumerate(output.vocabulary_by_name(VOCAB_NAME))}
    expected = text.lookup_ids(["great", "film", "unseen"], vocab, 6)
    assert expected[2] == text.first_oov_id(len(vocab))
    np.testing.assert_array_equal(result[TOKEN_IDS].numpy()[0], expected)
    assert os.path.basename(output.vocabulary_file_by_name(VOCAB_NAME)) == VOCAB_NAME
