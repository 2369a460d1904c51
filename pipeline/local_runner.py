"""Runs the pipeline locally: LocalDagRunner with an SQLite ML Metadata store.

    python -m pipeline.local_runner --help

Thin by design: parse the config, split the CPU for MirroredStrategy (this
must happen before TensorFlow initialises), resolve the dataset, schema and
output paths, hand `create_pipeline` an SQLite ML Metadata store and
DirectRunner arguments, then print the metrics and where everything landed.
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

from components.release.layout import LAST_RUN_FILE, METRICS_FILE, REPORT_FILE
from pipeline import errors
from pipeline.config import PipelineConfig

__all__ = ["beam_args", "main", "resolve_config", "run"]

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
    verdict_path = output_dir / LAST_RUN_FILE
    verdict = json.loads(verdict_path.read_text()) if verdict_path.exists() else {}
    overall = verdict.get("metrics", {}).get("overall", {})
    print(_BANNER)
    for name, value in overall.items():
        if isinstance(value, float):
            print(f"  {name:<24} {value:.4f}")
    status = verdict.get("status")
    if status == "not_blessed":
        failures = "; ".join(verdict["validation"]["failures"])
        print(f"\n!!! CANDIDATE NOT BLESSED: nothing was released. Why: {failures}")
    elif status == "unchanged":
        print(f"\nModel unchanged: it is already the served version {verdict['version']}; "
              "nothing new released.")
    elif status == "released":
        print(f"\nBlessed and released as version {verdict['version']}.")
    print(f"\n  metrics      {output_dir / METRICS_FILE}\n  report       "
          f"{output_dir / REPORT_FILE}\n  this run     {verdict_path}"
          f"\n  serving      {output_dir / 'serving'}\n  tflite       {output_dir / 'tflite'}"
          f"\n  tfx/mlmd     {output_dir / 'tfx'}")
    timings = ", ".join(f"{k} {v:.0f}s" for k, v in progress.durations.items())
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\n  wall time    {time.monotonic() - started:.0f} s ({timings})"
          f"\n  peak RSS     {peak_mb:.0f} MiB\n{_BANNER}")


def resolve_config(config: PipelineConfig, env_data: str | None) -> PipelineConfig:
    """The config with the dataset, schema folder and output folder resolved
    to absolute paths, so the pure pipeline factory needs no file system."""
    from components.imdb_example_gen import reader
    from components.imdb_example_gen.source import resolve_data_source
    from pipeline.fingerprints import SCHEMA_DIR

    source = resolve_data_source(config.data.data, env_data,
                                 Path(config.data.cache_dir).expanduser(),
                                 config.data.allow_download)
    print(f"Data: {source.path} ({source.origin})", file=sys.stderr)
    root = reader.dataset_root(source.path)
    reader.has_test_split(root)  # fails fast, naming the path, on a bad layout or archive
    schema_dir = Path(config.data.schema_dir).expanduser() if config.data.schema_dir \
        else SCHEMA_DIR
    if not (schema_dir / "schema.pbtxt").is_file():
        raise FileNotFoundError(f"--schema_dir={schema_dir}: no schema.pbtxt in it")
    output_dir = Path(config.run.output_dir).expanduser().resolve()
    return dataclasses.replace(
        config,
        data=dataclasses.replace(config.data, data=str(root), schema_dir=str(schema_dir.resolve())),
        run=dataclasses.replace(config.run, output_dir=str(output_dir)))


def beam_args(config: PipelineConfig) -> list[str]:
    """DirectRunner settings: `in_memory` runs in this process (one worker);
    the other modes use every core."""
    mode = config.run.beam_mode
    return [f"--direct_running_mode={mode}",
            "--direct_num_workers=1" if mode == "in_memory" else "--direct_num_workers=0"]


def run(config: PipelineConfig) -> dict[str, float]:
    """Runs the pipeline for `config`, prints the summary; returns the wall
    time of each component (seconds)."""
    started = time.monotonic()
    # Before anything initialises the TF runtime.
    from models.distribution import configure_logical_cpus

    configure_logical_cpus(config.train.num_cpu_devices)
    from tfx import v1 as tfx

    from components.imdb_example_gen.source import ENV_VAR
    from pipeline.fingerprints import code_versions
    from pipeline.pipeline import create_pipeline

    config = resolve_config(config, os.environ.get(ENV_VAR))
    output_dir = Path(config.run.output_dir)
    progress = _install_progress_logging()
    mlmd = tfx.orchestration.metadata.sqlite_metadata_connection_config(
        str(output_dir / "tfx" / "metadata.sqlite"))
    (output_dir / "tfx").mkdir(parents=True, exist_ok=True)
    pipeline = create_pipeline(
        config, metadata_connection_config=mlmd, beam_pipeline_args=beam_args(config),
        code_versions=code_versions(schema_dir=Path(config.data.schema_dir)),
        run_token=f"{time.time_ns():x}")
    tfx.orchestration.LocalDagRunner().run(pipeline)
    _print_summary(output_dir, progress, started)
    return progress.durations


def main(argv: Sequence[str] | None = None) -> int:
    """Exit status: 0 for a completed run (released, unchanged or not
    blessed), 1 when a check or the data failed (nothing released), 2 for a
    bad flag. User errors print one line; --verbose adds the traceback, and
    it is always saved under OUTPUT/logs/."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # TF's C++ INFO lines drown the progress
    from pipeline.config import from_args

    config = from_args(argv, prog="pipeline.local_runner")
    try:
        run(config)
    except Exception as err:
        return errors.report(err, Path(config.run.output_dir).expanduser(),
                             verbose=config.run.verbose)
    return 0


if __name__ == "__main__":
    sys.exit(main())
