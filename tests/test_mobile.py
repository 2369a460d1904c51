"""What an app ships: the four TFLite variants, their metadata and manifest,
the TF-free reference runner (serving/mobile.py) and MediaPipe on the files.

A tiny CNN (models/cnn.py) is trained on a generated corpus whose sentiment
words appear in several cases and with punctuation glued on, exported with
the trainer's `token_ids` signature, and converted with convert_all as the
TFLiteConverter component does.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from components.tflite_converter import convert as conv
from components.tflite_converter import metadata as md
from models import contract, text
from models.cnn import build_cnn
from pipeline.config import TrainConfig
from serving.mobile import VARIANTS, MobileClassifier, MobileLoadError
from tests.token_ids_export import save_token_ids_model

ROOT = Path(__file__).resolve().parents[1]
MEDIAPIPE_PYTHON = ROOT / ".cache" / "mediapipe-venv" / "bin" / "python"
MAX_LENGTH = 16
VOCAB = ["good", "bad", "film", "the", "a", "plot", "acting", "great", "awful", "movie"]


def _corpus(count: int, seed: int) -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for _ in range(count):
        words = list(rng.choice(VOCAB[2:], size=int(rng.integers(3, MAX_LENGTH + 4))))
        label = int(rng.integers(0, 2))
        words[rng.integers(0, len(words))] = "great" if label else "awful"
        words[rng.integers(0, len(words))] = "good" if label else "bad"
        cased = [w.upper() if rng.random() < 0.15 else w.capitalize() if rng.random() < 0.15
                 else w for w in words]
        texts.append(" ".join(cased) + rng.choice(["!", ".", "<br /><br />", ""]))
        labels.append(label)
    return texts, np.array(labels)


def _ids(texts: list[str], max_length: int = MAX_LENGTH) -> np.ndarray:
    vocab = {t: i for i, t in enumerate(VOCAB)}
    return np.array([text.ids_py(t, vocab, max_length) for t in texts], dtype=np.int32)


def _probes(loaded, max_length: int) -> conv.Probes:
    texts = conv.probe_texts(max_length)
    ids = _ids(list(texts), max_length)
    reference = loaded.signatures[contract.SIGNATURE_TOKEN_IDS](
        token_ids=tf.constant(ids))[contract.OUTPUT_KEY].numpy()
    return conv.Probes(texts, ids, reference)


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """A release folder as the TFLiteConverter writes it, plus what made it."""
    temp = tmp_path_factory.mktemp("mobile")
    tf.keras.utils.set_random_seed(0)
    train_texts, train_labels = _corpus(600, seed=0)
    config = TrainConfig(embedding_dim=8, filters=4, dropout=0.0, bigram_buckets=101,
                         bigram_dim=4)
    model = build_cnn(config, text.vocab_total(len(VOCAB), 1), MAX_LENGTH)
    model.compile("adam", "binary_crossentropy")
    model.fit(_ids(train_texts), train_labels, epochs=8, batch_size=32, verbose=0)
    loaded = save_token_ids_model(model, temp / "saved_model", MAX_LENGTH)
    check_texts, check_labels = _corpus(200, seed=1)
    reference = loaded.signatures[contract.SIGNATURE_TOKEN_IDS](
        token_ids=tf.constant(_ids(check_texts)))[contract.OUTPUT_KEY].numpy()
    files, entries = conv.convert_all(loaded, calibration_ids=_ids(train_texts),
                                      check_ids=_ids(check_texts), reference=reference,
                                      vocab=VOCAB, probes=_probes(loaded, MAX_LENGTH),
                                      labels=check_labels)
    side = conv.side_files(VOCAB, MAX_LENGTH, 1)
    folder = temp / "tflite" / "1"
    folder.mkdir(parents=True)
    for name, payload in {**files, **side}.items():
        (folder / name).write_bytes(payload)
    manifest = conv.build_manifest(1, MAX_LENGTH, entries, side)
    (folder / conv.MANIFEST).write_text(json.dumps(manifest))
    return {"dir": folder, "loaded": loaded, "texts": check_texts, "reference": reference,
            "labels": check_labels, "manifest": manifest, "calibration": _ids(train_texts),
            "probes": _probes(loaded, MAX_LENGTH)}


def _copy(release: dict, tmp_path: Path) -> Path:
    folder = tmp_path / "release"
    folder.mkdir()
    for path in release["dir"].iterdir():
        (folder / path.name).write_bytes(path.read_bytes())
    return folder


def test_every_variant_is_shipped_with_builtin_ops_and_the_phone_shapes(release):
    manifest = release["manifest"]
    assert set(manifest["variants"]) == set(VARIANTS)
    for name, entry in manifest["variants"].items():
        model = (release["dir"] / conv.variant_file(name)).read_bytes()
        assert "CUSTOM" not in md.operator_names(model), name
        assert entry["builtin_ops_only"] is True
        assert entry["input"]["dtype"] == "int32" and entry["input"]["shape"] == [1, MAX_LENGTH]
        assert entry["output"]["dtype"] == "float32" and entry["output"]["shape"] == [1, 1]


def test_int8_variant_has_integer_weights_and_activations_and_float16_half_weights(release):
    int8 = md.tensor_types((release["dir"] / conv.variant_file("int8")).read_bytes())
    float16 = md.tensor_types((release["dir"] / conv.variant_file("float16")).read_bytes())
    # Float32 stays only in the masked means (conv.VARIANTS' float_ops: their
    # mask, count, sums and quotient, after a Dequantize) and the output;
    # every weight and the other activations are int8.
    from ai_edge_litert.interpreter import Interpreter

    details = Interpreter(model_content=(release["dir"] / conv.variant_file("int8"))
                          .read_bytes()).get_tensor_details()
    floats = [t["name"] for t in details if t["dtype"] == np.float32]
    assert floats and all("_mean" in name or name.startswith(
        ("tfl.dequantize", "arith.constant", "StatefulPartitionedCall")) for name in floats), floats
    assert int8["INT8"] > int8["FLOAT32"]
    assert "SUM" in md.operator_names(
        (release["dir"] / conv.variant_file("int8")).read_bytes())
    assert float16["FLOAT16"] > 0 and "INT8" not in float16


def test_manifest_records_hash_size_ratio_agreement_and_accuracy_per_variant(release):
    manifest = release["manifest"]
    assert manifest["agreement_split"] == contract.VALID
    float32 = manifest["variants"]["float32"]
    assert float32["size_ratio_to_float32"] == 1.0
    for name, entry in manifest["variants"].items():
        model = (release["dir"] / entry["file"]).read_bytes()

        assert entry["sha256"] == hashlib.sha256(model).hexdigest()
        assert entry["size_bytes"] == len(model)
        assert entry["size_ratio_to_float32"] == pytest.approx(len(model) / float32["size_bytes"])
        assert entry["examples"] == len(release["texts"])
        assert entry["label_agreement"] >= conv.VARIANTS[VARIANTS.index(name)].min_agreement
        assert abs(entry["accuracy"] - entry["reference_accuracy"]) <= 0.02
    assert (release["dir"] / conv.LABELS_FILE).read_text() == f"{contract.POSITIVE_LABEL}\n"


def test_models_carry_metadata_with_regex_tokenizer_vocabulary_and_labels(release):
    model = (release["dir"] / conv.variant_file("int8")).read_bytes()
    assert md.has_metadata(model)
    packed = md.associated_files(model)
    assert packed[conv.LABELS_FILE] == b"positive\n"
    assert packed[conv.MEDIAPIPE_VOCAB] == (release["dir"] / conv.MEDIAPIPE_VOCAB).read_bytes()
    assert b"Good 1\n" in packed[conv.MEDIAPIPE_VOCAB]
    assert text.DELIMITER.encode() in model


def test_a_variant_outside_its_tolerance_fails_the_conversion(release):
    strict = dataclasses.replace(conv.VARIANTS[3], max_abs_diff=0.0)
    ids = _ids(release["texts"])
    with pytest.raises(conv.DisagreementError, match="int8"):
        conv.convert_all(release["loaded"], release["calibration"], ids, release["reference"],
                         VOCAB, release["probes"], variants=[strict])


def test_every_variant_follows_the_saved_model_on_short_and_degenerate_inputs(release):
    for name, entry in release["manifest"]["variants"].items():
        variant = conv.VARIANTS[VARIANTS.index(name)]
        probes = entry["probes"]
        assert probes["examples"] == len(conv.PROBE_TEXTS) + 1
        assert probes["max_abs_diff"] <= variant.probe_max_abs_diff, (name, probes["worst"])
        assert probes["label_agreement"] >= variant.min_agreement
        assert entry["tolerance"]["probe_max_abs_diff"] == variant.probe_max_abs_diff


def test_a_variant_off_on_a_short_input_fails_the_conversion_naming_the_input(release):
    strict = dataclasses.replace(conv.VARIANTS[3], probe_max_abs_diff=0.0)
    ids = _ids(release["texts"])
    with pytest.raises(conv.DisagreementError, match=r"int8 disagrees with the SavedModel on "
                                                     r"short inputs: '.*' -> "):
        conv.convert_all(release["loaded"], release["calibration"], ids, release["reference"],
                         VOCAB, release["probes"], variants=[strict])


def test_only_probes_the_tolerance_cannot_carry_across_0_5_count_as_decided():
    probes = conv.Probes(("a", "b", "c"), np.zeros((3, 4), np.int32),
                         np.array([0.56, 0.9, 0.1]))
    flipped = np.array([0.46, 0.8, 0.2])
    assert conv.probe_agreement(probes, flipped, tolerance=0.2)["label_agreement"] == 1.0
    assert conv.probe_agreement(probes, flipped, tolerance=0.01)["label_agreement"] == \
        pytest.approx(2 / 3)


def test_a_nan_probability_is_outside_every_tolerance():
    probes = conv.Probes(("", "good"), np.zeros((2, 4), np.int32), np.array([0.5, 0.8]))
    on_probes = conv.probe_agreement(probes, np.array([np.nan, 0.8]))
    assert np.isnan(on_probes["max_abs_diff"])
    on_valid = {"max_abs_diff": 0.0, "label_agreement": 1.0}
    assert "short inputs: '' -> nan" in (conv.refusal(conv.VARIANTS[2], on_valid, on_probes) or "")
    assert conv.refusal(conv.VARIANTS[2], {**on_valid, "max_abs_diff": np.nan},
                        conv.probe_agreement(probes, probes.reference)) is not None


def test_calibration_adds_each_review_cut_short_to_the_full_ones():
    ids = np.arange(1, 1 + 400 * 50, dtype=np.int32).reshape(400, 50)
    rows = conv.calibration_rows(ids)
    assert len(rows) == conv.CALIBRATION_STEPS + len(conv.SHORT_LENGTHS) * conv.SHORT_ROWS
    np.testing.assert_array_equal(rows[:conv.CALIBRATION_STEPS], ids[:conv.CALIBRATION_STEPS])
    real = (rows[conv.CALIBRATION_STEPS:] != 0).sum(axis=1)
    assert sorted(set(real.tolist())) == list(conv.SHORT_LENGTHS)


LONG = 512


@pytest.fixture(scope="module")
def long_cnn(tmp_path_factory):
    """The CNN at 512 tokens, calibrated on full-length reviews: the setting
    in which int8 used to answer the empty review 0.000."""
    tf.keras.utils.set_random_seed(1)
    texts, labels = _corpus(400, seed=3)
    long_texts = [" ".join(texts[i:i + 40]) for i in range(0, 400, 4)]  # ~500 words each
    config = TrainConfig(embedding_dim=8, filters=4, dropout=0.0, bigram_buckets=101,
                         bigram_dim=4)
    model = build_cnn(config, text.vocab_total(len(VOCAB), 1), LONG)
    model.compile("adam", "binary_crossentropy")
    model.fit(_ids(texts, LONG), labels, epochs=6, batch_size=32, verbose=0)
    loaded = save_token_ids_model(model, tmp_path_factory.mktemp("long") / "model", LONG)
    return loaded, _ids(long_texts, LONG), _probes(loaded, LONG)


@pytest.mark.parametrize(("float_ops", "follows"), [
    (conv.VARIANTS[3].float_ops, True),
    (("SUM", "DIV"), False),  # MAXIMUM(count, 1) in int8: 1 rounds to 0 at a step of 2.0
])
def test_int8_answers_short_inputs_as_the_saved_model_does_only_with_the_count_in_float(
        long_cnn, float_ops, follows):
    loaded, calibration, probes = long_cnn
    int8 = dataclasses.replace(conv.VARIANTS[3], float_ops=float_ops)
    model = conv.convert(loaded, contract.SIGNATURE_TOKEN_IDS, int8, calibration)
    on_probes = conv.probe_agreement(probes, conv.tflite_probabilities(model, probes.ids))
    within = bool(on_probes["max_abs_diff"] <= int8.probe_max_abs_diff)
    assert within is follows, on_probes


def test_int8_refuses_to_convert_without_a_calibration_sample(release):
    with pytest.raises(ValueError, match="calibrate"):
        conv.convert(release["loaded"], contract.SIGNATURE_TOKEN_IDS, conv.VARIANTS[3])


@pytest.mark.parametrize("variant", VARIANTS)
def test_reference_runner_follows_the_saved_model_on_each_variant(release, variant):
    classifier = MobileClassifier(release["dir"], variant)
    probabilities = np.array(classifier.probabilities(release["texts"]))
    entry = release["manifest"]["variants"][variant]
    assert np.max(np.abs(probabilities - release["reference"])) <= entry["max_abs_diff"] + 1e-6


def _cli(args: list[str], stdin: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "serving.mobile", *args], input=stdin,
                          capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_cli_prints_one_probability_per_line_in_order_without_tensorflow(release):
    texts = [*release["texts"][:20], "", " \t ", "\x00\x01 GOOD \u200b", "映画 😀" * 1000]
    stdin = "".join(json.dumps(t) + "\n" for t in texts)
    done = _cli([f"--model_dir={release['dir']}", "--variant=int8"], stdin)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(lines) == len(texts)
    got = np.array([line[contract.OUTPUT_KEY] for line in lines])
    classifier = MobileClassifier(release["dir"], "int8")
    np.testing.assert_allclose(got, classifier.probabilities(texts), rtol=0, atol=1e-6)
    assert ((got >= 0) & (got <= 1)).all()
    probe = ("import sys, serving.mobile as m; m.MobileClassifier(sys.argv[1], 'float32')"
             ".probability('good'); print('tensorflow' in sys.modules)")
    imported = subprocess.run([sys.executable, "-c", probe, str(release["dir"])], cwd=ROOT,
                              capture_output=True, text=True, timeout=120)
    assert imported.stdout.strip() == "False", imported.stderr


def test_cli_rejects_a_line_that_is_not_a_json_string(release):
    done = _cli([f"--model_dir={release['dir']}"], '"fine"\nnot json\n')
    assert done.returncode == 2
    assert "stdin line 2" in done.stderr
    assert len(done.stdout.splitlines()) == 1


def test_truncated_model_is_refused_naming_the_file(release, tmp_path):
    folder = _copy(release, tmp_path)
    path = folder / conv.variant_file("float16")
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(MobileLoadError, match=r"model_float16\.tflite: .*truncated"):
        MobileClassifier(folder, "float16")
    (folder / conv.MANIFEST).unlink()  # without a manifest LiteRT itself must refuse it
    with pytest.raises(MobileLoadError, match=r"model_float16\.tflite"):
        MobileClassifier(folder, "float16")


def test_a_file_that_is_not_tflite_is_refused_naming_the_file(release, tmp_path):
    folder = _copy(release, tmp_path)
    (folder / conv.MANIFEST).unlink()
    (folder / conv.variant_file("float32")).write_bytes(b"<html>not a model</html>" * 10)
    with pytest.raises(MobileLoadError, match=r"model_float32\.tflite: not a TFLite model"):
        MobileClassifier(folder, "float32")
    done = _cli([f"--model_dir={folder}"], "")
    assert done.returncode == 1 and "model_float32.tflite" in done.stderr


def test_a_model_with_another_input_length_is_refused(release, tmp_path):
    folder = _copy(release, tmp_path)
    (folder / conv.MANIFEST).unlink()
    spec = json.loads((folder / conv.TOKENIZER).read_text())
    (folder / conv.TOKENIZER).write_text(json.dumps({**spec, "max_length": MAX_LENGTH + 1}))
    with pytest.raises(MobileLoadError, match=r"model_float32\.tflite: input .*int32"):
        MobileClassifier(folder, "float32")


def test_a_vocabulary_that_does_not_match_the_model_is_refused(release, tmp_path):
    folder = _copy(release, tmp_path)
    (folder / conv.VOCAB).write_text("".join(f"{t}\n" for t in reversed(VOCAB)))
    with pytest.raises(MobileLoadError, match=r"vocab\.txt: sha256 differs"):
        MobileClassifier(folder, "float32")
    (folder / conv.MANIFEST).unlink()  # the vocabulary embedded in the model still tells
    with pytest.raises(MobileLoadError, match=r"vocab\.txt does not match .*model_float32"):
        MobileClassifier(folder, "float32")


@pytest.mark.skipif(not MEDIAPIPE_PYTHON.exists(),
                    reason="MediaPipe's venv is missing: bash scripts/setup_mediapipe_venv.sh")
@pytest.mark.parametrize("variant", ["float32", "int8"])
def test_mediapipe_text_classifier_loads_the_shipped_file_and_agrees(release, variant):
    """MediaPipe tokenizes raw text itself (regex + case-variant vocabulary)
    and must reach the SavedModel's decisions."""
    stdin = "".join(json.dumps(t) + "\n" for t in release["texts"])
    done = subprocess.run(
        [str(MEDIAPIPE_PYTHON), str(ROOT / "bench" / "mediapipe_classify.py"),
         str(release["dir"] / conv.variant_file(variant))],
        input=stdin, capture_output=True, text=True, timeout=300,
        env={**os.environ, "GLOG_minloglevel": "2"})
    assert done.returncode == 0, done.stderr[-2000:]
    scores = np.array([json.loads(line)["scores"][contract.POSITIVE_LABEL]
                       for line in done.stdout.splitlines()])
    decisions = (scores >= 0.5) == (release["reference"] >= 0.5)
    assert len(scores) == len(release["texts"])
    assert decisions.mean() >= 0.99
    if variant == "float32":
        np.testing.assert_allclose(scores, release["reference"], atol=1e-5)
