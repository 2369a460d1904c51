"""ImdbExampleGen: a FileBasedExampleGen whose executor understands aclImdb.

Built on FileBasedExampleGen so the standard driver fingerprints the input
files: a changed dataset re-runs ingestion, an unchanged one is cached.
"""

from __future__ import annotations

import os
from pathlib import Path

from google.protobuf import any_pb2, struct_pb2
from tfx.components import FileBasedExampleGen
from tfx.dsl.components.base import executor_spec
from tfx.proto import example_gen_pb2

from components.imdb_example_gen import executor, reader

__all__ = ["imdb_example_gen", "input_splits"]

# Globs matching only pos/ and neg/ (not unsup/), for fingerprinting.
_LABELED = "[pn][eo][gs]/*.txt"


def input_splits(source: str, include_unsup: bool) -> tuple[str, example_gen_pb2.Input]:
    """(input_base, Input) whose patterns match exactly the files each split
    is read from, so the driver's fingerprint covers them. For an archive every
    split is the archive itself."""
    path = Path(source).resolve()
    if path.is_dir():
        root = path if (path / "train").is_dir() else path / reader.ROOT_NAME
        eval_dir = "test" if (root / "test").is_dir() else "train"
        patterns = {executor.TRAIN: f"train/{_LABELED}", executor.EVAL: f"{eval_dir}/{_LABELED}",
                    executor.UNSUP: "train/unsup/*.txt"}
        base = str(root)
    else:
        patterns = dict.fromkeys((executor.TRAIN, executor.EVAL, executor.UNSUP), path.name)
        base = str(path.parent)
    names = [executor.TRAIN, executor.EVAL] + ([executor.UNSUP] if include_unsup else [])
    return base, example_gen_pb2.Input(
        splits=[example_gen_pb2.Input.Split(name=n, pattern=patterns[n]) for n in names])


def imdb_example_gen(source: str, eval_fraction: float, include_unsup: bool) -> FileBasedExampleGen:
    """The ingestion component. `eval_fraction` applies only when the source
    has no official test/ set."""
    base, inputs = input_splits(source, include_unsup)
    struct = struct_pb2.Struct()
    struct.update({"source": os.path.abspath(source), "eval_fraction": eval_fraction,
                   "include_unsup": include_unsup})
    packed = any_pb2.Any()
    packed.Pack(struct)
    return FileBasedExampleGen(
        input_base=base,
        input_config=inputs,
        custom_config=example_gen_pb2.CustomConfig(custom_config=packed),
        custom_executor_spec=executor_spec.BeamExecutorSpec(executor.Executor),
    ).with_id("ImdbExampleGen")
