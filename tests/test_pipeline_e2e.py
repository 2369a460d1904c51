"""The whole pipeline, run for real by the local runner on a small generated
corpus, as a sequence of runs into one output folder: a first release, a
cached re-run, a retrained and a restored model, a TFLite check that fails,
a schema edit, and a worse candidate judged against the served model after
the ML Metadata store was deleted."""

from __future__ import annotations

import hashlib
import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from bench import pipeline_point
from components.imdb_example_gen.demo_corpus import DemoCorpusSpec, write_demo_corpus
from components.release.publish import saved_model_fingerprint
from components.tflite_converter.convert import tflite_probabilities
from models import contract, features, text
from pipeline import local_runner
from pipeline.fingerprints import SCHEMA_DIR
from tests.tfx_helpers import artifacts_of_type, node_states

pytestmark = pytest.mark.e2e

SPEC = DemoCorpusSpec(train_per_class=300, test_per_class=80, unsup=0, reviews_per_movie=5)
NODES = {"ImdbExampleGen", "StatisticsGen", "SchemaGen", "curated_schema", "ExampleValidator",
         "AnomaliesGate", "Transform", "Trainer", "ServedBaseline", "Evaluator", "TFLiteCheck",
         "InfraValidation", "Release"}
REVIEWS = [b"A wonderful, brilliant film. The acting was superb!",
           b"Awful and boring.<br /><br />The plot was terrible."]
MODEL = "imdb_sentiment"


def _run(corpus: Path, out: Path, *extra: str, expect: int = 0) -> dict:
    """One run of the local runner; returns OUTPUT/last_run.json."""
    args = [f"--data={corpus}", f"--output_dir={out}", "--epochs=6", "--max_length=48",
            "--vocab_size=400", "--embedding_dim=16", "--filters=16", "--bigram_buckets=1009",
            "--batch_size=32", "--learning_rate=0.003", "--dropout=0.2",
            "--early_stopping_patience=3", "--min_accuracy=0.75", "--max_accuracy_drop=0.2",
            "--valid_fraction=0.2", "--allow_download=false", *extra]
    assert local_runner.main(args) == expect
    return json.loads((out / "last_run.json").read_text())


def _versions(out: Path) -> list[int]:
    return sorted(int(p.name) for p in (out / "serving" / MODEL).iterdir())


def _snapshot(out: Path) -> dict[str, str]:
    """sha256 of every published file: serving, tflite, metrics and report."""
    published = [p for p in sorted(out.rglob("*")) if p.is_file()
                 and p.parts[len(out.parts)] not in ("tfx", "logs", "last_run.json")]
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in published}


def _states(out: Path) -> dict[str, list[str]]:
    return node_states(out / "tfx" / "metadata.sqlite")


def _shuffle_train_labels(corpus: Path) -> None:
    """Deals the train texts randomly over pos/ and neg/: a model trained on
    this learns nothing, while the eval (test/) split stays as it was."""
    files = sorted((corpus / "train").glob("[pn][oe][sg]/*.txt"))
    texts = [f.read_bytes() for f in files]
    random.Random(7).shuffle(texts)
    for file, content in zip(files, texts, strict=True):
        file.write_bytes(content)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The corpus, the output folder, and the verdicts of the runs so far."""
    root = tmp_path_factory.mktemp("e2e")
    corpus = write_demo_corpus(root / "data", SPEC)
    out = root / "out"
    return {"corpus": corpus, "out": out, "root": root, "first": _run(corpus, out)}


def test_every_component_executes_and_records_in_ml_metadata(runs):
    states = _states(runs["out"])
    assert set(states) >= NODES
    assert all(s[-1] == "COMPLETE" for n, s in states.items() if n in NODES), states


def test_the_eval_split_is_read_by_no_trainer_side_component(runs):
    """Transform's output (what the Trainer reads) has train and valid only."""
    db = runs["out"] / "tfx" / "metadata.sqlite"
    [transformed] = [a for a in artifacts_of_type(db, "Examples")
                     if "Transform" in a.uri]
    assert json.loads(transformed.properties["split_names"].string_value) == ["train", "valid"]
    [ingested] = [a for a in artifacts_of_type(db, "Examples") if "ImdbExampleGen" in a.uri]
    assert json.loads(ingested.properties["split_names"].string_value) == [
        "train", "valid", "eval"]


