"""Helpers for tests that run real TFX components on LocalDagRunner."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import tensorflow as tf
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2
from tfx import v1 as tfx


def run_components(components: list[Any], root: Path, name: str = "test") -> Path:
    """Runs `components` as a pipeline under `root`; returns the MLMD sqlite path."""
    db = root / "metadata.sqlite"
    pipeline = tfx.dsl.Pipeline(
        pipeline_name=name,
        pipeline_root=str(root / "pipeline"),
        components=components,
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            str(db)),
        beam_pipeline_args=["--direct_running_mode=in_memory", "--direct_num_workers=1"],
        enable_cache=True,
    )
    tfx.orchestration.LocalDagRunner().run(pipeline)
    return db


def store(db: Path) -> metadata_store.MetadataStore:
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = str(db)
    return metadata_store.MetadataStore(config)


def artifacts_of_type(db: Path, type_name: str) -> list[Any]:
    return list(store(db).get_artifacts_by_type(type_name))


def read_examples(split_dir: str) -> list[tf.train.Example]:
    files = tf.io.gfile.glob(f"{split_dir}/*.gz")
    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP")
    return [tf.train.Example.FromString(raw.numpy()) for raw in dataset]


def feature(example: tf.train.Example, key: str) -> Any:
    kind = example.features.feature[key]
    values: Iterable[Any] = kind.int64_list.value or kind.bytes_list.value
    value = next(iter(values))
    return value.decode("utf-8") if isinstance(value, bytes) else value


def node_states(db: Path) -> dict[str, list[str]]:
    """{pipeline node id: [state of each of its executions, oldest first]}."""
    mlmd = store(db)
    states = {}
    for context in mlmd.get_contexts_by_type("node"):
        node = context.name.split(".", 1)[-1]
        executions = sorted(mlmd.get_executions_by_context(context.id), key=lambda e: e.id)
        states[node] = [metadata_store_pb2.Execution.State.Name(e.last_known_state)
                        for e in executions]
    return states
