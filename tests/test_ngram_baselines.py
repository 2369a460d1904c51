"""Behaviour of bench/ngram_baselines.py: the NB features, the valid-only
choice, the refit that reproduces the tuned model, and the report files.
Tiny hand-made matrices and texts; the last test runs the bench end to end on
a generated corpus in the aclImdb layout."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import sparse
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.pipeline import Pipeline

from bench import ngram_baselines as nb
from components.imdb_example_gen.demo_corpus import DemoCorpusSpec, write_demo_corpus
from tests.cli_helpers import refused_in_one_line

_TEXTS = [
    "A great film.<br /><br />Great acting!",
    "Great fun, a wonderful cast.",
    "Wonderful and moving.",
    "Awful film. Awful acting.",
    "A dull, awful mess.",
    "Dull and boring.",
]
_LABELS = np.array([1, 1, 1, 0, 0, 0])


def test_nb_log_count_ratio_matches_the_hand_computed_values():
    """r = log((p/|p|1) / (q/|q|1)) on binarized counts with add-one smoothing."""
    binary = sparse.csr_matrix([[1, 0, 1], [0, 1, 0], [1, 1, 0]], dtype=float)
    # positive rows 0 and 2: p = 1 + [2, 1, 1] = [3, 2, 2] (sum 7)
    # negative row 1:        q = 1 + [0, 1, 0] = [1, 2, 1] (sum 4)
    ratio = nb.nb_log_count_ratio(binary, [1, 0, 1])
    np.testing.assert_allclose(ratio, np.log([12 / 7, 4 / 7, 8 / 7]))


def test_nb_features_binarize_counts_before_scaling():
    """A word counted twice in a review weighs as much as a word counted once."""
    counts = sparse.csr_matrix([[2, 0], [0, 1], [1, 0]], dtype=float)
    features = nb.NBFeatures().fit(counts, [1, 0, 0])
    expected = sparse.csr_matrix([[1, 0], [0, 1], [1, 0]], dtype=float) @ sparse.diags(
        features.ratio_)
    np.testing.assert_allclose(features.transform(counts).toarray(), expected.toarray())


def test_nb_ratio_refuses_labels_other_than_0_and_1():
    with pytest.raises(ValueError, match="0 \\(negative\\) or 1 \\(positive\\)"):
        nb.nb_log_count_ratio(sparse.csr_matrix(np.eye(2)), [1, 2])


def test_interpolation_shrinks_weights_towards_their_mean_magnitude():
    """w' = (1 - beta) * mean|w| + beta * w; beta = 1 leaves the SVM as is."""
    weights = np.array([2.0, -1.0, 0.0, 3.0])  # mean |w| = 1.5
    np.testing.assert_allclose(nb.interpolate(weights, 0.25), [1.625, 0.875, 1.125, 1.875])
    np.testing.assert_allclose(nb.interpolate(weights, 1.0), weights)


def test_vectorizer_sees_the_cnn_tokens_html_tags_dropped():
    """The baselines count the tokens models.text gives the CNN, and their bigrams."""
    vocabulary = nb.counts_vectorizer().fit(["Great<br />FILM, really!"]).vocabulary_
    assert sorted(vocabulary) == ["film", "film really", "great", "great film", "really"]


def test_min_df_step_keeps_what_countvectorizer_min_df_keeps():
    """The grid's shared count matrix with MinDocFrequency(k) gives the
    vocabulary CountVectorizer(min_df=k) would have built."""
    counts = nb.counts_vectorizer()
    full = counts.fit_transform(_TEXTS)
    keep = nb.MinDocFrequency(2).fit(full)
    names = counts.get_feature_names_out()[keep.columns_]
    direct = CountVectorizer(tokenizer=nb.tokenize_py, lowercase=False, token_pattern=None,
                             ngram_range=nb.NGRAM_RANGE, min_df=2).fit(_TEXTS)
    assert list(names) == list(direct.get_feature_names_out())
    assert keep.transform(full).shape == (len(_TEXTS), len(names))


def test_selection_picks_the_best_valid_accuracy_and_the_earlier_on_a_tie():
    first, second, third = nb.Setting(2, 0.1), nb.Setting(2, 1.0), nb.Setting(1, 1.0)
    assert nb.select_on_valid([(first, 0.80), (second, 0.85), (third, 0.84)]) == (second, 0.85)
    assert nb.select_on_valid([(first, 0.85), (second, 0.85)]) == (first, 0.85)
    with pytest.raises(ValueError):
        nb.select_on_valid([])


