"""The server's wire API, driven over real gRPC and HTTP by the clients: one
server process with a two-model config (version policy `all` with labels,
and `latest`), batching on, a small request-size limit."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import requests
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from models.contract import (
    INPUT_TEXT,
    LABELS,
    OUTPUT_KEY,
    SIGNATURE_EXAMPLES,
    SIGNATURE_TEXT,
    SIGNATURE_TOKEN_IDS,
)
from models.features import TEXT
from serving import client as client_cli
from serving.client import ServingError, string_tensor
from serving.process import RunningServer, running_server
from tests.serving_fixtures import build_versions

POSITIVE, NEGATIVE = "A great film, I love it!", "Awful and boring, the worst."
MAX_REQUEST = 256 * 1024


def _half_plus_two(path: Path) -> None:
    """TF Serving's canonical test model, y = 0.5 x + 2 on x [-1, 1], as a TF2
    SavedModel, with its classify (`scores`) and regress (`outputs`)
    signatures over tf.Examples holding x."""
    import tensorflow as tf

    def from_examples(examples: tf.Tensor) -> tf.Tensor:
        x = tf.io.parse_example(examples, {"x": tf.io.FixedLenFeature([1], tf.float32)})["x"]
        return 0.5 * x + 2.0

    class HalfPlusTwo(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 1], tf.float32, name="x")])
        def serve(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
            return {"y": 0.5 * x + 2.0}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
        def classify(self, examples: tf.Tensor) -> dict[str, tf.Tensor]:
            return {"scores": from_examples(examples)}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
        def labelled(self, examples: tf.Tensor) -> dict[str, tf.Tensor]:
            y = from_examples(examples)
            return {"scores": tf.concat([y, -y], 1),
                    "classes": tf.tile(tf.constant([["high", "low"]]), [tf.shape(y)[0], 1])}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
        def regress(self, examples: tf.Tensor) -> dict[str, tf.Tensor]:
            return {"outputs": from_examples(examples)}

    module = HalfPlusTwo()
    tf.saved_model.save(module, str(path), signatures={
        "serving_default": module.serve, "classify_x_to_y": module.classify,
        "classify_labelled": module.labelled, "regress_x_to_y": module.regress})


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("serving")
    build_versions(root / "imdb", [1, 2])
    build_versions(root / "other", [5])
    _half_plus_two(root / "half" / "1")
    config = root / "models.config"
    config.write_text(f"""
