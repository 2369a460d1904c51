"""Loopback load test of the model server against the bare SavedModel call.

    python -m bench.serving_load [--model_base_path=OUTPUT/serving/imdb_sentiment]
        [--requests=10000] [--max_seconds=15] [--clients=1,8,32] [--batches=1,64]

Starts `python -m serving.server --enable_batching` on free 127.0.0.1 ports,
drives it over gRPC and REST from client threads (each bounded by
--requests and --max_seconds), and in the same run calls the SavedModel's
serving_text signature in-process: single-review latency and batch-64
throughput. Prints p50/p99 latency, throughput, failures, and the server's
overhead over the bare call (ms and ratio), and where the CPU went: the
server's and the load generator's CPU ms per request, and the host's cores
they kept busy (client and server share this host, so on 2 cores the
client's CPU is taken from the server's), and from the server's metrics its
own latency, the mean rows per model call and the mean batch queue wait.
Last, the same gRPC client against bench.null_server, which runs no model:
the floor of the Python gRPC round trip. Without --model_base_path it
serves a CNN-shaped demo model (embedding 64, 3 x 64 conv filters, 256
tokens) of the released model's cost.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import portpicker

from models.contract import INPUT_TEXT, OUTPUT_KEY, SIGNATURE_TEXT
from pipeline.config import OneLineParser, int_at_least, positive_int_list
from serving.client import ClientOptions, GrpcClient, RestClient, ServingError
from serving.metrics import BATCH_SIZE, QUEUING_LATENCY, REQUEST_LATENCY
from serving.process import child_until_ready, running_server

REVIEW = ("I went in expecting little, but the acting was great and the story kept me "
          "hooked until the end. Not perfect, a bit long, yet a film I would recommend! ") * 2


def _percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def bare_model(path: str, calls: int) -> dict[str, float]:
    """In-process serving_text: p50/p99 of one review; reviews/s at batch 64."""
    import tensorflow as tf

    function = tf.saved_model.load(path).signatures[SIGNATURE_TEXT]
    single, batch = tf.constant([REVIEW]), tf.constant([REVIEW] * 64)
    function(**{INPUT_TEXT: single})
    function(**{INPUT_TEXT: batch})
    latencies, cpu = [], cpu_seconds()
    for _ in range(calls):
        start = time.perf_counter()
        function(**{INPUT_TEXT: single})[OUTPUT_KEY].numpy()
        latencies.append(time.perf_counter() - start)
    single_cpu_ms = (cpu_seconds() - cpu) / calls * 1e3
    start, done, cpu = time.perf_counter(), 0, cpu_seconds()
    while time.perf_counter() - start < 5:
        function(**{INPUT_TEXT: batch})[OUTPUT_KEY].numpy()
        done += 64
    elapsed, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    return {"p50_ms": _percentile(latencies, 50) * 1e3, "p99_ms": _percentile(latencies, 99) * 1e3,
            "mean_ms": statistics.mean(latencies) * 1e3, "single_cpu_ms": single_cpu_ms,
            "batched_per_s": done / elapsed,
            "batched_cpu_ms_per_review": cpu / done * 1e3, "batched_cores": cpu / elapsed}


def cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU seconds of a process so far (this one by default)."""
    if pid is None:
        times = os.times()
        return times.user + times.system
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load(make_call: Callable[[], Callable[[], object]], clients: int, total: int,
         max_seconds: float) -> dict[str, float]:
    """`clients` threads share `total` calls (stopping at max_seconds)."""
    latencies: list[float] = []
    failures = [0]
    lock = threading.Lock()
    remaining = [total]
    deadline = time.monotonic() + max_seconds

    def worker() -> None:
        call = make_call()
        mine: list[float] = []
        while time.monotonic() < deadline:
            with lock:
                if remaining[0] <= 0:
                    break
                remaining[0] -= 1
            start = time.perf_counter()
            try:
                call()
                mine.append(time.perf_counter() - start)
            except ServingError:
                with lock:
                    failures[0] += 1
        with lock:
            latencies.extend(mine)
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    return {"requests": len(latencies), "failed": failures[0],
            "p50_ms": _percentile(latencies, 50) * 1e3, "p99_ms": _percentile(latencies, 99) * 1e3,
            "requests_per_s": len(latencies) / elapsed}


