"""A tiny job as Transform hands it to a Trainer: the transform graph and
gzipped transformed splits, made with the project's `preprocessing_fn` and
curated schema. Reviews are six filler words and two words of their class,
so a few epochs separate them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from models import features

__all__ = ["rows", "write_transformed"]

_GOOD, _BAD = ["great", "wonderful", "superb"], ["awful", "boring", "dull"]
_FILLER = ["the", "film", "plot", "acting", "a", "was", "and"]


def rows(count: int, seed: int, labeled: bool = True) -> list[dict[str, Any]]:
    """Raw examples in the schema's shape ([1] per feature); unlabeled rows
    (as in `unsup`) carry the UNLABELED sentinel and words of both classes."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        label = i % 2 if labeled else features.UNLABELED
        sentiment = _GOOD if label == 1 else _BAD if label == 0 else _GOOD + _BAD
        words = list(rng.choice(_FILLER, 6)) + list(rng.choice(sentiment, 2))
        rng.shuffle(words)
        out.append({features.TEXT: [" ".join(words).encode()], features.LABEL: [label],
                    features.RATING: [9 if label == 1 else 2 if label == 0 else 0],
                    features.REVIEW_ID: [f"x/{seed}/{i}".encode()],
                    features.MOVIE_ID: [f"tt{seed}{i}".encode()]})
    return out


def write_transformed(root: Path, transform_config: dict[str, Any], *, train: int = 128,
                      valid: int = 32, unsup: int = 0) -> None:
    """root/transform (the graph, vocabulary analysed on train) and
    root/<split>/data.gz for train, valid and (if `unsup`) unsup."""
    import tensorflow as tf
    import tensorflow_transform as tft
    import tensorflow_transform.beam as tft_beam
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2

    from models.preprocessing import preprocessing_fn
    from pipeline.fingerprints import SCHEMA_DIR

    schema = text_format.Parse((SCHEMA_DIR / "schema.pbtxt").read_text(), schema_pb2.Schema())
    metadata = tft.DatasetMetadata(schema)
    others = {"valid": rows(valid, 1)}
    if unsup:
        others["unsup"] = rows(unsup, 2, labeled=False)
    with tft_beam.Context(temp_dir=str(root / "tmp"), force_tf_compat_v1=False):
        (transformed_train, _), transform_fn = (rows(train, 0), metadata) | \
            tft_beam.AnalyzeAndTransformDataset(
                lambda inputs: preprocessing_fn(inputs, transform_config),
                output_record_batches=False)
        splits = {"train": transformed_train}
        for name, raw in others.items():
            splits[name], _ = ((raw, metadata), transform_fn) | tft_beam.TransformDataset(
                output_record_batches=False)
        _ = transform_fn | tft_beam.WriteTransformFn(str(root / "transform"))
    # The written metadata, as TFX's Transform uses: the in-flight one may
    # describe sparse outputs (NB-LR's n-gram row) before their final shape.
    coder = tft.coders.ExampleProtoCoder(
        tft.TFTransformOutput(str(root / "transform")).transformed_metadata.schema)
    options = tf.io.TFRecordOptions(compression_type="GZIP")
    for name, examples in splits.items():
        (root / name).mkdir()
        with tf.io.TFRecordWriter(str(root / name / "data.gz"), options) as writer:
            for example in examples:
                writer.write(coder.encode(example))
