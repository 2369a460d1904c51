"""AnomaliesGate: stops the run when ExampleValidator found anomalies.

ExampleValidator only records anomalies; this gate turns them into a failed
run with a readable message, and passes the schema on to Transform, so
Transform cannot start on data that broke the schema.
"""

# No `from __future__ import annotations`: TFX's @component reads real type hints.
import os

from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx import v1 as tfx
from tfx.types import artifact_utils
from tfx.utils import io_utils

from components.errors import UserFacingError

__all__ = ["AnomaliesGate", "DataValidationError", "describe_anomalies"]

_ANOMALIES_FILE = "SchemaDiff.pb"


class DataValidationError(UserFacingError, RuntimeError):
    """The examples do not match the curated schema."""


def describe_anomalies(split: str, anomalies: anomalies_pb2.Anomalies) -> list[str]:
    """One readable line per anomalous feature."""
    lines = []
    for feature, info in sorted(anomalies.anomaly_info.items()):
        reasons = "; ".join(r.description or r.short_description for r in info.reason)
        lines.append(f"split '{split}', feature '{feature}': {info.short_description} ({reasons})")
    if anomalies.HasField("dataset_anomaly_info"):
        info = anomalies.dataset_anomaly_info
        lines.append(f"split '{split}', dataset: {info.short_description}")
    return lines


@tfx.dsl.components.component
def AnomaliesGate(
    anomalies: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ExampleAnomalies],
    schema: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Schema],
    validated_schema: tfx.dsl.components.OutputArtifact[tfx.types.standard_artifacts.Schema],
) -> None:
    """Raises DataValidationError listing every anomaly; else copies the schema."""
    problems: list[str] = []
    for split in artifact_utils.decode_split_names(anomalies.split_names):
        path = os.path.join(artifact_utils.get_split_uri([anomalies], split), _ANOMALIES_FILE)
        parsed = anomalies_pb2.Anomalies()
        parsed.ParseFromString(io_utils.read_bytes_file(path))
        problems += describe_anomalies(split, parsed)
    if problems:
        raise DataValidationError(
            "ExampleValidator found anomalies against the curated schema "
            "(pipeline/schema/schema.pbtxt); fix the data or the schema:\n  "
            + "\n  ".join(problems))
    io_utils.copy_dir(schema.uri, validated_schema.uri)