def test_tune_scores_every_setting_on_valid_in_grid_order():
    """Each setting is fitted on train and scored on valid; the grid order is kept."""
    baseline = nb.BASELINES[1]  # NB-LR
    counts = nb.counts_vectorizer().fit(_TEXTS)
    x = counts.transform(_TEXTS)
    valid_texts = ["great and wonderful", "awful and dull"]
    scores = nb.tune(baseline, x, _LABELS, counts.transform(valid_texts), np.array([1, 0]))
    assert [setting for setting, _ in scores] == list(baseline.grid)
    assert all(0.0 <= accuracy <= 1.0 for _, accuracy in scores)


@pytest.mark.parametrize("baseline", nb.BASELINES, ids=lambda b: b.name)
def test_refit_from_raw_text_is_the_model_that_was_tuned(baseline):
    """full_model (counts -> min_df -> steps) predicts what the grid's
    shared-counts fit predicts, so the valid figure describes the scored model."""
    setting = baseline.grid[-1]  # min_df = 1: every n-gram of this tiny corpus
    new = ["great acting", "awful mess", "a wonderful film", "boring and dull"]
    counts = nb.counts_vectorizer().fit(_TEXTS)
    keep = nb.MinDocFrequency(setting.min_df).fit(counts.transform(_TEXTS))
    tuned = Pipeline(baseline.steps(setting)).fit(keep.transform(counts.transform(_TEXTS)),
                                                  _LABELS)
    refit = nb.full_model(baseline, setting).fit(_TEXTS, _LABELS)
    np.testing.assert_array_equal(
        refit.predict(new), tuned.predict(keep.transform(counts.transform(new))))
    np.testing.assert_allclose(
        refit.decision_function(new),
        tuned.decision_function(keep.transform(counts.transform(new))))


@pytest.mark.parametrize("baseline", nb.BASELINES, ids=lambda b: b.name)
def test_every_baseline_learns_obvious_sentiment(baseline):
    model = nb.full_model(baseline, nb.Setting(1, 10.0, 1.0)).fit(_TEXTS, _LABELS)
    assert list(model.predict(["great, wonderful", "dull, awful"])) == [1, 0]


def test_gap_is_each_test_accuracy_minus_the_reference():
    gaps = nb.gaps({"NBSVM": 0.90, "NB-LR": 0.91, "TF-IDF+LR": 0.88})
    assert gaps == pytest.approx({"NBSVM": 0.0, "NB-LR": 0.01, "TF-IDF+LR": -0.02})


def _result(name: str, accuracy: float, seconds: float) -> nb.Result:
    return nb.Result(name=name, accuracy=accuracy, f1=accuracy - 0.001, train_seconds=seconds,
                     params={"ngram_range": [1, 2], "min_df": 2, "C": 0.01, "beta": 0.25},
                     valid_accuracy=0.9, gap_to_reference=0.0,
                     grid=[{"min_df": 2, "C": 0.01, "beta": 0.25, "valid_accuracy": 0.9}])


