"""TFLiteConverter: turns the pushed model into the mobile artefacts.

Runs after the Pusher so the TFLite files carry the pushed version:
OUTPUT/tflite/<version>/ gets one `.tflite` per variant, the vocabulary, the
tokenizer spec and a manifest with each variant's agreement with the
SavedModel on eval reviews. A variant outside its tolerance fails the run and
nothing is published (files are written to a temporary folder, then renamed).
"""

# No `from __future__ import annotations`: TFX's @component reads real type hints.
import json
import os

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
from absl import logging
from tfx import v1 as tfx
from tfx.types import artifact, artifact_utils
from tfx.utils import io_utils, path_utils

from components.dedup_pusher import DUPLICATE_OF
from components.tflite_converter import convert as conv
from models import features, text
from models.trainer import OUTPUT_KEY, SIGNATURE_TOKEN_IDS

__all__ = ["TFLiteConverter", "TFLiteModel", "MANIFEST", "TOKENIZER", "VOCAB"]

MANIFEST, TOKENIZER, VOCAB = conv.MANIFEST, conv.TOKENIZER, conv.VOCAB


class TFLiteModel(artifact.Artifact):
    """The mobile artefacts of one pushed model version."""

    TYPE_NAME = "TFLiteModel"


def _split_reviews(examples: artifact.Artifact, split: str,
                   count: int) -> tuple[list[bytes], np.ndarray]:
    split_dir = artifact_utils.get_split_uri([examples], split)
    files = tf.io.gfile.glob(os.path.join(split_dir, "*.gz"))
    raw = tf.data.TFRecordDataset(files, compression_type="GZIP").take(count)
    parsed = [tf.train.Example.FromString(r.numpy()).features.feature for r in raw]
    return ([f[features.TEXT].bytes_list.value[0] for f in parsed],
            np.array([f[features.LABEL].int64_list.value[0] for f in parsed]))


def _token_ids(output: tft.TFTransformOutput, texts: list[bytes]) -> np.ndarray:
    ids = output.transform_raw_features({features.TEXT: tf.constant(texts)[:, None]},
                                        drop_unused_features=True)
    return ids[features.transformed_name(features.TOKEN_IDS)].numpy().astype(np.int32)


def _publish(staging: str, final: str) -> None:
    if tf.io.gfile.exists(final):
        tf.io.gfile.rmtree(final)
    tf.io.gfile.rename(staging, final)


@tfx.dsl.components.component
def TFLiteConverter(
    model: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Model],
    pushed_model: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.PushedModel],
    transform_graph: tfx.dsl.components.InputArtifact[
        tfx.types.standard_artifacts.TransformGraph],
    examples: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Examples],
    tflite: tfx.dsl.components.OutputArtifact[TFLiteModel],
    output_dir: tfx.dsl.components.Parameter[str],
    num_oov_buckets: tfx.dsl.components.Parameter[int],
    check_examples: tfx.dsl.components.Parameter[int] = 256,
) -> None:
    """Converts and checks every variant of conv.VARIANTS for the pushed version."""
    pushed = pushed_model.get_int_custom_property("pushed") == 1
    version = (pushed_model.get_string_custom_property("pushed_version") if pushed
               else pushed_model.get_string_custom_property(DUPLICATE_OF))
    if not version:
        tflite.set_string_custom_property("status", "not_pushed")
        logging.info("TFLiteConverter: the candidate was not pushed: nothing to convert")
        return
    final = os.path.join(output_dir, version)
    tflite.set_string_custom_property("version", version)
    if tf.io.gfile.exists(os.path.join(final, MANIFEST)):  # same model, converted before
        tflite.set_string_custom_property("status", "already_converted")
        io_utils.copy_dir(final, tflite.uri)
        logging.info("TFLiteConverter: version %s is already converted in %s", version, final)
        return
    model_dir = path_utils.serving_model_path(model.uri)
    texts, labels = _split_reviews(examples, "eval", check_examples)
    # int8 calibration reads train reviews only, never the eval split.
    calibration_texts, _ = _split_reviews(examples, "train", conv.CALIBRATION_STEPS)
    transform_output = tft.TFTransformOutput(transform_graph.uri)
    ids = _token_ids(transform_output, texts)
    loaded = tf.saved_model.load(model_dir)
    reference = loaded.signatures[SIGNATURE_TOKEN_IDS](token_ids=tf.constant(ids))[OUTPUT_KEY]
    reference = reference.numpy()
    vocab = [t.decode() for t in transform_output.vocabulary_by_name(text.VOCAB_NAME)]
    max_length = int(ids.shape[1])
    # Raises conv.DisagreementError, naming the variant, before anything is written.
    files, entries = conv.convert_all(
        loaded, calibration_ids=_token_ids(transform_output, calibration_texts),
        check_ids=ids, reference=reference, vocab=vocab, labels=labels)
    side = conv.side_files(vocab, max_length, num_oov_buckets)
    manifest = conv.build_manifest(int(version), max_length, entries, side, check_split="eval")
    logging.info("TFLiteConverter: %s", {n: (e["size_bytes"], e["label_agreement"])
                                         for n, e in entries.items()})
    files.update(side)

    staging = os.path.join(output_dir, f".staging-{version}")
    if tf.io.gfile.exists(staging):
        tf.io.gfile.rmtree(staging)
    tf.io.gfile.makedirs(staging)
    for name, payload in files.items():
        with tf.io.gfile.GFile(os.path.join(staging, name), "wb") as handle:
            handle.write(payload)
    with tf.io.gfile.GFile(os.path.join(staging, MANIFEST), "w") as handle:
        json.dump(manifest, handle, indent=2)
    io_utils.copy_dir(staging, tflite.uri)
    _publish(staging, final)
    tflite.set_string_custom_property("status", "converted")
