"""The release step's publishing rules: versions, deduplication, all or nothing."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
import tensorflow as tf

from components.release import publish
from components.release.layout import serving_dir, tflite_dir


def _saved_model(path: Path, weight: float) -> Path:
    module = tf.Module()
    module.w = tf.Variable(weight)
    module.f = tf.function(lambda x: x * module.w,
                           input_signature=[tf.TensorSpec([None], tf.float32)])
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.f})
    return path


@pytest.fixture
def candidate(tmp_path):
    """A SavedModel plus the TFLite files that go with it."""
    model = _saved_model(tmp_path / "candidate", 2.0)
    tflite = tmp_path / "tflite_files"
    tflite.mkdir()
    (tflite / "model_float32.tflite").write_bytes(b"flatbuffer")
    (tflite / "manifest.json").write_text("{}")
    return model, tflite


def _release(out: Path, candidate, version: int, reports=None, **kwargs):
    model, tflite = candidate
    return publish.publish_release(
        output_dir=str(out), model_name="m", saved_model_dir=str(model),
        tflite_files_dir=str(tflite), reports=reports or {"metrics.json": b'{"v": 1}'},
        version=version, **kwargs)


def _snapshot(folder: Path) -> dict[str, str]:
    """{relative path: sha256} of every file under `folder`."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_two_releases_in_the_same_second_get_distinct_increasing_versions():
    first = publish.next_version([], now_s=1_800_000_000.7)
    second = publish.next_version([first], now_s=1_800_000_000.9)
    third = publish.next_version([first, second], now_s=1_800_000_001.0)
    assert first < second < third
    assert (first, second, third) == (1_800_000_000, 1_800_000_001, 1_800_000_002)


def test_versions_never_go_back_even_when_the_clock_does():
    assert publish.next_version([1_900_000_000], now_s=1_800_000_000) == 1_900_000_001


def test_back_to_back_releases_publish_two_versions(tmp_path, candidate):
    out = tmp_path / "out"
    versions = []
    for _ in range(2):
        version = publish.next_version(publish.list_versions(serving_dir(str(out), "m")),
                                       publish.now())
        _release(out, candidate, version)
        versions.append(version)
    assert versions[0] < versions[1]
    assert publish.list_versions(serving_dir(str(out), "m")) == versions
    assert sorted(int(p.name) for p in Path(tflite_dir(str(out))).iterdir()) == versions


def test_a_release_publishes_serving_tflite_and_reports_and_leaves_no_staging(tmp_path,
                                                                               candidate):
    out = tmp_path / "out"
    released = _release(out, candidate, 7, reports={"metrics.json": b"{}", "report.html": b"<p>"})
    assert Path(released.serving_path) == out / "serving" / "m" / "7"
    assert (out / "serving" / "m" / "7" / "saved_model.pb").exists()
    assert (out / "tflite" / "7" / "model_float32.tflite").read_bytes() == b"flatbuffer"
    assert (out / "report.html").read_bytes() == b"<p>"
    assert not (out / publish.STAGING_DIR).exists()


def test_a_failed_release_leaves_the_previous_one_byte_identical(tmp_path, candidate):
    """The serving folder is renamed last; when that fails (here: the version
    exists), the TFLite folder and reports already moved are put back."""
    out = tmp_path / "out"
    _release(out, candidate, 5, reports={"metrics.json": b"old", "report.html": b"old"})
    (out / "serving" / "m" / "6").mkdir()  # someone else took version 6 meanwhile
    (out / "serving" / "m" / "6" / "saved_model.pb").write_bytes(b"theirs")
    before = _snapshot(out)
    with pytest.raises(publish.ReleaseConflictError, match="never overwritten"):
        _release(out, candidate, 6, reports={"metrics.json": b"new", "report.html": b"new",
                                              "plot.png": b"new"})
    assert _snapshot(out) == before
    assert not (out / "tflite" / "6").exists() and not (out / "plot.png").exists()