def test_json_entries_are_valid_extra_points_and_the_plot_is_a_png(tmp_path):
    """Each model entry of the JSON loads back through --extra's schema, and the
    plot with extra points is written as a PNG."""
    results = [_result("NBSVM", 0.91, 20.0), _result("NB-LR", 0.905, 25.0)]
    nb.write_json(tmp_path / "report.json", results, {"splits": {"eval": 5000}})
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["splits"] == {"eval": 5000}
    for entry, result in zip(report["models"], results, strict=True):
        (tmp_path / "entry.json").write_text(json.dumps(entry))
        assert nb.load_extra(str(tmp_path / "entry.json")) == nb.Point(
            result.name, result.accuracy, result.f1, result.train_seconds)
        assert entry["params"]["beta"] == 0.25 and entry["valid_accuracy"] == 0.9
    extra = nb.Point("CNN", 0.8927, 0.893, 870.0)
    nb.plot(tmp_path / "plot.png", results, [extra], subtitle="tiny")
    assert (tmp_path / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(("content", "message"), [
    ("[1, 2]", "expected one JSON object"),
    ('{"name": "CNN", "f1": 0.9, "train_seconds": 10}', "'accuracy' must be a number"),
    ('{"name": "CNN", "accuracy": 1.5, "f1": 0.9, "train_seconds": 10}', "outside"),
    ('{"name": "", "accuracy": 0.9, "f1": 0.9, "train_seconds": 10}', "'name' must be"),
    ('{"name": "CNN", "accuracy": 0.9, "f1": 0.9, "train_seconds": 0}', "'train_seconds'"),
    ("{not json", "not JSON"),
])
def test_a_bad_extra_file_is_refused_at_parse_time_in_one_line(tmp_path, capsys, content,
                                                                message):
    extra = tmp_path / "extra.json"
    extra.write_text(content)
    line = refused_in_one_line(lambda: nb.build_parser().parse_args(
        ["--data", str(tmp_path), "--output_dir", str(tmp_path), f"--extra={extra}"]), capsys)
    assert message in line and str(extra) in line


def test_missing_data_is_refused_at_parse_time_in_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit):
        nb.main(["--data", str(tmp_path / "nowhere"), "--output_dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert err == (f"bench.ngram_baselines: error: argument --data: "
                   f"{tmp_path / 'nowhere'}: no such file or directory\n")


def test_data_without_both_labels_in_a_split_fails_in_one_line(tmp_path, capsys):
    """A corpus too small for a labelled valid split: a one-line error, exit 1."""
    corpus = write_demo_corpus(tmp_path / "corpus", DemoCorpusSpec(
        train_per_class=2, test_per_class=2, unsup=0, reviews_per_movie=2))
    assert nb.main([f"--data={corpus}", f"--output_dir={tmp_path / 'out'}"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("bench.ngram_baselines: error: ") and err.count("\n") == 1
    assert "not both labels" in err


def test_the_bench_tunes_on_valid_and_reports_eval_on_a_generated_corpus(tmp_path, capsys):
    """End to end on a small generated corpus: each model's chosen setting is
    its grid's best on valid, eval is the official test/ folder, and the
    table, JSON and plot (with an --extra point) are written."""
    corpus = write_demo_corpus(tmp_path / "corpus", DemoCorpusSpec(
        train_per_class=80, test_per_class=20, unsup=0, reviews_per_movie=4))
    extra = tmp_path / "cnn.json"
    extra.write_text(json.dumps({"name": "CNN", "accuracy": 0.89, "f1": 0.89,
                                 "train_seconds": 900}))
    out = tmp_path / "out"
    assert nb.main([f"--data={corpus}", f"--output_dir={out}", f"--extra={extra}"]) == 0
    report = json.loads((out / nb.JSON_FILE).read_text())
    assert report["eval"] == "official test/ set" and report["splits"]["eval"] == 40
    assert report["splits"]["train"] + report["splits"]["valid"] == 160
    assert [m["name"] for m in report["models"]] == [b.name for b in nb.BASELINES]
    for model in report["models"]:
        best = max(entry["valid_accuracy"] for entry in model["grid"])
        assert model["valid_accuracy"] == best
        first_best = next(e for e in model["grid"] if e["valid_accuracy"] == best)
        assert {k: model["params"][k] for k in first_best if k != "valid_accuracy"} == {
            k: v for k, v in first_best.items() if k != "valid_accuracy"}
        assert 0 <= model["accuracy"] <= 1 and model["train_seconds"] > 0
    nbsvm = report["models"][0]["accuracy"]
    for model in report["models"]:
        assert math.isclose(model["gap_to_reference"], model["accuracy"] - nbsvm)
    assert (out / nb.PNG_FILE).read_bytes()[:4] == b"\x89PNG"
    printed = capsys.readouterr().out
    assert "valid acc" in printed and "Δtest vs NBSVM" in printed
    assert "warning" not in printed
    assert 0 < report["wall_seconds"] < 600
    assert report["wall_seconds"] >= sum(m["train_seconds"] for m in report["models"])


def test_importing_the_bench_loads_no_tensorflow_reader():
    """--help and refused flags stay fast: the reader (TensorFlow) is imported
    only when data is read."""
    source = Path(nb.__file__).read_text()
    module_level = [line for line in source.splitlines() if line.startswith(("import", "from"))]
    assert not any("imdb_example_gen" in line for line in module_level)


def test_plot_ticks_are_round_numbers_within_the_axis():
    assert nb._log_ticks(22, 45) == [25, 30, 40]
    assert nb._log_ticks(15, 1200) == [20, 50, 100, 200, 500, 1000]
