"""The Transform module: one `preprocessing_fn` for training and serving.

Referenced by dotted path (`models.preprocessing.preprocessing_fn`). The
vocabulary is analysed on the train split only, and only train and valid are
transformed (the pipeline's SplitsConfig): the Evaluator reads the raw eval
split through the exported model's `serving_default` signature.

Two tokenizers (custom_config["tokenizer"], models.config.TOKENIZERS): whole
words with a vocabulary learnt here (CNN, transformer), or the pre-trained
encoder's WordPiece with its own vocabulary (MiniLM; nothing is analysed).
With `ngram_blend`, the words' uni+bigrams also become NB-LR's sparse
feature row (models/ngrams.py), whatever the model's tokenizer.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf
import tensorflow_transform as tft

from models import features, minilm, ngrams, text, wordpiece

__all__ = ["preprocessing_fn"]


def _tokenize(raw_text: tf.Tensor) -> tf.RaggedTensor:
    # models/text.py explains the rules; tokenize_py is their Python twin.
    # No encoding: ASCII-only lower-casing (ICU's UTF-8 lower-casing stops at a NUL).
    lowered = tf.strings.lower(tf.reshape(raw_text, [-1]))
    spaced = tf.strings.regex_replace(lowered, text.DELIMITER, " ")
    # Every ASCII whitespace character is a delimiter, so only the spaces put
    # in above remain to split on.
    return tf.strings.split(spaced)


def _word_ids(raw_text: tf.Tensor, custom_config: dict[str, Any]) -> tf.Tensor:
    vocab_size = int(custom_config["vocab_size"])
    num_oov_buckets = int(custom_config["num_oov_buckets"])
    max_length = int(custom_config["max_length"])
    ids = tft.compute_and_apply_vocabulary(
        _tokenize(raw_text), top_k=vocab_size, num_oov_buckets=num_oov_buckets,
        vocab_filename=text.VOCAB_NAME)
    return (ids + text.ID_OFFSET).to_tensor(default_value=text.PAD_ID, shape=[None, max_length])


def preprocessing_fn(inputs: dict[str, Any], custom_config: dict[str, Any]) -> dict[str, Any]:
    """text -> padded token ids (and NB-LR's n-gram row); the label passes through."""
    raw_text = inputs[features.TEXT]
    if custom_config.get("tokenizer", "words") == "wordpiece":
        vocab = minilm.read_vocabulary(minilm.package_dir())
        padded = wordpiece.tokenize_tf(raw_text, vocab, int(custom_config["max_length"]))
    else:
        padded = _word_ids(raw_text, custom_config)
    label = tf.reshape(inputs[features.LABEL], [-1])
    # Serving graphs are pruned to the inputs they get: a raw-text request
    # yields the model's features without the label (the n-grams' ratios are
    # analysed from train labels, so serving holds them as constants).
    outputs = {
        features.transformed_name(features.TOKEN_IDS): padded,
        features.transformed_name(features.LABEL): label,
    }
    if custom_config.get("ngram_blend"):
        outputs[features.transformed_name(features.NGRAMS)] = ngrams.ngram_features(
            _tokenize(raw_text), label, int(custom_config["ngram_vocab_size"]),
            int(custom_config["ngram_min_count"]))
    return outputs
