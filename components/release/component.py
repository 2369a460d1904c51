"""The two release components: ServedBaseline before evaluation, Release at the end.

ServedBaseline hands the Evaluator the model TF Serving actually serves (the
highest version in the serving base dir) as its baseline, so the
no-regression threshold is measured against it, also when the ML Metadata
store is new or was deleted while `serving/` was kept. With nothing served
yet, the baseline is the candidate itself: the change threshold then passes
trivially and the absolute floor alone decides.

Release runs last, after every check (blessing, TFLite agreement, infra
validation): it publishes the candidate as a new version with its TFLite
files and reports, all or nothing (publish.py), or nothing at all; and it
records the run's verdict in `OUTPUT/last_run.json` either way.

Both depend on the state of the output folder, not only on their inputs, so
the pipeline gives them a per-run token that keeps them out of the cache.
"""

# No `from __future__ import annotations`: TFX's @component reads real type hints.
import datetime
import json
import posixpath
from collections.abc import Callable
from typing import Any

import tensorflow as tf
from absl import logging
from tfx import v1 as tfx
from tfx.types import artifact
from tfx.utils import io_utils, path_utils

from components.infra_validation import VALIDATED_MODEL_DIR, InfraValidationError
from components.release import publish, report, strict_json
from components.release.layout import LAST_RUN_FILE, serving_dir
from components.tflite_converter import convert as conv
from components.tflite_converter.component import (
    CHECK_REASON,
    CHECK_STATUS,
    MANIFEST,
    PASSED,
    TFLiteModel,
)
from models import contract

__all__ = ["Release", "ReleaseRecord", "ServedBaseline", "write_last_run"]


class ReleaseRecord(artifact.Artifact):
    """What the release step did: released, unchanged or not_blessed, and the version."""

    TYPE_NAME = "imdb.ReleaseRecord"


def write_last_run(output_dir: str, verdict: dict[str, Any]) -> None:
    """OUTPUT/last_run.json: this run's outcome, released or not (atomic rename)."""
    tf.io.gfile.makedirs(output_dir)
    final = posixpath.join(output_dir, LAST_RUN_FILE)
    staged = final + ".tmp"
    with tf.io.gfile.GFile(staged, "w") as handle:
        handle.write(strict_json.dumps(verdict, indent=2, sort_keys=True))
    tf.io.gfile.rename(staged, final, overwrite=True)


@tfx.dsl.components.component
def ServedBaseline(
    model: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Model],
    baseline: tfx.dsl.components.OutputArtifact[tfx.types.standard_artifacts.Model],
    serving_dir: tfx.dsl.components.Parameter[str],
    run_token: tfx.dsl.components.Parameter[str] = "",
) -> None:
    """Copies the served version (else the candidate) into `baseline`."""
    del run_token  # only keeps this step out of the cache
    served = publish.latest_version(serving_dir)
    source = (posixpath.join(serving_dir, str(served)) if served is not None
              else path_utils.serving_model_path(model.uri))
    io_utils.copy_dir(source, path_utils.serving_model_dir(baseline.uri))
    baseline.set_int_custom_property("served_version", served or 0)
    baseline.set_string_custom_property("source", source)
    logging.info("ServedBaseline: baseline = %s", f"served version {served}" if served
                 else "the candidate itself (nothing served yet)")


def _require_checks(tflite: TFLiteModel, infra_blessing: Any) -> None:
    """Raises the user-facing error of the first check the candidate failed."""
    if tflite.get_string_custom_property(CHECK_STATUS) != PASSED:
        raise conv.DisagreementError(tflite.get_string_custom_property(CHECK_REASON))
    if infra_blessing.get_int_custom_property("blessed") != 1:
        reason = json.loads(infra_blessing.get_string_custom_property("result"))["reason"]
        raise InfraValidationError(f"infra validation failed: the candidate served by "
                                   f"serving.server {reason}; nothing was released")


def _history(model_run: Any) -> dict[str, list[float]]:
    path = posixpath.join(model_run.uri, contract.HISTORY_FILE)
    return json.loads(io_utils.read_string_file(path)) if tf.io.gfile.exists(path) else {}


