"""Clients of the served model on TF Serving's own API: gRPC on the official
`tensorflow_serving.apis` protos, or REST. They work unchanged against this
project's server and against real `tensorflow_model_server`.

    python -m serving.client --server=127.0.0.1:8500 --model_name=imdb_sentiment \
        "A wonderful film." "Dull and far too long."
    python -m serving.client ... --file=reviews.txt      # one review a line ('-': stdin)
    python -m serving.client ... --status | --metadata
    python -m serving.client --rest --server=127.0.0.1:8501 ...

One JSON line per review: {"text", "probability", "label"}. Reviews go in
batches (`--batch_size`) per request; each call has a deadline and is
retried on UNAVAILABLE with exponential backoff.
"""

from __future__ import annotations

import argparse
import base64
import importlib.util
import json
import sys
import time
import types
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar


def _protos_without_tensorflow() -> None:
    """Lets a one-shot CLI call read TF's and TF Serving's generated protos
    without running tensorflow/__init__ (4.4 s of a 5.5 s start, Keras
    included): a bare package object stands for `tensorflow`, so only its
    *_pb2 modules load. Only when this module is the program and nothing has
    imported TensorFlow: in any other process the real package must be the
    one in sys.modules."""
    spec = importlib.util.find_spec("tensorflow")
    if spec is None or not spec.submodule_search_locations:
        return
    package = types.ModuleType("tensorflow")
    package.__path__ = list(spec.submodule_search_locations)
    package.__spec__ = spec
    sys.modules["tensorflow"] = package


if __name__ == "__main__" and "tensorflow" not in sys.modules:
    _protos_without_tensorflow()

import grpc  # noqa: E402
import numpy as np  # noqa: E402
import requests  # noqa: E402
from google.protobuf import json_format  # noqa: E402
from tensorflow.core.example import example_pb2  # noqa: E402
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2  # noqa: E402
from tensorflow_serving.apis import (  # noqa: E402
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from models.contract import (  # noqa: E402
    INPUT_EXAMPLES,
    INPUT_TEXT,
    LABELS,
    OUTPUT_KEY,
    SIGNATURE_EXAMPLES,
    SIGNATURE_TEXT,
)
from models.features import TEXT  # noqa: E402
from serving.errors import ServingError, code_of_http_status  # noqa: E402

__all__ = ["ClientOptions", "ServingError", "GrpcClient", "RestClient", "any_available",
           "serialize_example", "string_tensor", "float_values", "label_of", "main"]

T = TypeVar("T")


@dataclass(frozen=True)
class ClientOptions:
    """How to reach the server and how hard to try."""

    target: str  # host:port (gRPC) or host:port / http(s)://host:port (REST)
    model_name: str
    version: int | None = None
    version_label: str = ""
    deadline_s: float = 10.0
    retries: int = 4
    backoff_s: float = 0.05
    max_message_bytes: int = 64 * 1024 * 1024
    batch_size: int = 64
    root_certificates: bytes | None = None  # TLS: the CA that signed the server's cert
    private_key: bytes | None = None  # TLS client certificate (mutual TLS)
    certificate_chain: bytes | None = None
    server_name_override: str = ""


def serialize_example(text: str) -> bytes:
    """A review as the serialized tf.Example `serving_default` parses."""
    example = example_pb2.Example()
    example.features.feature[TEXT].bytes_list.value.append(text.encode("utf-8"))
    return example.SerializeToString()


def string_tensor(values: Sequence[bytes]) -> tensor_pb2.TensorProto:
    """A DT_STRING [n] TensorProto."""
    return tensor_pb2.TensorProto(
        dtype=types_pb2.DT_STRING, string_val=list(values),
        tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=len(values))]))


def float_values(tensor: tensor_pb2.TensorProto) -> list[float]:
    """The values of a DT_FLOAT answer (packed tensor_content or float_val)."""
    if tensor.tensor_content:
        return [float(v) for v in np.frombuffer(tensor.tensor_content, dtype=np.float32)]
    return [float(v) for v in tensor.float_val]


