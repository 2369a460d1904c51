"""Behaviour of bench/combination.py: a released model's scores beside
NB-LR's and their blend, every choice on `valid`, `eval` scored once."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import tensorflow as tf

from bench import combination
from components.imdb_example_gen.demo_corpus import DemoCorpusSpec, write_demo_corpus
from models import blend, contract
from tests.cli_helpers import refused_in_one_line


def test_standardised_sum_uses_valid_statistics_for_both_splits():
    a = combination.Scores(valid=np.array([0.0, 2.0]), test=np.array([4.0]))
    b = combination.Scores(valid=np.array([10.0, 30.0]), test=np.array([20.0]))
    summed = combination.standardised_sum([a, b])
    np.testing.assert_allclose(summed.valid, [-2.0, 2.0])
    np.testing.assert_allclose(summed.test, [3.0 + 0.0])


def test_rows_report_each_model_the_blend_and_the_disagreement():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 4000)
    sign = np.where(labels == 1, 1.0, -1.0)
    encoder = combination.Scores(2 * sign[:2000] + rng.normal(0, 2, 2000),
                                 2 * sign[2000:] + rng.normal(0, 2, 2000))
    ngram = combination.Scores(sign[:2000] + rng.normal(0, 1.2, 2000),
                               sign[2000:] + rng.normal(0, 1.2, 2000))
    table = combination.rows("enc", encoder, ngram, labels[:2000], labels[2000:])
    assert [r.name for r in table] == ["enc", "NB-LR", "enc + NB-LR (blend fitted on valid)",
                                       "enc + NB-LR (standardised sum)"]
    assert table[2].accuracy > max(table[0].accuracy, table[1].accuracy)
    weights = blend.fit_blend(np.stack([encoder.valid, ngram.valid], 1), labels[:2000])
    assert table[2].detail["weights"]["enc"] == pytest.approx(weights[0])
    expected = np.mean((encoder.test > 0) != (ngram.test > 0))
    assert table[2].detail["test_disagreement"] == pytest.approx(expected)


class _KeywordModel(tf.Module):
    """A real SavedModel with the pipeline's serving_text signature: P(positive)
    from a few sentiment words (the generated corpus's vocabulary)."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=contract.INPUT_TEXT)])
    def serve_text(self, text):
        lowered = tf.strings.lower(text)
        good = tf.strings.regex_full_match(lowered, ".*(wonderful|superb|great|brilliant).*")
        bad = tf.strings.regex_full_match(lowered, ".*(awful|dull|boring|terrible).*")
        score = tf.cast(good, tf.float32) - tf.cast(bad, tf.float32)
        return {contract.OUTPUT_KEY: tf.sigmoid(2.0 * score)}


def test_the_bench_scores_a_saved_model_and_writes_plot_points(tmp_path, capsys):
    corpus = write_demo_corpus(tmp_path / "corpus", DemoCorpusSpec(
        train_per_class=80, test_per_class=20, unsup=0, reviews_per_movie=4))
    module = _KeywordModel()
    model_dir = tmp_path / "model"
    tf.saved_model.save(module, str(model_dir), signatures={
        contract.SIGNATURE_TEXT: module.serve_text.get_concrete_function()})
    out = tmp_path / "out"
    assert combination.main([f"--data={corpus}", f"--model={model_dir}", f"--output_dir={out}",
                             "--name=keywords", "--train_seconds=5"]) == 0
    report = json.loads((out / combination.JSON_FILE).read_text())
    assert report["splits"]["eval"] == 40 and report["eval"] == "official test/ set"
    assert [r["name"] for r in report["rows"]][:2] == ["keywords", "NB-LR"]
    for row in report["rows"]:
        assert 0.5 < row["accuracy"] <= 1 and 0 <= row["valid_accuracy"] <= 1
    blend_row = report["rows"][2]
    assert set(blend_row["detail"]["weights"]) == {"keywords", "NB-LR", "bias"}
    points = {p["name"]: p for p in (json.loads(f.read_text()) for f in out.glob("extra_*.json"))}
    assert set(points) == {row["name"] for row in report["rows"]}
    nb_seconds = report["nb_lr"]["train_seconds"]
    assert points["NB-LR"]["train_seconds"] == pytest.approx(nb_seconds)
    assert points["keywords"]["train_seconds"] == 5
    assert points[blend_row["name"]]["train_seconds"] == pytest.approx(5 + nb_seconds)
    assert all(math.isfinite(p["accuracy"]) for p in points.values())
    assert (out / combination.PNG_FILE).read_bytes()[:4] == b"\x89PNG"
    assert "blend fitted on valid" in capsys.readouterr().out


@pytest.mark.parametrize("flag", ["--train_seconds=-3", "--train_seconds=abc"])
def test_a_bad_flag_is_refused_in_one_line(tmp_path, capsys, flag):
    line = refused_in_one_line(lambda: combination.main(
        [f"--data={tmp_path}", f"--model={tmp_path}", f"--output_dir={tmp_path}", flag]), capsys)
    assert line.startswith("bench.combination: error: ")


def test_a_folder_without_a_saved_model_is_refused_at_parse_time(tmp_path, capsys):
    with pytest.raises(SystemExit):
        combination.main([f"--data={tmp_path}", f"--model={tmp_path}",
                          f"--output_dir={tmp_path}"])
    assert "no saved_model.pb" in capsys.readouterr().err
