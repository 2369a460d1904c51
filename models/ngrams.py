"""The NB-weighted uni+bigram logistic model that is blended with the classifier.

Wang & Manning's NB-LR (2012) is a logistic regression over binarized
n-gram presence scaled by the naive-Bayes log-count ratio
r = log((p / |p|_1) / (q / |q|_1)), where p (q) is 1 + the number of positive
(negative) train reviews containing the n-gram. On this data it scores 0.912
on its own (bench/ngram_baselines.py) and errs on different reviews from the
fine-tuned encoder, so the two blended beat either (models/blend.py).

Inside the pipeline:
- Transform (`ngram_features`) learns the n-gram vocabulary and r on `train`
  and writes each review as one sparse row [ngram_vocab_size] holding r at
  the ids of the n-grams it contains (once each: binarized): exactly NB-LR's
  feature vector, so serving computes the same features from raw text;
- the Trainer fits `build_ngram_model` (one sigmoid unit, L2) on those rows.

The words are the CNN's (models/preprocessing.py's tokenizer, ASCII
lower-casing, HTML tags and punctuation as separators), as in the bench.
"""

from __future__ import annotations

import keras
import tensorflow as tf
import tensorflow_transform as tft

from models import features

__all__ = ["VOCAB_NAME", "SMOOTHING", "ngram_features", "build_ngram_model"]

#: The Transform vocabulary file of the n-grams (most frequent first).
VOCAB_NAME = "ngrams"
#: The add-one smoothing of the counts (the paper's alpha).
SMOOTHING = 1.0
_SEPARATOR = " "


def _unique_per_row(ids: tf.RaggedTensor, vocab_size: int) -> tf.RaggedTensor:
    """Each row's known ids once (binarized presence); -1 (not in the
    vocabulary) dropped. Rows stay in order: tf.unique keeps first occurrences."""
    flat, rows = ids.flat_values, ids.value_rowids()
    known = flat >= 0
    keys = tf.boolean_mask(rows, known) * vocab_size + tf.boolean_mask(flat, known)
    unique, _ = tf.unique(keys)
    return tf.RaggedTensor.from_value_rowids(unique % vocab_size, unique // vocab_size,
                                             nrows=ids.nrows())


def _log_count_ratios(ids: tf.RaggedTensor, labels: tf.Tensor, vocab_size: int) -> tf.Tensor:
    """r per vocabulary id, from the analysed (train) rows' labels: an
    analyzer, so serving graphs hold r as a constant and need no label.
    Ids the vocabulary does not fill (fewer n-grams than `vocab_size`) get
    no smoothing mass, so r matches the bench's exactly."""
    row_labels = tf.gather(tf.reshape(labels, [-1]), ids.value_rowids())

    def counts(label: int) -> tf.Tensor:
        hits = tf.cast(tf.equal(row_labels, label), tf.float32)
        per_batch = tf.math.unsorted_segment_sum(hits, ids.flat_values, vocab_size)
        # Named: TFT's analyzer cache keys then stay the same on every trace.
        return tft.sum(per_batch[tf.newaxis], reduce_instance_dims=False,
                       name=f"ngram_label_{label}_counts")

    positive, negative = counts(1), counts(0)
    present = tf.cast(positive + negative > 0, tf.float32)
    p = (positive + SMOOTHING) * present
    q = (negative + SMOOTHING) * present
    safe_p, safe_q = tf.maximum(p, 1e-30), tf.maximum(q, 1e-30)
    ratio = (tf.math.log(safe_p / tf.reduce_sum(p)) - tf.math.log(safe_q / tf.reduce_sum(q)))
    return ratio * present


def ngram_features(words: tf.RaggedTensor, labels: tf.Tensor, vocab_size: int,
                   min_count: int) -> tf.SparseTensor:
    """Transform's NB-LR features: SparseTensor [batch, vocab_size] holding r
    at each n-gram the review contains. The vocabulary keeps the
    `vocab_size` most frequent uni+bigrams of train seen at least
    `min_count` times; rarer ones are ignored."""
    grams = tf.strings.ngrams(words, ngram_width=features.NGRAM_RANGE, separator=_SEPARATOR)
    vocabulary = tft.vocabulary(grams, top_k=vocab_size,
                                frequency_threshold=min_count if min_count > 1 else None,
                                vocab_filename=VOCAB_NAME)
    ids = _unique_per_row(tft.apply_vocabulary(grams, vocabulary, default_value=-1),
                          vocab_size)
    ratios = _log_count_ratios(ids, labels, vocab_size)
    indices = tf.stack([ids.value_rowids(), ids.flat_values], axis=1)
    # A fixed-width sparse row (a SparseFeature, whose width the schema
    # records), not a variable-length list: the Trainer gets NB-LR's feature
    # matrix as it is. Stacking a constant keeps the width static.
    rows = tf.sparse.reorder(tf.SparseTensor(
        indices, tf.gather(ratios, ids.flat_values),
        tf.stack([ids.nrows(), tf.constant(vocab_size, tf.int64)])))
    tft.experimental.annotate_true_sparse_output(rows)
    return rows


def build_ngram_model(vocab_size: int, l2: float) -> keras.Model:
    """NB-LR's classifier: one sigmoid unit over the sparse feature row, its
    weights L2-penalised (`l2` per example of mean loss; scikit-learn's C
    is 1 / (2 * l2 * train reviews)). Zero-initialised, like liblinear."""
    inputs = keras.Input(shape=(vocab_size,), sparse=True, name="ngrams")
    probability = keras.layers.Dense(
        1, activation="sigmoid", kernel_initializer="zeros",
        kernel_regularizer=keras.regularizers.L2(l2), dtype="float32", name="ngram_logistic",
    )(inputs)
    return keras.Model(inputs, probability, name="nb_lr")