def label_of(probability: float) -> str:
    """The class name of a P(positive) at the 0.5 threshold."""
    return LABELS[int(probability >= 0.5)]


def _batches(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), max(1, size)):
        yield items[start:start + size]


def _version_spec(spec: Any, options: ClientOptions) -> None:
    if options.version is not None:
        spec.version.value = options.version
    elif options.version_label:
        spec.version_label = options.version_label


def any_available(rows: list[dict[str, Any]]) -> bool:
    """Whether GetModelStatus rows (gRPC or REST, the same shape) show a
    version that serves: TF Serving reports each loaded version AVAILABLE."""
    return any(row["state"] == "AVAILABLE" for row in rows)


class GrpcClient:
    """PredictionService / ModelService client with deadlines and retries."""

    def __init__(self, options: ClientOptions) -> None:
        self.options = options
        channel_options = [("grpc.max_send_message_length", options.max_message_bytes),
                           ("grpc.max_receive_message_length", options.max_message_bytes)]
        if options.server_name_override:
            channel_options.append(("grpc.ssl_target_name_override",
                                    options.server_name_override))
        if options.root_certificates is not None:
            credentials = grpc.ssl_channel_credentials(
                options.root_certificates, options.private_key, options.certificate_chain)
            self._channel = grpc.secure_channel(options.target, credentials, channel_options)
        else:
            self._channel = grpc.insecure_channel(options.target, channel_options)
        self._predict = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self._models = model_service_pb2_grpc.ModelServiceStub(self._channel)

    def close(self) -> None:
        """Closes the channel."""
        self._channel.close()

    def __enter__(self) -> GrpcClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _retrying(self, call: Callable[..., T], request: Any) -> T:
        delay = self.options.backoff_s
        for attempt in range(self.options.retries + 1):
            try:
                return call(request, timeout=self.options.deadline_s)
            except grpc.RpcError as error:
                code = error.code()  # type: ignore[attr-defined]
                if code == grpc.StatusCode.UNAVAILABLE and attempt < self.options.retries:
                    time.sleep(delay)
                    delay *= 2
                    continue
                raise ServingError(code.name, error.details() or "") from None  # type: ignore[attr-defined]
        raise AssertionError("unreachable")

    def predict_request(self, signature: str, texts: Sequence[str]) -> predict_pb2.PredictRequest:
        """The PredictRequest for `texts` on serving_text (raw) or serving_default (tf.Example)."""
        request = predict_pb2.PredictRequest()
        request.model_spec.name = self.options.model_name
        request.model_spec.signature_name = signature
        _version_spec(request.model_spec, self.options)
        if signature == SIGNATURE_EXAMPLES:
            request.inputs[INPUT_EXAMPLES].CopyFrom(
                string_tensor([serialize_example(t) for t in texts]))
        else:
            request.inputs[INPUT_TEXT].CopyFrom(string_tensor([t.encode("utf-8") for t in texts]))
        return request

    def predict_raw(self, request: predict_pb2.PredictRequest) -> predict_pb2.PredictResponse:
        """One Predict call (deadline, retries)."""
        return self._retrying(self._predict.Predict, request)

    def predict(self, texts: Sequence[str], signature: str = SIGNATURE_TEXT) -> list[float]:
        """P(positive) of each review, `batch_size` reviews per request."""
        scores: list[float] = []
        for batch in _batches(texts, self.options.batch_size):
            response = self.predict_raw(self.predict_request(signature, batch))
            scores += float_values(response.outputs[OUTPUT_KEY])
        return scores

    def metadata(self) -> dict[str, Any]:
        """GetModelMetadata (signature_def) as JSON, like the REST answer."""
        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        request.model_spec.name = self.options.model_name
        _version_spec(request.model_spec, self.options)
        response = self._retrying(self._predict.GetModelMetadata, request)
        signatures = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signatures)
        return {"model_spec": json_format.MessageToDict(response.model_spec,
                                                        preserving_proto_field_name=True),
                "metadata": {"signature_def": json_format.MessageToDict(
                    signatures, preserving_proto_field_name=True)}}

    def status(self) -> list[dict[str, Any]]:
        """GetModelStatus rows: version, state, status."""
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = self.options.model_name
        _version_spec(request.model_spec, self.options)
        response = self._retrying(self._models.GetModelStatus, request)
        return [json_format.MessageToDict(row, preserving_proto_field_name=True,
                                          always_print_fields_with_no_presence=True)
                for row in response.model_version_status]

    def reload_config(self, config: Any) -> None:
        """HandleReloadConfigRequest: the server serves exactly `config` (a
        ModelServerConfig) once this returns; raises ServingError if refused."""
        request = model_management_pb2.ReloadConfigRequest()
        request.config.CopyFrom(config)
        status = self._retrying(self._models.HandleReloadConfigRequest, request).status
        if status.error_code:
            code = next((c.name for c in grpc.StatusCode if c.value[0] == status.error_code),
                        "UNKNOWN")
            raise ServingError(code, status.error_message)

    def wait_until_available(self, timeout_s: float, poll_s: float = 0.2) -> float:
        """Seconds until a version is AVAILABLE; raises TimeoutError after `timeout_s`."""
        start = time.monotonic()
        while time.monotonic() - start < timeout_s:
            try:
                if any_available(self.status()):
                    return time.monotonic() - start
            except ServingError:
                pass
            time.sleep(poll_s)
        raise TimeoutError(f"{self.options.model_name} not AVAILABLE within {timeout_s} s")


