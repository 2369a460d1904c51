"""Where the dataset comes from: resolution order, cache, download, demo corpus.

Resolution (first that applies wins), documented in the README:
  1. an explicit path (`--data`), or the word `demo` for the generated corpus;
  2. the `IMDB_DATA` environment variable (read at the CLI edge only);
  3. a verified archive already in the cache dir;
  4. a download of the official archive into the cache (sha256-pinned);
  5. the generated demo corpus, announced loudly.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from components.errors import UserFacingError
from components.imdb_example_gen import demo_corpus

__all__ = [
    "ARCHIVE_NAME",
    "DEMO",
    "ENV_VAR",
    "OFFICIAL_SHA256",
    "OFFICIAL_URL",
    "DataSource",
    "DataSourceError",
    "DownloadError",
    "download",
    "resolve_data_source",
    "sha256_of",
]

OFFICIAL_URL = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
OFFICIAL_SHA256 = "c40f74a18d3b61f90feba1e17730e0d38e8b97c05fde7008942e91923d1658fe"
ARCHIVE_NAME = "aclImdb_v1.tar.gz"
ENV_VAR = "IMDB_DATA"
DEMO = "demo"
_CHUNK = 1 << 20


class DataSourceError(UserFacingError, FileNotFoundError):
    """The dataset named by --data or IMDB_DATA does not exist."""


class DownloadError(UserFacingError, RuntimeError):
    """The archive could not be fetched or verified; the message says what to do."""


@dataclasses.dataclass(frozen=True)
class DataSource:
    """A resolved dataset location and how it was chosen."""

    path: Path
    origin: str  # argument | env | cache | download | demo

    @property
    def is_demo(self) -> bool:
        return self.origin == DEMO


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _progress(total: int | None, initial: int, desc: str):  # type: ignore[no-untyped-def]
    from tqdm import tqdm  # imported here: only a download needs it

    return tqdm(total=total, initial=initial, unit="B", unit_scale=True, desc=desc, file=sys.stderr)


def download(url: str, dest: Path, sha256: str, timeout: float = 30.0) -> Path:
    """Downloads `url` to `dest`, resuming a previous partial download
    (`dest.part`, HTTP Range), verifying sha256, then renaming atomically, so
    `dest` only ever holds a complete, verified archive."""
    dest = Path(dest)
    if dest.exists() and sha256_of(dest) == sha256:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    hint = (f"Offline? Put a copy of {ARCHIVE_NAME} (or an unpacked aclImdb/) on disk and pass "
            f"--data=PATH or set {ENV_VAR}=PATH.")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            if have and response.status != 206:  # server ignored Range: start over
                have = 0
            total = response.length + have if response.length is not None else None
            with open(part, "ab" if have else "wb") as out, \
                    _progress(total, have, dest.name) as bar:
                for chunk in iter(lambda: response.read(_CHUNK), b""):
                    out.write(chunk)
                    bar.update(len(chunk))
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:  # nothing left to fetch: verify what we have
            pass
        else:
            raise DownloadError(f"could not download {url}: HTTP {err.code}. {hint}") from err
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise DownloadError(f"could not download {url}: {reason}. {hint}") from err
    actual = sha256_of(part)
    if actual != sha256:
        part.unlink()
        raise DownloadError(f"{url}: sha256 {actual} does not match the pinned {sha256}; "
                            "the partial file was removed, run again to retry")
    os.replace(part, dest)
    return dest


def _announce_demo(path: Path, why: str) -> None:
    bar = "!" * 78
    print(f"\n{bar}\n!! USING THE GENERATED DEMO CORPUS ({path})\n!! {why}\n"
          f"!! Results are NOT IMDb results. For the real data pass --data=PATH to an aclImdb/\n"
          f"!! folder or {ARCHIVE_NAME}, or set {ENV_VAR}=PATH, or go online to download it.\n"
          f"{bar}\n", file=sys.stderr)


def _demo(cache_dir: Path, why: str) -> DataSource:
    target = cache_dir / "demo"
    root = target / "aclImdb"
    if not (root / "README").exists():  # README is written last: a complete corpus
        root = demo_corpus.write_demo_corpus(target)
    _announce_demo(root, why)
    return DataSource(root, DEMO)


def resolve_data_source(
    explicit: str | None,
    env_value: str | None,
    cache_dir: Path,
    allow_download: bool = True,
    fetch: Callable[[Path], Path] | None = None,
    sha256: str = OFFICIAL_SHA256,
) -> DataSource:
    """Applies the resolution order above. A cached archive is used only if
    its sha256 is `sha256` (else it is downloaded again). `fetch` downloads
    into a path (default: the official archive); failures fall through to the
    demo corpus with the download error shown."""
    if explicit == DEMO:
        return _demo(cache_dir, "requested with --data=demo")
    for value, origin in ((explicit, "argument"), (env_value, "env")):
        if value:
            path = Path(value).expanduser()
            if not path.exists():
                what = "--data" if origin == "argument" else ENV_VAR
                raise DataSourceError(f"{what}={value}: no such file or directory")
            return DataSource(path.resolve(), origin)
    cached = cache_dir / ARCHIVE_NAME
    if cached.exists():
        if sha256_of(cached) == sha256:
            return DataSource(cached, "cache")
        print(f"WARNING: {cached} does not have the pinned sha256 {sha256} (partial or "
              "corrupt?); fetching it again", file=sys.stderr)
    if not allow_download:
        return _demo(cache_dir, "no data given and downloads are disabled")
    fetch = fetch or (lambda dest: download(OFFICIAL_URL, dest, sha256))
    try:
        return DataSource(fetch(cached), "download")
    except DownloadError as err:
        print(f"ERROR: {err}", file=sys.stderr)
        return _demo(cache_dir, "the official archive could not be downloaded (see above)")