def test_blessed_model_is_released_in_tf_serving_layout_with_both_signatures(runs):
    out, first = runs["out"], runs["first"]
    [version] = _versions(out)
    assert first["status"] == "released" and first["version"] == version
    model_dir = out / "serving" / MODEL / str(version)
    assert (model_dir / "saved_model.pb").exists() and (model_dir / "variables").is_dir()
    assert (model_dir / "assets.extra" / "tf_serving_warmup_requests").stat().st_size > 100
    loaded = tf.saved_model.load(str(model_dir))
    by_text = loaded.signatures[contract.SIGNATURE_TEXT](
        **{contract.INPUT_TEXT: tf.constant(REVIEWS)})[contract.OUTPUT_KEY]
    examples = [tf.train.Example(features=tf.train.Features(feature={
        features.TEXT: tf.train.Feature(bytes_list=tf.train.BytesList(value=[r]))}))
        .SerializeToString() for r in REVIEWS]
    by_example = loaded.signatures[contract.SIGNATURE_EXAMPLES](
        **{contract.INPUT_EXAMPLES: tf.constant(examples)})
    assert by_text.dtype == tf.float32 and by_text.shape == (2,)
    np.testing.assert_allclose(by_example[contract.OUTPUT_KEY].numpy(), by_text.numpy(),
                               rtol=1e-6)
    assert by_text[0] > 0.5 > by_text[1]


def test_metrics_json_describes_the_released_version(runs):
    out, first = runs["out"], runs["first"]
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["released_version"] == first["version"]
    overall = summary["metrics"]["overall"]
    for name in ("binary_accuracy", "precision", "recall", "f1_score", "auc", "example_count"):
        assert name in overall
    assert overall["example_count"] == 160
    assert overall["binary_accuracy"] >= 0.75
    assert summary["blessed"] and summary["validation"]["ok"]
    assert summary["thresholds"] == {"min_accuracy": 0.75, "max_accuracy_drop": 0.2}
    assert summary["baseline_version"] is None  # nothing was served before
    assert any(key.startswith("rating=") for key in summary["metrics"])
    for png in ("confusion_matrix", "precision_recall", "training_curves"):
        assert (out / f"{png}.png").stat().st_size > 1000
    assert "BLESSED" in (out / "report.html").read_text()
    assert not (out / ".staging").exists()
    assert summary["infra_validation"]["ok"] and summary["infra_validation"]["requests"] == 2


def test_every_json_output_is_strict_and_one_class_slices_say_undefined(runs):
    """No NaN or Infinity in any JSON file of the run (strict parsers refuse
    them); a rating slice has one class, so its AUC and recall or precision
    are null, with the reason."""
    out = runs["out"]
    paths = [out / "metrics.json", out / "last_run.json",
             *out.glob("tflite/*/manifest.json"), *out.glob("serving/*/*/assets.extra/*.json")]
    for path in paths:
        json.loads(path.read_text(), parse_constant=lambda name, p=path: pytest.fail(
            f"{p}: {name} is not JSON"))
    slices = json.loads((out / "metrics.json").read_text())["metrics"]
    ratings = [m for name, m in slices.items() if name.startswith("rating=")]
    assert ratings and all(m["auc"] is None and "auc" in m["undefined"] for m in ratings)