model_config_list {{
  config {{ name: "imdb" base_path: "{root / 'imdb'}" model_platform: "tensorflow"
           model_version_policy {{ all {{}} }}
           version_labels {{ key: "stable" value: 1 }}
           version_labels {{ key: "canary" value: 2 }} }}
  config {{ name: "other" base_path: "{root / 'other'}" model_platform: "tensorflow" }}
  config {{ name: "half" base_path: "{root / 'half'}" model_platform: "tensorflow" }}
}}""")
    # tensorflow_model_server flags a deployment may pass: the Unix socket
    # and channel arguments apply, --num_load_threads is accepted with a warning.
    with running_server([f"--model_config_file={config}", "--enable_batching",
                         f"--max_request_bytes={MAX_REQUEST}",
                         f"--grpc_socket_path={root / 'grpc.sock'}",
                         "--grpc_channel_arguments=grpc.max_connection_age_ms=600000",
                         "--num_load_threads=2"],
                        root / "server.log", wait_for="imdb") as running:
        running.rest("other", retries=0)
        yield running


@pytest.fixture(scope="module")
def stub(server: RunningServer) -> Iterator[prediction_service_pb2_grpc.PredictionServiceStub]:
    channel = grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}")
    yield prediction_service_pb2_grpc.PredictionServiceStub(channel)
    channel.close()


def _code(call: object, *args: object) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as caught:
        call(*args, timeout=10)  # type: ignore[operator]
    return caught.value.code(), caught.value.details()


def _text_request(model: str = "imdb", signature: str = SIGNATURE_TEXT,
                  texts: tuple[bytes, ...] = (b"good",)) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    request.inputs[INPUT_TEXT].CopyFrom(string_tensor(list(texts)))
    return request


def test_both_signatures_score_reviews_the_same_over_grpc_and_rest(server: RunningServer) -> None:
    """serving_text (raw strings) and serving_default (tf.Example) give the
    same P(positive) over gRPC and REST, and it points the right way."""
    texts = [POSITIVE, NEGATIVE]
    with server.grpc("imdb") as grpc_client:
        raw = grpc_client.predict(texts, SIGNATURE_TEXT)
        examples = grpc_client.predict(texts, SIGNATURE_EXAMPLES)
    rest = server.rest("imdb")
    np.testing.assert_allclose(raw, examples, atol=1e-6)
    np.testing.assert_allclose(rest.predict(texts, SIGNATURE_TEXT), raw, atol=1e-6)
    np.testing.assert_allclose(rest.predict(texts, SIGNATURE_EXAMPLES), raw, atol=1e-6)
    assert raw[0] > 0.9 and raw[1] < 0.1


def test_latest_version_serves_by_default_and_versions_and_labels_pick_others(
        server: RunningServer) -> None:
    """Policy `all` loads 1 and 2; no version means the newest; labels map to
    their versions over gRPC and REST."""
    rows = server.grpc("imdb").status()
    assert [(r["version"], r["state"]) for r in rows] == [("1", "AVAILABLE"), ("2", "AVAILABLE")]
    request = _text_request()
    with server.grpc("imdb") as default:
        assert default.predict_raw(request).model_spec.version.value == 2
    scores = {}
    for kwargs in ({"version": 1}, {"version": 2}, {"version_label": "stable"},
                   {"version_label": "canary"}):
        with server.grpc("imdb", **kwargs) as chosen:
            scores[str(kwargs)] = chosen.predict([POSITIVE])[0]
        assert server.rest("imdb", **kwargs).predict([POSITIVE])[0] == pytest.approx(
            scores[str(kwargs)], abs=1e-6)
    assert scores["{'version': 1}"] == scores["{'version_label': 'stable'}"]
    assert scores["{'version': 2}"] == scores["{'version_label': 'canary'}"]
    assert scores["{'version': 1}"] != scores["{'version': 2}"]
    assert server.rest("imdb", version_label="stable").status()[0]["version"] == "1"


def test_client_waits_for_an_available_version_and_times_out_on_an_unknown_model(
        server: RunningServer) -> None:
    """`wait_until_available` returns at once when a version serves, and
    raises TimeoutError within its bound for a model the server does not know."""
    with server.grpc("imdb") as known:
        assert known.wait_until_available(timeout_s=5) < 5
    with server.grpc("nope") as unknown, pytest.raises(TimeoutError, match="nope"):
        unknown.wait_until_available(timeout_s=0.5, poll_s=0.1)


def test_second_model_of_the_config_serves_its_latest_version(server: RunningServer) -> None:
    """A multi-model config serves each model under its own name."""
    rows = server.rest("other").status()
    assert [(r["version"], r["state"]) for r in rows] == [("5", "AVAILABLE")]
    assert server.grpc("other").predict([POSITIVE])[0] > 0.9


def test_metadata_lists_the_three_signatures_with_their_io_keys(server: RunningServer) -> None:
    """GetModelMetadata (gRPC) and GET .../metadata (REST) return the signature_def map."""
    for metadata in (server.grpc("imdb").metadata(), server.rest("imdb").metadata()):
        signatures = metadata["metadata"]["signature_def"]["signature_def"]
        assert set(signatures) == {SIGNATURE_EXAMPLES, SIGNATURE_TEXT, SIGNATURE_TOKEN_IDS}
        text = signatures[SIGNATURE_TEXT]
        assert list(text["inputs"]) == [INPUT_TEXT] and list(text["outputs"]) == [OUTPUT_KEY]
        assert text["inputs"][INPUT_TEXT]["dtype"] == "DT_STRING"
        assert metadata["model_spec"]["version"] == "2"
    rest = requests.get(f"{server.rest_url}/v1/models/imdb/metadata", timeout=10).json()
    assert list(rest) == ["model_spec", "metadata"]
    assert list(rest["metadata"]["signature_def"]) == ["signature_def"]  # no Any "@type"


def test_inputs_in_other_shapes_than_the_signature_s_go_to_the_model_as_sent(
        server: RunningServer, stub: prediction_service_pb2_grpc.PredictionServiceStub) -> None:
    """TF Serving does not check shapes against the signature: x `[3]` for
    an `[-1, 1]` input is fed as sent (its REST guide's canonical
    `{"instances": [2.0, 3.0, 4.0]}`), batching on or not."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "half"
    request.inputs["x"].CopyFrom(tensor_pb2.TensorProto(
        dtype=types_pb2.DT_FLOAT, float_val=[2.0, 3.0, 4.0],
        tensor_shape=tensor_shape_pb2.TensorShapeProto(dim=[{"size": 3}])))
    output = stub.Predict(request, timeout=10).outputs["y"]
    assert list(output.float_val) == [3.0, 3.5, 4.0]
    assert [d.size for d in output.tensor_shape.dim] == [3]
    rest = requests.post(f"{server.rest_url}/v1/models/half:predict",
                         json={"instances": [2.0, 3.0, 4.0]}, timeout=10).json()
    assert rest == {"predictions": [3.0, 3.5, 4.0]}
    columnar = requests.post(f"{server.rest_url}/v1/models/half:predict",
                             json={"inputs": {"x": [[1.0], [2.0]]}}, timeout=10).json()
    assert columnar == {"outputs": [[2.5], [3.0]]}