def test_the_tflite_files_are_edited_in_the_staged_copy_and_the_input_stays(tmp_path,
                                                                           candidate):
    """Release stamps the version into the manifest of the copy it publishes:
    the checked TFLite artifact is read once and never written."""
    out, (_, tflite) = tmp_path / "out", candidate
    before = _snapshot(tflite)

    def stamp(staged: str) -> None:
        Path(staged, "manifest.json").write_text('{"version": 4}')

    _release(out, candidate, 4, prepare_tflite=stamp)
    assert (out / "tflite" / "4" / "manifest.json").read_text() == '{"version": 4}'
    assert _snapshot(tflite) == before


def test_a_failure_while_staging_publishes_nothing(tmp_path, candidate):
    out = tmp_path / "out"

    def broken_warmup(staged: str) -> None:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        _release(out, candidate, 3, prepare_serving=broken_warmup)
    assert publish.list_versions(serving_dir(str(out), "m")) == []
    assert not Path(tflite_dir(str(out)), "3").exists() and not (out / "metrics.json").exists()


def test_copies_of_a_model_share_a_fingerprint_and_retrained_models_do_not(tmp_path):
    a = _saved_model(tmp_path / "a", 1.0)
    shutil.copytree(a, tmp_path / "a_copy")
    b = _saved_model(tmp_path / "b", 3.0)
    assert publish.saved_model_fingerprint(str(a)) is not None
    assert publish.saved_model_fingerprint(str(a)) == \
        publish.saved_model_fingerprint(str(tmp_path / "a_copy"))
    assert publish.saved_model_fingerprint(str(a)) != publish.saved_model_fingerprint(str(b))


def test_a_model_without_a_fingerprint_matches_nothing(tmp_path):
    a = _saved_model(tmp_path / "a", 1.0)
    (a / "fingerprint.pb").unlink()
    assert publish.saved_model_fingerprint(str(a)) is None


def test_only_integer_folders_count_as_versions(tmp_path):
    base = tmp_path / "serving" / "m"
    for name in ("3", "12", ".staging-1", "tmp", "2"):
        (base / name).mkdir(parents=True)
    assert publish.list_versions(str(base)) == [2, 3, 12]
    assert publish.latest_version(str(base)) == 12
    assert publish.latest_version(str(tmp_path / "nothing")) is None


# --- run outputs: strict JSON, undefined metrics as null -------------------------------------

def test_undefined_metrics_of_a_one_class_slice_are_null_with_the_reason():
    from components.release.report import without_undefined

    only_negatives = {"auc": 0.0, "binary_accuracy": 0.97, "precision": 0.0, "f1_score": 0.0,
                      "recall": float("nan"),
                      "confusion_matrix@0.5": {"tp": 0.0, "fp": 32.0, "tn": 960.0, "fn": 0.0}}
    metrics = without_undefined(only_negatives)
    assert metrics["auc"] is None and metrics["recall"] is None and metrics["f1_score"] is None
    assert metrics["precision"] == 0.0  # 0 of 32 predicted positives: defined, and 0
    assert metrics["binary_accuracy"] == 0.97
    assert set(metrics["undefined"]) == {"auc", "recall", "f1_score"}
    none_predicted = {"precision": 0.0, "recall": 0.0, "auc": 0.8,
                      "confusion_matrix@0.5": {"tp": 0.0, "fp": 0.0, "tn": 5.0, "fn": 3.0}}
    assert without_undefined(none_predicted)["precision"] is None
    assert without_undefined(none_predicted)["auc"] == 0.8
    both = {"auc": 0.9, "confusion_matrix@0.5": {"tp": 3.0, "fp": 1.0, "tn": 5.0, "fn": 1.0}}
    assert without_undefined(both) == both


def test_output_json_is_strict_whatever_the_values():
    import json

    from components.release import strict_json

    text = strict_json.dumps({"recall": float("nan"), "rows": [1.0, float("inf"), (2, None)],
                              "nested": {"x": -float("inf")}})
    assert json.loads(text, parse_constant=lambda name: pytest.fail(name)) == {
        "recall": None, "rows": [1.0, None, [2, None]], "nested": {"x": None}}
