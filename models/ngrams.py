"""The NB-weighted n-gram logistic model that is blended with the classifier.

Wang & Manning's NB-LR (2012) is a logistic regression over binarized
n-gram presence scaled by the naive-Bayes log-count ratio
r = log((p / |p|_1) / (q / |q|_1)), where p (q) is 1 + the number of positive
(negative) train reviews containing the n-gram. With words, bigrams and
trigrams it scores 0.915 on `valid` on its own (0.907 with uni+bigrams), and
errs on different reviews from the neural models, so the blend
(models/blend.py) can beat either.

Inside the pipeline:
- Transform writes each review's words as ids of the word vocabulary it
  learnt on `train` (`word_ids`: all of them, untruncated, so NB-LR reads the
  whole review while the classifier reads its first `max_length` tokens);
- the Trainer (`fit_ngram_model`) counts the 1- to `order`-grams of those
  ids with NumPy, keeps the `vocab_size` n-grams found in the most `train`
  reviews (at least `min_count` of them), computes r, and fits the logistic
  regression with liblinear, as the bench's NB-LR is fitted;
- the export holds `NgramLogit`: the kept n-grams' keys, sorted, and one
  weight each (the regression's weight times r, folded), so serving computes
  the same logit from the transform graph's word ids.

Why the counting is not a `tft.vocabulary` in Transform: TFT counts every
n-gram of every review as a Beam element in Python. Uni- to trigrams of
22k reviews took Transform 312 s on 2 cores; the NumPy counting below takes
seconds.

An n-gram is one int64 key: with B = the number of word ids (padding 0
included), (a, b, c) -> a*B^2 + b*B + c. Real ids are >= 1, so a unigram's
key is below B, a bigram's in [B, B^2), a trigram's at least B^2: every key
names exactly one n-gram, with no hashing and no collisions.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import tensorflow as tf
from numpy.typing import NDArray
from scipy import sparse
from sklearn.linear_model import LogisticRegression

__all__ = ["SMOOTHING", "ngram_keys", "document_pairs", "columns", "NgramModel",
           "fit_ngram_model", "NgramLogit"]

#: The add-one smoothing of the counts (the paper's alpha).
SMOOTHING = 1.0
# liblinear's dual solver (fast when n-grams outnumber reviews), iterations
# enough for the smallest penalties, a fixed seed so a refit is identical.
_MAX_ITER = 10_000
_SEED = 0


def ngram_keys(flat_ids: NDArray[np.int64], order: int, base: int,
               ) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """(start positions, keys) of every 1- to `order`-gram of `flat_ids`,
    reviews concatenated with a 0 (padding) between them, so that no n-gram
    spans two reviews. The NumPy twin of `NgramLogit._keys`."""
    starts, keys = [], []
    for n in range(1, order + 1):
        count = len(flat_ids) - n + 1
        if count <= 0:
            continue
        key = np.zeros(count, np.int64)
        inside = np.ones(count, bool)
        for k in range(n):
            window = flat_ids[k:k + count]
            key = key * base + window
            inside &= window != 0
        starts.append(np.flatnonzero(inside))
        keys.append(key[inside])
    return np.concatenate(starts), np.concatenate(keys)


def document_pairs(reviews: Sequence[NDArray[np.int64]], order: int, base: int,
                   chunk: int = 2048) -> tuple[NDArray[np.int32], NDArray[np.int64]]:
    """(review index, key) of every distinct n-gram of each review, ordered
    by review then key: binarized presence, a word said twice is not twice
    the evidence.

    The pairs are the Trainer's largest arrays (13M for 22k reviews' 1- to
    3-grams), so they are written `chunk` reviews at a time into arrays
    sized for the most pairs the reviews can have: pages past the last pair
    written are never touched, so they take no memory, and no step holds
    the pairs twice (as concatenating per-chunk parts would)."""
    lengths = np.array([len(r) for r in reviews], np.int64)
    bound = int(sum(np.maximum(lengths - n + 1, 0).sum() for n in range(1, order + 1)))
    rows, keys = np.empty(bound, np.int32), np.empty(bound, np.int64)
    written = 0
    for first in range(0, len(reviews), chunk):
        part = reviews[first:first + chunk]
        sizes = lengths[first:first + chunk] + 1
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        flat = np.zeros(int(sizes.sum()), np.int64)
        for offset, review in zip(offsets, part, strict=True):
            flat[offset:offset + len(review)] = review
        starts, found = ngram_keys(flat, order, base)
        found_rows = (np.searchsorted(offsets, starts, side="right") - 1 + first).astype(np.int32)
        by_row = np.lexsort((found, found_rows))
        found_rows, found = found_rows[by_row], found[by_row]
        distinct = np.ones(len(found), bool)
        distinct[1:] = (found_rows[1:] != found_rows[:-1]) | (found[1:] != found[:-1])
        count = int(distinct.sum())
        rows[written:written + count] = found_rows[distinct]
        keys[written:written + count] = found[distinct]
        written += count
    return rows[:written], keys[:written]


def columns(vocabulary: NDArray[np.int64], keys: NDArray[np.int64],
            chunk: int = 1 << 20) -> NDArray[np.int32]:
    """The index of each key in the ascending `vocabulary`, or -1 where it is
    not there; looked up `chunk` keys at a time (bounded temporaries)."""
    out = np.full(len(keys), -1, np.int32)
    if not len(vocabulary):
        return out
    for first in range(0, len(keys), chunk):
        part = keys[first:first + chunk]
        at = np.minimum(np.searchsorted(vocabulary, part), len(vocabulary) - 1)
        out[first:first + chunk] = np.where(vocabulary[at] == part, at, -1)
    return out


@dataclasses.dataclass(frozen=True)
class NgramModel:
    """NB-LR, fitted: the kept n-grams' keys (ascending), one folded weight
    each (regression weight x r) and the bias. logit = sum of the weights of
    the n-grams a review contains + bias."""

    keys: NDArray[np.int64]
    weights: NDArray[np.float32]
    bias: float
    order: int
    base: int

    def logits(self, reviews: Sequence[NDArray[np.int64]]) -> NDArray[np.float64]:
        """NB-LR's logit of each review (word ids), in NumPy."""
        rows, keys = document_pairs(reviews, self.order, self.base)
        column = columns(self.keys, keys)
        known = column >= 0
        total = np.bincount(rows[known], weights=self.weights[column[known]].astype(np.float64),
                            minlength=len(reviews))
        out: NDArray[np.float64] = total + self.bias
        return out