def test_classify_and_regress_read_tf_serving_s_named_outputs(
        server: RunningServer, stub: prediction_service_pb2_grpc.PredictionServiceStub) -> None:
    """As TF Serving's classifier and regressor: one class per column of
    `scores` (label "" without `classes`), labels from `classes`, the value
    of `outputs`; over gRPC and REST."""
    def request(kind: type, signature: str) -> Any:
        message = kind()
        message.model_spec.name, message.model_spec.signature_name = "half", signature
        message.input.example_list.examples.add().features.feature["x"].float_list.value.append(
            2.0)
        return message

    classified = stub.Classify(request(classification_pb2.ClassificationRequest,
                                       "classify_x_to_y"), timeout=10)
    [row] = classified.result.classifications
    assert [(c.label, c.score) for c in row.classes] == [("", 3.0)]
    labelled = stub.Classify(request(classification_pb2.ClassificationRequest,
                                     "classify_labelled"), timeout=10)
    assert [(c.label, c.score) for c in labelled.result.classifications[0].classes] == [
        ("high", 3.0), ("low", -3.0)]
    regressed = stub.Regress(request(regression_pb2.RegressionRequest, "regress_x_to_y"),
                             timeout=10)
    assert [r.value for r in regressed.result.regressions] == [3.0]
    url = f"{server.rest_url}/v1/models/half"
    body = {"signature_name": "classify_x_to_y", "examples": [{"x": 2.0}]}
    assert requests.post(f"{url}:classify", json=body, timeout=10).json() == {
        "results": [[["", 3.0]]]}
    body = {"signature_name": "regress_x_to_y", "examples": [{"x": 2.0}]}
    assert requests.post(f"{url}:regress", json=body, timeout=10).json() == {"results": [3.0]}


