"""Data location resolution and the resumable, verified download, against a
real HTTP server on loopback."""

from __future__ import annotations

import hashlib
import http.server
import re
import socket
import threading
import typing
from collections.abc import Iterator
from pathlib import Path

import pytest

from components.imdb_example_gen import source
from components.imdb_example_gen.source import DownloadError, download, resolve_data_source

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB


class _RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves PAYLOAD at /archive, honouring `Range: bytes=N-` like a real CDN."""

    requests: typing.ClassVar[list[str | None]] = []

    def do_GET(self) -> None:
        type(self).requests.append(self.headers.get("Range"))
        if self.path != "/archive":
            self.send_error(404)
            return
        match = re.match(r"bytes=(\d+)-", self.headers.get("Range") or "")
        start = int(match.group(1)) if match else 0
        body = PAYLOAD[start:]
        self.send_response(206 if match else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    _RangeHandler.requests = []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RangeHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


SHA = hashlib.sha256(PAYLOAD).hexdigest()


def test_download_verifies_and_renames_atomically(server, tmp_path):
    dest = download(f"{server}/archive", tmp_path / "a.tar.gz", SHA)
    assert dest.read_bytes() == PAYLOAD
    assert not (tmp_path / "a.tar.gz.part").exists()


def test_download_resumes_a_partial_file_with_a_range_request(server, tmp_path):
    (tmp_path / "a.tar.gz.part").write_bytes(PAYLOAD[:300_000])
    dest = download(f"{server}/archive", tmp_path / "a.tar.gz", SHA)
    assert dest.read_bytes() == PAYLOAD
    assert _RangeHandler.requests == ["bytes=300000-"]


def test_a_verified_archive_is_not_downloaded_again(server, tmp_path):
    (tmp_path / "a.tar.gz").write_bytes(PAYLOAD)
    download(f"{server}/archive", tmp_path / "a.tar.gz", SHA)
    assert _RangeHandler.requests == []


def test_checksum_mismatch_fails_and_leaves_nothing(server, tmp_path):
    with pytest.raises(DownloadError, match="does not match the pinned"):
        download(f"{server}/archive", tmp_path / "a.tar.gz", "0" * 64)
    assert list(tmp_path.iterdir()) == []


def test_http_error_is_reported_with_a_hint(server, tmp_path):
    with pytest.raises(DownloadError, match=r"HTTP 404.*--data=PATH or set IMDB_DATA=PATH"):
        download(f"{server}/missing", tmp_path / "a.tar.gz", SHA)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_offline_download_fails_with_one_clear_line(tmp_path):
    url = f"http://127.0.0.1:{_closed_port()}/aclImdb_v1.tar.gz"
    with pytest.raises(DownloadError) as err:
        download(url, tmp_path / "a.tar.gz", SHA, timeout=5)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"could not download {url}")
    assert "--data=PATH" in message and "IMDB_DATA" in message


def test_explicit_path_wins_over_env_and_cache(tiny_archive, tmp_path):
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / source.ARCHIVE_NAME).write_bytes(b"cached")
    got = resolve_data_source(str(tiny_archive), "/elsewhere", tmp_path / "cache")
    assert (got.path, got.origin) == (tiny_archive, "argument")


def test_env_var_is_used_when_no_path_is_given(tiny_corpus, tmp_path):
    got = resolve_data_source(None, str(tiny_corpus), tmp_path)
    assert (got.path, got.origin) == (tiny_corpus, "env")


def test_missing_explicit_path_is_an_error_naming_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"--data=/no/such/aclImdb"):
        resolve_data_source("/no/such/aclImdb", None, tmp_path)


def test_cached_archive_comes_before_a_download(tmp_path):
    (tmp_path / source.ARCHIVE_NAME).write_bytes(b"x")

    def must_not_fetch(dest: Path) -> Path:
        raise AssertionError("downloaded although the cache had the archive")

    got = resolve_data_source(None, None, tmp_path, fetch=must_not_fetch,
                              sha256=hashlib.sha256(b"x").hexdigest())
    assert got.origin == "cache"


def test_cached_archive_with_the_wrong_checksum_is_fetched_again(tmp_path):
    """A truncated or corrupt archive in the cache is not trusted because it exists."""
    (tmp_path / source.ARCHIVE_NAME).write_bytes(b"trunc")
    fetched = []

    def fetch(dest: Path) -> Path:
        fetched.append(dest)
        dest.write_bytes(b"x")
        return dest

    got = resolve_data_source(None, None, tmp_path, fetch=fetch,
                              sha256=hashlib.sha256(b"x").hexdigest())
    assert fetched == [tmp_path / source.ARCHIVE_NAME]
    assert got.origin == "download"


def test_download_lands_in_the_cache(server, tmp_path):
    got = resolve_data_source(
        None, None, tmp_path,
        fetch=lambda dest: download(f"{server}/archive", dest, SHA))
    assert (got.path, got.origin) == (tmp_path / source.ARCHIVE_NAME, "download")


def test_offline_machine_falls_back_to_the_demo_corpus_loudly(tmp_path, capsys):
    def offline(dest: Path) -> Path:
        raise DownloadError("could not download X: offline")

    got = resolve_data_source(None, None, tmp_path, fetch=offline)
    assert got.is_demo and (got.path / "train" / "pos").is_dir()
    err = capsys.readouterr().err
    assert "could not download X" in err and "USING THE GENERATED DEMO CORPUS" in err


def test_demo_corpus_is_deterministic_and_reused(tmp_path):
    first = resolve_data_source("demo", None, tmp_path / "a").path
    second = resolve_data_source("demo", None, tmp_path / "b").path
    files = sorted(p.relative_to(first) for p in first.rglob("*.txt"))
    assert files == sorted(p.relative_to(second) for p in second.rglob("*.txt"))
    assert all((first / f).read_bytes() == (second / f).read_bytes() for f in files)
    assert len(files) > 3000
