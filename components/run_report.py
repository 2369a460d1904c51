"""RunReport: OUTPUT/metrics.json and OUTPUT/report.html after every run.

metrics.json is what tools read (eval metrics overall and per slice, the
thresholds, blessed or not and why, the pushed version); report.html with its
PNGs is what people look at (confusion matrix, precision-recall curve,
training curves).
"""

# No `from __future__ import annotations`: TFX's @component reads real type hints.
import base64
import html
import io
import json
import os
from typing import Any

import tensorflow as tf
import tensorflow_model_analysis as tfma
from absl import logging
from tfx import v1 as tfx

from components.dedup_pusher import DUPLICATE_OF
from components.tflite_converter.component import MANIFEST, TFLiteModel
from models.trainer import HISTORY_FILE

__all__ = ["RunReport", "METRICS_FILE", "REPORT_FILE", "collect_metrics"]

METRICS_FILE, REPORT_FILE = "metrics.json", "report.html"
_CANDIDATE = "candidate"


def _slice_name(slice_key: Any) -> str:
    parts = [f"{k}={v}" for k, v in slice_key] if slice_key else []
    return ",".join(parts) or "overall"


def collect_metrics(evaluation_uri: str) -> dict[str, dict[str, float]]:
    """{slice: {metric: value}} of the candidate model (not diffs, not baseline)."""
    result: dict[str, dict[str, float]] = {}
    for metrics in tfma.load_metrics(evaluation_uri):
        name = _slice_name(tfma.slicer.deserialize_slice_key(metrics.slice_key))
        for entry in metrics.metric_keys_and_values:
            key = entry.key
            if key.is_diff or key.model_name not in ("", _CANDIDATE):
                continue
            if entry.value.HasField("double_value"):
                result.setdefault(name, {})[key.name] = entry.value.double_value.value
            elif entry.value.HasField("confusion_matrix_at_thresholds"):
                for matrix in entry.value.confusion_matrix_at_thresholds.matrices:
                    result.setdefault(name, {})["confusion_matrix@0.5"] = {  # type: ignore[assignment]
                        "tp": matrix.true_positives, "fp": matrix.false_positives,
                        "tn": matrix.true_negatives, "fn": matrix.false_negatives}
    return result


def _pr_curve(evaluation_uri: str) -> list[tuple[float, float, float]]:
    for plots in tfma.load_plots(evaluation_uri):
        if tfma.slicer.deserialize_slice_key(plots.slice_key):
            continue
        for entry in plots.plot_keys_and_values:
            if entry.key.model_name not in ("", _CANDIDATE):
                continue
            matrices = entry.value.confusion_matrix_at_thresholds.matrices
            if matrices:
                return [(m.threshold, m.precision, m.recall) for m in matrices]
    return []


def _failure(slice_key: Any, failure: Any) -> str:
    """E.g. `overall: binary_accuracy = 0.5012 fails change absolute >= -0.01 vs baseline`."""
    threshold = failure.metric_threshold
    if threshold.HasField("value_threshold"):
        rule = f"needs >= {threshold.value_threshold.lower_bound.value:g}"
    else:
        rule = (f"may drop at most {-threshold.change_threshold.absolute.value:g} "
                "vs the latest blessed model")
    name = failure.metric_key.name + (" (change vs baseline)" if failure.metric_key.is_diff
                                      else "")
    value = failure.metric_value.double_value.value
    message = f" ({failure.message})" if failure.message else ""
    return f"{_slice_name(slice_key)}: {name} = {value:.4f}, {rule}{message}"


def _validation(evaluation_uri: str) -> dict[str, Any]:
    result = tfma.load_validation_result(evaluation_uri)
    failures = [
        _failure(tfma.slicer.deserialize_slice_key(per_slice.slice_key), f)
        for per_slice in result.metric_validations_per_slice for f in per_slice.failures]
    return {"ok": bool(result.validation_ok), "failures": failures}


def _png(figure: Any) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode()