def test_multi_inference_runs_classify_and_regress_tasks_over_one_input(
        stub: prediction_service_pb2_grpc.PredictionServiceStub) -> None:
    from tensorflow_serving.apis import inference_pb2

    request = inference_pb2.MultiInferenceRequest()
    for signature, method in (("classify_x_to_y", "tensorflow/serving/classify"),
                              ("regress_x_to_y", "tensorflow/serving/regress")):
        task = request.tasks.add(method_name=method)
        task.model_spec.name, task.model_spec.signature_name = "half", signature
    for x in (2.0, 4.0):
        request.input.example_list.examples.add().features.feature["x"].float_list.value.append(x)
    classified, regressed = stub.MultiInference(request, timeout=10).results
    assert [[(c.label, c.score) for c in row.classes]
            for row in classified.classification_result.classifications] == [
        [("", 3.0)], [("", 4.0)]]
    assert [r.value for r in regressed.regression_result.regressions] == [3.0, 4.0]
    assert classified.model_spec.signature_name == "classify_x_to_y"
    twice = inference_pb2.MultiInferenceRequest()
    twice.CopyFrom(request)
    twice.tasks[1].CopyFrom(twice.tasks[0])
    code, message = _code(stub.MultiInference, twice)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "Duplicate" in message
    other = inference_pb2.MultiInferenceRequest()
    other.CopyFrom(request)
    other.tasks[1].model_spec.name = "imdb"
    assert _code(stub.MultiInference, other)[0] == grpc.StatusCode.INVALID_ARGUMENT


def test_predict_answers_in_the_typed_fields_as_tf_serving_does(
        stub: prediction_service_pb2_grpc.PredictionServiceStub) -> None:
    """Clients read `.float_val`: TF Serving packs tensor_content only under
    --enable_serialization_as_tensor_content."""
    response = stub.Predict(_text_request(texts=(POSITIVE.encode(), NEGATIVE.encode())),
                            timeout=10)
    output = response.outputs[OUTPUT_KEY]
    assert output.dtype == types_pb2.DT_FLOAT and output.tensor_content == b""
    assert [d.size for d in output.tensor_shape.dim] == [2]
    assert output.float_val[0] > 0.9 and output.float_val[1] < 0.1


@pytest.mark.parametrize(("values", "field"), [
    (np.array([[0.5], [0.25]], np.float32), "float_val"),
    (np.array([1.5, 2.5]), "double_val"),
    (np.array([1, 2], np.int32), "int_val"),
    (np.array([[3], [4]], np.int64), "int64_val"),
    (np.array([True, False]), "bool_val"),
    (np.array([b"a", b"b"], dtype=object), "string_val"),
])
def test_answer_tensors_fill_the_dtype_s_field_or_pack_on_request(values, field) -> None:
    import tensorflow as tf

    from serving.tensors import to_proto

    typed = to_proto(values)
    assert len(getattr(typed, field)) == values.size and typed.tensor_content == b""
    packed = to_proto(values, tensor_content=True)
    for proto in (typed, packed):
        np.testing.assert_array_equal(tf.make_ndarray(proto), values)
    if field not in ("bool_val", "string_val"):
        assert packed.tensor_content and not getattr(packed, field)


def test_grpc_also_answers_on_the_unix_socket_of_grpc_socket_path(
        server: RunningServer) -> None:
    socket = server.log.parent / "grpc.sock"
    with grpc.insecure_channel(f"unix:{socket}") as channel:
        response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(
            _text_request(texts=(POSITIVE.encode(),)), timeout=10)
    assert response.outputs[OUTPUT_KEY].float_val[0] > 0.9


def test_a_tf_serving_flag_with_no_effect_here_is_accepted_with_one_warning(
        server: RunningServer) -> None:
    warnings = [line for line in server.log_text().splitlines() if "num_load_threads" in line]
    assert len(warnings) == 1 and "has no effect in this server: " in warnings[0]


def test_the_tensor_content_flag_is_tf_serving_s(tmp_path: Path) -> None:
    from serving.flags import parse_flags

    base = [f"--model_base_path={tmp_path}"]
    assert parse_flags(base).tensor_content is False
    assert parse_flags([*base, "--enable_serialization_as_tensor_content"]).tensor_content
    assert parse_flags([*base, "--enable_serialization_as_tensor_content=false"]
                       ).tensor_content is False