class RestClient:
    """The same calls over TF Serving's REST API."""

    def __init__(self, options: ClientOptions, session: requests.Session | None = None) -> None:
        self.options = options
        target = options.target
        scheme = "https" if options.root_certificates is not None else "http"
        self._base = target if "://" in target else f"{scheme}://{target}"
        self._session = session or requests.Session()

    def close(self) -> None:
        """Closes the HTTP session."""
        self._session.close()

    def url(self, suffix: str = "") -> str:
        """/v1/models/<name>[/versions/<v>|/labels/<l>]<suffix>."""
        url = f"{self._base}/v1/models/{self.options.model_name}"
        if self.options.version is not None:
            url += f"/versions/{self.options.version}"
        elif self.options.version_label:
            url += f"/labels/{self.options.version_label}"
        return url + suffix

    def _call(self, method: str, url: str, body: Any = None) -> Any:
        delay = self.options.backoff_s
        for attempt in range(self.options.retries + 1):
            try:
                response = self._session.request(method, url, json=body,
                                                 timeout=self.options.deadline_s)
            except requests.ConnectionError:
                if attempt < self.options.retries:
                    time.sleep(delay)
                    delay *= 2
                    continue
                raise ServingError("UNAVAILABLE", f"cannot connect to {url}") from None
            if response.status_code == 503 and attempt < self.options.retries:
                time.sleep(delay)
                delay *= 2
                continue
            payload = response.json()
            if response.status_code != 200:
                raise ServingError(code_of_http_status(response.status_code),
                                   payload.get("error", ""))
            return payload
        raise AssertionError("unreachable")

    def predict(self, texts: Sequence[str], signature: str = SIGNATURE_TEXT) -> list[float]:
        """P(positive) of each review, `batch_size` reviews per request."""
        scores: list[float] = []
        for batch in _batches(texts, self.options.batch_size):
            if signature == SIGNATURE_EXAMPLES:
                instances: list[Any] = [
                    {"b64": base64.b64encode(serialize_example(t)).decode("ascii")} for t in batch]
            else:
                instances = list(batch)
            body = {"signature_name": signature, "instances": instances}
            scores += [float(p) for p in self._call("POST", self.url(":predict"),
                                                    body)["predictions"]]
        return scores

    def metadata(self) -> dict[str, Any]:
        """GET .../metadata."""
        return dict(self._call("GET", self.url("/metadata")))

    def status(self) -> list[dict[str, Any]]:
        """GET /v1/models/<name>: the model_version_status rows."""
        return list(self._call("GET", self.url())["model_version_status"])


class _InputError(Exception):
    """Reviews the CLI cannot send: one line, exit status 2."""


