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
client's CPU is taken from the server's). Without --model_base_path it
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
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from models.contract import INPUT_TEXT, OUTPUT_KEY, SIGNATURE_TEXT
from serving.client import ClientOptions, GrpcClient, RestClient, ServingError

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
    latencies = []
    for _ in range(calls):
        start = time.perf_counter()
        function(**{INPUT_TEXT: single})[OUTPUT_KEY].numpy()
        latencies.append(time.perf_counter() - start)
    start, done, cpu = time.perf_counter(), 0, cpu_seconds()
    while time.perf_counter() - start < 5:
        function(**{INPUT_TEXT: batch})[OUTPUT_KEY].numpy()
        done += 64
    elapsed, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    return {"p50_ms": _percentile(latencies, 50) * 1e3, "p99_ms": _percentile(latencies, 99) * 1e3,
            "single_per_s": 1 / statistics.mean(latencies), "batched_per_s": done / elapsed,
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_base_path", default="")
    parser.add_argument("--model_name", default="imdb_sentiment")
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--max_seconds", type=float, default=15.0)
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--batches", default="1,64")
    parser.add_argument("--transports", default="grpc,rest")
    args = parser.parse_args(argv)
    from tests.serving_fixtures import running_server  # the tests' bounded server runner

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
        batching.write_text("max_batch_size { value: 256 }\nbatch_timeout_micros { value: 0 }\n"
                            "num_batch_threads { value: 2 }\nmax_enqueued_batches { value: 64 }\n")
        started = time.monotonic()
        with running_server([f"--model_base_path={base}", f"--model_name={args.model_name}",
                             "--enable_batching", f"--batching_parameters_file={batching}",
                             "--grpc_max_threads=48", "--rest_api_num_threads=48"],
                            Path(tmp) / "server.log", wait_for=args.model_name) as server:
            cold_start = time.monotonic() - started
            print(f"server cold start (process start -> AVAILABLE): {cold_start:.2f} s")
            print(f"bare SavedModel, in-process: 1 review p50 {bare['p50_ms']:.3f} ms, "
                  f"p99 {bare['p99_ms']:.3f} ms; batch 64: {bare['batched_per_s']:.0f} reviews/s "
                  f"({bare['batched_cpu_ms_per_review']:.3f} CPU ms per review, "
                  f"{bare['batched_cores']:.2f} of {os.cpu_count()} cores busy)")
            print(f"{'transport':9} {'batch':>5} {'clients':>7} {'requests':>8} {'failed':>6} "
                  f"{'p50 ms':>8} {'p99 ms':>8} {'req/s':>8} {'reviews/s':>9} "
                  f"{'server CPU':>10} {'client CPU':>10}  (CPU ms per request)")
            rows = {}
            for transport in args.transports.split(","):
                for batch in map(int, args.batches.split(",")):
                    texts = [REVIEW] * batch
                    for clients in map(int, args.clients.split(",")):
                        def make_call(transport: str = transport,
                                      texts: list[str] = texts) -> Callable[[], object]:
                            port = server.grpc_port if transport == "grpc" else server.rest_port
                            options = ClientOptions(
                                f"127.0.0.1:{port}", args.model_name, retries=0, deadline_s=30,
                                batch_size=len(texts))
                            client = (GrpcClient(options) if transport == "grpc"
                                      else RestClient(options))
                            return lambda: client.predict(texts)
                        total = args.requests if batch == 1 else max(1, args.requests // 10)
                        server_cpu, client_cpu = cpu_seconds(server.process.pid), cpu_seconds()
                        row = load(make_call, clients, total, args.max_seconds)
                        row["server_cpu_ms"] = (cpu_seconds(server.process.pid) - server_cpu) \
                            / max(row["requests"], 1) * 1e3
                        row["client_cpu_ms"] = (cpu_seconds() - client_cpu) \
                            / max(row["requests"], 1) * 1e3
                        rows[(transport, batch, clients)] = row
                        print(f"{transport:9} {batch:5d} {clients:7d} {row['requests']:8d} "
                              f"{row['failed']:6d} {row['p50_ms']:8.3f} {row['p99_ms']:8.3f} "
                              f"{row['requests_per_s']:8.0f} "
                              f"{row['requests_per_s'] * batch:9.0f} "
                              f"{row['server_cpu_ms']:10.3f} {row['client_cpu_ms']:10.3f}",
                              flush=True)
        one = rows.get(("grpc", 1, 1))
        if one:
            print(f"gRPC overhead, 1 review, 1 client: +{one['p50_ms'] - bare['p50_ms']:.3f} ms "
                  f"p50 ({one['p50_ms'] / bare['p50_ms']:.2f}x the bare call)")
        for batch in map(int, args.batches.split(",")):
            row = rows.get(("grpc", batch, 32))
            if row:
                ratio = row["requests_per_s"] * batch / bare["batched_per_s"]
                print(f"gRPC 32 clients, batch {batch}: {ratio:.2f}x the bare batched throughput;"
                      f" CPU per review: server {row['server_cpu_ms'] / batch:.3f} ms, client "
                      f"{row['client_cpu_ms'] / batch:.3f} ms, bare model "
                      f"{bare['batched_cpu_ms_per_review']:.3f} ms")
        failed = sum(int(r["failed"]) for r in rows.values())
        print(f"failed requests: {failed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