def test_classify_and_regress_score_examples_with_the_label_names(
        server: RunningServer, stub: prediction_service_pb2_grpc.PredictionServiceStub) -> None:
    """Classify gives both classes by LABELS name; Regress the probability;
    over gRPC (with a context merged in) and REST."""
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = "imdb"
    with_context = request.input.example_list_with_context
    with_context.context.features.feature["rating"].int64_list.value.append(7)
    for text in (POSITIVE, NEGATIVE):
        with_context.examples.add().features.feature[TEXT].bytes_list.value.append(text.encode())
    result = stub.Classify(request, timeout=10).result.classifications
    assert [[c.label for c in row.classes] for row in result] == [list(LABELS)] * 2
    assert result[0].classes[1].score > 0.9 and result[1].classes[1].score < 0.1
    regress = regression_pb2.RegressionRequest()
    regress.model_spec.name = "imdb"
    regress.input.example_list.examples.add().features.feature[TEXT].bytes_list.value.append(
        POSITIVE.encode())
    value = stub.Regress(regress, timeout=10).result.regressions[0].value
    assert value == pytest.approx(result[0].classes[1].score, abs=1e-6)
    body = {"examples": [{TEXT: POSITIVE}]}
    classified = requests.post(f"{server.rest_url}/v1/models/imdb:classify", json=body).json()
    assert list(classified) == ["results"]  # TF Serving's key (its REST guide says "result")
    assert classified["results"][0][1][0] == LABELS[1]
    assert classified["results"][0][1][1] == pytest.approx(value, abs=1e-6)
    regressed = requests.post(f"{server.rest_url}/v1/models/imdb:regress", json=body).json()
    assert list(regressed) == ["results"]
    assert regressed["results"][0] == pytest.approx(value, abs=1e-6)


def test_rest_accepts_row_columnar_and_b64_formats(server: RunningServer) -> None:
    """instances / inputs, named or not, and {"b64"} strings give one answer;
    row format answers 'predictions', columnar 'outputs'."""
    url = f"{server.rest_url}/v1/models/imdb:predict"
    encoded = base64.b64encode(POSITIVE.encode()).decode()
    bodies = [{"instances": [POSITIVE]}, {"instances": [{INPUT_TEXT: POSITIVE}]},
              {"instances": [{"b64": encoded}]}, {"inputs": [POSITIVE]},
              {"inputs": {INPUT_TEXT: [{"b64": encoded}]}}]
    answers = []
    for body in bodies:
        response = requests.post(url, json={"signature_name": SIGNATURE_TEXT, **body})
        assert response.status_code == 200, response.text
        payload = response.json()
        answers.append(payload["predictions" if "instances" in body else "outputs"][0])
    assert max(answers) - min(answers) < 1e-6
    ids = {"signature_name": SIGNATURE_TOKEN_IDS, "instances": [[1] * 16]}
    assert requests.post(url, json=ids).status_code == 200


@pytest.mark.parametrize(("request_kwargs", "code", "needle"), [
    ({"model": "nope"}, grpc.StatusCode.NOT_FOUND, "nope"),
    ({"signature": "nope"}, grpc.StatusCode.FAILED_PRECONDITION, "nope"),
    ({"signature": SIGNATURE_EXAMPLES}, grpc.StatusCode.INVALID_ARGUMENT, "examples"),
    ({"texts": ()}, grpc.StatusCode.INVALID_ARGUMENT, "empty batch"),
    ({"texts": (b"\xff\xfe bad",)}, grpc.StatusCode.INVALID_ARGUMENT, "UTF-8"),
])
def test_bad_grpc_predicts_get_tf_serving_status_codes(
        stub: prediction_service_pb2_grpc.PredictionServiceStub, request_kwargs: dict[str, object],
        code: grpc.StatusCode, needle: str) -> None:
    """Unknown model or signature, wrong input key, empty batch and invalid
    UTF-8 each get their canonical status and a message naming the problem."""
    got, message = _code(stub.Predict, _text_request(**request_kwargs))  # type: ignore[arg-type]
    assert got == code
    assert needle in message


