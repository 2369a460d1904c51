"""The whole pipeline, run for real by the local runner on a small generated
corpus: every component, the pushed SavedModel, metrics.json, the TFLite
files, a cached re-run, and a broken candidate that must not be pushed."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from components.imdb_example_gen.demo_corpus import DemoCorpusSpec, write_demo_corpus
from components.tflite_converter.convert import tflite_probabilities
from models import features, text
from pipeline import local_runner
from tests.tfx_helpers import node_states

pytestmark = pytest.mark.e2e

SPEC = DemoCorpusSpec(train_per_class=300, test_per_class=80, unsup=0, reviews_per_movie=5)
NODES = {"ImdbExampleGen", "StatisticsGen", "SchemaGen", "curated_schema", "ExampleValidator",
         "AnomaliesGate", "Transform", "Trainer", "latest_blessed_model_resolver", "Evaluator",
         "Pusher", "TFLiteConverter", "RunReport"}
REVIEWS = [b"A wonderful, brilliant film. The acting was superb!",
           b"Awful and boring.<br /><br />The plot was terrible."]


def _run(corpus: Path, out: Path, *extra: str) -> dict:
    args = [f"--data={corpus}", f"--output_dir={out}", "--epochs=6", "--max_length=48",
            "--vocab_size=400", "--embedding_dim=16", "--filters=16", "--bigram_buckets=1009",
            "--batch_size=32", "--learning_rate=0.003", "--dropout=0.2",
            "--early_stopping_patience=3", "--min_accuracy=0.75", "--allow_download=false",
            *extra]
    assert local_runner.main(args) == 0
    return json.loads((out / "metrics.json").read_text())


def _versions(out: Path) -> list[str]:
    return sorted(p.name for p in (out / "serving" / "imdb_sentiment").iterdir())


def _shuffle_train_labels(corpus: Path) -> None:
    """Deals the train texts randomly over pos/ and neg/: a model trained on
    this learns nothing, while the eval (test/) split stays as it was."""
    files = sorted((corpus / "train").glob("[pn][oe][sg]/*.txt"))
    texts = [f.read_bytes() for f in files]
    random.Random(7).shuffle(texts)
    for file, content in zip(files, texts, strict=True):
        file.write_bytes(content)


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    corpus = write_demo_corpus(root / "data", SPEC)
    out = root / "out"
    return corpus, out, _run(corpus, out)


def test_every_component_executes_and_records_in_ml_metadata(first_run):
    _, out, _ = first_run
    states = node_states(out / "tfx" / "metadata.sqlite")
    assert set(states) >= NODES
    assert all(s[-1] == "COMPLETE" for n, s in states.items() if n in NODES), states


def test_blessed_model_is_pushed_in_tf_serving_layout_with_both_signatures(first_run):
    _, out, summary = first_run
    [version] = _versions(out)
    assert version.isdigit() and summary["pushed_version"] == int(version)
    model_dir = out / "serving" / "imdb_sentiment" / version
    assert (model_dir / "saved_model.pb").exists() and (model_dir / "variables").is_dir()
    loaded = tf.saved_model.load(str(model_dir))
    by_text = loaded.signatures["serving_text"](text=tf.constant(REVIEWS))["probability"]
    examples = [tf.train.Example(features=tf.train.Features(feature={
        features.TEXT: tf.train.Feature(bytes_list=tf.train.BytesList(value=[r]))}))
        .SerializeToString() for r in REVIEWS]
    by_example = loaded.signatures["serving_default"](examples=tf.constant(examples))
    assert by_text.dtype == tf.float32 and by_text.shape == (2,)
    np.testing.assert_allclose(by_example["probability"].numpy(), by_text.numpy(), rtol=1e-6)
    assert by_text[0] > 0.5 > by_text[1]


def test_metrics_json_has_metrics_thresholds_and_the_blessing(first_run):
    _, out, summary = first_run
    overall = summary["metrics"]["overall"]
    for name in ("binary_accuracy", "precision", "recall", "f1_score", "auc", "example_count"):
        assert name in overall
    assert overall["example_count"] == 160
    assert overall["binary_accuracy"] >= 0.75
    assert summary["blessed"] and summary["validation"]["ok"]
    assert summary["thresholds"] == {"min_accuracy": 0.75, "max_accuracy_drop": 0.01}
    assert any(key.startswith("rating=") for key in summary["metrics"])
    for png in ("confusion_matrix", "precision_recall", "training_curves"):
        assert (out / f"{png}.png").stat().st_size > 1000
    assert "BLESSED" in (out / "report.html").read_text()


def test_tflite_files_agree_with_the_saved_model(first_run):
    """The shipped vocabulary + tokenizer spec, applied in plain Python, feed
    the float TFLite model to the same probabilities as serving_text."""
    _, out, summary = first_run
    version = str(summary["pushed_version"])
    folder = out / "tflite" / version
    manifest = json.loads((folder / "manifest.json").read_text())
    assert set(manifest["variants"]) == {"float32", "dynamic_range", "float16", "int8"}
    assert manifest["variants"]["float32"]["max_abs_diff"] <= 1e-4
    for entry in manifest["variants"].values():
        assert entry["label_agreement"] >= entry["tolerance"]["min_agreement"]
    spec = json.loads((folder / "tokenizer.json").read_text())
    vocab = {w: i for i, w in enumerate((folder / "vocab.txt").read_text().splitlines())}
    ids = np.array([text.lookup_ids(text.tokenize_py(r.decode()), vocab, spec["max_length"])
                    for r in REVIEWS])
    tflite = tflite_probabilities((folder / "model_float32.tflite").read_bytes(), ids)
    loaded = tf.saved_model.load(str(out / "serving" / "imdb_sentiment" / version))
    served = loaded.signatures["serving_text"](text=tf.constant(REVIEWS))["probability"]
    np.testing.assert_allclose(tflite, served.numpy(), atol=1e-4)


def test_cached_rerun_pushes_nothing_new(first_run):
    corpus, out, summary = first_run
    again = _run(corpus, out)
    states = node_states(out / "tfx" / "metadata.sqlite")
    for node in ("ImdbExampleGen", "Transform", "Trainer"):
        assert states[node][-1] == "CACHED", (node, states[node])
    assert _versions(out) == [str(summary["pushed_version"])]
    assert again["already_pushed"] and again["pushed_version"] == summary["pushed_version"]


def test_broken_candidate_is_neither_blessed_nor_pushed(first_run, tmp_path):
    """Trained on shuffled labels it is worse than the blessed baseline beyond
    the tolerance: with the absolute floor off, the regression check alone
    must stop it."""
    _, out, summary = first_run
    broken = write_demo_corpus(tmp_path / "broken", SPEC)
    _shuffle_train_labels(broken)
    result = _run(broken, out, "--min_accuracy=0.0")
    assert not result["blessed"] and not result["pushed"]
    assert any("binary_accuracy" in f for f in result["validation"]["failures"])
    assert _versions(out) == [str(summary["pushed_version"])]
    assert sorted(p.name for p in (out / "tflite").iterdir()) == [str(summary["pushed_version"])]
