"""Server-side batching: concurrent requests for one signature run as one
model call, as `tensorflow_model_server --enable_batching` does.

A model call costs much the same for 1 row as for 32, so under load the
server's throughput is the model's batched throughput only if requests are
merged. At most `num_batch_threads` model calls run at a time. A request
that finds one of them free and nothing queued runs at once, in its own
thread: a lone request pays no hand-over to a batch thread. Otherwise it is
queued, and batches form greedily: a batch thread that gets a free call
takes everything queued meanwhile (and waits up to `batch_timeout_s` for
more, 0 by default), so a burst fills the next batch while the current one
runs. A caller that must not block (the asyncio gRPC front end) always
queues (`enqueue`) and awaits a future; one it cancels is dropped unrun.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from time import monotonic
from typing import Any

import numpy as np

from serving.errors import ServingError

__all__ = ["BatchingOptions", "Batcher", "default_batch_threads"]

Arrays = Mapping[str, np.ndarray]
#: Told of each model call: its rows and each request's queue wait (us).
BatchObserver = Callable[[int, Sequence[float]], None]
_STOP = object()
#: A queued request: its inputs, its answer's future, when it was queued.
_Item = tuple[Arrays, Future[dict[str, np.ndarray]], float]


def default_batch_threads() -> int:
    """Model calls at a time when the parameters file does not say: one per
    core but one. The event loop that parses and answers every request needs
    a core of its own; more concurrent model calls only split the queue into
    smaller batches (2 cores, 32 gRPC clients: 1 batch thread merged 9.6
    requests per call and answered 794 req/s, 2 threads 3.4 and 551)."""
    return max(1, (os.cpu_count() or 2) - 1)


@dataclass(frozen=True)
class BatchingOptions:
    """The subset of TF Serving's BatchingParameters this server honours."""

    max_batch_size: int = 64
    batch_timeout_s: float = 0.0
    max_enqueued_batches: int = 100
    num_batch_threads: int = field(default_factory=default_batch_threads)


def _rows(inputs: Arrays) -> int:
    return int(next(iter(inputs.values())).shape[0])