#: Histograms of the server's metrics page whose mean each row reports.
_HISTOGRAMS = {"server_ms": (REQUEST_LATENCY, 1e-3), "batch_rows": (BATCH_SIZE, 1.0),
               "queue_ms": (QUEUING_LATENCY, 1e-3)}


def server_totals(rest_port: int) -> dict[str, float]:
    """histogram_totals of the server's Prometheus page."""
    url = f"http://127.0.0.1:{rest_port}/monitoring/prometheus/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        return histogram_totals(response.read().decode())


def histogram_totals(text: str) -> dict[str, float]:
    """`<metric>_sum` and `<metric>_count` of each histogram in _HISTOGRAMS,
    summed over its label sets, from Prometheus exposition text."""
    wanted = {metric + part for metric, _ in _HISTOGRAMS.values() for part in ("_sum", "_count")}
    totals: dict[str, float] = {}
    for line in text.splitlines():
        name = line.partition("{")[0].split(" ")[0]
        if name in wanted:
            totals[name] = totals.get(name, 0.0) + float(line.rsplit(" ", 1)[-1])
    return totals


def measured_load(server: Any, make_call: Callable[[], Callable[[], object]], clients: int,
                  total: int, max_seconds: float) -> dict[str, float]:
    """load(), plus what it cost: server and client CPU ms per request, and
    the means of the server's own latency, batch size and queue wait (from
    its metrics page: the server's share of the latency, and how well
    requests merged)."""
    pid = server.process.pid
    cpu_before, client_before = cpu_seconds(pid), cpu_seconds()
    totals_before = server_totals(server.rest_port) if server.rest_port else {}
    row = load(make_call, clients, total, max_seconds)
    requests = max(row["requests"], 1)
    row["server_cpu_ms"] = (cpu_seconds(pid) - cpu_before) / requests * 1e3
    row["client_cpu_ms"] = (cpu_seconds() - client_before) / requests * 1e3
    totals_after = server_totals(server.rest_port) if server.rest_port else {}
    for key, (metric, scale) in _HISTOGRAMS.items():
        delta = {part: totals_after.get(metric + part, 0.0) - totals_before.get(metric + part, 0.0)
                 for part in ("_sum", "_count")}
        row[key] = delta["_sum"] / delta["_count"] * scale if delta["_count"] else float("nan")
    return row


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = OneLineParser(prog="python -m bench.serving_load", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_base_path", default="")
    parser.add_argument("--model_name", default="imdb_sentiment")
    parser.add_argument("--requests", type=int_at_least(1), default=10_000)
    parser.add_argument("--max_seconds", type=float, default=15.0)
    parser.add_argument("--clients", type=positive_int_list, default=[1, 8, 32])
    parser.add_argument("--batches", type=positive_int_list, default=[1, 64])
    parser.add_argument("--transports", type=_transports, default=["grpc", "rest"])
    parser.add_argument("--num_batch_threads", type=int_at_least(0), default=0,
                        help="the server's batching parameter (model calls at a time; 0: the "
                             "server's default, one per core but one)")
    parser.add_argument("--batch_timeout_micros", type=int_at_least(0), default=0,
                        help="the server's batching parameter (how long a batch waits)")
    parser.add_argument("--intra_op_threads", type=int_at_least(0), default=0,
                        help="the server's --tensorflow_intra_op_parallelism")
    parser.add_argument("--no_floor", action="store_true",
                        help="skip the gRPC floor rows (bench.null_server: no model)")
    args = parser.parse_args(argv)
    if not args.max_seconds > 0:
        parser.error(f"--max_seconds must be > 0, got {args.max_seconds}")
    return args


def _transports(text: str) -> list[str]:
    values = text.split(",")
    unknown = [v for v in values if v not in ("grpc", "rest")]
    if unknown:
        raise argparse.ArgumentTypeError(f"must be grpc and/or rest, got {text!r}")
    return values


def _caller(transport: str, port: int, model_name: str,
            texts: list[str]) -> Callable[[], Callable[[], object]]:
    """Makes, per client thread, a client of `transport` and its Predict call."""
    def make_call() -> Callable[[], object]:
        options = ClientOptions(f"127.0.0.1:{port}", model_name, retries=0, deadline_s=30,
                                batch_size=len(texts))
        client = GrpcClient(options) if transport != "rest" else RestClient(options)
        return lambda: client.predict(texts)
    return make_call


_HEADER = (f"{'transport':9} {'batch':>5} {'clients':>7} {'requests':>8} {'failed':>6} "
           f"{'p50 ms':>8} {'p99 ms':>8} {'req/s':>8} {'reviews/s':>9} "
           f"{'server CPU':>10} {'client CPU':>10} {'server ms':>9} {'rows':>6} {'queue ms':>8}\n"
           "(CPU ms per request; server ms: the server's own mean latency per request; rows: "
           "mean rows per model call; queue ms: mean wait for a batch; grpc-null: "
           "bench.null_server, the gRPC round trip with no model)")


def _line(transport: str, batch: int, clients: int, row: dict[str, float]) -> str:
    return (f"{transport:9} {batch:5d} {clients:7d} {row['requests']:8d} {row['failed']:6d} "
            f"{row['p50_ms']:8.3f} {row['p99_ms']:8.3f} {row['requests_per_s']:8.0f} "
            f"{row['requests_per_s'] * batch:9.0f} {row['server_cpu_ms']:10.3f} "
            f"{row['client_cpu_ms']:10.3f} {row['server_ms']:9.3f} {row['batch_rows']:6.1f} "
            f"{row['queue_ms']:8.3f}")


@contextmanager
def null_server(log: Path, timeout_s: float = 120) -> Iterator[Any]:
    """bench.null_server on a free loopback port, answering, until the block ends."""
    port = portpicker.pick_unused_port()
    options = ClientOptions(f"127.0.0.1:{port}", "null", retries=0, deadline_s=2)

    def answers(client: GrpcClient) -> bool:
        try:
            client.predict([REVIEW])
            return True
        except ServingError:
            return False

    with GrpcClient(options) as probe, child_until_ready(
            [sys.executable, "-m", "bench.null_server", f"--port={port}"], log,
            lambda: answers(probe), timeout_s=timeout_s, stop_timeout_s=10) as process:
        yield SimpleNamespace(process=process, grpc_port=port, rest_port=None)


def _summary(bare: dict[str, float], rows: dict[tuple[str, int, int], dict[str, float]],
             batches: list[int]) -> list[str]:
    lines = []
    one, floor = rows.get(("grpc", 1, 1)), rows.get(("grpc-null", 1, 1))
    if one:
        lines.append(f"gRPC overhead, 1 review, 1 client: +{one['p50_ms'] - bare['p50_ms']:.3f} ms "
                     f"p50 ({one['p50_ms'] / bare['p50_ms']:.2f}x the bare call); in means, the "
                     f"server's own latency adds +{one['server_ms'] - bare['mean_ms']:.3f} ms "
                     f"and its CPU +{one['server_cpu_ms'] - bare['single_cpu_ms']:.3f} ms "
                     "per request over the bare call")
    if one and floor:
        lines.append(f"gRPC floor (no model), 1 client: p50 {floor['p50_ms']:.3f} ms: the round "
                     f"trip alone is {floor['p50_ms'] / (one['p50_ms'] - bare['p50_ms']):.0%} "
                     "of the overhead")
    for batch in batches:
        row = rows.get(("grpc", batch, 32))
        if row:
            ratio = row["requests_per_s"] * batch / bare["batched_per_s"]
            lines.append(
                f"gRPC 32 clients, batch {batch}: {ratio:.2f}x the bare batched throughput; "
                f"CPU per review: server {row['server_cpu_ms'] / batch:.3f} ms, client "
                f"{row['client_cpu_ms'] / batch:.3f} ms, bare model "
                f"{bare['batched_cpu_ms_per_review']:.3f} ms")
    floor32 = rows.get(("grpc-null", 1, 32))
    if floor32:
        lines.append(f"gRPC floor (no model), 32 clients: {floor32['requests_per_s']:.0f} req/s = "
                     f"{floor32['requests_per_s'] / bare['batched_per_s']:.2f}x the bare batched "
                     f"throughput (server {floor32['server_cpu_ms']:.3f} + client "
                     f"{floor32['client_cpu_ms']:.3f} CPU ms per request)")
    failed = sum(int(r["failed"]) for r in rows.values())
    lines.append(f"failed requests: {failed}")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    batches, client_counts = args.batches, args.clients
    rows: dict[tuple[str, int, int], dict[str, float]] = {}

    def drive(server: Any, transport: str, port: int, batch_sizes: list[int]) -> None:
        for batch in batch_sizes:
            for clients in client_counts:
                total = args.requests if batch == 1 else max(1, args.requests // 10)
                row = measured_load(server, _caller(transport, port, args.model_name,
                                                    [REVIEW] * batch),
                                    clients, total, args.max_seconds)
                rows[(transport, batch, clients)] = row
                print(_line(transport, batch, clients, row), flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        base = args.model_base_path
        if not base:
            from serving.demo_model import build_demo_model

            base = f"{tmp}/model"
            build_demo_model(f"{base}/1", seed=1, max_length=256, vocab_size=20_000,
                             embedding_dim=64, filters=64)
        versions = sorted(int(v.name) for v in Path(base).iterdir() if v.name.isdigit())
        bare = bare_model(f"{base}/{versions[-1]}", calls=500)
        batching = Path(tmp) / "batching.txt"
        params = {"max_batch_size": 256, "batch_timeout_micros": args.batch_timeout_micros,
                  "max_enqueued_batches": 64, "num_batch_threads": args.num_batch_threads}
        batching.write_text("".join(f"{k} {{ value: {v} }}\n" for k, v in params.items() if v))
        started = time.monotonic()
        with running_server([f"--model_base_path={base}", f"--model_name={args.model_name}",
                             "--enable_batching", f"--batching_parameters_file={batching}",
                             "--grpc_max_threads=48", "--rest_api_num_threads=48",
                             f"--tensorflow_intra_op_parallelism={args.intra_op_threads}"],
                            Path(tmp) / "server.log", wait_for=args.model_name) as server:
            cold_start = time.monotonic() - started
            print(f"server cold start (process start -> AVAILABLE): {cold_start:.2f} s")
            print(f"bare SavedModel, in-process: 1 review p50 {bare['p50_ms']:.3f} ms, "
                  f"p99 {bare['p99_ms']:.3f} ms, mean {bare['mean_ms']:.3f} ms "
                  f"({bare['single_cpu_ms']:.3f} CPU ms); "
                  f"batch 64: {bare['batched_per_s']:.0f} reviews/s "
                  f"({bare['batched_cpu_ms_per_review']:.3f} CPU ms per review, "
                  f"{bare['batched_cores']:.2f} of {os.cpu_count()} cores busy)")
            print(_HEADER)
            for transport in args.transports:
                port = server.grpc_port if transport == "grpc" else server.rest_port
                drive(server, transport, port, batches)
        if not args.no_floor and "grpc" in args.transports:
            with null_server(Path(tmp) / "null_server.log") as floor:
                drive(floor, "grpc-null", floor.grpc_port, [1])
    print("\n".join(_summary(bare, rows, batches)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
