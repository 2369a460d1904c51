"""Publishing a release all or nothing: versions, deduplication, staging.

A release is three things that must appear together: the SavedModel under
`serving/<model>/<version>/` (what TF Serving serves), the TFLite files under
`tflite/<version>/` and the reports (`metrics.json`, `report.html`, PNGs)
that describe that version. Everything is first written into a staging folder
beside them, then renamed into place; the serving version is renamed last, as
the commit point, because TF Serving starts serving a version as soon as its
folder appears. If any step fails, what was already moved is put back and the
previous release stays exactly as it was.

Versions: `max(latest + 1, unix time in seconds)`. Integers that strictly
increase and are never reused: two releases in the same second get
consecutive numbers; after the newest version folder is deleted by hand, the
clock keeps a later, different model from taking its number (clients and
dashboards key on it); and versions stay comparable with those of TFX's
stock Pusher (Unix timestamps), so a base dir that it filled keeps working.

All file access goes through tf.io.gfile, so the same code publishes to a
local folder, a mounted volume or object storage (where renames are copies:
the commit point is then the last copy).
"""

from __future__ import annotations

import dataclasses
import posixpath
import time
import uuid
from collections.abc import Callable, Mapping, Sequence

import tensorflow as tf

from components.errors import UserFacingError
from components.release.layout import serving_dir, tflite_dir

__all__ = [
    "STAGING_DIR",
    "PublishedRelease",
    "ReleaseConflictError",
    "latest_version",
    "list_versions",
    "next_version",
    "publish_release",
    "saved_model_fingerprint",
]

#: Hidden folder under the output dir where releases are assembled.
STAGING_DIR = ".staging"


class ReleaseConflictError(UserFacingError):
    """The version folder to publish already exists: versions are never overwritten."""


@dataclasses.dataclass(frozen=True)
class PublishedRelease:
    version: int
    serving_path: str
    tflite_path: str
    reports: tuple[str, ...]


def list_versions(base_dir: str) -> list[int]:
    """Integer-named version folders under `base_dir`, ascending (what TF Serving sees)."""
    if not tf.io.gfile.isdir(base_dir):
        return []
    names = (name.rstrip("/") for name in tf.io.gfile.listdir(base_dir))
    return sorted(int(name) for name in names if name.isdigit())


def latest_version(base_dir: str) -> int | None:
    """The version TF Serving serves by default: the highest."""
    versions = list_versions(base_dir)
    return versions[-1] if versions else None


def next_version(existing: Sequence[int], now_s: float) -> int:
    """max(latest + 1, unix seconds): strictly increasing, never reused."""
    return max(max(existing, default=0) + 1, int(now_s))


def saved_model_fingerprint(path: str) -> str | None:
    """The SavedModel's own fingerprint (written by tf.saved_model.save), or
    None for a model saved without one. Copies of a model share it."""
    try:
        return str(tf.saved_model.experimental.read_fingerprint(path).singleprint())
    except (OSError, ValueError, tf.errors.NotFoundError, tf.errors.InvalidArgumentError):
        return None


def _copy_tree(src: str, dst: str) -> None:
    for root, _dirs, files in tf.io.gfile.walk(src):
        rel = posixpath.relpath(root, src)
        target = dst if rel == "." else posixpath.join(dst, rel)
        tf.io.gfile.makedirs(target)
        for name in files:
            tf.io.gfile.copy(posixpath.join(root, name), posixpath.join(target, name),
                             overwrite=True)


def _rename_new(src: str, dst: str) -> None:
    if tf.io.gfile.exists(dst):
        raise ReleaseConflictError(
            f"{dst} already exists: a published version is never overwritten")
    tf.io.gfile.rename(src, dst, overwrite=False)


def publish_release(*, output_dir: str, model_name: str, saved_model_dir: str,
                    tflite_files_dir: str, reports: Mapping[str, bytes], version: int,
                    prepare_serving: Callable[[str], None] | None = None,
                    prepare_tflite: Callable[[str], None] | None = None) -> PublishedRelease:
    """Stages the release of `version`, then renames it into place: tflite,
    reports, and serving last. On any failure the moved parts are put back
    and the exception propagates; the staging folder is always removed.

    `prepare_serving(staged_saved_model_dir)` may add files to the staged
    SavedModel (e.g. TF Serving warm-up requests) before it is published;
    `prepare_tflite(staged_tflite_dir)` may edit the staged TFLite files
    (e.g. stamp the version into the manifest). Both work on the staged
    copies, so the inputs stay as they were and nothing is copied twice.
    """
    staging = posixpath.join(output_dir, STAGING_DIR, f"{version}-{uuid.uuid4().hex[:8]}")
    staged_serving = posixpath.join(staging, "serving")
    staged_tflite = posixpath.join(staging, "tflite")
    staged_reports = posixpath.join(staging, "reports")
    backups = posixpath.join(staging, "previous")
    final_serving = posixpath.join(serving_dir(output_dir, model_name), str(version))
    final_tflite = posixpath.join(tflite_dir(output_dir), str(version))
    undo: list[Callable[[], None]] = []
    try:
        _copy_tree(saved_model_dir, staged_serving)
        if prepare_serving is not None:
            prepare_serving(staged_serving)
        _copy_tree(tflite_files_dir, staged_tflite)
        if prepare_tflite is not None:
            prepare_tflite(staged_tflite)
        tf.io.gfile.makedirs(staged_reports)
        tf.io.gfile.makedirs(backups)
        for name, payload in reports.items():
            with tf.io.gfile.GFile(posixpath.join(staged_reports, name), "wb") as handle:
                handle.write(payload)
        for folder in (tflite_dir(output_dir), serving_dir(output_dir, model_name)):
            tf.io.gfile.makedirs(folder)

        _rename_new(staged_tflite, final_tflite)
        undo.append(lambda: tf.io.gfile.rmtree(final_tflite))
        for name in reports:
            _replace_report(output_dir, name, staged_reports, backups, undo)
        _rename_new(staged_serving, final_serving)  # the commit point
    except BaseException:
        for step in reversed(undo):
            step()
        raise
    finally:
        if tf.io.gfile.exists(staging):
            tf.io.gfile.rmtree(staging)
        parent = posixpath.dirname(staging)
        if tf.io.gfile.isdir(parent) and not tf.io.gfile.listdir(parent):
            tf.io.gfile.rmtree(parent)
    return PublishedRelease(version, final_serving, final_tflite, tuple(reports))


def _replace_report(output_dir: str, name: str, staged: str, backups: str,
                    undo: list[Callable[[], None]]) -> None:
    """Renames one staged report over the published one, keeping a copy of
    the previous file (or noting its absence) so a later failure can undo it."""
    final = posixpath.join(output_dir, name)
    backup = posixpath.join(backups, name)
    if tf.io.gfile.exists(final):
        tf.io.gfile.copy(final, backup, overwrite=True)
        undo.append(lambda: tf.io.gfile.rename(backup, final, overwrite=True))
    else:
        undo.append(lambda: tf.io.gfile.remove(final))
    tf.io.gfile.rename(posixpath.join(staged, name), final, overwrite=True)


def now() -> float:
    """The clock versions are drawn from (a function, so tests can pin it)."""
    return time.time()
