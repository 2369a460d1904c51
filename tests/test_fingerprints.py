"""Code fingerprints: the cache re-runs the steps an edit feeds, and only those."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pipeline.fingerprints import REPO, SCHEMA_DIR, code_versions


@pytest.fixture
def checkout(tmp_path) -> Path:
    """A copy of the code the fingerprints cover."""
    for folder in ("models", "components", "pipeline"):
        shutil.copytree(REPO / folder, tmp_path / folder,
                        ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def test_fingerprints_are_stable_for_unchanged_code(checkout):
    assert code_versions(checkout, checkout / "pipeline" / "schema") == \
        code_versions(checkout, checkout / "pipeline" / "schema")
    assert code_versions().trainer == code_versions(checkout, SCHEMA_DIR).trainer


def test_editing_a_help_string_does_not_retrain_the_model(checkout):
    before = code_versions(checkout, checkout / "pipeline" / "schema")
    _edit(checkout / "models" / "config.py", '"random seed"',
          '"seed of every random draw"')
    _edit(checkout / "pipeline" / "config.py", '"TF Serving model name"',
          '"the model name TF Serving serves"')
    assert code_versions(checkout, checkout / "pipeline" / "schema") == before


def test_editing_the_model_retrains_and_editing_preprocessing_retransforms(checkout):
    schema = checkout / "pipeline" / "schema"
    before = code_versions(checkout, schema)
    _edit(checkout / "models" / "cnn.py", "KERNEL_SIZES = (3, 4, 5)", "KERNEL_SIZES = (2, 3, 4)")
    after_model = code_versions(checkout, schema)
    assert after_model.trainer != before.trainer
    assert (after_model.transform, after_model.ingest) == (before.transform, before.ingest)
    _edit(checkout / "models" / "text.py", 'HTML_TAG = r"<[^>]*>"', 'HTML_TAG = r"<[^>]+>"')
    after_text = code_versions(checkout, schema)
    assert after_text.transform != after_model.transform
    assert after_text.tflite != after_model.tflite


def test_editing_the_schema_or_the_reader_changes_their_fingerprints(checkout):
    schema = checkout / "pipeline" / "schema"
    before = code_versions(checkout, schema)
    _edit(schema / "schema.pbtxt", "max: 10", "max: 10 ")
    _edit(checkout / "components" / "imdb_example_gen" / "reader.py", "ROOT_NAME = ",
          "ROOT_NAME: str = ")
    after = code_versions(checkout, schema)
    assert after.schema != before.schema and after.ingest != before.ingest
    assert after.trainer == before.trainer
