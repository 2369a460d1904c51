"""Warm-up records for TF Serving: `assets.extra/tf_serving_warmup_requests`.

TF Serving (and this project's server) replays these PredictionLog records
when it loads a version, before marking it AVAILABLE, so the first real
request does not pay for graph tracing and kernel caches. Infra validation
replays the same records to prove the candidate answers over gRPC.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

from models.contract import INPUT_EXAMPLES, INPUT_TEXT, SIGNATURE_EXAMPLES, SIGNATURE_TEXT
from serving.client import serialize_example, string_tensor
from serving.manager import WARMUP_FILE

__all__ = ["DEFAULT_TEXTS", "warmup_requests", "write_warmup_requests", "read_warmup_requests"]

#: Reviews used when the caller has none: short, long, markup, non-ASCII.
DEFAULT_TEXTS = (
    "A wonderful film: great acting and a story I loved!",
    "Awful. Boring, far too long, the worst waste of an evening.",
    "It was <br /><br />okay, I guess? Nothing special.",
    "Ein großartiger Film — naïve, charming and très drôle.",
)


def warmup_requests(texts: Sequence[str], model_name: str) -> list[predict_pb2.PredictRequest]:
    """One PredictRequest on serving_default (serialized tf.Example, feature
    'text') and one on serving_text (raw strings), each with all `texts`."""
    if not texts:
        raise ValueError("warm-up needs at least one text")
    examples = predict_pb2.PredictRequest()
    examples.model_spec.name = model_name
    examples.model_spec.signature_name = SIGNATURE_EXAMPLES
    examples.inputs[INPUT_EXAMPLES].CopyFrom(string_tensor([serialize_example(t) for t in texts]))
    raw = predict_pb2.PredictRequest()
    raw.model_spec.name = model_name
    raw.model_spec.signature_name = SIGNATURE_TEXT
    raw.inputs[INPUT_TEXT].CopyFrom(string_tensor([t.encode("utf-8") for t in texts]))
    return [examples, raw]


def write_warmup_requests(saved_model_dir: str, texts: Sequence[str], model_name: str) -> str:
    """Writes the warm-up TFRecord of PredictionLogs into the SavedModel dir
    (replacing any previous one) and returns its path."""
    path = os.path.join(saved_model_dir, WARMUP_FILE)
    tf.io.gfile.makedirs(os.path.dirname(path))
    temporary = path + ".tmp"
    with tf.io.TFRecordWriter(temporary) as writer:
        for request in warmup_requests(texts, model_name):
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())
    tf.io.gfile.rename(temporary, path, overwrite=True)  # never a half-written file
    return path


def read_warmup_requests(saved_model_dir: str) -> list[predict_pb2.PredictRequest]:
    """The PredictRequests of a SavedModel's warm-up file ([] if it has none)."""
    path = os.path.join(saved_model_dir, WARMUP_FILE)
    if not tf.io.gfile.exists(path):
        return []
    requests = []
    for record in tf.data.TFRecordDataset(path):
        log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        if log.WhichOneof("log_type") == "predict_log":
            requests.append(log.predict_log.request)
    return requests
