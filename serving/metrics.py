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

__all__ = ["REQUEST_COUNT", "REQUEST_LATENCY", "MODEL_VERSION", "LATENCY_BUCKETS_US",
           "Registry"]

REQUEST_COUNT = ":tensorflow:serving:request_count"
REQUEST_LATENCY = ":tensorflow:serving:request_latency"
#: 1 for each (model, version) AVAILABLE now: which version is served.
MODEL_VERSION = ":tensorflow:serving:model_version_available"
#: Latency buckets (microseconds): 100 us to 10 s, roughly x2 apart.
LATENCY_BUCKETS_US = (100, 250, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000,
                      250_000, 500_000, 1_000_000, 2_500_000, 10_000_000)

Labels = tuple[tuple[str, str], ...]


def _format_labels(labels: Labels) -> str:
    if not labels:
        return ""
    escaped = (f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
               for k, v in labels)
    return "{" + ",".join(escaped) + "}"


class Registry:
    """Thread-safe counters, latency histograms and gauges of one server."""

    def __init__(self, buckets: Sequence[int] = LATENCY_BUCKETS_US) -> None:
        self._lock = threading.Lock()
        self._buckets = tuple(buckets)
        self._counts: dict[Labels, int] = {}
        self._hist: dict[Labels, list[float]] = {}
        self._gauges: dict[Labels, float] = {}

    def observe_request(self, model: str, api: str, entrypoint: str, status: str,
                        latency_us: float) -> None:
        """Counts one finished request and records its latency."""
        count_key = (("model_name", model), ("status", status))
        hist_key = (("model_name", model), ("API", api), ("entrypoint", entrypoint))
        slot = bisect.bisect_left(self._buckets, latency_us)
        with self._lock:
            self._counts[count_key] = self._counts.get(count_key, 0) + 1
            # Per bucket counts, then total count and sum at the end.
            row = self._hist.setdefault(hist_key, [0.0] * (len(self._buckets) + 3))
            row[slot] += 1
            row[-2] += 1
            row[-1] += latency_us

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
        lines.append(f"# TYPE {REQUEST_LATENCY} histogram")
        for key, row in sorted(hist.items()):
            cumulative = 0.0
            for bound, n in zip([*map(str, self._buckets), "+Inf"], row, strict=False):
                cumulative += n
                labels = _format_labels((*key, ("le", bound)))
                lines.append(f"{REQUEST_LATENCY}_bucket{labels} {cumulative:g}")
            lines.append(f"{REQUEST_LATENCY}_sum{_format_labels(key)} {row[-1]:g}")
            lines.append(f"{REQUEST_LATENCY}_count{_format_labels(key)} {row[-2]:g}")
        lines.append(f"# TYPE {MODEL_VERSION} gauge")
        lines += [f"{MODEL_VERSION}{_format_labels(k)} {v:g}" for k, v in sorted(gauges.items())]
        return "\n".join(lines) + "\n"
