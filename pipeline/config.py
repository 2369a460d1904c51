"""Every path, knob and threshold of a run, in typed frozen dataclasses.

Parsed once at the edge (`from_args`) and passed down; nothing deeper reads
the command line or the environment.
Each field's `help` metadata is its documentation and its `--flag`'s help.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "DEFAULT_CACHE_DIR",
    "DataConfig",
    "EvalConfig",
    "PipelineConfig",
    "RunConfig",
    "TrainConfig",
    "TransformConfig",
    "build_parser",
    "from_args",
]

DEFAULT_CACHE_DIR = "~/.cache/imdb-sentiment"


def _field(default: Any, help: str, **kwargs: Any) -> Any:  # noqa: A002 - mirrors argparse
    return dataclasses.field(default=default, metadata={"help": help, **kwargs})


@dataclasses.dataclass(frozen=True)
class DataConfig:
    data: str | None = _field(None, "aclImdb/ folder or aclImdb_v1.tar.gz; 'demo' for the "
                                    "generated corpus; unset: $IMDB_DATA, cache, download, demo")
    cache_dir: str = _field(DEFAULT_CACHE_DIR, "where the downloaded archive and demo corpus live")
    allow_download: bool = _field(True, "download the official archive when no data is given")
    eval_fraction: float = _field(0.2, "share of train/ movies held out as eval when the "
                                       "source has no official test/ set")
    include_unsup: bool = _field(False, "also ingest the 50k unlabeled reviews (unsup split)")


@dataclasses.dataclass(frozen=True)
class TransformConfig:
    vocab_size: int = _field(20_000, "vocabulary size (most frequent train tokens)")
    num_oov_buckets: int = _field(1, "hash buckets for out-of-vocabulary tokens")
    max_length: int = _field(512, "tokens per review after padding/truncation")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    model: str = _field("cnn", "model architecture", choices=("cnn",))
    epochs: int = _field(4, "epochs (early stopping may end sooner)")
    batch_size: int = _field(64, "global batch size (split across replicas)")
    learning_rate: float = _field(1e-3, "peak learning rate")
    lr_schedule: str = _field("cosine", "learning-rate schedule over all epochs",
                              choices=("cosine", "constant"))
    optimizer: str = _field("adamw", "optimizer", choices=("adam", "adamw"))
    weight_decay: float = _field(1e-4, "AdamW decoupled weight decay")
    clipnorm: float = _field(1.0, "gradient clipping by global norm (0 = off)")
    dropout: float = _field(0.5, "dropout rate")
    l2: float = _field(0.0, "L2 penalty on dense kernels")
    embedding_dim: int = _field(64, "token embedding width")
    filters: int = _field(64, "CNN filters per kernel size")
    bigram_buckets: int = _field(100_003, "hash buckets of the bigram-bag branch (0 = off)")
    bigram_dim: int = _field(16, "embedding width of the bigram-bag branch")
    early_stopping_patience: int = _field(2, "epochs without eval improvement before stopping")
    num_cpu_devices: int = _field(2, "logical CPU devices for MirroredStrategy when no GPU")
    seed: int = _field(42, "random seed")


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    min_accuracy: float = _field(0.75, "absolute accuracy floor for blessing")
    max_accuracy_drop: float = _field(0.01, "tolerated accuracy regression vs the latest "
                                            "blessed model")


@dataclasses.dataclass(frozen=True)
class RunConfig:
    output_dir: str = _field("output", "where metrics, reports, serving and tflite land")
    pipeline_name: str = _field("imdb_sentiment", "TFX pipeline name")
    model_name: str = _field("imdb_sentiment", "TF Serving model name")
    beam_mode: str = _field("in_memory", "Beam DirectRunner running mode",
                            choices=("in_memory", "multi_threading", "multi_processing"))


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    transform: TransformConfig = dataclasses.field(default_factory=TransformConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)
    run: RunConfig = dataclasses.field(default_factory=RunConfig)

    @property
    def output_dir(self) -> Path:
        return Path(self.run.output_dir).expanduser().resolve()

    @property
    def cache_dir(self) -> Path:
        return Path(self.data.cache_dir).expanduser()


def _sections() -> list[tuple[str, type]]:
    hints = typing.get_type_hints(PipelineConfig)
    return [(f.name, hints[f.name]) for f in dataclasses.fields(PipelineConfig)]


def _parse_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def _scalar_type(hint: Any) -> Any:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    base = args[0] if args else hint
    return _parse_bool if base is bool else base


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """One --flag per config field, grouped by section, defaults shown."""
    parser = argparse.ArgumentParser(
        prog=prog, formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Run the IMDb sentiment TFX pipeline.")
    for section, cls in _sections():
        group = parser.add_argument_group(section)
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            group.add_argument(
                f"--{f.name}", dest=f"{section}.{f.name}", type=_scalar_type(hints[f.name]),
                default=f.default, help=f.metadata["help"], choices=f.metadata.get("choices"))
    return parser


def from_args(argv: Sequence[str] | None = None) -> PipelineConfig:
    """Parses the command line into a PipelineConfig (unknown flags are errors)."""
    values = vars(build_parser().parse_args(argv))
    sections = {}
    for section, cls in _sections():
        kwargs = {f.name: values[f"{section}.{f.name}"] for f in dataclasses.fields(cls)}
        sections[section] = cls(**kwargs)
    return PipelineConfig(**sections)
