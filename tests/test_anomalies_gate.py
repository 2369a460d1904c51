"""ExampleValidator anomalies stop the run with a readable message."""

from __future__ import annotations

import pytest
from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx import v1 as tfx

from components.anomalies_gate import AnomaliesGate, describe_anomalies
from components.imdb_example_gen.component import imdb_example_gen
from pipeline.fingerprints import SCHEMA_DIR
from tests.tfx_helpers import node_states, run_components


def test_anomalies_are_described_one_line_per_feature():
    anomalies = anomalies_pb2.Anomalies()
    info = anomalies.anomaly_info["rating"]
    info.short_description = "Out-of-range values"
    info.reason.add(description="Unexpectedly large value: 10.")
    assert describe_anomalies("eval", anomalies) == [
        "split 'eval', feature 'rating': Out-of-range values (Unexpectedly large value: 10.)"]


def _validation_components(source: str, schema_dir: str) -> list:
    example_gen = imdb_example_gen(source, valid_fraction=0.3, eval_fraction=0.2,
                                   include_unsup=False)
    statistics = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
    schema = tfx.dsl.Importer(source_uri=schema_dir,
                              artifact_type=tfx.types.standard_artifacts.Schema).with_id("schema")
    validator = tfx.components.ExampleValidator(statistics=statistics.outputs["statistics"],
                                                schema=schema.outputs["result"])
    gate = AnomaliesGate(anomalies=validator.outputs["anomalies"], schema=schema.outputs["result"])
    return [example_gen, statistics, schema, validator, gate]


def test_clean_data_passes_the_curated_schema(tiny_corpus, tmp_path):
    db = run_components(_validation_components(str(tiny_corpus), str(SCHEMA_DIR)), tmp_path)
    assert node_states(db)["AnomaliesGate"] == ["COMPLETE"]


def test_data_breaking_the_schema_stops_the_run_naming_split_and_feature(tiny_corpus, tmp_path):
    """A schema that allows ratings 1-5 only: the positive reviews (7-10) break it."""
    strict = tmp_path / "strict"
    strict.mkdir()
    (strict / "schema.pbtxt").write_text(
        (SCHEMA_DIR / "schema.pbtxt").read_text().replace("min: 1 max: 10", "min: 1 max: 5"))
    with pytest.raises(Exception, match=r"split 'train', feature 'rating': Out-of-range values"):
        run_components(_validation_components(str(tiny_corpus), str(strict)), tmp_path / "run")