def test_tflite_files_agree_with_the_saved_model(runs):
    """The shipped vocabulary + tokenizer spec, applied in plain Python, feed
    the float TFLite model to the same probabilities as the SavedModel's
    classifier (token_ids). The default run blends NB-LR into the text
    signatures, which the phone does not get, and the manifest says so."""
    out, version = runs["out"], runs["first"]["version"]
    folder = out / "tflite" / str(version)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["version"] == version and manifest["agreement_split"] == contract.VALID
    assert manifest["saved_model_blends_ngrams"] is True
    assert set(manifest["variants"]) == {"float32", "dynamic_range", "float16", "int8"}
    assert (folder / "labels.txt").read_text() == "positive\n"
    assert manifest["variants"]["float32"]["max_abs_diff"] <= 1e-4
    for entry in manifest["variants"].values():
        assert entry["label_agreement"] >= entry["tolerance"]["min_agreement"]
        assert entry["probes"]["max_abs_diff"] <= entry["tolerance"]["probe_max_abs_diff"]
        assert entry["probes"]["examples"] > 10
    spec = json.loads((folder / "tokenizer.json").read_text())
    vocab = {w: i for i, w in enumerate((folder / "vocab.txt").read_text().splitlines())}
    ids = np.array([text.lookup_ids(text.tokenize_py(r.decode()), vocab, spec["max_length"])
                    for r in REVIEWS])
    tflite = tflite_probabilities((folder / "model_float32.tflite").read_bytes(), ids)
    loaded = tf.saved_model.load(str(out / "serving" / MODEL / str(version)))
    classifier = loaded.signatures[contract.SIGNATURE_TOKEN_IDS](
        **{contract.INPUT_TOKEN_IDS: tf.constant(ids, tf.int32)})[contract.OUTPUT_KEY]
    np.testing.assert_allclose(tflite, classifier.numpy(), atol=1e-4)


def test_cached_rerun_releases_nothing_new(runs):
    out, corpus = runs["out"], runs["corpus"]
    before, trained = _snapshot(out), pipeline_point.train_seconds(out)
    again = _run(corpus, out)
    states = _states(out)
    for node in ("ImdbExampleGen", "ExampleValidator", "Transform", "Trainer", "TFLiteCheck"):
        assert states[node][-1] == "CACHED", (node, states[node])
    assert again["status"] == "unchanged" and again["version"] == runs["first"]["version"]
    assert _snapshot(out) == before
    # The bench's train time is the run that trained the model, not the cache hit.
    assert pipeline_point.train_seconds(out) == trained


def test_a_flag_flipped_back_to_an_older_model_becomes_a_new_version(runs):
    """TF Serving serves the highest version: returning to the first model
    (the Trainer's cache hands back the very same model) must publish it
    again above the model in between."""
    out, corpus, first = runs["out"], runs["corpus"], runs["first"]["version"]
    other = _run(corpus, out, "--dropout=0.3")
    assert other["status"] == "released" and other["version"] > first
    back = _run(corpus, out)
    assert _states(out)["Trainer"][-1] == "CACHED"
    assert back["status"] == "released" and back["version"] > other["version"]
    assert _versions(out) == [first, other["version"], back["version"]]
    serving = out / "serving" / MODEL
    assert saved_model_fingerprint(str(serving / str(back["version"]))) == \
        saved_model_fingerprint(str(serving / str(first)))
    assert json.loads((out / "metrics.json").read_text())["released_version"] == back["version"]
    runs["served"] = back["version"]


def test_a_failing_tflite_check_publishes_nothing_and_says_which_check(runs, capsys):
    """Tolerance 0 for the dynamic-range variant: the check fails, the run
    exits 1 with one error line, and every published file stays byte-identical."""
    out, corpus = runs["out"], runs["corpus"]
    before = _snapshot(out)
    capsys.readouterr()
    verdict = _run(corpus, out, "--dropout=0.25", "--dynamic_range_max_abs_diff=0", expect=1)
    err = capsys.readouterr().err
    [line] = [x for x in err.splitlines() if x.startswith("error: ")]
    assert "TFLite variant dynamic_range disagrees with the SavedModel" in line
    assert "Traceback" not in err
    assert verdict["status"] == "failed"
    assert _snapshot(out) == before
    assert _versions(out)[-1] == runs["served"]


