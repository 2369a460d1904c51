"""Beam executor of ImdbExampleGen: aclImdb reviews -> tf.Example TFRecords.

Overrides `GenerateExamplesByBeam` because the split logic is the dataset's,
not a hash of one input: `eval` is the official test/ set when present, else a
holdout of train/ grouped by movie; `valid` is always a movie-grouped holdout
of train/ (no movie on two sides of any split). Quarantined files
and decoding repairs are counted into `ingest_report.json` beside the splits;
a failed run removes every split it started writing.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
from typing import Any

import apache_beam as beam
import tensorflow as tf
from absl import logging
from google.protobuf import json_format, struct_pb2
from tfx.components.example_gen import base_example_gen_executor
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import proto_utils

from components.imdb_example_gen import reader
from models import features
from models.contract import EVAL, TRAIN, UNSUP, VALID

__all__ = ["REPORT_FILE", "Executor", "assign_split", "movie_bucket", "output_splits",
           "source_of", "to_example"]

REPORT_FILE = "ingest_report.json"
_MAX_LISTED = 100


def movie_bucket(key: str) -> float:
    """Deterministic position of a movie in [0, 1): the same on every machine."""
    return int(hashlib.sha256(key.encode("utf-8")).hexdigest()[:15], 16) / 16**15


def assign_split(review: reader.Review, valid_fraction: float,
                 eval_fraction: float | None) -> str:
    """Output split of a review. `eval_fraction` None: eval is the official test set.

    train/ movies fall into [0, 1) by hash: the first `eval_fraction` of that
    range is eval (only without an official test set), the next
    `valid_fraction` is valid, the rest is train. Grouping by movie keeps
    every review of a movie on one side.
    """
    if review.sentiment == "unsup":
        return UNSUP
    if review.split == "test":
        return EVAL
    bucket = movie_bucket(review.movie_id or review.key)
    held_out = eval_fraction or 0.0
    if bucket < held_out:
        return EVAL
    return VALID if bucket < held_out + valid_fraction else TRAIN


def output_splits(include_unsup: bool) -> list[str]:
    """The splits ImdbExampleGen writes, in order."""
    return [TRAIN, VALID, EVAL] + ([UNSUP] if include_unsup else [])


def to_example(review: reader.Review) -> bytes:
    """Serialized tf.Example with the features of models/features.py."""

    def _bytes(value: str) -> tf.train.Feature:
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode("utf-8")]))

    def _int(value: int) -> tf.train.Feature:
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))

    feature = {
        features.TEXT: _bytes(review.text),
        features.LABEL: _int(review.label),
        features.RATING: _int(review.rating),
        features.REVIEW_ID: _bytes(review.key),
        features.MOVIE_ID: _bytes(review.movie_id),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def source_of(exec_properties: dict[str, Any]) -> str:
    """The dataset this run reads: `input_base`, joined with the archive's
    name when the split patterns name an archive (`input_splits` makes every
    pattern the bare archive name; folder patterns always hold a `/`).

    Read from input_base rather than a copy in the custom config, so that a
    data location given at run time (a Kubeflow RuntimeParameter on
    input_base) is the one both the driver fingerprints and this executor reads.
    """
    config = example_gen_pb2.Input()
    proto_utils.json_to_proto(exec_properties[standard_component_specs.INPUT_CONFIG_KEY], config)
    base = str(exec_properties[standard_component_specs.INPUT_BASE_KEY]).rstrip("/")
    pattern = config.splits[0].pattern
    return base if "/" in pattern else posixpath.join(base, pattern)


def parse_custom_config(exec_properties: dict[str, Any]) -> dict[str, Any]:
    """The options ImdbExampleGen packs as a Struct into CustomConfig."""
    config = example_gen_pb2.CustomConfig()
    proto_utils.json_to_proto(exec_properties[standard_component_specs.CUSTOM_CONFIG_KEY], config)
    struct = struct_pb2.Struct()
    config.custom_config.Unpack(struct)
    return json_format.MessageToDict(struct)


class _Summary(beam.CombineFn):
    """Counts every record by output split and lists what was set aside."""

    def __init__(self, valid_fraction: float, eval_fraction: float | None) -> None:
        self._valid_fraction = valid_fraction
        self._eval_fraction = eval_fraction

    def create_accumulator(self) -> dict[str, Any]:
        return {"splits": {}, "folders": {}, "labels": {}, "replaced": [], "replaced_count": 0,
                "quarantined": []}

    def add_input(self, acc: dict[str, Any], record: reader.Record) -> dict[str, Any]:
        if isinstance(record, reader.Quarantined):
            acc["quarantined"].append({"path": record.path, "reason": record.reason})
            return acc
        split = assign_split(record, self._valid_fraction, self._eval_fraction)
        folder = f"{record.split}/{record.sentiment}"
        label_key = f"{split}/{record.label}"
        for table, key in (("splits", split), ("folders", folder), ("labels", label_key)):
            acc[table][key] = acc[table].get(key, 0) + 1
        if record.decoded_with_replacement:
            acc["replaced_count"] += 1
            if len(acc["replaced"]) < _MAX_LISTED:
                acc["replaced"].append(record.path)
        return acc

    def merge_accumulators(self, accs: Any) -> dict[str, Any]:
        merged = self.create_accumulator()
        for acc in accs:
            for table in ("splits", "folders", "labels"):
                for key, value in acc[table].items():
                    merged[table][key] = merged[table].get(key, 0) + value
            merged["replaced"] = (merged["replaced"] + acc["replaced"])[:_MAX_LISTED]
            merged["replaced_count"] += acc["replaced_count"]
            merged["quarantined"] += acc["quarantined"]
        return merged

    def extract_output(self, acc: dict[str, Any]) -> dict[str, Any]:
        acc["quarantined"].sort(key=lambda item: item["path"])
        return acc


def _write_report(summary: dict[str, Any], path: str, source: str, eval_source: str) -> None:
    report = {
        "source": source,
        "eval_source": eval_source,
        "examples": summary["splits"],
        "by_folder": summary["folders"],
        "by_split_and_label": summary["labels"],
        "decoded_with_replacement": {"count": summary["replaced_count"],
                                     "files": summary["replaced"]},
        "quarantined": {"count": len(summary["quarantined"]), "files": summary["quarantined"]},
    }
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.gfile.GFile(path, "w") as handle:
        json.dump(report, handle, indent=2, sort_keys=True)


class Executor(base_example_gen_executor.BaseExampleGenExecutor):
    """Reads the whole dataset once and partitions it into the output splits."""

    _report_path = ""  # set by Do: the report lives beside the splits it describes

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
        raise NotImplementedError("ImdbExampleGen builds all splits in GenerateExamplesByBeam")

    def GenerateExamplesByBeam(
        self, pipeline: beam.Pipeline, exec_properties: dict[str, Any]
    ) -> dict[str, beam.pvalue.PCollection]:
        options = parse_custom_config(exec_properties)
        source = source_of(exec_properties)
        with_test = reader.has_test_split(source)  # also fails fast on a bad layout/archive
        eval_fraction = None if with_test else float(options["eval_fraction"])
        valid_fraction = float(options["valid_fraction"])
        eval_source = ("official test/ set" if with_test
                       else f"{eval_fraction:.0%} of train/ movies (grouped by movie_id)")
        logging.info("ImdbExampleGen: reading %s; eval split = %s", source, eval_source)
        split_names = output_splits(bool(options["include_unsup"]))

        records = (
            pipeline
            | "Source" >> beam.Create([source])
            | "ReadReviews" >> beam.FlatMap(
                reader.read_reviews, include_test=with_test, include_unsup=options["include_unsup"])
        )
        _ = (
            records
            | "Summarise" >> beam.CombineGlobally(_Summary(valid_fraction, eval_fraction))
            | "WriteReport" >> beam.Map(_write_report, self._report_path, source, eval_source)
        )
        reviews = records | "DropQuarantined" >> beam.Filter(lambda r: isinstance(r, reader.Review))
        parts = reviews | "Partition" >> beam.Partition(
            lambda review, _n: split_names.index(
                assign_split(review, valid_fraction, eval_fraction)), len(split_names))
        return {
            name: parts[index] | f"ToExample[{name}]" >> beam.Map(to_example)
            for index, name in enumerate(split_names)
        }

    def Do(self, input_dict: dict[str, list[Any]], output_dict: dict[str, list[Any]],
           exec_properties: dict[str, Any]) -> None:
        examples = output_dict[standard_component_specs.EXAMPLES_KEY]
        artifact = artifact_utils.get_single_instance(examples)
        report_path = os.path.join(artifact.uri, REPORT_FILE)
        self._report_path = report_path
        try:
            super().Do(input_dict, output_dict, exec_properties)
        except BaseException:
            _remove_outputs(artifact.uri)
            raise
        with tf.io.gfile.GFile(report_path) as handle:
            report = json.load(handle)
        artifact.set_json_value_custom_property("ingest_report", report["examples"])
        artifact.set_int_custom_property("quarantined", report["quarantined"]["count"])
        artifact.set_int_custom_property("decoded_with_replacement",
                                         report["decoded_with_replacement"]["count"])
        _log_report(report, source_of(exec_properties), report_path)


def _remove_outputs(uri: str) -> None:
    """No partial split may be published: drop whatever the failed run wrote."""
    if tf.io.gfile.exists(uri):
        for name in tf.io.gfile.listdir(uri):
            path = os.path.join(uri, name.rstrip("/"))
            if tf.io.gfile.isdir(path):
                tf.io.gfile.rmtree(path)
            else:
                tf.io.gfile.remove(path)


def _log_report(report: dict[str, Any], source: str, report_path: str) -> None:
    logging.info("ImdbExampleGen: %s -> %s (eval = %s)", source, report["examples"],
                 report["eval_source"])
    replaced = report["decoded_with_replacement"]
    if replaced["count"]:
        logging.warning("ImdbExampleGen: %d review(s) were not valid UTF-8 and were decoded with "
                        "U+FFFD replacements, e.g. %s", replaced["count"], replaced["files"][:5])
    quarantined = report["quarantined"]
    if quarantined["count"]:
        logging.warning("ImdbExampleGen: %d file(s) QUARANTINED (not in any split), e.g. %s; "
                        "full list in %s", quarantined["count"],
                        [f"{q['path']}: {q['reason']}" for q in quarantined["files"][:5]],
                        report_path)
