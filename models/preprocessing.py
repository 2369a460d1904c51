"""The Transform module: one `preprocessing_fn` for training and serving.

Referenced by dotted path (`models.preprocessing.preprocessing_fn`). The
vocabulary is analysed on the train split only, and only train and valid are
transformed (the pipeline's SplitsConfig): the Evaluator reads the raw eval
split through the exported model's `serving_default` signature.

Two tokenizers (custom_config["tokenizer"], models.config.TOKENIZERS): whole
words with a vocabulary learnt here (CNN, transformer), or the pre-trained
encoder's WordPiece with its own vocabulary (MiniLM; nothing is analysed).
With `ngram_blend`, every word of the review also goes out as an id
(`word_ids`, untruncated), from which the Trainer's NB-LR counts n-grams
(models/ngrams.py), whatever the model's tokenizer.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf
import tensorflow_transform as tft

from models import features, minilm, text, wordpiece
from models.text_tf import tokenize_tf

__all__ = ["NGRAM_WORDS_VOCAB_NAME", "preprocessing_fn"]

#: The word vocabulary NB-LR's ids come from when the model reads WordPiece
#: pieces (the word models share theirs, text.VOCAB_NAME).
NGRAM_WORDS_VOCAB_NAME = "ngram_words"


def _word_ids(words: tf.RaggedTensor, custom_config: dict[str, Any],
              vocab_filename: str) -> tf.RaggedTensor:
    """Ids of the `vocab_size` most frequent train words, shifted so that 0
    stays padding; out-of-vocabulary words share the OOV bucket(s)."""
    ids = tft.compute_and_apply_vocabulary(
        words, top_k=int(custom_config["vocab_size"]),
        num_oov_buckets=int(custom_config["num_oov_buckets"]), vocab_filename=vocab_filename)
    return ids + text.ID_OFFSET


def preprocessing_fn(inputs: dict[str, Any], custom_config: dict[str, Any]) -> dict[str, Any]:
    """text -> padded token ids (and NB-LR's word ids); the label passes through."""
    raw_text = inputs[features.TEXT]
    max_length = int(custom_config["max_length"])
    words = tokenize_tf(raw_text)
    word_ids = None
    if custom_config.get("tokenizer", "words") == "wordpiece":
        vocab = minilm.read_vocabulary(minilm.package_dir())
        padded = wordpiece.tokenize_tf(raw_text, vocab, max_length)
    else:
        word_ids = _word_ids(words, custom_config, text.VOCAB_NAME)
        padded = word_ids.to_tensor(default_value=text.PAD_ID, shape=[None, max_length])
    label = tf.reshape(inputs[features.LABEL], [-1])
    # Serving graphs are pruned to the inputs they get: a raw-text request
    # yields the model's features without the label.
    outputs = {
        features.transformed_name(features.TOKEN_IDS): padded,
        features.transformed_name(features.LABEL): label,
    }
    if custom_config.get("ngram_blend"):
        if word_ids is None:  # WordPiece models: NB-LR still counts words
            word_ids = _word_ids(words, custom_config, NGRAM_WORDS_VOCAB_NAME)
        # Every word of the review: NB-LR reads it whole (models/ngrams.py).
        outputs[features.transformed_name(features.WORD_IDS)] = word_ids.to_sparse()
    return outputs
