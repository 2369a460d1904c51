"""Server-side batching (serving/batching.py): requests that arrive while
the model is busy run as one merged call, a lone request runs at once in
its own thread, and no more model calls run at a time than configured."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping

import numpy as np
import pytest

from serving.batching import Batcher, BatchingOptions

TIMEOUT_S = 30


class Model:
    """Doubles its input; records each call's rows, thread and concurrency.
    `gate`, when set, holds every call until it is opened."""

    def __init__(self, gate: threading.Event | None = None, seconds: float = 0.0) -> None:
        self.gate, self.seconds = gate, seconds
        self.calls: list[int] = []
        self.threads: list[str] = []
        self.running = self.most_running = 0
        self.lock = threading.Lock()

    def __call__(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        with self.lock:
            self.calls.append(len(inputs["x"]))
            self.threads.append(threading.current_thread().name)
            self.running += 1
            self.most_running = max(self.most_running, self.running)
        try:
            if self.gate is not None:
                assert self.gate.wait(TIMEOUT_S)
            time.sleep(self.seconds)
            if (inputs["x"] < 0).any():
                raise ValueError("negative input")
            return {"y": inputs["x"] * 2}
        finally:
            with self.lock:
                self.running -= 1


def _in_threads(count: int, target: Callable[[int], None]) -> list[threading.Thread]:
    threads = [threading.Thread(target=target, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    return threads


def _join(threads: list[threading.Thread]) -> None:
    for thread in threads:
        thread.join(TIMEOUT_S)
        assert not thread.is_alive()


def _wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def _one_busy_then_five_queued(model: Model, gate: threading.Event, batcher: Batcher,
                               send: Callable[[int], None]) -> None:
    """Request 0 runs and holds the only model call; requests 1-5 queue
    behind it; then the gate opens and every request is answered."""
    first = _in_threads(1, send)
    _wait_until(lambda: model.calls == [1])
    rest = [threading.Thread(target=send, args=(i,), daemon=True) for i in range(1, 6)]
    for thread in rest:
        thread.start()
    _wait_until(lambda: batcher.queued() == 5)
    gate.set()
    _join(first + rest)


@pytest.fixture
def batcher_of() -> Callable[..., Batcher]:
    made: list[Batcher] = []

    def make(model: Model, **options: float) -> Batcher:
        batcher = Batcher(model, BatchingOptions(**options), "test")  # type: ignore[arg-type]
        made.append(batcher)
        return batcher
    yield make
    for batcher in made:
        batcher.close()


def test_a_lone_request_runs_at_once_in_the_callers_thread(batcher_of):
    model = Model()
    batcher = batcher_of(model)
    result = batcher.submit({"x": np.array([1.0, 2.0])})
    np.testing.assert_array_equal(result["y"], [2.0, 4.0])
    assert model.threads == [threading.current_thread().name]


def test_requests_arriving_while_the_model_is_busy_run_as_one_call(batcher_of):
    """One call at a time: the first request runs; the five sent meanwhile
    wait and then run as a single call of 5 rows, each answered its own."""
    gate = threading.Event()
    model = Model(gate)
    batcher = batcher_of(model, num_batch_threads=1)
    results: dict[int, np.ndarray] = {}

    def send(i: int) -> None:
        results[i] = batcher.submit({"x": np.array([float(i)])})["y"]

    _one_busy_then_five_queued(model, gate, batcher, send)
    assert model.calls == [1, 5]
    assert {i: float(r[0]) for i, r in results.items()} == {i: 2.0 * i for i in range(6)}


def test_each_model_call_is_reported_with_its_rows_and_each_requests_queue_wait():
    """What the server's batch-size and queuing-latency metrics record: the
    lone request ran at once (no wait); the five queued behind it waited
    at least as long as the model was held."""
    gate = threading.Event()
    model = Model(gate)
    seen: list[tuple[int, list[float]]] = []
    batcher = Batcher(model, BatchingOptions(num_batch_threads=1), "test",  # type: ignore[arg-type]
                      lambda rows, waits: seen.append((rows, list(waits))))
    held = 0.05

    def send(i: int) -> None:
        batcher.submit({"x": np.array([float(i)])})

    try:
        first = _in_threads(1, send)
        _wait_until(lambda: model.calls == [1])
        rest = _in_threads(5, lambda i: send(i + 1))
        _wait_until(lambda: batcher.queued() == 5)
        time.sleep(held)
        gate.set()
        _join(first + rest)
    finally:
        batcher.close()
    assert [(rows, len(waits)) for rows, waits in seen] == [(1, 1), (5, 5)]
    assert seen[0][1] == [0.0]
    assert min(seen[1][1]) >= held * 1e6


def test_no_more_model_calls_run_at_once_than_batch_threads(batcher_of):
    model = Model(seconds=0.01)
    batcher = batcher_of(model, num_batch_threads=2)
    answers: dict[int, float] = {}

    def send(i: int) -> None:
        for _ in range(5):
            answers[i] = float(batcher.submit({"x": np.array([float(i)])})["y"][0])

    _join(_in_threads(24, send))
    assert model.most_running == 2
    assert answers == {i: 2.0 * i for i in range(24)}
    assert len(model.calls) < 120  # merged: fewer calls than requests


def test_a_bad_request_fails_alone_and_its_batch_mates_are_answered(batcher_of):
    gate = threading.Event()
    model = Model(gate)
    batcher = batcher_of(model, num_batch_threads=1)
    outcomes: dict[int, object] = {}

    def send(i: int) -> None:
        try:
            outcomes[i] = float(batcher.submit({"x": np.array([float(i) if i != 3 else -1.0])})
                                ["y"][0])
        except ValueError as error:
            outcomes[i] = str(error)

    _one_busy_then_five_queued(model, gate, batcher, send)
    assert outcomes == {0: 0.0, 1: 2.0, 2: 4.0, 3: "negative input", 4: 8.0, 5: 10.0}
    assert model.calls == [1, 5, 1, 1, 1, 1, 1]  # the merged call failed: each alone


def test_closing_with_a_full_queue_answers_every_queued_request(batcher_of):
    """Unloading a version while its queue is full: close() waits for the
    queued requests to run (each is answered) instead of locking them out."""
    gate = threading.Event()
    model = Model(gate)
    batcher = batcher_of(model, num_batch_threads=1, max_batch_size=1, max_enqueued_batches=2)
    answers: dict[int, float] = {}

    def send(i: int) -> None:
        answers[i] = float(batcher.submit({"x": np.array([float(i)])})["y"][0])

    senders = _in_threads(1, send)
    _wait_until(lambda: model.calls == [1])
    senders += _in_threads(1, lambda _: send(1))
    # The batch thread takes request 1 out of the queue before 2 and 3 fill it
    # (sent together, the third could find it full and be refused).
    _wait_until(lambda: batcher.queued() == 1 and batcher._queue.empty())
    senders += [threading.Thread(target=send, args=(i,), daemon=True) for i in (2, 3)]
    for thread in senders[2:]:
        thread.start()
    _wait_until(lambda: batcher.queued() == 3)  # one held by the batch thread, the queue full
    closing = _in_threads(1, lambda _: batcher.close())
    gate.set()
    _join(senders + closing)
    assert answers == {i: 2.0 * i for i in range(4)}


def test_enqueue_answers_on_a_batch_thread_without_blocking_the_caller(batcher_of):
    """The asyncio front end's path: even a lone request is handed to a
    batch thread, and the caller gets a future at once."""
    gate = threading.Event()
    model = Model(gate)
    batcher = batcher_of(model)
    future = batcher.enqueue({"x": np.array([1.0, 2.0])})
    assert future is not None and not future.done()  # returned while the model is held
    gate.set()
    np.testing.assert_array_equal(future.result(TIMEOUT_S)["y"], [2.0, 4.0])
    assert model.threads[0].startswith("batch-test-")


def test_enqueue_leaves_a_full_batch_and_a_closed_batcher_to_the_caller(batcher_of):
    batcher = batcher_of(Model(), max_batch_size=2)
    assert batcher.enqueue({"x": np.zeros(3)}) is None  # over max_batch_size: runs alone
    batcher.close()
    assert batcher.enqueue({"x": np.zeros(1)}) is None  # unloaded meanwhile


def test_a_request_cancelled_while_queued_is_dropped_and_its_batch_mates_answered(batcher_of):
    """A client that went away cancels its future: it is never run, and the
    requests queued with it run as one call without it."""
    gate = threading.Event()
    model = Model(gate)
    batcher = batcher_of(model, num_batch_threads=1)
    busy = batcher.enqueue({"x": np.array([0.0])})
    _wait_until(lambda: model.calls == [1])
    queued = [batcher.enqueue({"x": np.array([float(i)])}) for i in range(1, 5)]
    assert queued[1].cancel()
    gate.set()
    assert float(busy.result(TIMEOUT_S)["y"][0]) == 0.0
    answers = {i: float(f.result(TIMEOUT_S)["y"][0]) for i, f in enumerate(queued, 1) if i != 2}
    assert answers == {1: 2.0, 3: 6.0, 4: 8.0}
    assert model.calls == [1, 3]
