"""The release's reports: metrics.json for tools, report.html + PNGs for people.

metrics.json holds the eval metrics overall and per slice, the thresholds,
the blessing and why, and the released version; report.html with its PNGs
shows the confusion matrix, the precision-recall curve and the training
curves. Both are rendered into memory here and published by the release
step together with the model they describe.
"""

from __future__ import annotations

import base64
import html
import io
from typing import Any

import tensorflow_model_analysis as tfma

from components.release import strict_json
from components.release.layout import METRICS_FILE, REPORT_FILE
from models.contract import CURVE_PREFIX

__all__ = ["collect_metrics", "validation", "render"]

_CANDIDATE = "candidate"


def _slice_name(slice_key: Any) -> str:
    parts = [f"{k}={v}" for k, v in slice_key] if slice_key else []
    return ",".join(parts) or "overall"


#: Why a metric has no value in a slice, by the slice's confusion matrix at 0.5.
_UNDEFINED = {
    "auc": ("a slice with one class only", lambda p, n, tp, fp: p == 0 or n == 0),
    "recall": ("no positive reviews in the slice", lambda p, n, tp, fp: p == 0),
    "precision": ("no review predicted positive", lambda p, n, tp, fp: tp + fp == 0),
    "f1_score": ("precision or recall undefined",
                 lambda p, n, tp, fp: p == 0 or tp + fp == 0),
}


def without_undefined(metrics: dict[str, Any]) -> dict[str, Any]:
    """One slice's metrics with those its confusion matrix leaves undefined
    set to None, and why under "undefined". TFMA writes them as numbers
    (AUC 0.0 on a slice of one class, recall NaN, F1 0.0), which reads as a
    measured failure; no matrix, no change."""
    cm = metrics.get("confusion_matrix@0.5")
    if not cm:
        return metrics
    positives, negatives = cm["tp"] + cm["fn"], cm["tn"] + cm["fp"]
    out, why = dict(metrics), {}
    for name, (reason, undefined) in _UNDEFINED.items():
        if name in out and undefined(positives, negatives, cm["tp"], cm["fp"]):
            out[name], why[name] = None, reason
    if why:
        out["undefined"] = why
    return out


def collect_metrics(evaluation_uri: str) -> dict[str, dict[str, Any]]:
    """{slice: {metric: value}} of the candidate model (not diffs, not
    baseline); undefined metrics are None (`without_undefined`)."""
    result: dict[str, dict[str, Any]] = {}
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
    return {name: without_undefined(metrics) for name, metrics in result.items()}


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
                "vs the served model")
    name = failure.metric_key.name + (" (change vs baseline)" if failure.metric_key.is_diff
                                      else "")
    value = failure.metric_value.double_value.value
    message = f" ({failure.message})" if failure.message else ""
    return f"{_slice_name(slice_key)}: {name} = {value:.4f}, {rule}{message}"


def validation(evaluation_uri: str) -> dict[str, Any]:
    result = tfma.load_validation_result(evaluation_uri)
    failures = [
        _failure(tfma.slicer.deserialize_slice_key(per_slice.slice_key), f)
        for per_slice in result.metric_validations_per_slice for f in per_slice.failures]
    return {"ok": bool(result.validation_ok), "failures": failures}


def _png(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return buffer.getvalue()


def _plots(overall: dict[str, Any], curve: list[tuple[float, float, float]],
           history: dict[str, list[float]]) -> dict[str, bytes]:
    """PNG bytes by name."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images = {}
    cm = overall.get("confusion_matrix@0.5")
    if cm:
        fig, ax = plt.subplots(figsize=(3.6, 3.2))
        grid = [[cm["tn"], cm["fp"]], [cm["fn"], cm["tp"]]]
        ax.imshow(grid, cmap="Blues")
        top = max(max(row) for row in grid) or 1
        for i in range(2):
            for j in range(2):  # white on the dark cells, black on the light ones
                ax.text(j, i, f"{int(grid[i][j])}", ha="center", va="center",
                        color="white" if grid[i][j] > top / 2 else "black")
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
    steps = history.get(f"{CURVE_PREFIX}step")
    if steps:
        images["learning_curve"] = _learning_curve(plt, steps, history)
    pngs = {}
    for name, fig in images.items():
        pngs[name] = _png(fig)
        plt.close(fig)
    return pngs


def _learning_curve(plt: Any, steps: list[float], history: dict[str, list[float]]) -> Any:
    """valid accuracy and loss against training steps (the Trainer's
    --curve_every_steps points), training minutes on a second axis."""
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2))
    for ax, metric in zip(axes, ("accuracy", "loss"), strict=True):
        ax.plot(steps, history.get(f"{CURVE_PREFIX}{metric}", []), marker="o")
        ax.set_xlabel("training step")
        ax.set_title(f"valid {metric}")
    seconds = history.get(f"{CURVE_PREFIX}seconds", [])
    if len(seconds) == len(steps) and steps[-1] > 0 and seconds[-1] > 0:
        per_step = seconds[-1] / steps[-1] / 60
        axes[0].secondary_xaxis("top", functions=(lambda x: x * per_step,
                                                  lambda m: m / per_step)).set_xlabel(
            "training minutes (this host)")
    return fig


def _html(summary: dict[str, Any], images: dict[str, bytes]) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{'n/a' if v is None else f'{v:.4f}'}</td></tr>"
        for k, v in summary["metrics"].get("overall", {}).items()
        if v is None or isinstance(v, float))
    status = "BLESSED" if summary["blessed"] else "NOT BLESSED"
    figures = "".join(f'<figure><img src="data:image/png;base64,{base64.b64encode(b).decode()}"'
                      f' alt="{n}"><figcaption>{n.replace("_", " ")}</figcaption></figure>'
                      for n, b in images.items())
    failures = "".join(f"<li>{html.escape(f)}</li>" for f in summary["validation"]["failures"])
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>IMDb sentiment run"
            f"</title></head><body><h1>{status}</h1><p>released version: "
            f"{summary['released_version']}</p><ul>{failures}</ul><table>{rows}</table>"
            f"{figures}</body></html>")


def render(summary: dict[str, Any], evaluation_uri: str) -> dict[str, bytes]:
    """{file name: bytes}: metrics.json, report.html and one PNG per plot."""
    images = _plots(summary["metrics"].get("overall", {}), _pr_curve(evaluation_uri),
                    summary.get("training_history", {}))
    files = {f"{name}.png": png for name, png in images.items()}
    files[REPORT_FILE] = _html(summary, images).encode()
    files[METRICS_FILE] = strict_json.dumps(summary, indent=2, sort_keys=True).encode()
    return files
