"""A server as a child process: started with its output in a log, polled
until a readiness probe passes (bounded in time), and always stopped.

Infra validation, the serving tests and the load bench all start a server
this way; one place decides how long to wait, what a failed start reports
(the exit code or the timeout, with the log's last lines) and how a child is
stopped (SIGTERM so that it drains, then SIGKILL).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import portpicker

from serving.client import ClientOptions, GrpcClient, RestClient, ServingError, any_available

__all__ = ["RunningServer", "StartError", "child_until_ready", "log_tail",
           "model_available", "running_server"]

#: The repository root: children run `python -m <module>` from here.
ROOT = Path(__file__).resolve().parent.parent


class StartError(RuntimeError):
    """The child exited or was not ready in time (or the probe gave up); the
    message says which and ends with the log's last lines."""


def log_tail(path: Path, lines: int = 5) -> str:
    """The last `lines` lines of a log, joined by ' | ' (empty if unreadable)."""
    try:
        return " | ".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _stop(process: subprocess.Popen[bytes], timeout_s: float) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


@contextmanager
def child_until_ready(command: Sequence[str], log: Path, ready: Callable[[], bool], *,
                      timeout_s: float = 120, poll_s: float = 0.2, stop_timeout_s: float = 30,
                      env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """Runs `command` from the repository root, output to `log`, and yields
    it once `ready()` is true. `ready` may raise StartError to give up at
    once (e.g. the model failed to load). Raises StartError if the child
    exits or `timeout_s` passes first; on leaving the block, the child gets
    SIGTERM and `stop_timeout_s` to drain before it is killed."""
    with open(log, "wb") as handle:
        process = subprocess.Popen(list(command), cwd=ROOT, stdout=handle,
                                   stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + timeout_s
        while not ready():
            if process.poll() is not None:
                raise StartError(f"exited with code {process.returncode}: {log_tail(log)}")
            if time.monotonic() > deadline:
                raise StartError(f"not ready within {timeout_s} s: {log_tail(log)}")
            time.sleep(poll_s)
        yield process
    finally:
        _stop(process, stop_timeout_s)


def model_available(status: Callable[[], list[dict[str, Any]]]) -> Callable[[], bool]:
    """A readiness probe over a client's `status` (GetModelStatus rows, gRPC
    or REST): true once a version is AVAILABLE.
    While none is, a version whose load failed (an error code other than OK)
    raises StartError with its status instead of waiting out the timeout."""
    def probe() -> bool:
        try:
            rows = status()
        except (ServingError, OSError):  # not listening yet, or the model not known yet
            return False
        if any_available(rows):
            return True
        failed = [row for row in rows if row["status"]["error_code"] != "OK"]
        if failed:
            raise StartError(f"load failed: {failed[0]['status']}")
        return False
    return probe


@dataclass
class RunningServer:
    """A `python -m serving.server` child and its loopback ports."""

    process: subprocess.Popen[bytes]
    grpc_port: int
    rest_port: int
    log: Path

    def grpc(self, model: str, **kwargs: object) -> GrpcClient:
        return GrpcClient(ClientOptions(f"127.0.0.1:{self.grpc_port}", model, **kwargs))  # type: ignore[arg-type]

    def rest(self, model: str, **kwargs: object) -> RestClient:
        return RestClient(ClientOptions(f"127.0.0.1:{self.rest_port}", model, **kwargs))  # type: ignore[arg-type]

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@contextmanager
def running_server(args: Sequence[str], log: Path, wait_for: str, *,
                   timeout_s: float = 120, grpc_port: int = 0) -> Iterator[RunningServer]:
    """`python -m serving.server ARGS` on free loopback ports (gRPC and
    REST), yielded once model `wait_for` has a version AVAILABLE."""
    grpc_port = grpc_port or portpicker.pick_unused_port()
    rest_port = portpicker.pick_unused_port()
    command = [sys.executable, "-m", "serving.server", f"--port={grpc_port}",
               f"--rest_api_port={rest_port}", *args]
    # REST: it stays plain HTTP when --ssl_config_file makes gRPC speak TLS.
    probe = RestClient(ClientOptions(f"127.0.0.1:{rest_port}", wait_for, retries=0,
                                     deadline_s=2))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    try:
        with child_until_ready(command, log, model_available(probe.status),
                               timeout_s=timeout_s, env=env) as process:
            yield RunningServer(process, grpc_port, rest_port, log)
    finally:
        probe.close()