def _plots(overall: dict[str, Any], curve: list[tuple[float, float, float]],
           history: dict[str, list[float]], out_dir: str) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images = {}
    cm = overall.get("confusion_matrix@0.5")
    if cm:
        fig, ax = plt.subplots(figsize=(3.6, 3.2))
        grid = [[cm["tn"], cm["fp"]], [cm["fn"], cm["tp"]]]
        ax.imshow(grid, cmap="Blues")
        for i in range(2):
            for j in range(2):
                ax.text(j, i, f"{int(grid[i][j])}", ha="center", va="center")
        ax.set_xticks([0, 1], ["pred neg", "pred pos"])
        ax.set_yticks([0, 1], ["true neg", "true pos"])
        ax.set_title("Confusion matrix @0.5")
        images["confusion_matrix"] = fig
    if curve:
        fig, ax = plt.subplots(figsize=(4, 3.2))
        points = [(r, p) for _, p, r in curve if p > 0 or r > 0]
        ax.plot([r for r, _ in points], [p for _, p in points])
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_title("Precision-recall (eval)")
        images["precision_recall"] = fig
    if history:
        fig, axes = plt.subplots(1, 2, figsize=(8, 3.2))
        for ax, metric in zip(axes, ("loss", "accuracy"), strict=True):
            for prefix, label in (("", "train"), ("val_", "validation")):
                values = history.get(prefix + metric)
                if values:
                    ax.plot(range(1, len(values) + 1), values, marker="o", label=label)
            ax.set_xlabel("epoch")
            ax.set_title(metric)
            ax.legend()
        images["training_curves"] = fig
    encoded = {}
    for name, fig in images.items():
        fig.savefig(os.path.join(out_dir, f"{name}.png"), dpi=100, bbox_inches="tight")
        encoded[name] = _png(fig)
        plt.close(fig)
    return encoded


def _html(summary: dict[str, Any], images: dict[str, str]) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{v:.4f}</td></tr>"
        for k, v in summary["metrics"].get("overall", {}).items() if isinstance(v, float))
    status = "BLESSED" if summary["blessed"] else "NOT BLESSED"
    figures = "".join(f'<figure><img src="data:image/png;base64,{b}" alt="{n}">'
                      f"<figcaption>{n.replace('_', ' ')}</figcaption></figure>"
                      for n, b in images.items())
    failures = "".join(f"<li>{html.escape(f)}</li>" for f in summary["validation"]["failures"])
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>IMDb sentiment run"
            f"</title></head><body><h1>{status}</h1><p>pushed version: "
            f"{summary['pushed_version']}</p><ul>{failures}</ul><table>{rows}</table>"
            f"{figures}</body></html>")


def _tflite_summary(tflite: TFLiteModel) -> dict[str, Any]:
    manifest_path = os.path.join(tflite.uri, MANIFEST)
    summary: dict[str, Any] = {"status": tflite.get_string_custom_property("status")}
    if tf.io.gfile.exists(manifest_path):
        manifest = json.loads(tf.io.gfile.GFile(manifest_path).read())
        summary["version"] = manifest["version"]
        summary["variants"] = manifest["variants"]
    return summary


@tfx.dsl.components.component
def RunReport(
    evaluation: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ModelEvaluation],
    blessing: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ModelBlessing],
    pushed_model: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.PushedModel],
    model_run: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ModelRun],
    tflite: tfx.dsl.components.InputArtifact[TFLiteModel],
    output_dir: tfx.dsl.components.Parameter[str],
    thresholds: tfx.dsl.components.Parameter[str],
) -> None:
    """Writes metrics.json, report.html and the PNGs into output_dir."""
    metrics = collect_metrics(evaluation.uri)
    blessed = blessing.get_int_custom_property("blessed") == 1
    pushed = pushed_model.get_int_custom_property("pushed") == 1
    duplicate = pushed_model.get_string_custom_property(DUPLICATE_OF)
    history_path = os.path.join(model_run.uri, HISTORY_FILE)
    history = (json.loads(tf.io.gfile.GFile(history_path).read())
               if tf.io.gfile.exists(history_path) else {})
    summary = {
        "metrics": metrics,
        "thresholds": json.loads(thresholds),
        "blessed": blessed,
        "validation": _validation(evaluation.uri),
        "pushed": pushed,
        "pushed_version": (int(pushed_model.get_string_custom_property("pushed_version"))
                           if pushed else (int(duplicate) if duplicate else None)),
        "already_pushed": bool(duplicate),
        "training_history": history,
        "tflite": _tflite_summary(tflite),
    }
    tf.io.gfile.makedirs(output_dir)
    images = _plots(metrics.get("overall", {}), _pr_curve(evaluation.uri), history, output_dir)
    with tf.io.gfile.GFile(os.path.join(output_dir, METRICS_FILE), "w") as handle:
        json.dump(summary, handle, indent=2, sort_keys=True)
    with tf.io.gfile.GFile(os.path.join(output_dir, REPORT_FILE), "w") as handle:
        handle.write(_html(summary, images))
    logging.info("RunReport: wrote %s", os.path.join(output_dir, METRICS_FILE))