def _vocabulary(keys: NDArray[np.int64], counts: NDArray[np.int64], vocab_size: int,
                min_count: int) -> NDArray[np.int64]:
    """Indices (into `keys`) of the n-grams kept: found in at least
    `min_count` reviews, the `vocab_size` most frequent (ties: smaller key
    first, so the choice is deterministic), in ascending key order."""
    frequent = np.flatnonzero(counts >= min_count)
    ranked = frequent[np.lexsort((keys[frequent], -counts[frequent]))][:vocab_size]
    return np.sort(ranked)


def fit_ngram_model(reviews: Sequence[NDArray[np.int64]], labels: NDArray[np.int64], *,
                    order: int, base: int, vocab_size: int, min_count: int,
                    l2: float) -> NgramModel:
    """NB-LR on `train`: the n-gram vocabulary and r from these reviews, then
    liblinear's L2 logistic regression on the binarized r-scaled rows.
    `l2` is the penalty per example of mean loss (scikit-learn's C is
    1 / (2 * l2 * reviews))."""
    y = np.asarray(labels).ravel()
    if not set(np.unique(y)) <= {0, 1} or len(y) != len(reviews):
        raise ValueError(f"need one 0/1 label per review; got {len(y)} labels for "
                         f"{len(reviews)} reviews, values {np.unique(y)}")
    # The arrays below are the run's peak memory: each goes as soon as it is
    # used, and no step holds two copies of the (review, n-gram) pairs.
    rows, keys = document_pairs(reviews, order, base)  # rows ascending
    distinct, counts = np.unique(keys, return_counts=True)
    kept = _vocabulary(distinct, counts, vocab_size, min_count)
    if not len(kept):
        raise ValueError(f"NB-LR: no n-gram is found in {min_count} or more train reviews "
                         "(lower --ngram_min_count)")
    vocabulary, document_frequency = distinct[kept], counts[kept]
    del distinct, counts
    column = columns(vocabulary, keys)
    del keys
    inside = column >= 0
    rows, column = rows[inside], column[inside]
    del inside
    positive = np.bincount(column[(y == 1)[rows]], minlength=len(vocabulary))
    p = SMOOTHING + positive
    q = SMOOTHING + (document_frequency - positive)
    ratio = np.log(p / p.sum()) - np.log(q / q.sum())
    # Rows come sorted, so the CSR matrix is built directly (no COO copy).
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=len(reviews)))])
    del rows
    features = sparse.csr_matrix((ratio[column], column, indptr),
                                 shape=(len(reviews), len(vocabulary)))
    del column
    regression = LogisticRegression(C=1.0 / (2.0 * l2 * len(y)), solver="liblinear", dual=True,
                                    max_iter=_MAX_ITER, random_state=_SEED)
    regression.fit(features, y)
    return NgramModel(keys=vocabulary, weights=(regression.coef_.ravel() * ratio)
                      .astype(np.float32), bias=float(regression.intercept_[0]),
                      order=order, base=base)


