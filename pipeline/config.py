"""Every path, knob and threshold of a run, in typed frozen dataclasses.

Parsed once at the edge (`from_args`) and passed down; nothing deeper reads
the command line or the environment.
Each field's `help` metadata is its documentation and its `--flag`'s help.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
import textwrap
import typing
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, TypeVar

from models.config import (
    DEFAULT_MAX_LENGTH,
    DEFAULT_NGRAM_BLEND,
    DEFAULT_NGRAM_ORDER,
    MINILM_POSITIONS,
    TOKENIZERS,
    WORDPIECE_MIN_LENGTH,
    CheckedConfig,
    PretrainConfig,
    TrainConfig,
    TransformConfig,
    allowed,
    check,
    field,
)

__all__ = [
    "DEFAULT_CACHE_DIR",
    "CheckConfig",
    "DataConfig",
    "EvalConfig",
    "OneLineParser",
    "comma_list",
    "field_flag_type",
    "int_at_least",
    "positive_int_list",
    "PipelineConfig",
    "PretrainConfig",
    "RunConfig",
    "TrainConfig",
    "TransformConfig",
    "add_section",
    "build_parser",
    "build_section",
    "flag_type",
    "from_args",
]

T = TypeVar("T")

DEFAULT_CACHE_DIR = "~/.cache/imdb-sentiment"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


@dataclasses.dataclass(frozen=True)
class DataConfig(CheckedConfig):
    data: str | None = field(None, "aclImdb/ folder or aclImdb_v1.tar.gz; 'demo' for the "
                                   "generated corpus; unset: $IMDB_DATA, cache, download, demo")
    cache_dir: str = field(DEFAULT_CACHE_DIR, "where the downloaded archive and demo corpus live")
    allow_download: bool = field(True, "download the official archive when no data is given")
    valid_fraction: float = field(0.1, "share of train/ movies held out as the `valid` split "
                                       "(early stopping, TFLite checks)",
                                  low=0, high=1, low_open=True, high_open=True)
    eval_fraction: float = field(0.2, "share of train/ movies held out as eval when the "
                                      "source has no official test/ set",
                                 low=0, high=1, low_open=True, high_open=True)
    include_unsup: bool = field(False, "also ingest the 50k unlabeled reviews (unsup split)")
    schema_dir: str = field("", "folder of the curated schema.pbtxt the data is validated "
                                "against; empty: the bundled pipeline/schema")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.valid_fraction + self.eval_fraction >= 1:
            raise ValueError(f"--valid_fraction={self.valid_fraction} + --eval_fraction="
                             f"{self.eval_fraction}: must add up to less than 1 (train/ needs "
                             "movies left to train on)")


@dataclasses.dataclass(frozen=True)
class EvalConfig(CheckedConfig):
    min_accuracy: float = field(0.75, "absolute accuracy floor for blessing", low=0, high=1)
    max_accuracy_drop: float = field(0.01, "tolerated accuracy drop vs the served model",
                                     low=0, high=1)


def _tolerance(variant: str, what: str) -> Any:
    return field(None, f"{variant} TFLite: {what} on `valid` reviews; unset: the variant's "
                       f"default in components/tflite_converter/convert.py", low=0, high=1)


def _probe_tolerance(variant: str) -> Any:
    return field(None, f"{variant} TFLite: largest |p - p_savedmodel| on the short and "
                       f"degenerate probes (convert.PROBE_TEXTS); unset: the variant's default",
                 low=0, high=1)


@dataclasses.dataclass(frozen=True)
class CheckConfig(CheckedConfig):
    """How closely each TFLite variant must follow the SavedModel on `valid`
    reviews and on short and degenerate probes. Unset fields keep the
    variant's own default (convert.VARIANTS, the one place those live)."""

    tflite_check_examples: int = field(256, "valid reviews the TFLite variants are checked on",
                                       low=1, high=100_000)
    float32_max_abs_diff: float | None = _tolerance("float32", "largest |p - p_savedmodel|")
    float32_min_agreement: float | None = _tolerance("float32", "share of equal decisions")
    dynamic_range_max_abs_diff: float | None = _tolerance(
        "dynamic-range", "largest |p - p_savedmodel|")
    dynamic_range_min_agreement: float | None = _tolerance(
        "dynamic-range", "share of equal decisions")
    float16_max_abs_diff: float | None = _tolerance("float16", "largest |p - p_savedmodel|")
    float16_min_agreement: float | None = _tolerance("float16", "share of equal decisions")
    int8_max_abs_diff: float | None = _tolerance("int8", "largest |p - p_savedmodel|")
    int8_min_agreement: float | None = _tolerance("int8", "share of equal decisions")
    float32_probe_max_abs_diff: float | None = _probe_tolerance("float32")
    dynamic_range_probe_max_abs_diff: float | None = _probe_tolerance("dynamic-range")
    float16_probe_max_abs_diff: float | None = _probe_tolerance("float16")
    int8_probe_max_abs_diff: float | None = _probe_tolerance("int8")


