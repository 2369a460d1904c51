"""Reads the Stanford Large Movie Review dataset (aclImdb v1.0) in its official
layout, from an unpacked directory or straight from the `.tar.gz` archive.

Plain functions (no Beam) reused by every caller. Files are read through
`tf.io.gfile`, so the same code reads a local folder, a mounted volume or
object storage (`gs://`, `s3://`) when the pipeline runs on a cluster.
Each review file becomes a `Review`, or a `Quarantined` record saying why it
was set aside: nothing is dropped silently. Structural problems (a missing
folder or urls file, a corrupt archive) raise `IngestError` naming the path.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import posixpath
import re
import tarfile
import zlib
from collections.abc import Callable, Iterator

import tensorflow as tf

from components.errors import UserFacingError

__all__ = [
    "RATING_RANGES",
    "ROOT_NAME",
    "IngestError",
    "Quarantined",
    "Review",
    "dataset_root",
    "has_test_split",
    "parse_movie_id",
    "read_reviews",
]

ROOT_NAME = "aclImdb"

#: Allowed ratings per folder, as documented in the dataset's README.
RATING_RANGES: dict[str, tuple[int, int]] = {"pos": (7, 10), "neg": (1, 4), "unsup": (0, 0)}

# What reading a damaged archive or an unreadable file raises: Python's own
# decompression errors, and TensorFlow's for the file system underneath.
_READ_ERRORS = (tarfile.TarError, OSError, EOFError, zlib.error, tf.errors.OpError)

_FILE_NAME = re.compile(r"^(\d+)_(\d+)\.txt$")
_MOVIE_ID = re.compile(r"/title/(tt\d+)")


class IngestError(UserFacingError, RuntimeError):
    """The dataset cannot be read as a whole; the message names the path."""


@dataclasses.dataclass(frozen=True)
class Review:
    """One review file. `split` is the official folder (train/test)."""

    split: str
    sentiment: str
    review_id: int
    rating: int
    text: str
    movie_id: str
    path: str
    decoded_with_replacement: bool = False

    @property
    def label(self) -> int:
        """1 = positive, 0 = negative, -1 = unlabeled (unsup)."""
        return {"pos": 1, "neg": 0}.get(self.sentiment, -1)

    @property
    def key(self) -> str:
        """Unique id across the dataset (ids repeat between folders)."""
        return f"{self.split}/{self.sentiment}/{self.review_id}"


@dataclasses.dataclass(frozen=True)
class Quarantined:
    """A file that was set aside, and why."""

    path: str
    reason: str


Record = Review | Quarantined
# (relative path inside aclImdb/, loader of its bytes)
_Member = tuple[str, Callable[[], bytes]]


def _folders(include_test: bool, include_unsup: bool) -> list[tuple[str, str]]:
    folders = [("train", "pos"), ("train", "neg")]
    if include_test:
        folders += [("test", "pos"), ("test", "neg")]
    if include_unsup:
        folders.append(("train", "unsup"))
    return folders


def parse_movie_id(url: str) -> str:
    """`http://www.imdb.com/title/tt0453418/usercomments` -> `tt0453418`."""
    match = _MOVIE_ID.search(url)
    return match.group(1) if match else ""


def parse_review(rel_path: str, raw: bytes, urls: list[str]) -> Record:
    """Turns one file of folder `split/sentiment` into a Review or a Quarantined."""
    split, sentiment, name = rel_path.split("/")
    match = _FILE_NAME.match(name)
    if not match:
        return Quarantined(rel_path, "file name does not match {id}_{rating}.txt")
    review_id, rating = int(match.group(1)), int(match.group(2))
    low, high = RATING_RANGES[sentiment]
    if not low <= rating <= high:
        return Quarantined(rel_path, f"rating {rating} outside {low}-{high} for folder {sentiment}")
    try:
        text, replaced = raw.decode("utf-8"), False
    except UnicodeDecodeError:
        text, replaced = raw.decode("utf-8", errors="replace"), True
    if not text.strip():
        return Quarantined(rel_path, "empty review")
    if review_id >= len(urls):
        return Quarantined(rel_path, f"no line {review_id} in {split}/urls_{sentiment}.txt")
    return Review(
        split=split,
        sentiment=sentiment,
        review_id=review_id,
        rating=rating,
        text=text,
        movie_id=parse_movie_id(urls[review_id]),
        path=rel_path,
        decoded_with_replacement=replaced,
    )


def _join(*parts: str) -> str:
    # posixpath, not pathlib: Path("gs://bucket/x") would collapse the "//".
    return posixpath.join(*parts)


def _is_dir(path: str) -> bool:
    return bool(tf.io.gfile.isdir(path))


def _read_bytes(path: str) -> bytes:
    with tf.io.gfile.GFile(path, "rb") as handle:
        data: bytes = handle.read()
    return data


def _listdir(folder: str) -> list[str]:
    # Object stores list sub-folders with a trailing "/".
    return [entry.rstrip("/") for entry in tf.io.gfile.listdir(folder)]


def _dir_root(path: str) -> str:
    if _is_dir(_join(path, "train")):
        return path
    if _is_dir(_join(path, ROOT_NAME, "train")):
        return _join(path, ROOT_NAME)
    raise IngestError(
        f"{path}: no train/ folder: expected the aclImdb/ layout (train/pos, train/neg, ...)")


def _as_str(source: str | os.PathLike[str]) -> str:
    text = os.fspath(source)
    return text.rstrip("/") if len(text) > 1 else text


def dataset_root(source: str | os.PathLike[str]) -> str:
    """The aclImdb/ folder itself when given it or its parent; an archive as is.
    Raises IngestError naming the path when it is neither."""
    path = _as_str(source)
    if not tf.io.gfile.exists(path):
        raise IngestError(f"{path}: no such file or directory")
    return _dir_root(path) if _is_dir(path) else path


def _dir_listing(root: str) -> set[str]:
    return {
        f"{split}/{entry}"
        for split in ("train", "test")
        if _is_dir(_join(root, split))
        for entry in _listdir(_join(root, split))
    }


def _iter_dir(root: str, folders: list[tuple[str, str]]) -> Iterator[_Member]:
    for split, sentiment in folders:
        folder = _join(root, split, sentiment)
        for name in sorted(_listdir(folder)):
            yield f"{split}/{sentiment}/{name}", functools.partial(_read_bytes, _join(folder, name))


@contextlib.contextmanager
def _open_tar(path: str) -> Iterator[tarfile.TarFile]:
    """The archive through a GFile (tarfile leaves a passed file object open,
    so both are closed here)."""
    with tf.io.gfile.GFile(path, "rb") as handle:
        try:
            tar = tarfile.open(fileobj=handle, mode="r:*")  # noqa: SIM115 (closed below)
        except _READ_ERRORS as err:
            raise IngestError(f"{path}: not a readable tar archive ({err})") from err
        with tar:
            yield tar


def _iter_tar(path: str) -> Iterator[tuple[str, tarfile.TarFile, tarfile.TarInfo]]:
    """Streams the members under aclImdb/, turning any read failure into IngestError."""
    prefix = ROOT_NAME + "/"
    try:
        with _open_tar(path) as tar:
            for member in tar:
                if member.name.startswith(prefix):
                    yield member.name[len(prefix):], tar, member
    except IngestError:
        raise
    except _READ_ERRORS as err:
        raise IngestError(
            f"{path}: archive is truncated or corrupt ({err}); download it again") from err


def _tar_member_bytes(path: str, tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    handle = tar.extractfile(member)
    if handle is None:
        raise IngestError(f"{path}: member {member.name} is not a regular file")
    try:
        return handle.read()
    except _READ_ERRORS as err:
        raise IngestError(
            f"{path}: archive is truncated or corrupt at {member.name} ({err})") from err


def _scan_tar(path: str) -> tuple[set[str], dict[str, bytes]]:
    """First pass: the folder listing and the urls_*.txt files, which the
    archive stores after the reviews they describe. Remembered per file
    version, so `has_test_split` and `read_reviews` decompress it once."""
    stat = tf.io.gfile.stat(path)
    key = path if "://" in path else os.path.realpath(path)
    return _scan_tar_version(key, int(stat.mtime_nsec), int(stat.length))


@functools.lru_cache(maxsize=4)
def _scan_tar_version(path: str, mtime_ns: int, size: int) -> tuple[set[str], dict[str, bytes]]:
    del mtime_ns, size  # cache key only: a rewritten archive is scanned again
    listing: set[str] = set()
    urls: dict[str, bytes] = {}
    for rel, tar, member in _iter_tar(path):
        parts = rel.split("/")
        if len(parts) >= 2 and parts[0] in ("train", "test"):
            listing.add("/".join(parts[:2]))
            if len(parts) == 2 and parts[1].startswith("urls_") and member.isfile():
                urls[rel] = _tar_member_bytes(path, tar, member)
    return listing, urls


def _check_layout(source: str, listing: set[str], folders: list[tuple[str, str]]) -> None:
    for split, sentiment in folders:
        for needed in (f"{split}/{sentiment}", f"{split}/urls_{sentiment}.txt"):
            if needed not in listing:
                raise IngestError(f"{source}: missing {ROOT_NAME}/{needed}")


def has_test_split(source: str | os.PathLike[str]) -> bool:
    """Whether the official test/ folder (pos and neg) is present."""
    path = _as_str(source)
    listing = _dir_listing(_dir_root(path)) if _is_dir(path) else _scan_tar(path)[0]
    return {"test/pos", "test/neg"} <= listing


def _urls(raw: bytes) -> list[str]:
    return raw.decode("utf-8", errors="replace").splitlines()


def read_reviews(
    source: str | os.PathLike[str],
    include_test: bool = True,
    include_unsup: bool = True,
) -> Iterator[Record]:
    """Yields every review file of the wanted folders as Review or Quarantined.

    `source` is an aclImdb/ directory (or its parent) or the .tar.gz archive.
    The layout is checked before the first record is yielded, so a missing
    folder fails fast and names what is missing.
    """
    path = _as_str(source)
    if not tf.io.gfile.exists(path):
        raise IngestError(f"{path}: no such file or directory")
    folders = _folders(include_test, include_unsup)
    if _is_dir(path):
        root = _dir_root(path)
        _check_layout(path, _dir_listing(root), folders)
        urls = {f"{s}/{t}": _urls(_read_bytes(_join(root, s, f"urls_{t}.txt")))
                for s, t in folders}
        for rel, load in _iter_dir(root, folders):
            yield parse_review(rel, load(), urls[rel.rsplit("/", 1)[0]])
        return
    listing, raw_urls = _scan_tar(path)
    _check_layout(path, listing, folders)
    urls = {f"{s}/{t}": _urls(raw_urls[f"{s}/urls_{t}.txt"]) for s, t in folders}
    for rel, tar, member in _iter_tar(path):
        folder = rel.rsplit("/", 1)[0]
        if member.isfile() and folder in urls and rel.count("/") == 2:
            yield parse_review(rel, _tar_member_bytes(path, tar, member), urls[folder])