def _tflite_summary(tflite: TFLiteModel) -> dict[str, Any]:
    if tflite.get_string_custom_property(CHECK_STATUS) != PASSED:
        return {"check": "failed", "reason": tflite.get_string_custom_property(CHECK_REASON)}
    manifest = json.loads(io_utils.read_string_file(posixpath.join(tflite.uri, MANIFEST)))
    return {"check": PASSED, "variants": manifest["variants"],
            "agreement_split": manifest["agreement_split"]}


def _stamp_manifest(version: int) -> Callable[[str], None]:
    """Writes `version` into the manifest of staged TFLite files."""
    def stamp(staged: str) -> None:
        path = posixpath.join(staged, MANIFEST)
        manifest = json.loads(io_utils.read_string_file(path))
        manifest["version"] = version
        io_utils.write_string_file(path, strict_json.dumps(manifest, indent=2))
    return stamp


@tfx.dsl.components.component
def Release(
    model: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Model],
    blessing: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ModelBlessing],
    evaluation: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ModelEvaluation],
    baseline: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Model],
    tflite: tfx.dsl.components.InputArtifact[TFLiteModel],
    infra_blessing: tfx.dsl.components.InputArtifact[
        tfx.types.standard_artifacts.InfraBlessing],
    model_run: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ModelRun],
    release: tfx.dsl.components.OutputArtifact[ReleaseRecord],
    output_dir: tfx.dsl.components.Parameter[str],
    model_name: tfx.dsl.components.Parameter[str],
    thresholds: tfx.dsl.components.Parameter[str],
    run_token: tfx.dsl.components.Parameter[str] = "",
) -> None:
    """Publishes the blessed, checked candidate as a new version, or nothing.

    The checks record their verdicts rather than fail on their own, so that an
    unblessed candidate ends as today (exit 0, not released) even when, say,
    its near-0.5 probabilities flip under int8; a blessed candidate that
    failed a check stops here with that check's error (exit 1)."""
    blessed = blessing.get_int_custom_property("blessed") == 1
    if blessed:
        _require_checks(tflite, infra_blessing)
    served_dir = serving_dir(output_dir, model_name)
    latest = publish.latest_version(served_dir)
    # The warmed copy that infra validation served: what is validated is what is released.
    candidate_dir = posixpath.join(infra_blessing.uri, VALIDATED_MODEL_DIR)
    summary: dict[str, Any] = {
        "model_name": model_name,
        "metrics": report.collect_metrics(evaluation.uri),
        "thresholds": json.loads(thresholds),
        "blessed": blessed,
        "validation": report.validation(evaluation.uri),
        "baseline_version": baseline.get_int_custom_property("served_version") or None,
        "training_history": _history(model_run),
        "tflite": _tflite_summary(tflite),
        "infra_validation": json.loads(infra_blessing.get_string_custom_property("result")),
    }
    verdict = {"run_token": run_token, "blessed": blessed,
               "validation": summary["validation"], "metrics": summary["metrics"],
               "served_version_before": latest,
               "checks": {"tflite": summary["tflite"].get("check"),
                          "infra_validation": summary["infra_validation"]["ok"]}}
    if not blessed:
        status, version = "not_blessed", None
    elif latest is not None and publish.saved_model_fingerprint(candidate_dir) == \
            publish.saved_model_fingerprint(posixpath.join(served_dir, str(latest))):
        status, version = "unchanged", latest
    else:
        status = "released"
        version = publish.next_version(publish.list_versions(served_dir), publish.now())
        summary["released_version"] = version
        summary["released_at"] = datetime.datetime.now(datetime.UTC).isoformat()
        publish.publish_release(
            output_dir=output_dir, model_name=model_name, saved_model_dir=candidate_dir,
            tflite_files_dir=tflite.uri, reports=report.render(summary, evaluation.uri),
            version=version, prepare_tflite=_stamp_manifest(version))
    release.set_string_custom_property("status", status)
    release.set_int_custom_property("version", version or 0)
    write_last_run(output_dir, {**verdict, "status": status, "version": version})
    logging.info("Release: %s%s", status, f" (version {version})" if version else "")
