"""Helpers of the serving tests: demo model versions on disk and a real
server subprocess on free loopback ports, polled until AVAILABLE and always
shut down."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import portpicker

from serving.client import ClientOptions, GrpcClient, RestClient, ServingError
from serving.demo_model import build_demo_model

ROOT = Path(__file__).resolve().parent.parent


def build_versions(base: Path, versions: Sequence[int]) -> Path:
    """Demo SavedModels base/<v> with seed v (distinguishable answers)."""
    for version in versions:
        build_demo_model(str(base / str(version)), seed=version)
    return base


@dataclass
class RunningServer:
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
    """`python -m serving.server ARGS` on free ports until `wait_for` is AVAILABLE."""
    grpc_port = grpc_port or portpicker.pick_unused_port()
    rest_port = portpicker.pick_unused_port()
    with open(log, "wb") as handle:
        process = subprocess.Popen(
            [sys.executable, "-m", "serving.server", f"--port={grpc_port}",
             f"--rest_api_port={rest_port}", *args],
            cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    server = RunningServer(process, grpc_port, rest_port, log)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"server exited {process.returncode}: {server.log_text()}")
            try:
                rows = server.rest(wait_for, retries=0, deadline_s=2).status()
                if any(r["state"] == "AVAILABLE" for r in rows):
                    break
            except Exception:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"not AVAILABLE in {timeout_s} s: {server.log_text()}")
            time.sleep(0.2)
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


def _predict_until(client: GrpcClient, review: str, stop: threading.Event,
                   results: list[object], max_requests: int, max_s: float | None) -> None:
    """Predicts until `stop`, bounded in count (and in time when `max_s`
    is given): appends the version that answered, or the error."""
    request = client.predict_request("serving_text", [review])
    deadline = None if max_s is None else time.monotonic() + max_s
    for _ in range(max_requests):
        if stop.is_set() or (deadline is not None and time.monotonic() > deadline):
            return
        try:
            results.append(client.predict_raw(request).model_spec.version.value)
        except ServingError as error:
            results.append(error)


@contextmanager
def requests_in_flight(server: RunningServer, model: str, review: str, *, clients: int,
                       deadline_s: float, max_requests: int,
                       max_s: float | None = None) -> Iterator[list[object]]:
    """`clients` gRPC clients predicting on `model` in threads (no retries)
    while the block runs; yields the shared list of answers (versions or
    errors). On exit the threads are stopped and joined, the clients closed."""
    stop = threading.Event()
    results: list[object] = []
    grpc_clients = [server.grpc(model, retries=0, deadline_s=deadline_s)
                    for _ in range(clients)]
    threads = [threading.Thread(target=_predict_until,
                                args=(c, review, stop, results, max_requests, max_s))
               for c in grpc_clients]
    for thread in threads:
        thread.start()
    try:
        yield results
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
        for client in grpc_clients:
            client.close()
