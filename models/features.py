"""Feature names and the vocabulary facts shared by ingestion, Transform, the
models and serving: the one place each of these facts lives."""

from __future__ import annotations

__all__ = [
    "LABEL",
    "MOVIE_ID",
    "WORD_IDS",
    "NGRAM_RANGE",
    "RATING",
    "RAW_FEATURES",
    "REVIEW_ID",
    "TEXT",
    "TOKEN_IDS",
    "UNLABELED",
    "transformed_name",
]

TEXT = "text"
LABEL = "label"
RATING = "rating"
REVIEW_ID = "review_id"
MOVIE_ID = "movie_id"

#: Every feature ImdbExampleGen writes into each tf.Example, in a stable order.
RAW_FEATURES = (TEXT, LABEL, RATING, REVIEW_ID, MOVIE_ID)

#: `label` of the unlabeled (`unsup`) reviews: they have no sentiment, and a
#: sentinel keeps one feature spec for every split.
UNLABELED = -1

#: Transformed feature holding padded token ids (0 = padding).
TOKEN_IDS = "token_ids"

#: Transformed feature of `--ngram_blend`: every word of the review as its
#: word-vocabulary id (0 = padding never occurs), untruncated; NB-LR counts
#: its n-grams (models/ngrams.py).
WORD_IDS = "word_ids"
#: Unigrams and bigrams: the n-grams of the linear baselines
#: (bench/ngram_baselines.py), the "20-second linear baseline" every model is
#: compared with. Fixed, not tuned, so that the comparison holds. The
#: pipeline's NB-LR reads up to `--ngram_order`-grams (models/config.py).
NGRAM_RANGE = (1, 2)


def transformed_name(key: str) -> str:
    """Name of a feature after Transform, so raw and transformed never clash."""
    return f"{key}_xf"