def test_bad_versions_labels_dtypes_shapes_and_sizes_over_grpc(
        server: RunningServer, stub: prediction_service_pb2_grpc.PredictionServiceStub) -> None:
    """Unknown version -> NOT_FOUND, unknown label -> INVALID_ARGUMENT,
    wrong dtype -> INVALID_ARGUMENT, a shape the model cannot take ->
    INVALID_ARGUMENT from the model call, oversized -> RESOURCE_EXHAUSTED;
    the server answers normally afterwards."""
    request = _text_request()
    request.model_spec.version.value = 9
    assert _code(stub.Predict, request)[0] == grpc.StatusCode.NOT_FOUND
    request = _text_request()
    request.model_spec.version_label = "nope"
    assert _code(stub.Predict, request)[0] == grpc.StatusCode.INVALID_ARGUMENT
    request = _text_request()
    request.inputs[INPUT_TEXT].CopyFrom(tensor_pb2.TensorProto(dtype=types_pb2.DT_INT32,
                                                               int_val=[1]))
    code, message = _code(stub.Predict, request)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "DT_STRING" in message
    ids = predict_pb2.PredictRequest()
    ids.model_spec.name, ids.model_spec.signature_name = "imdb", SIGNATURE_TOKEN_IDS
    ids.inputs["token_ids"].CopyFrom(tensor_pb2.TensorProto(
        dtype=types_pb2.DT_INT32, int_val=[1, 2, 3],
        tensor_shape=tensor_shape_pb2.TensorShapeProto(dim=[{"size": 3}])))  # [3] for [-1, 16]
    assert _code(stub.Predict, ids)[0] == grpc.StatusCode.INVALID_ARGUMENT
    big = _text_request(texts=(b"good " * (MAX_REQUEST // 4),))
    assert _code(stub.Predict, big)[0] == grpc.StatusCode.RESOURCE_EXHAUSTED
    metadata = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["nope"])
    metadata.model_spec.name = "imdb"
    assert _code(stub.GetModelMetadata, metadata)[0] == grpc.StatusCode.INVALID_ARGUMENT
    assert server.grpc("imdb").predict([POSITIVE])[0] > 0.9


@pytest.mark.parametrize(("method", "path", "body", "status"), [
    ("GET", "/v1/models/nope", None, 404),
    ("GET", "/v1/models/imdb/versions/9", None, 404),
    ("GET", "/v1/models/imdb/labels/nope", None, 400),
    ("GET", "/v1/models/imdb/versions/x", None, 400),
    ("POST", "/v1/models/nope:predict", {"instances": ["a"]}, 404),
    ("POST", "/v1/models/imdb:predict", {"signature_name": "nope", "instances": ["a"]}, 400),
    ("POST", "/v1/models/imdb:predict", {"instances": []}, 400),
    ("POST", "/v1/models/imdb:predict", {"instances": [{"wrong": "a"}]}, 400),
    ("POST", "/v1/models/imdb:predict", {"instances": [1, 2]}, 400),
    ("POST", "/v1/models/imdb:predict", {"instances": [{"b64": "!!"}]}, 400),
    ("POST", "/v1/models/imdb:predict", {"inputs": ["a"], "instances": ["a"]}, 400),
    # ids of rank 1 for [-1, 16]: fed as sent (as TF Serving), refused by the model
    ("POST", "/v1/models/imdb:predict", {"signature_name": SIGNATURE_TOKEN_IDS,
                                         "instances": [1, 2]}, 400),
    ("POST", "/v1/models/imdb:predict", {"signature_name": SIGNATURE_TOKEN_IDS,
                                         "instances": [["a"] * 16]}, 400),
    ("POST", "/v1/models/imdb:predict", [1], 400),
    ("POST", "/v1/models/imdb:predict", b"{not json", 400),
    ("POST", "/v1/models/imdb:predict", b'{"instances": ["\xff"]}', 400),
    ("POST", "/v1/models/imdb:predict", b"x" * (MAX_REQUEST + 1), 413),
    ("POST", "/v1/models/imdb:classify", {"examples": []}, 400),
    ("GET", "/v1/models/imdb:predict", None, 400),
    ("GET", "/nothing/here", None, 404),
])
def test_bad_rest_requests_get_tf_serving_json_errors(
        server: RunningServer, method: str, path: str, body: object, status: int) -> None:
    """Each bad REST request gets TF Serving's HTTP code and {"error": message}."""
    data = body if isinstance(body, bytes) else (None if body is None else json.dumps(body))
    response = requests.request(method, server.rest_url + path, data=data, timeout=10)
    assert response.status_code == status, response.text
    payload = response.json()
    assert set(payload) == {"error"} and payload["error"]
    assert server.rest("imdb").predict([NEGATIVE])[0] < 0.1


def test_both_clients_raise_the_server_s_error_type_with_canonical_codes(
        server: RunningServer) -> None:
    """One error vocabulary (serving.errors): a REST error's HTTP status is
    read back as the canonical code gRPC gives for the same request."""
    from serving import errors

    assert ServingError is errors.ServingError
    codes = []
    for client in (server.grpc("absent", retries=0), server.rest("absent", retries=0)):
        with pytest.raises(errors.ServingError) as caught:
            client.predict([POSITIVE])
        codes.append(caught.value.code)
    assert codes == ["NOT_FOUND", "NOT_FOUND"]
    assert [errors.code_of_http_status(s) for s in (400, 404, 429, 503, 500, 418)] == [
        "INVALID_ARGUMENT", "NOT_FOUND", "RESOURCE_EXHAUSTED", "UNAVAILABLE", "UNKNOWN",
        "UNKNOWN"]


def test_prometheus_metrics_count_requests_errors_latency_and_versions(
        server: RunningServer) -> None:
    """The metrics page has request counts by status, a latency histogram, the
    versions available and the batch sizes, in the Prometheus text format."""
    server.rest("imdb").predict([POSITIVE])
    requests.get(f"{server.rest_url}/v1/models/nope", timeout=10)
    text = requests.get(f"{server.rest_url}/monitoring/prometheus/metrics", timeout=10).text
    assert ':tensorflow:serving:request_count{model_name="imdb",status="OK"}' in text
    assert ':tensorflow:serving:request_count{model_name="nope",status="NOT_FOUND"}' in text
    assert ('request_latency_bucket{model_name="imdb",API="predict",entrypoint="REST",'
            'le="+Inf"}') in text
    assert ':tensorflow:serving:model_version_available{model_name="imdb",version="2"} 1' in text
    # --enable_batching: every model call's rows, under TF Serving's metric name
    assert ':tensorflow:serving:batching_session:processed_batch_size_count{model_name="imdb"}' \
        in text


def test_client_cli_prints_json_lines_from_args_file_and_status(
        server: RunningServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The CLI scores reviews from arguments and a file, over gRPC and REST,
    one JSON line each, and reports errors as JSON with exit code 1."""
    target = ["--model_name=imdb", f"--server=127.0.0.1:{server.grpc_port}"]
    assert client_cli.main([*target, POSITIVE, NEGATIVE]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["label"] for line in lines] == [LABELS[1], LABELS[0]]
    reviews = tmp_path / "reviews.txt"
    reviews.write_text(f"{POSITIVE}\n{NEGATIVE}\n")
    rest = ["--rest", "--model_name=imdb", f"--server=127.0.0.1:{server.rest_port}"]
    assert client_cli.main([*rest, f"--file={reviews}", f"--signature={SIGNATURE_EXAMPLES}",
                            "--batch_size=1"]) == 0
    again = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line[OUTPUT_KEY] for line in again] == pytest.approx(
        [line[OUTPUT_KEY] for line in lines], abs=1e-6)
    assert client_cli.main([*target, "--status"]) == 0
    assert "AVAILABLE" in capsys.readouterr().out
    assert client_cli.main(["--model_name=nope", f"--server=127.0.0.1:{server.grpc_port}",
                            "x"]) == 1
    assert json.loads(capsys.readouterr().err)["code"] == "NOT_FOUND"


def test_the_client_program_answers_without_importing_tensorflow_or_keras(
        server: RunningServer) -> None:
    """A one-shot call loads only the generated protos (see
    serving.client._protos_without_tensorflow), not TensorFlow's Python API."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "serving.client", "--model_name=imdb",
         f"--server=127.0.0.1:{server.grpc_port}", POSITIVE],
        capture_output=True, text=True, timeout=120, check=False, cwd=Path(__file__).parents[1])
    assert done.returncode == 0, done.stderr[-2000:]
    answer = json.loads(done.stdout)
    assert answer["label"] == LABELS[1] and answer[OUTPUT_KEY] > 0.9
    imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines()
                if line.startswith("import time:")}
    assert "tensorflow.core.framework.tensor_pb2" in imported
    assert not {m for m in imported if m.startswith(("keras", "tensorflow.python"))}


