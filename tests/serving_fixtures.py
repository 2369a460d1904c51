"""Helpers of the serving tests: demo model versions on disk and clients
predicting in threads against a real server (`serving.process.running_server`:
a subprocess on free loopback ports, polled until AVAILABLE, always shut
down)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from serving.client import GrpcClient, ServingError
from serving.demo_model import build_demo_model
from serving.process import RunningServer


def build_versions(base: Path, versions: Sequence[int]) -> Path:
    """Demo SavedModels base/<v> with seed v (distinguishable answers)."""
    for version in versions:
        build_demo_model(str(base / str(version)), seed=version)
    return base


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
