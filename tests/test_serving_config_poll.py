"""--model_config_file_poll_wait_seconds, as in `tensorflow_model_server`: a
server started from models.config re-reads it every N seconds and switches
to an edited config all or nothing; a file it cannot read, parse or apply is
logged (file and reason) while the previous models keep serving, and the
next good edit is applied. 0 reads the file once; a negative value is
refused at start; shutdown ends the poller.

One server process for the module (poll 0.2 s); before each test its file
is rewritten to the baseline (imdb: v1, v2 latest; other: v5) and the test
waits until the server serves exactly that.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from serving.client import ServingError
from serving.flags import parse_flags
from serving.process import RunningServer, running_server
from serving.server import ModelServer
from tests.serving_fixtures import build_versions

POSITIVE = "A great film, I love it!"
POLL_S = 0.2
BASELINE = {"imdb": 2, "other": 5, "third": "NOT_FOUND"}


def _entry(name: str, base: Path | str) -> str:
    return f'config {{ name: "{name}" base_path: "{base}" model_platform: "tensorflow" }}'


def _config_text(*entries: str) -> str:
    return "model_config_list { " + " ".join(entries) + " }\n"


def _baseline(root: Path) -> str:
    return _config_text(_entry("imdb", root / "imdb"), _entry("other", root / "other"))


def _write(path: Path, text: str) -> None:
    """Replaces the file in one step, as a ConfigMap update does: the poller
    never reads a half-written file here, so each test sees only its own edit."""
    partial = path.with_suffix(".partial")
    partial.write_text(text)
    os.replace(partial, path)


def _wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 60) -> float:
    """Seconds until `condition()` held, polled every 0.1 s for at most `timeout_s`."""
    start = time.monotonic()
    for _ in range(int(timeout_s / 0.1) + 1):
        if condition():
            return time.monotonic() - start
        if time.monotonic() - start > timeout_s:
            break
        time.sleep(0.1)
    raise TimeoutError(f"{what}: not within {timeout_s} s")


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("config_poll")
    build_versions(root / "imdb", [1, 2])
    build_versions(root / "other", [5])
    build_versions(root / "third", [7])
    return root


@pytest.fixture(scope="module")
def server(root: Path) -> Iterator[RunningServer]:
    _write(root / "models.config", _baseline(root))
    with running_server([f"--model_config_file={root / 'models.config'}",
                         f"--model_config_file_poll_wait_seconds={POLL_S}",
                         "--file_system_poll_wait_seconds=0"],
                        root / "server.log", wait_for="other") as running:
        yield running


def _served(server: RunningServer) -> dict[str, object]:
    """What each model answers now: the version of its Predict, or the error code."""
    answers: dict[str, object] = {}
    for model in ("imdb", "other", "third"):
        try:
            with server.grpc(model, retries=0, deadline_s=10) as client:
                request = client.predict_request("serving_text", [POSITIVE])
                answers[model] = int(client.predict_raw(request).model_spec.version.value)
        except ServingError as error:
            answers[model] = error.code
    return answers


@pytest.fixture(autouse=True)
def baseline(server: RunningServer, root: Path) -> None:
    _write(root / "models.config", _baseline(root))
    _wait_for(lambda: _served(server) == BASELINE, "the baseline config served")


def _log_since(server: RunningServer, offset: int) -> str:
    return server.log_text()[offset:]


def test_an_edit_that_adds_a_model_is_served_within_the_poll_interval(
        server: RunningServer, root: Path) -> None:
    """Adding `third` to the file loads it (AVAILABLE, answering) within a few
    polls, while the models already there keep serving the same versions."""
    offset = len(server.log_text())
    _write(root / "models.config", _config_text(
        _entry("imdb", root / "imdb"), _entry("other", root / "other"),
        _entry("third", root / "third")))
    _wait_for(lambda: _served(server) == {"imdb": 2, "other": 5, "third": 7},
              "third served after the edit", timeout_s=30)
    with server.grpc("third", retries=0) as client:
        assert [row["state"] for row in client.status()] == ["AVAILABLE"]
    assert f"model config file {root / 'models.config'} applied" in _log_since(server, offset)


def test_an_edit_that_removes_a_model_unloads_it(server: RunningServer, root: Path) -> None:
    """Dropping `other` from the file answers NOT_FOUND for it, END in its status."""
    _write(root / "models.config", _config_text(_entry("imdb", root / "imdb")))
    _wait_for(lambda: _served(server) == {"imdb": 2, "other": "NOT_FOUND",
                                          "third": "NOT_FOUND"},
              "other removed after the edit", timeout_s=30)
    with server.grpc("other", retries=0) as client:
        assert {row["state"] for row in client.status()} == {"END"}


@pytest.mark.parametrize(("bad", "needle"), [
    # A half-written file: the parser stops at the missing brace.
    (lambda root: 'model_config_list { config { name: "third" base_path: ',
     "refused, previous models keep serving (retried when the file changes): not a text-format"),
    # Adds `third` but also a model whose base path does not exist: refused whole.
    (lambda root: _config_text(_entry("imdb", root / "imdb"), _entry("third", root / "third"),
                               _entry("ghost", root / "nowhere")),
     "(retried when the file changes): NOT_FOUND: model 'ghost'"),
    (lambda root: "", "changes): INVALID_ARGUMENT: the model config lists no model"),
    (None, "unreadable, previous models keep serving: FileNotFoundError"),
], ids=["garbage", "refused-config", "empty-file", "file-removed"])
def test_a_bad_file_keeps_the_previous_models_and_the_next_good_edit_applies(
        server: RunningServer, root: Path, bad: Callable[[Path], str] | None,
        needle: str) -> None:
    """The problem is logged in one line naming the file and the reason,
    nothing of the bad config is applied, and polling goes on: the next good
    edit (adding `third`) is served."""
    path = root / "models.config"
    offset = len(server.log_text())
    if bad is None:
        path.unlink()
    else:
        _write(path, bad(root))
    lines: list[str] = []

    def logged() -> bool:
        lines[:] = [ln for ln in _log_since(server, offset).splitlines() if needle in ln]
        return bool(lines)
    _wait_for(logged, f"'{needle}' logged", timeout_s=30)
    assert len(lines) == 1 and f"model config file {path} " in lines[0], lines
    time.sleep(3 * POLL_S)  # later polls of the same bad file change nothing
    assert _served(server) == BASELINE
    assert sum(needle in ln for ln in _log_since(server, offset).splitlines()) == 1

    _write(path, _config_text(_entry("imdb", root / "imdb"), _entry("other", root / "other"),
                                 _entry("third", root / "third")))
    _wait_for(lambda: _served(server) == {"imdb": 2, "other": 5, "third": 7},
              "the good edit served", timeout_s=30)


@pytest.mark.parametrize(("flag", "value", "reason"), [
    ("--model_config_file_poll_wait_seconds", "-1",
     "must be a finite number of seconds >= 0, got '-1'"),
    ("--file_system_poll_wait_seconds", "-1", "must be a finite number of seconds >= 0, got '-1'"),
    ("--file_system_poll_wait_seconds", "inf",
     "must be a finite number of seconds >= 0, got 'inf'"),
    ("--port", "70000", "must be an integer from 0 to 65535, got '70000'"),
    ("--rest_api_port", "-5", "must be an integer from 0 to 65535, got '-5'"),
    ("--grpc_max_threads", "0", "must be an integer >= 1, got '0'"),
    ("--rest_api_num_threads", "two", "not an integer: 'two'"),
    ("--max_concurrent_requests", "0", "must be an integer >= 1, got '0'"),
    ("--max_request_bytes", "-1", "must be an integer >= 1, got '-1'"),
])
def test_an_out_of_range_number_is_refused_at_start_in_one_line(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, flag: str, value: str,
        reason: str) -> None:
    """A wait, port or count with no meaning is refused by argparse (exit
    status 2) with one error line naming the flag and the value, before any
    model is read: not turned into 'never', a bind error or a hang later."""
    with pytest.raises(SystemExit) as caught:
        parse_flags([f"--model_config_file={tmp_path / 'absent.config'}", f"{flag}={value}"])
    assert caught.value.code == 2
    errors = [ln for ln in capsys.readouterr().err.splitlines() if "error:" in ln]
    assert errors == [f"python -m serving.server: error: argument {flag}: {reason}"]


def test_zero_reads_the_file_once_and_a_positive_wait_is_kept(tmp_path: Path) -> None:
    """0 (TF Serving's default) starts no poller; 0.2 is kept as given."""
    build_versions(tmp_path / "imdb", [1])
    config = tmp_path / "models.config"
    config.write_text(_config_text(_entry("imdb", tmp_path / "imdb")))
    once = parse_flags([f"--model_config_file={config}"])
    assert once.config_poll_wait_s == 0 and once.model_config_text == config.read_text()
    assert parse_flags([f"--model_config_file={config}",
                        "--model_config_file_poll_wait_seconds=0.2"]).config_poll_wait_s == 0.2


def test_stop_ends_the_config_poller_thread(tmp_path: Path) -> None:
    """An in-process server polling its config every 30 s: stop() does not
    wait out the interval and leaves no poller thread behind."""
    build_versions(tmp_path / "imdb", [1])
    config = tmp_path / "models.config"
    config.write_text(_config_text(_entry("imdb", tmp_path / "imdb")))
    server = ModelServer(parse_flags([f"--model_config_file={config}", "--port=0",
                                      "--model_config_file_poll_wait_seconds=30",
                                      "--file_system_poll_wait_seconds=0"]))
    server.start()
    try:
        assert "config-file-poller" in {t.name for t in threading.enumerate()}
    finally:
        start = time.monotonic()
        server.stop(grace_s=1)
    assert time.monotonic() - start < 10
    assert "config-file-poller" not in {t.name for t in threading.enumerate()}