def _decoded_lines(raw: bytes, source: str) -> list[str]:
    """The non-blank lines of `raw`, which must be UTF-8 (reviews are sent
    as UTF-8 text; the server refuses anything else)."""
    lines = []
    for number, line in enumerate(raw.splitlines(), start=1):
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as error:
            raise _InputError(f"{source}: line {number} is not UTF-8 (byte "
                              f"0x{line[error.start]:02x} at column {error.start + 1})") from None
        if text.strip():
            lines.append(text)
    return lines


def _texts(args: argparse.Namespace) -> list[str]:
    """The reviews: the arguments, else --file's lines, else stdin's."""
    if args.texts:
        for number, text in enumerate(args.texts, start=1):
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:  # argv bytes Python could not decode
                raise _InputError(f"review argument {number} is not UTF-8") from None
        return list(args.texts)
    if args.file in ("", "-"):
        return _decoded_lines(sys.stdin.buffer.read(), "stdin")
    try:
        with open(args.file, "rb") as handle:
            raw = handle.read()
    except OSError as error:
        raise _InputError(f"--file={args.file}: cannot be read: "
                          f"{error.strerror or error}") from None
    return _decoded_lines(raw, f"--file={args.file}")


def _read_bytes(path: str) -> bytes | None:
    if not path:
        return None
    with open(path, "rb") as handle:
        return handle.read()


def main(argv: Sequence[str] | None = None) -> int:
    """The CLI: reviews from arguments, --file or stdin; JSON lines out."""
    parser = argparse.ArgumentParser(prog="python -m serving.client", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("texts", nargs="*", help="reviews (default: --file, else stdin)")
    add("--server", default="127.0.0.1:8500", help="host:port (REST: of the REST API)")
    add("--model_name", default="imdb_sentiment")
    add("--signature", default=SIGNATURE_TEXT, choices=[SIGNATURE_TEXT, SIGNATURE_EXAMPLES])
    add("--version", type=int, default=None)
    add("--version_label", default="")
    add("--file", default="", help="one review a line; '-' for stdin")
    add("--rest", action="store_true", help="use the REST API instead of gRPC")
    add("--status", action="store_true", help="print GetModelStatus and exit")
    add("--metadata", action="store_true", help="print GetModelMetadata and exit")
    add("--timeout", type=float, default=10.0, help="deadline per call (s)")
    add("--retries", type=int, default=4, help="retries on UNAVAILABLE")
    add("--batch_size", type=int, default=64, help="reviews per request")
    add("--max_message_bytes", type=int, default=64 * 1024 * 1024)
    add("--ssl_root_cert", default="", help="PEM of the CA (enables TLS)")
    add("--ssl_client_cert", default="", help="PEM client certificate (mutual TLS)")
    add("--ssl_client_key", default="", help="PEM client key (mutual TLS)")
    add("--ssl_target_name", default="", help="expected server certificate name")
    args = parser.parse_args(argv)
    options = ClientOptions(
        args.server, args.model_name, args.version, args.version_label, args.timeout,
        args.retries, max_message_bytes=args.max_message_bytes, batch_size=args.batch_size,
        root_certificates=_read_bytes(args.ssl_root_cert),
        private_key=_read_bytes(args.ssl_client_key),
        certificate_chain=_read_bytes(args.ssl_client_cert),
        server_name_override=args.ssl_target_name)
    try:
        texts = [] if args.status or args.metadata else _texts(args)
    except _InputError as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 2
    client: GrpcClient | RestClient = RestClient(options) if args.rest else GrpcClient(options)
    try:
        if args.status:
            print(json.dumps({"model_version_status": client.status()}))
            return 0
        if args.metadata:
            print(json.dumps(client.metadata()))
            return 0
        for text, probability in zip(texts, client.predict(texts, args.signature), strict=True):
            print(json.dumps({"text": text, OUTPUT_KEY: probability,
                              "label": label_of(probability)}))
        return 0
    except ServingError as error:
        print(json.dumps({"error": error.message, "code": error.code}), file=sys.stderr)
        return 1
    finally:
        client.close()


if __name__ == "__main__":
    sys.exit(main())
