"""bench/serving_load: the loopback load test reads the server's own metrics
and measures the gRPC floor against bench/null_server, and a short run of it
drives every transport with no failed request."""

from __future__ import annotations

import pytest
from tensorflow_serving.apis import predict_pb2

from bench import null_server, serving_load
from models.contract import INPUT_TEXT, OUTPUT_KEY
from serving.client import string_tensor
from serving.metrics import BATCH_SIZE, QUEUING_LATENCY, REQUEST_LATENCY, Registry
from tests.cli_helpers import refused_in_one_line


def test_histogram_totals_sum_each_histogram_over_its_label_sets():
    registry = Registry()
    registry.observe_request("a", "predict", "GRPC", "OK", 100.0)
    registry.observe_request("b", "predict", "REST", "OK", 300.0)
    registry.observe_batch("a", 5, [10.0, 20.0])
    registry.observe_batch("b", 3, [30.0])
    totals = serving_load.histogram_totals(registry.render())
    assert totals == {f"{REQUEST_LATENCY}_sum": 400.0, f"{REQUEST_LATENCY}_count": 2.0,
                      f"{BATCH_SIZE}_sum": 8.0, f"{BATCH_SIZE}_count": 2.0,
                      f"{QUEUING_LATENCY}_sum": 60.0, f"{QUEUING_LATENCY}_count": 3.0}


def test_the_null_server_answers_zero_for_each_row_of_the_request():
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "imdb"
    request.inputs[INPUT_TEXT].CopyFrom(string_tensor([b"one", b"two", b"three"]))
    response = null_server.answer(request)
    assert response.model_spec.name == "imdb"
    assert list(response.outputs[OUTPUT_KEY].float_val) == [0.0, 0.0, 0.0]
    assert response.outputs[OUTPUT_KEY].tensor_shape.dim[0].size == 3


def test_a_short_load_run_reports_every_row_and_no_failure(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert serving_load.main(["--requests=12", "--max_seconds=5", "--clients=1,2",
                              "--batches=1,4", "--transports=grpc,rest"]) == 0
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines()
            if line.split()[:1] in (["grpc"], ["rest"], ["grpc-null"])]
    assert sorted((r[0], r[1], r[2]) for r in rows) == sorted(
        [(t, b, c) for t in ("grpc", "rest") for b in ("1", "4") for c in ("1", "2")]
        + [("grpc-null", "1", c) for c in ("1", "2")])
    assert all(r[4] == "0" for r in rows)  # failed
    grpc_one = next(r for r in rows if r[:3] == ["grpc", "1", "1"])
    assert float(grpc_one[12]) == 1.0  # one client: every model call had one row
    assert "gRPC floor (no model), 1 client" in out
    assert out.rstrip().endswith("failed requests: 0")


@pytest.mark.parametrize("flag", ["--clients=0,8", "--batches=one", "--transports=grpc,ftp",
                                  "--requests=0", "--num_batch_threads=-1"])
def test_a_bad_flag_is_refused_in_one_line_naming_it(flag: str,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    line = refused_in_one_line(lambda: serving_load.main([flag]), capsys)
    assert flag.split("=")[0] in line
