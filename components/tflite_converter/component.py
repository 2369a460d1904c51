"""TFLiteCheck: the candidate model as TFLite files, checked before any release.

Converts the candidate's `token_ids` signature into every variant of
convert.VARIANTS (float32, dynamic range, float16, int8 calibrated on `train`
reviews), embeds the metadata MediaPipe and the Task Library load, and checks
each variant against the SavedModel on reviews of the `valid` split (never
`eval`: the official test set reaches the Evaluator only). A variant outside
its tolerance fails the run, so the release step never starts and nothing is
published. The files (models, vocabularies, tokenizer spec, labels, manifest)
are this component's output artifact; the release step copies them to
`tflite/<version>/` and stamps the version into the manifest. Which
vocabulary and tokenizer spec they hold follows the model's tokenizer: the
Transform vocabulary for "words", the encoder's WordPiece vocabulary for
"wordpiece" (convert.py says what each ships).
"""

# No `from __future__ import annotations`: TFX's @component reads real type hints.
import dataclasses
import json
import posixpath
from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
from absl import logging
from tfx import v1 as tfx
from tfx.types import artifact, artifact_utils
from tfx.utils import path_utils

from components.release import strict_json
from components.tflite_converter import convert as conv
from models import contract, features, text, wordpiece

__all__ = ["CHECK_REASON", "CHECK_SPLIT", "CHECK_STATUS", "MANIFEST", "PASSED", "TOKENIZER",
           "VOCAB", "TFLiteCheck", "TFLiteModel", "read_reviews", "read_texts"]

MANIFEST, TOKENIZER, VOCAB = conv.MANIFEST, conv.TOKENIZER, conv.VOCAB
#: The split the variants are checked on.
CHECK_SPLIT = contract.VALID
#: The split int8 calibration reads.
CALIBRATION_SPLIT = contract.TRAIN
#: Reviews are sampled from a split through a shuffle buffer this large
#: (the whole `valid` split, most of `train`), with a fixed seed.
SAMPLE_BUFFER, SAMPLE_SEED = 25_000, 42
#: Custom properties of the output: the check's verdict and, when it failed, why.
CHECK_STATUS, CHECK_REASON, PASSED = "check", "reason", "passed"


class TFLiteModel(artifact.Artifact):
    """The checked mobile artefacts of one candidate model."""

    TYPE_NAME = "imdb.TFLiteModel"


def read_reviews(examples: artifact.Artifact, split: str,
                 count: int) -> tuple[list[bytes], np.ndarray]:
    """(texts, labels) of `count` reviews drawn from one split of an Examples
    artifact: a seeded shuffle, not the first ones, because ExampleGen writes
    a folder at a time (the first hundreds of a split are all negative), and
    calibration and agreement need both classes."""
    split_dir = artifact_utils.get_split_uri([examples], split)
    files = tf.io.gfile.glob(posixpath.join(split_dir, "*.gz"))
    raw = (tf.data.TFRecordDataset(sorted(files), compression_type="GZIP")
           .shuffle(SAMPLE_BUFFER, seed=SAMPLE_SEED).take(count))
    parsed = [tf.train.Example.FromString(r.numpy()).features.feature for r in raw]
    return ([f[features.TEXT].bytes_list.value[0] for f in parsed],
            np.array([f[features.LABEL].int64_list.value[0] for f in parsed]))


def read_texts(examples: artifact.Artifact, split: str, count: int) -> list[bytes]:
    """The first `count` review texts of one split of an Examples artifact."""
    return read_reviews(examples, split, count)[0]


def _token_ids(output: tft.TFTransformOutput, texts: list[bytes]) -> np.ndarray:
    ids = output.transform_raw_features({features.TEXT: tf.constant(texts)[:, None]},
                                        drop_unused_features=True)
    return ids[features.transformed_name(features.TOKEN_IDS)].numpy().astype(np.int32)


def _reference(loaded: Any, ids: np.ndarray, batch: int = 32) -> np.ndarray:
    """The SavedModel's P(positive) of each row of token ids (its `token_ids`
    signature: the model the TFLite files are converted from), `batch` rows
    at a time: 256 reviews at once held 100 MiB of activations at the run's
    peak memory."""
    signature = loaded.signatures[contract.SIGNATURE_TOKEN_IDS]
    return np.concatenate([
        signature(**{contract.INPUT_TOKEN_IDS: tf.constant(ids[first:first + batch])})[
            contract.OUTPUT_KEY].numpy().ravel()
        for first in range(0, len(ids), batch)])


