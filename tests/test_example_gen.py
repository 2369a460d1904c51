"""ImdbExampleGen run for real on LocalDagRunner with ML Metadata."""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from pathlib import Path

import pytest

from components.imdb_example_gen.component import imdb_example_gen
from components.imdb_example_gen.executor import REPORT_FILE
from models import features
from tests.tfx_helpers import (
    artifacts_of_type,
    feature,
    node_states,
    read_examples,
    run_components,
)


def _component(source: Path, include_unsup: bool = True, eval_fraction: float = 0.25,
               valid_fraction: float = 0.3, code_version: str = ""):
    return imdb_example_gen(str(source), valid_fraction=valid_fraction,
                            eval_fraction=eval_fraction, include_unsup=include_unsup,
                            code_version=code_version)


def _ingest(source: Path, root: Path, **options):
    db = run_components([_component(source, **options)], root)
    artifact = artifacts_of_type(db, "Examples")[-1]
    splits = json.loads(artifact.properties["split_names"].string_value)
    examples = {s: read_examples(os.path.join(artifact.uri, f"Split-{s}")) for s in splits}
    with open(os.path.join(artifact.uri, REPORT_FILE)) as handle:
        return examples, json.load(handle), artifact


def _movies(examples):
    return {s: {feature(e, features.MOVIE_ID) for e in examples[s]} for s in examples}


def test_archive_becomes_train_valid_eval_unsup_examples_with_every_feature(tiny_archive,
                                                                            tmp_path):
    examples, report, artifact = _ingest(tiny_archive, tmp_path)
    counts = {k: len(v) for k, v in examples.items()}
    assert set(counts) == {"train", "valid", "eval", "unsup"}
    assert counts["train"] + counts["valid"] == 24 and counts["valid"] > 0
    assert (counts["eval"], counts["unsup"]) == (12, 8)
    assert {feature(e, features.REVIEW_ID).split("/")[0] for e in examples["valid"]} == {"train"}
    assert not _movies(examples)["train"] & _movies(examples)["valid"], "movie on both sides"
    assert report["eval_source"] == "official test/ set"
    assert report["quarantined"]["count"] == 0
    example = examples["train"][0]
    assert set(example.features.feature) == set(features.RAW_FEATURES)
    assert Counter(feature(e, features.LABEL) for e in examples["eval"]) == {0: 6, 1: 6}
    assert {feature(e, features.LABEL) for e in examples["unsup"]} == {features.UNLABELED}
    assert {feature(e, features.RATING) for e in examples["unsup"]} == {0}
    assert all(feature(e, features.MOVIE_ID).startswith("tt") for e in examples["train"])
    assert artifact.custom_properties["quarantined"].int_value == 0


def test_without_test_folder_eval_is_a_movie_grouped_holdout(tiny_corpus, tmp_path):
    shutil.rmtree(tiny_corpus / "test")
    examples, report, _ = _ingest(tiny_corpus, tmp_path, include_unsup=False, eval_fraction=0.4)
    assert set(examples) == {"train", "valid", "eval"}
    assert "grouped by movie_id" in report["eval_source"]
    movies = _movies(examples)
    assert movies["train"] and movies["eval"]
    for a, b in (("train", "eval"), ("train", "valid"), ("valid", "eval")):
        assert not movies[a] & movies[b], f"a movie landed in both {a} and {b}"
    assert sum(len(v) for v in examples.values()) == 24


def test_editing_a_urls_file_or_the_ingestion_code_reruns_ingestion(tiny_corpus, tmp_path):
    """The urls files decide each review's movie (hence its split), so they
    join the input fingerprint; the ingestion code's fingerprint joins the
    cache key. An unchanged re-run stays cached."""
    root = tmp_path / "mlmd"
    run_components([_component(tiny_corpus)], root)
    run_components([_component(tiny_corpus)], root)
    urls = tiny_corpus / "train" / "urls_pos.txt"
    lines = urls.read_text().splitlines()
    urls.write_text("\n".join(lines[1:] + lines[:1]) + "\n")
    os.utime(urls, (urls.stat().st_atime, urls.stat().st_mtime + 5))
    run_components([_component(tiny_corpus)], root)
    db = run_components([_component(tiny_corpus, code_version="edited")], root)
    assert node_states(db)["ImdbExampleGen"] == ["COMPLETE", "CACHED", "COMPLETE", "COMPLETE"]


def _replace(folder: Path, review_id: int, rating: int, content: bytes) -> None:
    for old in folder.glob(f"{review_id}_*.txt"):
        old.unlink()
    (folder / f"{review_id}_{rating}.txt").write_bytes(content)


def test_bad_files_are_counted_in_the_report(tiny_corpus, tmp_path):
    _replace(tiny_corpus / "train" / "neg", 0, 2, b"")
    _replace(tiny_corpus / "train" / "pos", 1, 8, b"na\xefve but great")
    examples, report, artifact = _ingest(tiny_corpus, tmp_path)
    assert len(examples["train"]) + len(examples["valid"]) == 23
    assert report["quarantined"]["files"] == [{"path": "train/neg/0_2.txt",
                                               "reason": "empty review"}]
    assert report["decoded_with_replacement"] == {"count": 1, "files": ["train/pos/1_8.txt"]}
    assert artifact.custom_properties["quarantined"].int_value == 1


def test_corrupt_archive_fails_and_publishes_no_split(tiny_archive, tmp_path):
    data = tiny_archive.read_bytes()
    tiny_archive.write_bytes(data[: len(data) // 2])
    with pytest.raises(Exception, match="archive is truncated or corrupt"):
        _ingest(tiny_archive, tmp_path)
    leftovers = [p for p in (tmp_path / "pipeline").rglob("Split-*")]
    assert leftovers == []


@pytest.mark.slow
def test_real_dev_archive_is_ingested_completely(dev_archive, tmp_path):
    """25k train, 5k eval (official test slice), 50k unsup; balanced; all accounted for."""
    examples, report, _ = _ingest(dev_archive, tmp_path)
    counts = {k: len(v) for k, v in examples.items()}
    assert counts["train"] + counts["valid"] == 25_000
    assert 0.25 < counts["valid"] / 25_000 < 0.35  # valid_fraction 0.3, by movie
    assert (counts["eval"], counts["unsup"]) == (5_000, 50_000)
    labels = report["by_split_and_label"]
    assert labels["train/0"] + labels["valid/0"] == labels["train/1"] + labels["valid/1"] == 12_500
    assert (labels["eval/0"], labels["eval/1"], labels["unsup/-1"]) == (2_500, 2_500, 50_000)
    assert report["quarantined"]["count"] == 0
    keys = [feature(e, features.REVIEW_ID) for split in examples.values() for e in split]
    assert len(set(keys)) == 80_000
