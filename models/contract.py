"""The names every layer relies on: splits, serving signatures, their inputs
and output, and the files a training run leaves behind.

Pure Python with no TensorFlow import, so the pipeline, the components, the
server, the clients and the mobile runner all import these from here and
nothing spells them a second time.
"""

from __future__ import annotations

__all__ = [
    "TRAIN",
    "VALID",
    "EVAL",
    "UNSUP",
    "TRAINER_SPLITS",
    "PRETRAIN_SPLITS",
    "SIGNATURE_EXAMPLES",
    "SIGNATURE_TEXT",
    "SIGNATURE_TOKEN_IDS",
    "INPUT_EXAMPLES",
    "INPUT_TEXT",
    "INPUT_TOKEN_IDS",
    "OUTPUT_KEY",
    "LABELS",
    "POSITIVE_LABEL",
    "HISTORY_FILE",
    "CURVE_PREFIX",
    "BLEND_FILE",
    "ENCODER_WEIGHTS_FILE",
    "NGRAM_WEIGHTS_ATTR",
]

# Splits of ImdbExampleGen. `valid` is carved out of the official train/ set
# (grouped by movie); `eval` is the official test/ set, which only the
# Evaluator and benchmarks' final scoring may read: nothing is trained,
# early-stopped, calibrated or tuned on it.
TRAIN = "train"
VALID = "valid"
EVAL = "eval"
UNSUP = "unsup"
#: What Transform transforms and the Trainer reads: never `eval`.
TRAINER_SPLITS = (TRAIN, VALID)
#: What masked-LM pre-training reads: unlabeled reviews and train text, never
#: `valid` (it judges the fine-tuned model) or `eval`.
PRETRAIN_SPLITS = (UNSUP, TRAIN)

#: Serialized tf.Example in, as TF Serving clients and TFMA send it.
SIGNATURE_EXAMPLES = "serving_default"
#: Raw review strings in.
SIGNATURE_TEXT = "serving_text"
#: int32 token ids [batch, max_length] in: what TFLite converts.
SIGNATURE_TOKEN_IDS = "token_ids"
INPUT_EXAMPLES = "examples"
INPUT_TEXT = "text"
INPUT_TOKEN_IDS = "token_ids"
#: Every signature's single output: P(positive), float32 [batch].
OUTPUT_KEY = "probability"

#: Class names by label value (0 = negative, 1 = positive).
LABELS = ("negative", "positive")
#: The single class a sigmoid output scores (TFLite / MediaPipe label file).
POSITIVE_LABEL = LABELS[1]

#: Per-epoch training metrics the Trainer writes into its model_run artifact.
HISTORY_FILE = "history.json"
#: With --curve_every_steps: history keys of the learning curve's points
#: (curve_step, curve_seconds, curve_loss, curve_accuracy, curve_auc).
CURVE_PREFIX = "curve_"
#: With --ngram_blend: the blend's weights and each part's valid accuracy.
BLEND_FILE = "blend.json"
#: The pre-trained encoder's weights in the Pretrainer's model artifact.
ENCODER_WEIGHTS_FILE = "encoder.weights.h5"
#: The exported SavedModel's attribute that tracks NB-LR's variables ([n-gram
#: keys, weights, bias], models/ngrams.py): non-empty exactly when the served
#: signatures blend NB-LR into the classifier's score (so they score
#: differently from the TFLite classifier, which does not).
NGRAM_WEIGHTS_ATTR = "ngram_weights"
