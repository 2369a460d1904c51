"""Where a run's outputs land under OUTPUT (pure: no TensorFlow, no I/O)."""

from __future__ import annotations

import posixpath

__all__ = ["LAST_RUN_FILE", "METRICS_FILE", "REPORT_FILE", "serving_dir", "tflite_dir"]

#: The released model's metrics: rewritten only by a release.
METRICS_FILE = "metrics.json"
#: The released model's report for people (with PNGs beside it).
REPORT_FILE = "report.html"
#: This run's verdict, whatever it was: released, unchanged, not blessed, failed.
LAST_RUN_FILE = "last_run.json"


def serving_dir(output_dir: str, model_name: str) -> str:
    """The TF Serving model base dir: one integer-named folder per version."""
    return posixpath.join(output_dir, "serving", model_name)


def tflite_dir(output_dir: str) -> str:
    """One folder per released version with the mobile artefacts."""
    return posixpath.join(output_dir, "tflite")
