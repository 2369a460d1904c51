"""Fingerprints of the code and files behind each cached step.

TFX keys a component's cache on its inputs and parameters. Code referenced
by dotted path (preprocessing_fn, run_fn, the ingestion executor) and the
imported schema are neither, so their fingerprints join the parameters:
editing them re-runs exactly the steps they feed.

What each fingerprint covers is chosen so that edits that change nothing
re-run nothing: `models/config.py` (hyper-parameter fields and help texts)
is left out of the Trainer's, because the values themselves reach the
Trainer through its custom_config; the run settings of `pipeline/config.py`
reach no step's code at all.

Reading files is I/O: the runners call `code_versions()` and hand the result
to the pure `create_pipeline`.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable
from pathlib import Path

__all__ = ["REPO", "SCHEMA_DIR", "CodeVersions", "code_versions", "fingerprint"]

REPO = Path(__file__).resolve().parent.parent
#: The curated schema bundled with the project (override with --schema_dir).
SCHEMA_DIR = REPO / "pipeline" / "schema"

_INGEST = ("components/imdb_example_gen/reader.py", "components/imdb_example_gen/executor.py",
           "components/imdb_example_gen/component.py", "models/features.py", "models/contract.py")
_TRANSFORM = ("models/preprocessing.py", "models/text.py", "models/wordpiece.py",
              "models/minilm.py", "models/features.py", "models/contract.py")
_TRAINER = ("models",)
_TRAINER_EXCLUDED = ("models/config.py",)
_TFLITE = ("components/tflite_converter", "models/text.py", "models/wordpiece.py",
           "models/minilm.py", "models/contract.py", "models/features.py")


@dataclasses.dataclass(frozen=True)
class CodeVersions:
    """Short sha256 fingerprints; empty strings (the default) disable none of
    the caching, they only stop edits from being noticed."""

    ingest: str = ""
    transform: str = ""
    trainer: str = ""
    tflite: str = ""
    schema: str = ""


def _files(root: Path, paths: Iterable[str], excluded: Iterable[str] = ()) -> list[Path]:
    skip = {root / e for e in excluded}
    found: list[Path] = []
    for rel in paths:
        target = root / rel
        candidates = sorted(target.rglob("*")) if target.is_dir() else [target]
        found += [f for f in candidates
                  if f.is_file() and f not in skip and f.suffix in (".py", ".pbtxt")]
    return found


def fingerprint(root: Path, paths: Iterable[str], excluded: Iterable[str] = ()) -> str:
    """sha256 over the relative path and bytes of every .py/.pbtxt file under `paths`."""
    digest = hashlib.sha256()
    for file in _files(root, paths, excluded):
        digest.update(str(file.relative_to(root)).encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()[:16]


def code_versions(root: Path = REPO, schema_dir: Path = SCHEMA_DIR) -> CodeVersions:
    """The fingerprints of this checkout (and of the schema folder in use)."""
    schema = hashlib.sha256()
    for file in sorted(schema_dir.glob("*.pbtxt")):
        schema.update(file.name.encode())
        schema.update(file.read_bytes())
    return CodeVersions(
        ingest=fingerprint(root, _INGEST),
        transform=fingerprint(root, _TRANSFORM),
        trainer=fingerprint(root, _TRAINER, _TRAINER_EXCLUDED),
        tflite=fingerprint(root, _TFLITE),
        schema=schema.hexdigest()[:16],
    )