@dataclasses.dataclass(frozen=True)
class RunConfig(CheckedConfig):
    output_dir: str = field("output", "where metrics, reports, serving and tflite land")
    pipeline_name: str = field("imdb_sentiment", "TFX pipeline name")
    model_name: str = field("imdb_sentiment", "TF Serving model name")
    beam_mode: str = field("in_memory", "Beam DirectRunner running mode",
                           choices=("in_memory", "multi_threading", "multi_processing"))
    verbose: bool = field(False, "print full tracebacks (also kept in OUTPUT/logs/)")

    def __post_init__(self) -> None:
        super().__post_init__()
        for flag, value in (("pipeline_name", self.pipeline_name),
                            ("model_name", self.model_name)):
            if not _NAME.match(value):
                raise ValueError(f"--{flag}={value}: must be letters, digits, '_', '.' or '-' "
                                 "(at most 128, starting with a letter or digit)")
        if not self.output_dir:
            raise ValueError("--output_dir: must not be empty")


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    transform: TransformConfig = dataclasses.field(default_factory=TransformConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    pretrain: PretrainConfig = dataclasses.field(default_factory=PretrainConfig)
    eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)
    checks: CheckConfig = dataclasses.field(default_factory=CheckConfig)
    run: RunConfig = dataclasses.field(default_factory=RunConfig)

    def __post_init__(self) -> None:
        model = self.train.model
        per_model: dict[str, dict[str, Any]] = {"max_length": DEFAULT_MAX_LENGTH,
                                                "ngram_blend": DEFAULT_NGRAM_BLEND,
                                                "ngram_order": DEFAULT_NGRAM_ORDER}
        for name, by_model in per_model.items():
            if getattr(self.transform, name) is None:  # frozen: the model's default, once here
                object.__setattr__(self, "transform", dataclasses.replace(
                    self.transform, **{name: by_model[model]}))
        length = self.transform.max_length or 0
        if TOKENIZERS[self.train.model] == "wordpiece" and not (
                WORDPIECE_MIN_LENGTH <= length <= MINILM_POSITIONS):
            raise ValueError(f"--max_length={length}: --model="
                             f"{self.train.model} takes {WORDPIECE_MIN_LENGTH} to "
                             f"{MINILM_POSITIONS} WordPiece positions")
        if self.pretrain.pretrain and self.train.model != "transformer":
            raise ValueError(f"--pretrain: pre-trains the transformer's encoder; --model="
                             f"{self.train.model} has none (use --model=transformer)")


def _sections() -> list[tuple[str, type]]:
    hints = typing.get_type_hints(PipelineConfig)
    return [(f.name, hints[f.name]) for f in dataclasses.fields(PipelineConfig)]


def _parse_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(text)


def _scalar_type(hint: Any) -> Any:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    base = args[0] if args else hint
    return _parse_bool if base is bool else base


def flag_type(f: dataclasses.Field[Any], hint: Any) -> Callable[[str], Any]:
    """Parses a flag's text and checks its range, so a bad value is refused
    while the flags are parsed, before anything runs."""
    parse = _scalar_type(hint)

    def convert(text: str) -> Any:
        try:
            value = parse(text)
        except (TypeError, ValueError, argparse.ArgumentTypeError) as err:
            expected = allowed(f) if parse in (int, float) else "true or false"
            raise argparse.ArgumentTypeError(
                f"invalid value {text!r}: expected {expected}") from err
        reason = check(f, value)
        if reason:
            raise argparse.ArgumentTypeError(f"invalid value {text!r}: {reason}")
        return value

    convert.__name__ = getattr(parse, "__name__", "value")
    return convert


