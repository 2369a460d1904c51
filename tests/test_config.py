"""The typed config and its command line: every value checked before anything runs."""

from __future__ import annotations

import dataclasses
import time

import pytest

from models.config import TrainConfig, TransformConfig, allowed
from pipeline import local_runner
from pipeline.config import DataConfig, PipelineConfig, build_parser, from_args
from tests.cli_helpers import refused_in_one_line

SECTIONS = [(s.name, type(getattr(PipelineConfig(), s.name)))
            for s in dataclasses.fields(PipelineConfig)]
FIELDS = [(section, f) for section, cls in SECTIONS for f in dataclasses.fields(cls)]


def test_defaults_parse_to_the_dataclass_defaults():
    assert from_args([]) == PipelineConfig()


@pytest.mark.parametrize(("section", "f"), FIELDS, ids=[f.name for _, f in FIELDS])
def test_every_config_field_is_a_flag_with_its_whole_help_text(section, f):
    """The flag's help is the field's documentation, word for word (argparse
    re-wraps lines, so compare with whitespace collapsed)."""
    help_text = " ".join(build_parser().format_help().split())
    assert f"--{f.name} " in help_text
    assert " ".join(f.metadata["help"].split()) in help_text


def test_help_names_values_by_kind_and_writes_ranges_in_plain_numbers():
    """`--epochs N`, not `--epochs TRAIN.EPOCHS`; `[1, 10000000]`, not `[1, 1e+07]`."""
    import re

    help_text = build_parser().format_help()
    assert "--epochs N" in help_text and "--learning_rate X" in help_text
    assert "--ngram_blend BOOL" in help_text and "--data DATA " in help_text
    assert not re.search(r"--\w+ [A-Z_]+\.[A-Z_]+", help_text)
    assert not re.search(r"\de\+\d", help_text)


@pytest.mark.parametrize(("section", "f"), FIELDS, ids=[f.name for _, f in FIELDS])
def test_every_numeric_field_declares_its_valid_range(section, f):
    if f.type in ("int", "float"):
        assert f.metadata["low"] is not None or f.metadata["high"] is not None, f.name


def test_flags_override_typed_values():
    config = from_args(["--epochs=3", "--learning_rate=0.01", "--include_unsup=true",
                        "--data=/d", "--min_accuracy=0.9", "--valid_fraction=0.2"])
    assert config.train.epochs == 3 and config.train.learning_rate == 0.01
    assert config.data.include_unsup is True and config.data.data == "/d"
    assert config.eval.min_accuracy == 0.9 and config.data.valid_fraction == 0.2


def test_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        PipelineConfig().train.epochs = 1  # type: ignore[misc]


@pytest.mark.parametrize(("flag", "allowed_text"), [
    ("--epochs=-1", "an integer in [1, 1000]"),
    ("--eval_fraction=1.5", "a number in (0, 1)"),
    ("--vocab_size=0", "an integer in [1, 10000000]"),
    ("--max_length=0", "an integer in [1, 100000]"),
    ("--dropout=1", "a number in [0, 1)"),
    ("--learning_rate=0", "a number in (0, 10]"),
    ("--learning_rate=nan", "a number in (0, 10]"),
    ("--model=rnn", "must be one of cnn"),
    ("--epochs=many", "expected an integer in [1, 1000]"),
    ("--include_unsup=maybe", "expected true or false"),
    ("--model_name=my model", "letters, digits"),
])
def test_bad_values_are_refused_in_one_line_naming_flag_value_and_range(flag, allowed_text,
                                                                        capsys):
    line = refused_in_one_line(lambda: from_args([flag]), capsys)
    name, _, value = flag.partition("=")
    assert name in line and value in line and allowed_text in line


def test_fractions_that_leave_no_training_data_are_refused(capsys):
    with pytest.raises(SystemExit):
        from_args(["--valid_fraction=0.6", "--eval_fraction=0.5"])
    assert "must add up to less than 1" in capsys.readouterr().err


def test_sections_built_in_code_are_checked_too():
    with pytest.raises(ValueError, match=r"--epochs=0: must be an integer in \[1, 1000\]"):
        TrainConfig(epochs=0)
    with pytest.raises(ValueError, match="must add up to less than 1"):
        DataConfig(valid_fraction=0.5, eval_fraction=0.5)


def test_the_runner_refuses_a_bad_flag_before_anything_runs(capsys, tmp_path):
    started = time.monotonic()
    line = refused_in_one_line(
        lambda: local_runner.main(["--epochs=-1", f"--output_dir={tmp_path}"]), capsys)
    assert time.monotonic() - started < 5
    assert line == ("pipeline.local_runner: error: argument --epochs: "
                    "invalid value '-1': must be an integer in [1, 1000]")
    assert not any(tmp_path.iterdir()), "something ran"


def test_allowed_values_read_as_words():
    epochs = next(f for f in dataclasses.fields(TrainConfig) if f.name == "epochs")
    assert allowed(epochs) == "an integer in [1, 1000]"


def test_dropout_defaults_to_the_models_own_rate_unless_given():
    """0.5 suits the CNN's dense head, 0.1 (BERT's) the transformer's
    attention layers; an explicit --dropout wins for either."""
    assert TrainConfig().dropout == 0.3
    assert TrainConfig(model="transformer").dropout == 0.1
    assert from_args(["--data=x", "--output_dir=/o", "--model=transformer",
                      "--dropout=0.3"]).train.dropout == 0.3
    assert from_args(["--data=x", "--output_dir=/o", "--model=transformer"]).train.dropout == 0.1


def test_minilm_blends_with_nb_lr_and_reads_96_pieces_unless_told_otherwise():
    """Per-model defaults filled where the configs meet; explicit flags win."""
    minilm = from_args(["--data=x", "--output_dir=/o", "--model=minilm"]).transform
    assert (minilm.ngram_blend, minilm.max_length) == (True, 96)
    transformer = from_args(["--data=x", "--output_dir=/o", "--model=transformer"]).transform
    assert (transformer.ngram_blend, transformer.max_length) == (False, 512)
    off = from_args(["--data=x", "--output_dir=/o", "--model=minilm", "--ngram_blend=false",
                     "--max_length=256"]).transform
    assert (off.ngram_blend, off.max_length) == (False, 256)


def test_the_default_run_is_the_candidate_chosen_on_valid():
    """`make run` with no flags trains exactly what bench/default_run.py chose
    (on `valid`, within the 5-minute budget): the same Transform and Trainer
    settings as that candidate's flags."""
    from bench.default_run import CANDIDATES, CHOSEN

    default = from_args(["--data=x", "--output_dir=/o"])
    chosen = from_args(["--data=x", "--output_dir=/o", *CANDIDATES[CHOSEN]])
    assert (default.transform, default.train) == (chosen.transform, chosen.train)
    assert default.transform.ngram_blend and default.transform.ngram_order == 3


def test_minilm_keeps_the_uni_and_bigrams_its_figures_were_measured_with():
    minilm = from_args(["--data=x", "--output_dir=/o", "--model=minilm"]).transform
    assert minilm.ngram_order == 2
    assert from_args(["--data=x", "--output_dir=/o", "--ngram_order=1"]).transform.ngram_order == 1


def test_an_ngram_order_whose_keys_overflow_64_bits_is_refused_naming_both_flags():
    with pytest.raises(ValueError, match=r"--ngram_order=5.*--vocab_size=10000000"):
        TransformConfig(vocab_size=10_000_000, ngram_order=5)