@pytest.mark.parametrize(("source", "says"), [
    ("file", "--file={path}: line 2 is not UTF-8 (byte 0xff at column 5)"),
    ("stdin", "stdin: line 2 is not UTF-8 (byte 0xff at column 5)"),
    ("argv", "review argument 2 is not UTF-8"),
    ("missing", "--file={path}.absent: cannot be read: No such file or directory"),
])
def test_client_input_that_is_not_utf8_or_missing_is_one_line_before_any_call(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        source: str, says: str) -> None:
    """Nothing is sent (no server listens on the port given)."""
    import io
    import os
    import sys

    raw = b"fine review\nbad \xff review\n"
    path = tmp_path / "reviews.txt"
    path.write_bytes(raw)
    target = ["--server=127.0.0.1:9", "--retries=0"]
    argv = {"file": [f"--file={path}"], "stdin": [], "missing": [f"--file={path}.absent"],
            "argv": ["fine review", os.fsdecode(b"bad \xff review")]}[source]
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(raw)))
    assert client_cli.main([*target, *argv]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line == f"python -m serving.client: error: {says.format(path=path)}"


@pytest.mark.parametrize("retries", [0, 6])
def test_client_retries_unavailable_until_the_server_comes_up(retries: int) -> None:
    """The server comes up 0.5 s after the first call: with retries (backoff
    0.25 s doubling, about 16 s in all at most) the call succeeds; without,
    it is UNAVAILABLE at once."""
    import threading
    from concurrent import futures

    import portpicker

    from bench.null_server import answer
    from serving.client import ClientOptions, GrpcClient

    class Null(prediction_service_pb2_grpc.PredictionServiceServicer):
        def Predict(self, request, context):  # type: ignore[no-untyped-def]
            return answer(request)

    port = portpicker.pick_unused_port()
    late = grpc.server(futures.ThreadPoolExecutor(2))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Null(), late)

    def come_up() -> None:  # binding the port is coming up: until then nothing listens
        late.add_insecure_port(f"127.0.0.1:{port}")
        late.start()

    timer = threading.Timer(0.5, come_up)
    options = ClientOptions(f"127.0.0.1:{port}", "imdb", deadline_s=2, retries=retries,
                            backoff_s=0.25)
    try:
        with GrpcClient(options) as client:
            timer.start()
            if retries:
                assert client.predict([POSITIVE, NEGATIVE]) == [0.0, 0.0]
            else:
                with pytest.raises(ServingError) as caught:
                    client.predict([POSITIVE])
                assert caught.value.code == "UNAVAILABLE"
    finally:
        timer.cancel()
        late.stop(0)
