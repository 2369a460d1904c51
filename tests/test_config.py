"""The typed config and its command line."""

from __future__ import annotations

import dataclasses

import pytest

from pipeline.config import PipelineConfig, build_parser, from_args


def test_defaults_parse_to_the_dataclass_defaults():
    assert from_args([]) == PipelineConfig()


def test_every_config_field_is_a_documented_flag():
    help_text = build_parser().format_help()
    for section in dataclasses.fields(PipelineConfig):
        for field in dataclasses.fields(section.type if isinstance(section.type, type)
                                        else type(getattr(PipelineConfig(), section.name))):
            assert f"--{field.name}" in help_text
            assert field.metadata["help"].split()[0] in help_text


def test_flags_override_typed_values():
    config = from_args(["--epochs=3", "--learning_rate=0.01", "--include_unsup=true",
                        "--data=/d", "--min_accuracy=0.9"])
    assert config.train.epochs == 3 and config.train.learning_rate == 0.01
    assert config.data.include_unsup is True and config.data.data == "/d"
    assert config.eval.min_accuracy == 0.9


def test_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        PipelineConfig().train.epochs = 1  # type: ignore[misc]


@pytest.mark.parametrize("bad", [["--model=rnn"], ["--epochs=many"], ["--include_unsup=maybe"]])
def test_bad_flags_are_rejected(bad):
    with pytest.raises(SystemExit):
        from_args(bad)
