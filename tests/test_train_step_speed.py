"""bench/train_step_speed: the project's model and training loop timed per
step under MirroredStrategy, and its flags checked at parse time."""

from __future__ import annotations

import pytest

from bench import train_step_speed
from tests.cli_helpers import refused_in_one_line


def test_a_few_steps_of_the_cnn_are_timed_over_the_tests_two_logical_devices():
    # The test process split its CPU into 2 logical devices at start (conftest).
    row = train_step_speed.measure("cnn", 2, dropout=0.0, max_length=16, batch_size=8, steps=5,
                                   precision="float32", jit_compile=False)
    assert row["replicas"] == 2 and row["batch"] == 8 and row["dropout"] == 0.0
    assert row["step_seconds"] > 0
    assert row["reviews_per_s"] == pytest.approx(8 / row["step_seconds"])


def test_keras_fit_is_timed_on_the_same_model_and_strategy_for_comparison():
    row = train_step_speed.measure("cnn", 2, dropout=0.0, max_length=16, batch_size=8, steps=5,
                                   precision="float32", jit_compile=False, loop="fit")
    assert row["loop"] == "fit" and row["replicas"] == 2 and row["batch"] == 8
    assert row["step_seconds"] > 0


def test_repeated_rounds_are_summarised_by_each_setting_s_median_in_first_seen_order():
    def row(loop: str, seconds: float) -> dict[str, object]:
        return {"devices": 2, "dropout": 0.3, "loop": loop, "step_seconds": seconds}

    rows = [row("custom", 0.09), row("fit", 0.08), row("custom", 0.07), row("fit", 0.07),
            row("custom", 0.08), row("fit", 0.10)]
    medians = train_step_speed.median_step_seconds(rows)
    assert list(medians.values()) == [pytest.approx(0.08), pytest.approx(0.08)]
    assert [name.split(", ")[-1] for name in medians] == ["custom loop", "fit loop"]


@pytest.mark.parametrize("flag", ["--devices=0,2", "--devices=two", "--steps=3", "--repeats=0",
                                  "--dropouts=0.1,1", "--dropouts=none", "--loops=custom,keras"])
def test_a_bad_flag_is_refused_in_one_line_naming_it(flag: str,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    line = refused_in_one_line(lambda: train_step_speed.main([flag]), capsys)
    assert flag.split("=")[0] in line