def _vocabulary(tokenizer: str, output: tft.TFTransformOutput) -> list[str]:
    """The vocabulary the model's ids index, in id order."""
    if tokenizer == conv.WORDPIECE:
        # Imported here: models/minilm.py brings Keras, which only this branch needs.
        from models import minilm

        return minilm.read_vocabulary(minilm.package_dir())
    return [t.decode() for t in output.vocabulary_by_name(text.VOCAB_NAME)]


def variants_with(overrides: dict[str, dict[str, float]],
                  int8: bool = True) -> list[conv.Variant]:
    """The model's variants (convert.variants_for) with the configured
    tolerances in place of their defaults."""
    return [dataclasses.replace(v, **overrides.get(v.name, {}))
            for v in conv.variants_for(int8)]


@tfx.dsl.components.component
def TFLiteCheck(
    model: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Model],
    transform_graph: tfx.dsl.components.InputArtifact[
        tfx.types.standard_artifacts.TransformGraph],
    examples: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Examples],
    tflite: tfx.dsl.components.OutputArtifact[TFLiteModel],
    tolerances: tfx.dsl.components.Parameter[str],
    num_oov_buckets: tfx.dsl.components.Parameter[int],
    check_examples: tfx.dsl.components.Parameter[int] = 256,
    code_version: tfx.dsl.components.Parameter[str] = "",
    tokenizer: tfx.dsl.components.Parameter[str] = conv.WORDS,
    int8: tfx.dsl.components.Parameter[int] = 1,
) -> None:
    """Converts every variant and records whether all are within their
    tolerance (the release step refuses a blessed candidate that is not).
    `tolerances`: JSON {variant: {"max_abs_diff": x, "min_agreement": y}}
    overriding the variants' defaults. `tokenizer`: models/config.py's
    TOKENIZERS value of the model ("words" or "wordpiece"). `int8`: 1 if
    the model ships the int8 variant (models.config.INT8_TFLITE)."""
    del code_version  # joins the cache key only
    if tokenizer == conv.WORDPIECE:
        wordpiece.register_ops()  # the transform graph (and the model) tokenise with TF Text
    texts, labels = read_reviews(examples, CHECK_SPLIT, check_examples)
    calibration_texts, _ = read_reviews(examples, CALIBRATION_SPLIT, conv.CALIBRATION_STEPS)
    transform_output = tft.TFTransformOutput(transform_graph.uri)
    ids = _token_ids(transform_output, texts)
    loaded = tf.saved_model.load(path_utils.serving_model_path(model.uri))
    reference = _reference(loaded, ids)
    vocab = _vocabulary(tokenizer, transform_output)
    max_length = int(ids.shape[1])
    probe_texts = conv.probe_texts(max_length)
    probe_ids = _token_ids(transform_output, [t.encode() for t in probe_texts])
    probes = conv.Probes(probe_texts, probe_ids, _reference(loaded, probe_ids))
    try:
        files, entries = conv.convert_all(
            loaded, calibration_ids=_token_ids(transform_output, calibration_texts),
            check_ids=ids, reference=reference, vocab=vocab, probes=probes, labels=labels,
            variants=variants_with(json.loads(tolerances), bool(int8)), tokenizer=tokenizer)
    except conv.DisagreementError as err:
        logging.warning("TFLiteCheck: FAILED: %s", err)
        tflite.set_string_custom_property(CHECK_STATUS, "failed")
        tflite.set_string_custom_property(CHECK_REASON, str(err))
        return
    tflite.set_string_custom_property(CHECK_STATUS, PASSED)
    side = conv.side_files(vocab, max_length, num_oov_buckets, tokenizer)
    blended = bool(getattr(loaded, contract.NGRAM_WEIGHTS_ATTR, None))
    manifest = conv.build_manifest(0, max_length, entries, side, check_split=CHECK_SPLIT,
                                   tokenizer=tokenizer, blended=blended)
    manifest["version"] = None  # stamped by the release step
    logging.info("TFLiteCheck: %s", {n: (e["size_bytes"], e["label_agreement"])
                                     for n, e in entries.items()})
    for name, payload in {**files, **side,
                          MANIFEST: strict_json.dumps(manifest, indent=2).encode()}.items():
        with tf.io.gfile.GFile(posixpath.join(tflite.uri, name), "wb") as handle:
            handle.write(payload)