class NgramLogit(tf.Module):
    """NB-LR in TensorFlow, for the exported model: word ids (a batch of
    variable-length rows, as Transform writes them) -> logit [batch]."""

    def __init__(self, model: NgramModel) -> None:
        super().__init__(name="ngram_logit")
        # Variables, not graph constants: 800k keys would bloat the graph.
        self.keys = tf.Variable(model.keys, trainable=False, name="keys")
        self.weights = tf.Variable(model.weights, trainable=False, name="weights")
        self.bias = tf.Variable(model.bias, dtype=tf.float32, trainable=False, name="bias")
        self.order, self.base = model.order, model.base

    def _keys(self, ids: tf.RaggedTensor) -> tuple[tf.Tensor, tf.Tensor]:
        """(row, key) of every 1- to order-gram within a row."""
        flat = tf.cast(ids.flat_values, tf.int64)
        row = ids.value_rowids()
        rows, keys = [], []
        for n in range(1, self.order + 1):
            count = tf.maximum(tf.size(flat) - n + 1, 0)
            key = tf.zeros([count], tf.int64)
            same_row = tf.ones([count], tf.bool)
            for k in range(n):
                key = key * self.base + flat[k:k + count]
                same_row &= tf.equal(row[k:k + count], row[:count])
            rows.append(tf.boolean_mask(row[:count], same_row))
            keys.append(tf.boolean_mask(key, same_row))
        return tf.concat(rows, 0), tf.concat(keys, 0)

    def __call__(self, word_ids: tf.SparseTensor | tf.RaggedTensor) -> tf.Tensor:
        ids = (tf.RaggedTensor.from_sparse(word_ids) if isinstance(word_ids, tf.SparseTensor)
               else word_ids)
        row, key = self._keys(ids)
        size = tf.size(self.keys, out_type=tf.int64)
        column = tf.minimum(tf.searchsorted(self.keys, key, out_type=tf.int64), size - 1)
        known = tf.equal(tf.gather(self.keys, column), key)
        # Each known n-gram once per row (binarized presence): unique (row, column).
        pair = tf.boolean_mask(row * size + column, known)
        unique, _ = tf.unique(pair)
        total = tf.math.unsorted_segment_sum(tf.gather(self.weights, unique % size),
                                             unique // size, ids.nrows())
        return total + self.bias
