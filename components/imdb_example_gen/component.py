"""ImdbExampleGen: a FileBasedExampleGen whose executor understands aclImdb.

Built on FileBasedExampleGen so the driver fingerprints the input files: a
changed dataset re-runs ingestion, an unchanged one is cached. Our driver adds
the `urls_*.txt` files (they decide each review's movie, hence its split) to
that fingerprint, and the ingestion code's fingerprint rides in the custom
config, so editing either re-runs ingestion too.

Building the component does no I/O: whether the source is an archive is read
from its name, so the pipeline factory stays pure and the same definition
compiles for a cluster where the data sits on object storage.
"""

from __future__ import annotations

import posixpath
from typing import Any

from google.protobuf import any_pb2, struct_pb2
from tfx.components import FileBasedExampleGen
from tfx.components.example_gen import driver
from tfx.components.example_gen import utils as example_gen_utils
from tfx.dsl.components.base import executor_spec
from tfx.proto import example_gen_pb2
from tfx.types import standard_component_specs
from tfx.utils import io_utils, proto_utils

from components.imdb_example_gen import executor
from models.contract import EVAL, TRAIN, UNSUP, VALID

__all__ = ["ARCHIVE_SUFFIXES", "ImdbDriver", "ImdbExampleGen", "imdb_example_gen",
           "input_splits", "is_archive"]

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")
# Globs matching only pos/ and neg/ (not unsup/), for fingerprinting.
_LABELED = "[pn][eo][gs]/*.txt"
_URLS = "*/urls_*.txt"


def is_archive(source: str) -> bool:
    """Whether `source` names the aclImdb archive rather than its folder."""
    return source.endswith(ARCHIVE_SUFFIXES)


def input_splits(source: str, include_unsup: bool) -> tuple[str, example_gen_pb2.Input]:
    """(input_base, Input) whose patterns match exactly the files each split
    is read from, so the driver's fingerprint covers them. `source` is the
    archive or the aclImdb/ root folder itself. For an archive every split
    is the archive."""
    source = source.rstrip("/")
    if is_archive(source):
        base, name = posixpath.split(source)
        patterns = dict.fromkeys((TRAIN, VALID, EVAL, UNSUP), name)
    else:
        base = source
        # eval matches nothing when there is no test/ folder: it is then a
        # holdout of train/, whose files the train pattern already covers.
        patterns = {TRAIN: f"train/{_LABELED}", VALID: f"train/{_LABELED}",
                    EVAL: f"test/{_LABELED}", UNSUP: "train/unsup/*.txt"}
    return base, example_gen_pb2.Input(splits=[
        example_gen_pb2.Input.Split(name=n, pattern=patterns[n])
        for n in executor.output_splits(include_unsup)])


class ImdbDriver(driver.FileBasedDriver):
    """The stock fingerprint of every split's files, plus the urls files."""

    def resolve_exec_properties(self, exec_properties: dict[str, Any], pipeline_info: Any,
                                component_info: Any) -> dict[str, Any]:
        resolved = super().resolve_exec_properties(exec_properties, pipeline_info,
                                                   component_info)
        config = example_gen_pb2.Input()
        proto_utils.json_to_proto(resolved[standard_component_specs.INPUT_CONFIG_KEY], config)
        if not any(is_archive(split.pattern) for split in config.splits):
            base = resolved[standard_component_specs.INPUT_BASE_KEY]
            urls = io_utils.generate_fingerprint("urls", posixpath.join(base, _URLS))
            key = example_gen_utils.FINGERPRINT_PROPERTY_NAME
            resolved[key] = f"{resolved[key]}\n{urls}"
        return resolved


class ImdbExampleGen(FileBasedExampleGen):
    """FileBasedExampleGen with the urls-aware driver."""

    DRIVER_CLASS = ImdbDriver


def imdb_example_gen(source: str, *, valid_fraction: float, eval_fraction: float,
                     include_unsup: bool, code_version: str = "",
                     input_base: Any = None) -> ImdbExampleGen:
    """The ingestion component. `eval_fraction` applies only when the source
    has no official test/ set; `code_version` (a fingerprint of the ingestion
    code) joins the cache key. `input_base` replaces the folder part of
    `source` (the aclImdb/ folder, or the archive's folder) with a value given
    at run time, e.g. a Kubeflow RuntimeParameter: the executor reads the
    source from input_base and the split patterns, not from `source`."""
    base, inputs = input_splits(source, include_unsup)
    struct = struct_pb2.Struct()
    struct.update({"valid_fraction": valid_fraction,
                   "eval_fraction": eval_fraction, "include_unsup": include_unsup,
                   "code": code_version})
    packed = any_pb2.Any()
    packed.Pack(struct)
    return ImdbExampleGen(
        input_base=base if input_base is None else input_base,
        input_config=inputs,
        custom_config=example_gen_pb2.CustomConfig(custom_config=packed),
        custom_executor_spec=executor_spec.BeamExecutorSpec(executor.Executor),
    ).with_id("ImdbExampleGen")
