"""Behaviour of the aclImdb reader: layout, labels, movie ids, and bad input."""

from __future__ import annotations

import gzip
import shutil
from collections import Counter
from pathlib import Path

import pytest

from components.imdb_example_gen.demo_corpus import pack_archive
from components.imdb_example_gen.reader import (
    IngestError,
    Quarantined,
    Review,
    has_test_split,
    parse_movie_id,
    read_reviews,
)


def _reviews(source: Path, **kwargs: bool) -> list[Review]:
    records = list(read_reviews(source, **kwargs))
    assert all(isinstance(r, Review) for r in records)
    return sorted(records, key=lambda r: r.key)  # type: ignore[union-attr]


def test_directory_and_archive_yield_identical_reviews(tiny_corpus, tiny_archive):
    """Reading the tar.gz directly gives exactly what the unpacked folder gives."""
    assert _reviews(tiny_corpus) == _reviews(tiny_archive)


def test_every_folder_is_read_with_its_label_and_rating(tiny_corpus):
    """pos -> label 1 (rating 7-10), neg -> 0 (1-4), unsup -> -1 (rating 0)."""
    reviews = _reviews(tiny_corpus)
    assert Counter((r.split, r.sentiment) for r in reviews) == {
        ("train", "pos"): 12, ("train", "neg"): 12, ("train", "unsup"): 8,
        ("test", "pos"): 6, ("test", "neg"): 6}
    for review in reviews:
        assert (review.label, review.sentiment) in {(1, "pos"), (0, "neg"), (-1, "unsup")}
        low, high = {"pos": (7, 10), "neg": (1, 4), "unsup": (0, 0)}[review.sentiment]
        assert low <= review.rating <= high
        assert review.movie_id.startswith("tt") and review.text.strip()


def test_movie_id_comes_from_the_urls_line_of_the_review_id(tiny_corpus):
    """Line i of urls_pos.txt is the movie of review i."""
    urls = (tiny_corpus / "train" / "urls_pos.txt").read_text().splitlines()
    (tiny_corpus / "train" / "pos" / "4_8.txt").write_text("A fine film.")
    review = next(r for r in _reviews(tiny_corpus) if r.key == "train/pos/4")
    assert review.movie_id == parse_movie_id(urls[4])
    assert parse_movie_id("http://www.imdb.com/title/tt0453418/usercomments") == "tt0453418"


def test_unsup_and_test_folders_are_optional(tiny_corpus):
    reviews = _reviews(tiny_corpus, include_test=False, include_unsup=False)
    assert {r.split for r in reviews} == {"train"}
    assert {r.sentiment for r in reviews} == {"pos", "neg"}


def test_non_utf8_review_is_decoded_with_replacement_and_flagged(tiny_corpus):
    (tiny_corpus / "train" / "pos" / "0_9.txt").write_bytes(b"Caf\xe9 scenes were great.")
    review = next(r for r in _reviews(tiny_corpus) if r.key == "train/pos/0")
    assert review.decoded_with_replacement
    assert review.text == "Caf\ufffd scenes were great."


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("5_9.txt", "   \n", "empty review"),
        ("notes.txt", "stray file", "file name does not match {id}_{rating}.txt"),
        ("7_2.txt", "rating of a negative review in pos/", "rating 2 outside 7-10 for folder pos"),
        ("999_8.txt", "an id past the urls file", "no line 999 in train/urls_pos.txt"),
    ],
)
def test_bad_files_are_quarantined_with_a_reason(tiny_corpus, name, content, reason):
    """Such files are set aside and named, never silently dropped."""
    folder = tiny_corpus / "train" / "pos"
    for old in folder.glob(name.split("_")[0] + "_*.txt"):
        old.unlink()
    (folder / name).write_text(content)
    records = list(read_reviews(tiny_corpus))
    assert Quarantined(f"train/pos/{name}", reason) in records
    on_disk = sum(1 for _ in tiny_corpus.glob("*/*/*.txt"))
    assert len(records) == on_disk  # every file still accounted for


def test_missing_folder_is_an_error_naming_it(tiny_corpus):
    shutil.rmtree(tiny_corpus / "train" / "neg")
    with pytest.raises(IngestError, match=r"missing aclImdb/train/neg"):
        list(read_reviews(tiny_corpus))


def test_missing_urls_file_is_an_error_naming_it(tiny_corpus, tmp_path):
    (tiny_corpus / "test" / "urls_pos.txt").unlink()
    archive = pack_archive(tiny_corpus, tmp_path / "a.tar.gz")
    for source in (tiny_corpus, archive):
        with pytest.raises(IngestError, match=r"missing aclImdb/test/urls_pos.txt"):
            list(read_reviews(source))


def test_truncated_archive_is_an_error_naming_the_archive(tiny_archive, tmp_path):
    cut = tmp_path / "cut.tar.gz"
    data = tiny_archive.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(IngestError, match=r"cut.tar.gz: archive is truncated or corrupt"):
        list(read_reviews(cut))


def test_garbage_file_is_not_taken_for_an_archive(tmp_path):
    bogus = tmp_path / "aclImdb_v1.tar.gz"
    bogus.write_bytes(gzip.compress(b"not a tar file at all" * 10))
    with pytest.raises(IngestError, match=r"aclImdb_v1.tar.gz"):
        list(read_reviews(bogus))


def test_missing_source_is_an_error(tmp_path):
    with pytest.raises(IngestError, match="no such file or directory"):
        list(read_reviews(tmp_path / "nowhere"))


def test_has_test_split_detects_the_official_test_folder(tiny_corpus, tiny_archive):
    assert has_test_split(tiny_corpus) and has_test_split(tiny_archive)
    shutil.rmtree(tiny_corpus / "test")
    assert not has_test_split(tiny_corpus)