def test_a_schema_edit_reruns_validation_and_everything_after_it(runs):
    out, corpus, root = runs["out"], runs["corpus"], runs["root"]
    schema = root / "schema"
    shutil.copytree(SCHEMA_DIR, schema)
    _run(corpus, out, f"--schema_dir={schema}")
    counts = {n: len(s) for n, s in _states(out).items()}
    text_file = schema / "schema.pbtxt"
    text_file.write_text(text_file.read_text().replace(
        'name: "review_id"\n  type: BYTES\n  presence { min_fraction: 1.0 min_count: 1 }',
        'name: "review_id"\n  type: BYTES\n  presence { min_fraction: 1.0 min_count: 2 }'))
    _run(corpus, out, f"--schema_dir={schema}")
    states = _states(out)
    assert states["ImdbExampleGen"][-1] == "CACHED"
    for node in ("ExampleValidator", "AnomaliesGate", "Transform", "Trainer"):
        assert len(states[node]) == counts[node] + 1 and states[node][-1] == "COMPLETE", node
    runs["served"] = _versions(out)[-1]


def test_without_ml_metadata_a_worse_candidate_is_still_judged_against_the_served_model(
        runs, tmp_path, capsys):
    """The store is deleted, serving/ kept; a model trained on shuffled labels
    (the absolute floor off) fails the no-regression check against the served
    version and is not released: exit 0 and the banner, nothing changes."""
    out = runs["out"]
    shutil.rmtree(out / "tfx")
    broken = write_demo_corpus(tmp_path / "broken", SPEC)
    _shuffle_train_labels(broken)
    before = _snapshot(out)
    capsys.readouterr()
    verdict = _run(broken, out, "--min_accuracy=0.0")
    assert verdict["status"] == "not_blessed" and verdict["version"] is None
    assert verdict["served_version_before"] == runs["served"]
    assert any("binary_accuracy" in f and "served model" in f
               for f in verdict["validation"]["failures"])
    assert "CANDIDATE NOT BLESSED" in capsys.readouterr().out
    assert _snapshot(out) == before


def test_a_transformer_fine_tuned_from_masked_lm_pretraining_runs_the_whole_pipeline(
        tmp_path):
    """--model=transformer --pretrain: the Pretrainer learns from unsup and
    train text, the Trainer starts from its model (lineage in ML Metadata),
    and the fine-tuned transformer goes through evaluation, the TFLite and
    infra checks to the release like the CNN."""
    corpus = write_demo_corpus(tmp_path / "data",
                               DemoCorpusSpec(train_per_class=300, test_per_class=80, unsup=300,
                                              reviews_per_movie=5))
    out = tmp_path / "out"
    verdict = _run(corpus, out, "--model=transformer", "--pretrain=true", "--num_layers=1",
                   "--num_heads=2", "--ff_dim=32", "--pretrain_window=16", "--pretrain_epochs=2",
                   "--epochs=12", "--dropout=0.1")
    states = _states(out)
    assert states["Pretrainer"] == ["COMPLETE"] and states["Release"][-1] == "COMPLETE"
    db = out / "tfx" / "metadata.sqlite"
    models = {a.id: a for a in artifacts_of_type(db, "Model")}
    [pretrained] = [a for a in models.values() if "Pretrainer" in a.uri]
    assert (Path(pretrained.uri) / "Format-Serving" / contract.ENCODER_WEIGHTS_FILE).is_file()
    from tests.tfx_helpers import store

    mlmd = store(db)
    [trainer_node] = [c for c in mlmd.get_contexts_by_type("node")
                      if c.name.endswith(".Trainer")]
    [trainer_run] = mlmd.get_executions_by_context(trainer_node.id)
    inputs = {ev.artifact_id for ev in mlmd.get_events_by_execution_ids([trainer_run.id])
              if ev.type == ev.INPUT}
    assert pretrained.id in inputs
    [transformed] = [a for a in artifacts_of_type(db, "Examples") if "Transform" in a.uri]
    assert json.loads(transformed.properties["split_names"].string_value) == [
        "train", "valid", "unsup"]
    assert verdict["status"] == "released", verdict
    assert verdict["metrics"]["overall"]["binary_accuracy"] >= 0.75
    served = tf.saved_model.load(str(out / "serving" / MODEL / str(verdict["version"])))
    p = served.signatures[contract.SIGNATURE_TEXT](
        **{contract.INPUT_TEXT: tf.constant(REVIEWS)})[contract.OUTPUT_KEY].numpy()
    assert p[0] > 0.5 > p[1]
    # The side-by-side bench reads this run as one model: test figures from
    # the Evaluator, train time = Pretrainer + Trainer from ML Metadata.
    point = pipeline_point.point(out, "transformer + MLM")
    assert point["accuracy"] == verdict["metrics"]["overall"]["binary_accuracy"]
    seconds = point["component_seconds"]
    assert set(seconds) == {"Pretrainer", "Trainer"} and min(seconds.values()) > 0
    assert point["train_seconds"] == pytest.approx(sum(seconds.values()))
    assert 0.5 <= point["valid"]["val_accuracy"] <= 1 and point["blend"] is None


