"""TFLiteCheck: the candidate model as TFLite files, checked before any release.

Converts the candidate's `token_ids` signature into every variant of
convert.VARIANTS and checks each against the SavedModel on reviews of the
`valid` split (never `eval`: the official test set reaches the Evaluator
only). A variant outside its tolerance fails the run, so the release step
never starts and nothing is published. The files (one `.tflite` per variant,
the vocabulary, the tokenizer spec and a manifest) are this component's
output artifact; the release step copies them to `tflite/<version>/`.
"""

# No `from __future__ import annotations`: TFX's @component reads real type hints.
import json
import posixpath

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
from absl import logging
from tfx import v1 as tfx
from tfx.types import artifact, artifact_utils
from tfx.utils import path_utils

from components.errors import UserFacingError
from components.tflite_converter import convert as conv
from models import contract, features, text

__all__ = ["MANIFEST", "TOKENIZER", "VOCAB", "TFLiteCheck", "TFLiteCheckError", "TFLiteModel",
           "read_texts"]

MANIFEST, TOKENIZER, VOCAB = "manifest.json", "tokenizer.json", "vocab.txt"
#: The split the variants are checked on.
CHECK_SPLIT = contract.VALID


class TFLiteModel(artifact.Artifact):
    """The checked mobile artefacts of one candidate model."""

    TYPE_NAME = "imdb.TFLiteModel"


class TFLiteCheckError(UserFacingError, RuntimeError):
    """A TFLite variant disagrees with the SavedModel beyond its tolerance."""


def read_texts(examples: artifact.Artifact, split: str, count: int) -> list[bytes]:
    """The first `count` review texts of one split of an Examples artifact."""
    split_dir = artifact_utils.get_split_uri([examples], split)
    files = tf.io.gfile.glob(posixpath.join(split_dir, "*.gz"))
    raw = tf.data.TFRecordDataset(files, compression_type="GZIP").take(count)
    return [tf.train.Example.FromString(r.numpy()).features.feature[features.TEXT]
            .bytes_list.value[0] for r in raw]


def _token_ids(output: tft.TFTransformOutput, texts: list[bytes]) -> np.ndarray:
    ids = output.transform_raw_features({features.TEXT: tf.constant(texts)[:, None]},
                                        drop_unused_features=True)
    return ids[features.transformed_name(features.TOKEN_IDS)].numpy().astype(np.int32)


def _write(path: str, payload: bytes | str) -> None:
    with tf.io.gfile.GFile(path, "wb" if isinstance(payload, bytes) else "w") as handle:
        handle.write(payload)


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
) -> None:
    """Converts every variant and fails on the first one outside its tolerance.

    `tolerances`: JSON {variant: {"max_abs_diff": x, "min_agreement": y}}.
    """
    del code_version  # joins the cache key only
    limits = json.loads(tolerances)
    texts = read_texts(examples, CHECK_SPLIT, check_examples)
    transform_output = tft.TFTransformOutput(transform_graph.uri)
    ids = _token_ids(transform_output, texts)
    loaded = tf.saved_model.load(path_utils.serving_model_path(model.uri))
    reference = loaded.signatures[contract.SIGNATURE_TOKEN_IDS](
        **{contract.INPUT_TOKEN_IDS: tf.constant(ids)})[contract.OUTPUT_KEY].numpy()

    max_length = int(ids.shape[1])
    manifest: dict[str, object] = {
        "version": None,  # stamped by the release step
        "input": {"name": features.TOKEN_IDS, "dtype": "int32", "shape": [1, max_length]},
        "output": {"name": contract.OUTPUT_KEY, "dtype": "float32", "meaning": "P(positive)"},
        "vocab": VOCAB, "tokenizer": TOKENIZER, "check_split": CHECK_SPLIT, "variants": {}}
    for variant in conv.VARIANTS:
        limit = limits[variant.name]
        flatbuffer = conv.convert(loaded, contract.SIGNATURE_TOKEN_IDS, variant)
        check = conv.agreement(reference, conv.tflite_probabilities(flatbuffer, ids))
        logging.info("TFLiteCheck: %s: %d bytes, %s", variant.name, len(flatbuffer), check)
        if check["max_abs_diff"] > limit["max_abs_diff"] or \
                check["label_agreement"] < limit["min_agreement"]:
            raise TFLiteCheckError(
                f"TFLite variant {variant.name} disagrees with the SavedModel on "
                f"{check['examples']} {CHECK_SPLIT} reviews: max |dp| = "
                f"{check['max_abs_diff']:.3g}, decision agreement = "
                f"{check['label_agreement']:.4f} (allowed: max |dp| <= {limit['max_abs_diff']:g}, "
                f"agreement >= {limit['min_agreement']:g}); nothing was released")
        file_name = f"model_{variant.name}.tflite"
        _write(posixpath.join(tflite.uri, file_name), flatbuffer)
        manifest["variants"][variant.name] = {  # type: ignore[index]
            "file": file_name, "size_bytes": len(flatbuffer), **check}
    vocab_file = transform_output.vocabulary_file_by_name(text.VOCAB_NAME)
    tf.io.gfile.copy(vocab_file, posixpath.join(tflite.uri, VOCAB), overwrite=True)
    spec = text.tokenizer_spec(max_length, VOCAB, num_oov_buckets)
    _write(posixpath.join(tflite.uri, TOKENIZER), json.dumps(spec, indent=2))
    _write(posixpath.join(tflite.uri, MANIFEST), json.dumps(manifest, indent=2))
