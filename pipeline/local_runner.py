"""Runs the pipeline locally: LocalDagRunner with an SQLite ML Metadata store.

    python -m pipeline.local_runner --help

Thin by design: parse the config, split the CPU for MirroredStrategy (this
must happen before TensorFlow initialises), resolve the dataset, run
`create_pipeline(config)`, then print the metrics and where everything landed.
"""

from __future__ import annotations

import dataclasses
import json
import logging as std_logging
import os
import resource
import sys
import time
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main"]

_BANNER = "=" * 78


class _Progress(std_logging.Filter):
    """Lets through one line per component start/finish (with its wall time),
    our own modules' messages and every warning; drops the INFO flood."""

    _OURS = tuple(str(Path(__file__).resolve().parent.parent / package) + os.sep
                  for package in ("components", "models", "pipeline"))
    # Known, harmless warnings TFX 1.21 prints many times per run.
    _NOISE = (
        "ArtifactQuery.property_predicate is not supported",
        "Fallback to non-ZetaSQL contexts execution query",
        "`custom_executor_spec` is deprecated",
        "Tables initialized inside a tf.function",
        "Examples artifact does not have payload_format",
    )

    def __init__(self) -> None:
        super().__init__()
        self.started: dict[str, float] = {}
        self.durations: dict[str, float] = {}

    def filter(self, record: std_logging.LogRecord) -> bool:
        message = record.getMessage()
        if message.startswith("Component ") and message.endswith(" is running."):
            name = message[len("Component "):-len(" is running.")]
            self.started[name] = time.monotonic()
            record.msg, record.args = f"▶ {name} ...", ()
            return True
        if message.startswith("Component ") and message.endswith(" is finished."):
            name = message[len("Component "):-len(" is finished.")]
            self.durations[name] = time.monotonic() - self.started.get(name, time.monotonic())
            record.msg, record.args = f"✔ {name} ({self.durations[name]:.1f} s)", ()
            return True
        if record.levelno >= std_logging.WARNING:
            return not message.startswith(self._NOISE)
        return os.path.abspath(record.pathname).startswith(self._OURS)


def _install_progress_logging() -> _Progress:
    """TFX and our modules log through absl's Python logger: give it its own
    filtered handler (libraries that reconfigure the root logger mid-run,
    as Beam does, then cannot swallow the progress lines)."""
    progress = _Progress()
    handler = std_logging.StreamHandler(sys.stderr)
    handler.setFormatter(std_logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    handler.addFilter(progress)
    absl_logger = std_logging.getLogger("absl")
    absl_logger.handlers = [handler]
    absl_logger.propagate = False
    # Through absl's verbosity flag, not setLevel: libraries that parse absl
    # flags mid-run (tft_beam does) would reset a plain level to WARNING.
    from absl import logging

    logging.set_verbosity(logging.INFO)
    return progress


def _print_summary(output_dir: Path, progress: _Progress, started: float) -> None:
    metrics_path = output_dir / "metrics.json"
    summary = json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
    overall = summary.get("metrics", {}).get("overall", {})
    print(_BANNER)
    for name, value in overall.items():
        if isinstance(value, float):
            print(f"  {name:<24} {value:.4f}")
    if summary and not summary["blessed"]:
        failures = summary["validation"]["failures"]
        print(f"\n!!! CANDIDATE NOT BLESSED: nothing was pushed. Why: {failures}")
    elif summary.get("already_pushed"):
        print(f"\nModel unchanged: already pushed as version {summary['pushed_version']}; "
              "nothing new pushed.")
    elif summary:
        print(f"\nBlessed and pushed as version {summary['pushed_version']}.")
    print(f"\n  metrics      {metrics_path}\n  report       {output_dir / 'report.html'}"
          f"\n  serving      {output_dir / 'serving'}\n  tflite       {output_dir / 'tflite'}"
          f"\n  tfx/mlmd     {output_dir / 'tfx'}")
    timings = ", ".join(f"{k} {v:.0f}s" for k, v in progress.durations.items())
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\n  wall time    {time.monotonic() - started:.0f} s ({timings})"
          f"\n  peak RSS     {peak_mb:.0f} MiB\n{_BANNER}")


def run(argv: Sequence[str] | None = None) -> dict[str, float]:
    """Parses `argv`, runs the pipeline, prints the summary; returns the wall
    time of each component (seconds)."""
    started = time.monotonic()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # TF's C++ INFO lines drown the progress
    from pipeline.config import from_args

    config = from_args(argv)
    # Before anything initialises the TF runtime.
    from models.distribution import configure_logical_cpus

    configure_logical_cpus(config.train.num_cpu_devices)
    from tfx import v1 as tfx

    from components.imdb_example_gen.source import ENV_VAR, resolve_data_source
    from pipeline.pipeline import create_pipeline

    source = resolve_data_source(config.data.data, os.environ.get(ENV_VAR), config.cache_dir,
                                 config.data.allow_download)
    print(f"Data: {source.path} ({source.origin})", file=sys.stderr)
    config = dataclasses.replace(config, data=dataclasses.replace(config.data,
                                                                  data=str(source.path)))
    progress = _install_progress_logging()
    tfx.orchestration.LocalDagRunner().run(create_pipeline(config))
    _print_summary(config.output_dir, progress, started)
    return progress.durations


def main(argv: Sequence[str] | None = None) -> int:
    run(argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