def test_a_wordpiece_encoder_runs_the_whole_pipeline_with_its_tokenizer_inside(tmp_path):
    """--model=minilm with a tiny randomly initialised BERT encoder (the
    packaged weights are a benchmark's, not CI's): Transform tokenises with
    the encoder's WordPiece vocabulary, and the model goes through the
    Evaluator, the TFLite and infra checks (TF Text ops registered in each)
    to a release whose raw-text signature tokenises inside. With
    --ngram_blend, Transform also writes every word's id, the Trainer fits
    NB-LR on their n-grams and the released model serves the encoder
    blended with NB-LR (weights fitted on valid).
    Its learning curve (64 valid reviews every 5 steps) reaches the report."""
    corpus = write_demo_corpus(tmp_path / "data", SPEC)
    out = tmp_path / "out"
    verdict = _run(corpus, out, "--model=minilm", "--encoder_init=random", "--num_layers=2",
                   "--embedding_dim=32", "--num_heads=2", "--ff_dim=64", "--max_length=64",
                   "--epochs=10", "--learning_rate=0.001", "--dropout=0.1",
                   "--early_stopping_patience=4", "--min_accuracy=0.7", "--ngram_blend=true",
                   "--ngram_vocab_size=5000", "--curve_every_steps=5", "--curve_reviews=64")
    assert verdict["status"] == "released", verdict
    assert verdict["metrics"]["overall"]["binary_accuracy"] >= 0.7
    version = str(verdict["version"])
    served = tf.saved_model.load(str(out / "serving" / MODEL / version))
    p = served.signatures[contract.SIGNATURE_TEXT](
        **{contract.INPUT_TEXT: tf.constant(REVIEWS)})[contract.OUTPUT_KEY].numpy()
    assert p.shape == (2,) and p[0] > 0.5 > p[1]
    (report_file,) = out.rglob(contract.BLEND_FILE)
    blend = json.loads(report_file.read_text())
    assert blend["valid_accuracy"]["blend"] >= blend["valid_accuracy"]["classifier"]
    assert blend["weights"]["ngrams"] > 0
    spec = json.loads((out / "tflite" / version / "tokenizer.json").read_text())
    assert spec["kind"] == "wordpiece" and spec["max_length"] == 64
    manifest = json.loads((out / "tflite" / version / "manifest.json").read_text())
    assert set(manifest["variants"]) == {"float32", "dynamic_range", "float16"}
    assert manifest["saved_model_blends_ngrams"] is True  # the files are the encoder alone
    history = json.loads((out / "metrics.json").read_text())["training_history"]
    steps = history["curve_step"]
    assert steps[:3] == [0, 5, 10] and len(history["curve_accuracy"]) == len(steps)
    assert max(history["curve_accuracy"]) >= 0.7
    assert (out / "learning_curve.png").stat().st_size > 1000