def field_flag_type(cls: type, name: str) -> Callable[[str], Any]:
    """flag_type for field `name` of config section `cls`, with the field's
    own type hint: what a script's flag uses to accept exactly the values
    the pipeline's flag of that name accepts."""
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    return flag_type(f, typing.get_type_hints(cls)[name])


class OneLineParser(argparse.ArgumentParser):
    """A user error is one line naming the flag and what it allows (exit 2):
    no usage block, no traceback."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(2)


def int_at_least(least: int, most: int | None = None) -> Callable[[str], int]:
    """An argparse type for an integer in [least, most]: a thread count of 0
    or a port of 70000 is refused at start, in one line, not met later as
    a hang or a bind error."""
    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {value!r}") from None
        if number < least or (most is not None and number > most):
            bound = f"from {least} to {most}" if most is not None else f">= {least}"
            raise argparse.ArgumentTypeError(f"must be an integer {bound}, got {value!r}")
        return number
    return parse


def comma_list(parse: Callable[[str], T]) -> Callable[[str], list[T]]:
    """An argparse type: "a,b,c" -> [parse(a), parse(b), parse(c)], refused
    with `parse`'s message for the first value it refuses."""
    def parse_all(text: str) -> list[T]:
        return [parse(value) for value in text.split(",")]
    return parse_all


def positive_int_list(text: str) -> list[int]:
    """An argparse type: "1,8,32" -> [1, 8, 32], every value an integer >= 1."""
    return comma_list(int_at_least(1))(text)


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Wraps help text without splitting words at their hyphens
    ("masked-LM", "out-of-vocabulary" stay whole on one line)."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)


def _metavar(f: dataclasses.Field[Any]) -> str | None:
    """How --help names a flag's value: {a,b} for choices, else N for
    integers, X for numbers, BOOL, or the field's name in capitals."""
    if f.metadata.get("choices"):
        return None  # argparse lists them
    kind = str(f.type)
    if kind.startswith("int"):
        return "N"
    if kind.startswith("float"):
        return "X"
    if kind.startswith("bool"):
        return "BOOL"
    return f.name.upper()


def add_section(parser: argparse.ArgumentParser, cls: type, section: str) -> None:
    """One --flag per field of config section `cls`, in an argument group
    named `section`: its help, its allowed range and its parse-time check.
    Parsed values land under "<section>.<field>" (see `build_section`)."""
    group = parser.add_argument_group(section)
    for f in dataclasses.fields(cls):
        ranged = f.metadata.get("low") is not None or f.metadata.get("high") is not None
        help_text = f.metadata["help"] + (f" ({allowed(f)})" if ranged else "")
        # metavar: the value's kind (N, X, ...), not the dest "<section>.<field>"
        # argparse would print ("--epochs TRAIN.EPOCHS").
        group.add_argument(
            f"--{f.name}", dest=f"{section}.{f.name}", type=field_flag_type(cls, f.name),
            default=f.default, help=help_text, choices=f.metadata.get("choices"),
            metavar=_metavar(f))


def build_section(cls: type, values: dict[str, Any], section: str) -> Any:
    """The config section `cls` from parsed flags (its own checks run)."""
    return cls(**{f.name: values[f"{section}.{f.name}"] for f in dataclasses.fields(cls)})


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """One --flag per config field, grouped by section, defaults and allowed values shown."""
    parser = OneLineParser(
        prog=prog, formatter_class=_HelpFormatter,
        description="Run the IMDb sentiment TFX pipeline.")
    for section, cls in _sections():
        add_section(parser, cls, section)
    return parser


def from_args(argv: Sequence[str] | None = None, prog: str | None = None) -> PipelineConfig:
    """Parses the command line into a PipelineConfig. Unknown flags, bad values
    and inconsistent combinations exit with status 2 and one line."""
    parser = build_parser(prog)
    values = vars(parser.parse_args(argv))
    sections = {}
    for section, cls in _sections():
        try:
            sections[section] = build_section(cls, values, section)
        except ValueError as err:
            parser.error(str(err))
    try:
        return PipelineConfig(**sections)
    except ValueError as err:
        parser.error(str(err))