class Batcher:
    """Queues requests for `run` and executes them in merged batches."""

    def __init__(self, run: Callable[[Arrays], dict[str, np.ndarray]], options: BatchingOptions,
                 name: str, observe: BatchObserver | None = None) -> None:
        self._run = run
        self._options = options
        self._observe = observe
        self._queue: queue.Queue[Any] = queue.Queue(
            maxsize=options.max_enqueued_batches * options.max_batch_size)
        # Guards _closed and the model-call count; batch threads wait on it
        # for a free call.
        self._lock = threading.Condition()
        self._closed = False
        self._calls = max(1, options.num_batch_threads)
        self._running = 0  # model calls in progress, inline or batched
        self._holding = 0  # batch threads holding a queued request, waiting for a call
        self._pending: Any = None  # an item taken but not fitting the last batch
        self._take_lock = threading.Lock()
        self._threads = [threading.Thread(target=self._work, name=f"batch-{name}-{i}", daemon=True)
                         for i in range(self._calls)]
        for thread in self._threads:
            thread.start()

    def submit(self, inputs: Arrays) -> dict[str, np.ndarray]:
        """Runs `inputs` (batch-major arrays) in the next batch; blocks for the answer."""
        if _rows(inputs) > self._options.max_batch_size:
            return self._run(inputs)  # already a full batch on its own
        future: Future[dict[str, np.ndarray]] = Future()
        with self._lock:
            if self._closed:  # unloaded meanwhile: the model object is still alive
                return self._run(inputs)
            inline = (self._running < self._calls and not self._holding
                      and self._pending is None and self._queue.empty())
            if inline:
                self._running += 1
            else:
                self._put(inputs, future)
        if inline:
            try:
                if self._observe is not None:
                    self._observe(_rows(inputs), (0.0,))
                return self._run(inputs)
            finally:
                self._finished()
        return future.result()

    def enqueue(self, inputs: Arrays) -> Future[dict[str, np.ndarray]] | None:
        """Queues `inputs` for a batch thread and returns its answer's future
        at once, for a caller that must not block (the asyncio gRPC front
        end); never runs inline. None: run it yourself, because it is a full
        batch on its own or the batcher is closed."""
        if _rows(inputs) > self._options.max_batch_size:
            return None
        future: Future[dict[str, np.ndarray]] = Future()
        with self._lock:
            if self._closed:
                return None
            self._put(inputs, future)
        return future

    def _put(self, inputs: Arrays, future: Future[dict[str, np.ndarray]]) -> None:
        try:
            self._queue.put_nowait((inputs, future, monotonic()))
        except queue.Full:
            raise ServingError("UNAVAILABLE", "The batch scheduling queue is full") from None

    def queued(self) -> int:
        """Requests waiting for a model call (taken by a batch thread or not)."""
        return self._queue.qsize() + (self._pending is not None) + self._holding

    def _finished(self) -> None:
        with self._lock:
            self._running -= 1
            self._lock.notify()

    def close(self) -> None:
        """Runs what is queued, then stops the workers (requests after this run unbatched)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True  # from here on nothing is queued but the stops
        for _ in self._threads:  # outside the lock: a full queue drains only as batches finish
            self._queue.put(_STOP)
        for thread in self._threads:
            thread.join(timeout=60)

    def _take(self) -> list[_Item] | None:
        with self._take_lock:
            first = self._pending if self._pending is not None else self._queue.get()
            self._pending = None
            while first is not _STOP and not _claim(first):
                first = self._queue.get()
            if first is _STOP:
                return None
            with self._lock:  # a free model call first: what queues meanwhile joins the batch
                self._holding += 1
                self._lock.wait_for(lambda: self._running < self._calls)
                self._holding -= 1
                self._running += 1
            batch = [first]
            rows = _rows(first[0])
            deadline = monotonic() + self._options.batch_timeout_s
            while rows < self._options.max_batch_size:
                try:
                    wait = deadline - monotonic()
                    item = self._queue.get(timeout=wait) if wait > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP or rows + _rows(item[0]) > self._options.max_batch_size:
                    self._pending = item
                    break
                if not _claim(item):
                    continue
                batch.append(item)
                rows += _rows(item[0])
            return batch

    def _work(self) -> None:
        while (batch := self._take()) is not None:
            try:
                self._execute(batch)
            finally:
                self._finished()

    def _execute(self, batch: list[_Item]) -> None:
        sizes = [_rows(inputs) for inputs, _, _ in batch]
        if self._observe is not None:
            now = monotonic()
            self._observe(sum(sizes), [(now - queued) * 1e6 for _, _, queued in batch])
        if len(batch) == 1:
            inputs, future, _ = batch[0]
            _settle(future, self._run, inputs)
            return
        try:
            merged = {key: np.concatenate([inputs[key] for inputs, _, _ in batch])
                      for key in batch[0][0]}
            outputs = self._run(merged)
            if any(np.ndim(v) == 0 or v.shape[0] != sum(sizes) for v in outputs.values()):
                raise ValueError("outputs are not batch-major")
        except Exception:  # one bad request must not fail the others: run each alone
            logging.debug("batch of %d failed; running its requests one by one", len(batch))
            for inputs, future, _ in batch:
                _settle(future, self._run, inputs)
            return
        bounds = np.cumsum([0, *sizes])
        for (_, future, _), start, end in zip(batch, bounds[:-1], bounds[1:], strict=True):
            future.set_result({key: value[start:end] for key, value in outputs.items()})


def _claim(item: _Item) -> bool:
    """Marks a queued request's future running; False if its caller cancelled
    it (an asyncio request whose client went away): then it is dropped."""
    return item[1].set_running_or_notify_cancel()


def _settle(future: Future[dict[str, np.ndarray]],
            run: Callable[[Arrays], dict[str, np.ndarray]], inputs: Arrays) -> None:
    try:
        future.set_result(run(inputs))
    except BaseException as error:  # delivered to the waiting request thread
        future.set_exception(error)
