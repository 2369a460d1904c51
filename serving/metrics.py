"""Prometheus metrics of the server, in the text exposition format.

Names follow TF Serving's own (`:tensorflow:serving:request_count`,
`:tensorflow:serving:request_latency`, microseconds), so one Grafana dashboard
reads this server and the real `tensorflow_model_server` alike. Plain Python
(no prometheus_client dependency): three metric kinds are all we need.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Sequence

__all__ = ["REQUEST_COUNT", "REQUEST_LATENCY", "MODEL_VERSION", "BATCH_SIZE", "QUEUING_LATENCY",
           "LATENCY_BUCKETS_US", "BATCH_SIZE_BUCKETS", "Registry"]

REQUEST_COUNT = ":tensorflow:serving:request_count"
REQUEST_LATENCY = ":tensorflow:serving:request_latency"
#: 1 for each (model, version) AVAILABLE now: which version is served.
MODEL_VERSION = ":tensorflow:serving:model_version_available"
#: Rows per model call the batcher made (TF Serving's batching_session metric):
#: its mean is how well concurrent requests merge.
BATCH_SIZE = ":tensorflow:serving:batching_session:processed_batch_size"
#: Microseconds a request waited in the batch queue before its model call began.
QUEUING_LATENCY = ":tensorflow:serving:batching_session:queuing_latency"
#: Latency buckets (microseconds): 100 us to 10 s, roughly x2 apart.
LATENCY_BUCKETS_US = (100, 250, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000,
                      250_000, 500_000, 1_000_000, 2_500_000, 10_000_000)
#: Batch size buckets (rows): powers of two up to TF Serving's usual maximum.
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)

Labels = tuple[tuple[str, str], ...]
_BUCKETS = {REQUEST_LATENCY: LATENCY_BUCKETS_US, QUEUING_LATENCY: LATENCY_BUCKETS_US,
            BATCH_SIZE: BATCH_SIZE_BUCKETS}


def _format_labels(labels: Labels) -> str:
    if not labels:
        return ""
    escaped = (f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
               for k, v in labels)
    return "{" + ",".join(escaped) + "}"


class Registry:
    """Thread-safe counters, histograms and gauges of one server."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[Labels, int] = {}
        # (metric, labels) -> per-bucket counts, then the total count and sum.
        self._hist: dict[tuple[str, Labels], list[float]] = {}
        self._gauges: dict[Labels, float] = {}

    def _observe(self, metric: str, labels: Labels, value: float) -> None:
        """Records one value of a histogram; the caller holds the lock."""
        buckets = _BUCKETS[metric]
        row = self._hist.setdefault((metric, labels), [0.0] * (len(buckets) + 3))
        row[bisect.bisect_left(buckets, value)] += 1
        row[-2] += 1
        row[-1] += value

    def observe_request(self, model: str, api: str, entrypoint: str, status: str,
                        latency_us: float) -> None:
        """Counts one finished request and records its latency."""
        count_key = (("model_name", model), ("status", status))
        with self._lock:
            self._counts[count_key] = self._counts.get(count_key, 0) + 1
            self._observe(REQUEST_LATENCY, (("model_name", model), ("API", api),
                                            ("entrypoint", entrypoint)), latency_us)

    def observe_batch(self, model: str, rows: int, queued_us: Sequence[float]) -> None:
        """Records one batched model call: its rows and each request's wait."""
        labels = (("model_name", model),)
        with self._lock:
            self._observe(BATCH_SIZE, labels, rows)
            for wait in queued_us:
                self._observe(QUEUING_LATENCY, labels, wait)

    def set_versions(self, model: str, versions: Sequence[int]) -> None:
        """The versions of `model` AVAILABLE now (the others drop to 0)."""
        with self._lock:
            for key in self._gauges:
                if key[0] == ("model_name", model):
                    self._gauges[key] = 0.0
            for version in versions:
                self._gauges[(("model_name", model), ("version", str(version)))] = 1.0

    def render(self) -> str:
        """The exposition text served at /monitoring/prometheus/metrics."""
        with self._lock:
            counts = dict(self._counts)
            hist = {k: list(v) for k, v in self._hist.items()}
            gauges = dict(self._gauges)
        lines = [f"# TYPE {REQUEST_COUNT} counter"]
        lines += [f"{REQUEST_COUNT}{_format_labels(k)} {v}" for k, v in sorted(counts.items())]
        for metric in (REQUEST_LATENCY, BATCH_SIZE, QUEUING_LATENCY):
            rows = sorted((k, v) for (m, k), v in hist.items() if m == metric)
            if metric == REQUEST_LATENCY or rows:
                lines.append(f"# TYPE {metric} histogram")
            lines += [line for key, row in rows for line in _histogram_lines(metric, key, row)]
        lines.append(f"# TYPE {MODEL_VERSION} gauge")
        lines += [f"{MODEL_VERSION}{_format_labels(k)} {v:g}" for k, v in sorted(gauges.items())]
        return "\n".join(lines) + "\n"


def _histogram_lines(metric: str, key: Labels, row: list[float]) -> list[str]:
    lines, cumulative = [], 0.0
    for bound, n in zip([*map(str, _BUCKETS[metric]), "+Inf"], row, strict=False):
        cumulative += n
        lines.append(f"{metric}_bucket{_format_labels((*key, ('le', bound)))} {cumulative:g}")
    lines.append(f"{metric}_sum{_format_labels(key)} {row[-1]:g}")
    lines.append(f"{metric}_count{_format_labels(key)} {row[-2]:g}")
    return lines
