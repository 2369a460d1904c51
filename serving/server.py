"""A model server with TF Serving's wire API: gRPC PredictionService and
ModelService on the official protos, the REST API, Prometheus metrics.

    python -m serving.server --model_base_path=DIR --model_name=NAME \
        --port=8500 --rest_api_port=8501 [--model_config_file=F] \
        [--file_system_poll_wait_seconds=1] [--model_config_file_poll_wait_seconds=0] \
        [--enable_batching \
        --batching_parameters_file=F] [--ssl_config_file=F] [--monitoring_config_file=F]

The flags are `tensorflow_model_server`'s (serving/flags.py), so scripts,
infra validation and clients work with either. Unlike TF Serving it binds 127.0.0.1 unless
`--host` says otherwise. It imports TensorFlow (saved_model.load and the
signatures) and nothing from TFX or Keras: its cold start is the TF import
plus the model load. SIGTERM stops intake, lets in-flight requests finish,
then exits 0.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from concurrent import futures
from typing import Any

import grpc
import numpy as np
import tensorflow as tf
from aiohttp import web
from google.protobuf import json_format, wrappers_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_management_pb2,
    model_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from models.contract import LABELS
from serving import rest_json
from serving.config_poll import ConfigFilePoller
from serving.errors import GRPC_CODE_NAMES, ServingError
from serving.flags import ServerOptions, check_ports_free, parse_flags
from serving.manager import (
    ModelManager,
    Servable,
    filtered,
    model_configs,
)
from serving.metrics import Registry
from serving.tensors import dtype_name, to_array, to_proto

__all__ = ["ServerOptions", "ModelServer", "parse_flags", "main"]

log = logging.getLogger("serving")


# ---------------------------------------------------------------- shared logic


def _resolve(manager: ModelManager, spec: model_pb2.ModelSpec) -> Servable:
    choice = spec.WhichOneof("version_choice")
    if choice == "version":
        return manager.get(spec.name, version=spec.version.value)
    if choice == "version_label":
        return manager.get(spec.name, label=spec.version_label)
    return manager.get(spec.name)


def _answer_spec(servable: Servable, signature: str) -> model_pb2.ModelSpec:
    return model_pb2.ModelSpec(name=servable.name, signature_name=signature,
                               version=wrappers_pb2.Int64Value(value=servable.version))


#: Output names TF Serving's Classify and Regress read (signature_constants).
CLASSES, SCORES, REGRESS_OUTPUTS = "classes", "scores", "outputs"
#: MultiInference task methods (signature_constants' method names).
METHOD_CLASSIFY, METHOD_REGRESS = "tensorflow/serving/classify", "tensorflow/serving/regress"


def _example_signature(servable: Servable, name: str) -> tuple[str, str]:
    """(signature, its serialized tf.Example input) for Classify/Regress:
    one string input, and TF Serving's `classes`/`scores` (`outputs` for
    Regress) or a single output (this project's `probability`)."""
    key = servable.signature(name)
    inputs, outputs = servable.inputs[key], servable.outputs[key]
    named = {CLASSES, SCORES, REGRESS_OUTPUTS} & set(outputs)
    if (len(inputs) != 1 or next(iter(inputs.values())).dtype != tf.string.as_datatype_enum
            or not (named or len(outputs) == 1)):
        raise ServingError("INVALID_ARGUMENT",
                           f"signature '{key}' does not take serialized tf.Examples to "
                           "classes/scores, outputs or one score: it cannot classify or "
                           "regress")
    return key, next(iter(inputs))


def _example_inputs(servable: Servable, signature: str, serialized: list[bytes]
                    ) -> tuple[str, dict[str, np.ndarray]]:
    """(signature, its inputs) of a Classify/Regress request."""
    if not serialized:
        raise ServingError("INVALID_ARGUMENT", "empty batch: no examples")
    key, input_key = _example_signature(servable, signature)
    examples = np.empty(len(serialized), dtype=object)
    examples[:] = serialized
    return key, {input_key: examples}


def classifications(outputs: dict[str, np.ndarray], rows: int
                    ) -> list[list[tuple[str, float]]]:
    """Per example, its (label, score) pairs, as TF Serving's classifier
    reads a signature: one pair per column of `classes` (labels; "" without)
    and `scores` (0 without). A signature with neither, as this project's
    models export (P(positive) alone), gives both of `models.contract.LABELS`
    with scores 1 - p and p."""
    if CLASSES not in outputs and SCORES not in outputs:
        [probability] = outputs.values()
        return [[(LABELS[0], 1.0 - float(p)), (LABELS[1], float(p))]
                for p in _score_column(probability, rows)]
    scores = (np.asarray(outputs[SCORES], np.float32).reshape(rows, -1)
              if SCORES in outputs else None)
    labels = (np.asarray(outputs[CLASSES]).reshape(rows, -1) if CLASSES in outputs else None)
    columns = (scores if scores is not None else labels).shape[1]  # type: ignore[union-attr]
    return [[(_label(labels[r, c]) if labels is not None else "",
              float(scores[r, c]) if scores is not None else 0.0)
             for c in range(columns)] for r in range(rows)]


def regressions(outputs: dict[str, np.ndarray], rows: int) -> list[float]:
    """Per example, its value: TF Serving's `outputs`, else the only output."""
    values = outputs[REGRESS_OUTPUTS] if REGRESS_OUTPUTS in outputs else next(
        iter(outputs.values()))
    return [float(v) for v in _score_column(values, rows)]


def _fill_classifications(result: classification_pb2.ClassificationResult,
                          outputs: dict[str, np.ndarray], rows: int) -> None:
    """Classify's and MultiInference's ClassificationResult (`classifications`)."""
    for pairs in classifications(outputs, rows):
        row = result.classifications.add()
        for label, score in pairs:
            row.classes.add(label=label, score=score)


def _fill_regressions(result: regression_pb2.RegressionResult,
                      outputs: dict[str, np.ndarray], rows: int) -> None:
    """Regress's and MultiInference's RegressionResult (`regressions`)."""
    for value in regressions(outputs, rows):
        result.regressions.add(value=value)


def _label(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _score_column(scores: np.ndarray, rows: int) -> np.ndarray:
    return np.asarray(scores, dtype=np.float32).reshape(rows, -1)[:, 0]


async def _run_model(servable: Servable, pool: futures.Executor, signature: str,
                     inputs: dict[str, np.ndarray],
                     output_filter: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """One request's model call, awaited on the event loop: checked, then
    queued on the signature's batcher without holding a thread; without a
    batcher (or for a request that must run alone) it runs on `pool`."""
    key = servable.check(signature, inputs, output_filter)
    queued = servable.enqueue(key, inputs)
    if queued is None:
        return await asyncio.get_running_loop().run_in_executor(
            pool, servable.predict, key, inputs, output_filter)
    return filtered(await asyncio.wrap_future(queued), output_filter)


async def _example_outputs(servable: Servable, pool: futures.Executor, signature: str,
                           serialized: list[bytes]) -> tuple[str, dict[str, np.ndarray]]:
    """Classify/Regress: the signature's outputs for serialized tf.Examples."""
    key, inputs = _example_inputs(servable, signature, serialized)
    return key, await _run_model(servable, pool, key, inputs)


def _serialized_examples(request_input: Any) -> list[bytes]:
    """tensorflow.serving.Input -> serialized tf.Examples (context merged in)."""
    kind = request_input.WhichOneof("kind")
    if kind == "example_list":
        return [e.SerializeToString() for e in request_input.example_list.examples]
    if kind == "example_list_with_context":
        with_context = request_input.example_list_with_context
        merged = []
        for example in with_context.examples:
            combined = type(example)()
            combined.CopyFrom(with_context.context)
            combined.MergeFrom(example)
            merged.append(combined.SerializeToString())
        return merged
    raise ServingError("INVALID_ARGUMENT", "Input is empty: no example_list")


def _status_response(manager: ModelManager, name: str, version: int | None,
                     label: str) -> get_model_status_pb2.GetModelStatusResponse:
    response = get_model_status_pb2.GetModelStatusResponse()
    for number, state in manager.status(name, version, label):
        row = response.model_version_status.add(
            version=number,
            state=get_model_status_pb2.ModelVersionStatus.State.Value(state.state))
        row.status.error_code = GRPC_CODE_NAMES.index(state.error_code)
        row.status.error_message = state.error_message
    return response


def _reload_response(manager: ModelManager,
                     config: Any) -> model_management_pb2.ReloadConfigResponse:
    """Applies a ModelServerConfig, answering as TF Serving does: the outcome
    is the response's `status` (the RPC itself succeeds); a refused config
    changed nothing. No config at all is taken as "no action", as TF Serving
    does; `metric_names` is not answered (this server keeps no such metrics)."""
    response = model_management_pb2.ReloadConfigResponse()
    if config.WhichOneof("config") is None:
        log.info("config reload: empty ModelServerConfig, taking no action")
        return response
    try:
        manager.reload(model_configs(config))
    except ServingError as error:
        log.error("config reload refused, previous models keep serving: %s", error.message)
        response.status.error_code = GRPC_CODE_NAMES.index(error.code)
        response.status.error_message = error.message
    return response


def _metadata_response(servable: Servable) -> get_model_metadata_pb2.GetModelMetadataResponse:
    response = get_model_metadata_pb2.GetModelMetadataResponse()
    response.model_spec.CopyFrom(_answer_spec(servable, ""))
    signatures = get_model_metadata_pb2.SignatureDefMap()
    for key, value in servable.signature_defs.items():
        signatures.signature_def[key].CopyFrom(value)
    response.metadata["signature_def"].Pack(signatures)
    return response


# ---------------------------------------------------------------- gRPC


class _Grpc(prediction_service_pb2_grpc.PredictionServiceServicer,
            model_service_pb2_grpc.ModelServiceServicer):
    """PredictionService and ModelService over the manager, on grpc.aio.

    A request is parsed, checked and answered on the event loop; its model
    call goes to the signature's batcher without a thread of its own
    (`_run_model`), so under load the only threads at work are the batch
    threads' model calls. The sync gRPC server spent most of its GIL time
    handing each request to a worker thread and waking it. Model calls
    without a batcher, and config reloads, run on `pool`."""

    def __init__(self, manager: ModelManager, metrics: Registry,
                 pool: futures.Executor, tensor_content: bool = False) -> None:
        self._manager = manager
        self._metrics = metrics
        self._pool = pool
        self._tensor_content = tensor_content

    async def _call(self, api: str, model: str, context: grpc.aio.ServicerContext,
                    body: Callable[[], Awaitable[Any]]) -> Any:
        start = time.perf_counter()
        code = "OK"
        try:
            return await body()
        except asyncio.CancelledError:  # the client went away or its deadline passed
            code = "CANCELLED"
            raise
        except ServingError as error:
            code = error.code
            await context.abort(grpc.StatusCode[error.code], error.message)
        except Exception as error:  # a bug must answer INTERNAL, not kill the server
            code = "INTERNAL"
            log.exception("%s failed", api)
            await context.abort(grpc.StatusCode.INTERNAL, f"{type(error).__name__}: {error}")
        finally:
            self._metrics.observe_request(model, api, "GRPC", code,
                                          (time.perf_counter() - start) * 1e6)

    async def Predict(self, request: predict_pb2.PredictRequest,
                      context: grpc.aio.ServicerContext) -> predict_pb2.PredictResponse:
        async def body() -> predict_pb2.PredictResponse:
            servable = _resolve(self._manager, request.model_spec)
            key = servable.signature(request.model_spec.signature_name)
            specs = servable.inputs[key]
            for name, tensor in request.inputs.items():
                if name in specs and tensor.dtype != specs[name].dtype:
                    raise ServingError(
                        "INVALID_ARGUMENT",
                        f"Expects input '{name}' to be {dtype_name(specs[name].dtype)} but "
                        f"{dtype_name(tensor.dtype)} is provided")
            arrays = {name: to_array(tensor) for name, tensor in request.inputs.items()}
            outputs = await _run_model(servable, self._pool, key, arrays,
                                       tuple(request.output_filter))
            response = predict_pb2.PredictResponse(model_spec=_answer_spec(servable, key))
            for name, value in outputs.items():
                response.outputs[name].CopyFrom(to_proto(value, self._tensor_content))
            return response
        return await self._call("predict", request.model_spec.name, context, body)

    async def Classify(self, request: classification_pb2.ClassificationRequest,
                       context: grpc.aio.ServicerContext
                       ) -> classification_pb2.ClassificationResponse:
        async def body() -> classification_pb2.ClassificationResponse:
            servable = _resolve(self._manager, request.model_spec)
            examples = _serialized_examples(request.input)
            key, outputs = await _example_outputs(
                servable, self._pool, request.model_spec.signature_name, examples)
            response = classification_pb2.ClassificationResponse(
                model_spec=_answer_spec(servable, key))
            _fill_classifications(response.result, outputs, len(examples))
            return response
        return await self._call("classify", request.model_spec.name, context, body)

    async def Regress(self, request: regression_pb2.RegressionRequest,
                      context: grpc.aio.ServicerContext) -> regression_pb2.RegressionResponse:
        async def body() -> regression_pb2.RegressionResponse:
            servable = _resolve(self._manager, request.model_spec)
            examples = _serialized_examples(request.input)
            key, outputs = await _example_outputs(
                servable, self._pool, request.model_spec.signature_name, examples)
            response = regression_pb2.RegressionResponse(model_spec=_answer_spec(servable, key))
            _fill_regressions(response.result, outputs, len(examples))
            return response
        return await self._call("regress", request.model_spec.name, context, body)

    async def MultiInference(self, request: inference_pb2.MultiInferenceRequest,
                             context: grpc.aio.ServicerContext
                             ) -> inference_pb2.MultiInferenceResponse:
        """Classify and Regress tasks over one input, as TF Serving runs them:
        one model (any versions), each signature once."""
        async def body() -> inference_pb2.MultiInferenceResponse:
            tasks = list(request.tasks)
            if not tasks:
                raise ServingError("INVALID_ARGUMENT", "Request must have at least one task")
            if len({t.model_spec.name for t in tasks}) != 1:
                raise ServingError("INVALID_ARGUMENT", "All ModelSpecs in a "
                                   "MultiInferenceRequest must access the same model name")
            examples = _serialized_examples(request.input)
            response = inference_pb2.MultiInferenceResponse()
            seen: set[str] = set()
            for task in tasks:
                servable = _resolve(self._manager, task.model_spec)
                key, outputs = await _example_outputs(
                    servable, self._pool, task.model_spec.signature_name, examples)
                if key in seen:
                    raise ServingError("INVALID_ARGUMENT",
                                       f"Duplicate evaluation of signature: {key}")
                seen.add(key)
                result = response.results.add(model_spec=_answer_spec(servable, key))
                if task.method_name == METHOD_CLASSIFY:
                    _fill_classifications(result.classification_result, outputs, len(examples))
                elif task.method_name == METHOD_REGRESS:
                    _fill_regressions(result.regression_result, outputs, len(examples))
                else:
                    raise ServingError("UNIMPLEMENTED", "Unsupported signature method_name: "
                                       f"{task.method_name}")
            return response
        return await self._call("multi_inference", request.tasks[0].model_spec.name
                                if request.tasks else "", context, body)

    async def GetModelMetadata(self, request: get_model_metadata_pb2.GetModelMetadataRequest,
                               context: grpc.aio.ServicerContext) -> Any:
        async def body() -> get_model_metadata_pb2.GetModelMetadataResponse:
            unsupported = [f for f in request.metadata_field if f != "signature_def"]
            if unsupported or not request.metadata_field:
                raise ServingError("INVALID_ARGUMENT",
                                   "Metadata field must be 'signature_def', got "
                                   f"{list(request.metadata_field)}")
            return _metadata_response(_resolve(self._manager, request.model_spec))
        return await self._call("metadata", request.model_spec.name, context, body)

    async def GetModelStatus(self, request: get_model_status_pb2.GetModelStatusRequest,
                             context: grpc.aio.ServicerContext) -> Any:
        spec = request.model_spec
        version = spec.version.value if spec.WhichOneof("version_choice") == "version" else None
        label = spec.version_label if spec.WhichOneof("version_choice") == "version_label" else ""

        async def body() -> get_model_status_pb2.GetModelStatusResponse:
            return _status_response(self._manager, spec.name, version, label)
        return await self._call("status", spec.name, context, body)

    async def HandleReloadConfigRequest(self, request: model_management_pb2.ReloadConfigRequest,
                                        context: grpc.aio.ServicerContext) -> Any:
        try:  # loads models for seconds: off the event loop
            return await asyncio.get_running_loop().run_in_executor(
                self._pool, _reload_response, self._manager, request.config)
        except Exception as error:  # a bug must answer INTERNAL, not kill the server
            log.exception("config reload failed")
            await context.abort(grpc.StatusCode.INTERNAL, f"{type(error).__name__}: {error}")


# ---------------------------------------------------------------- REST

_PATH = __import__("re").compile(
    r"^/v1/models/(?P<name>[^/:]+)"
    r"(?:/versions/(?P<version>[^/:]+)|/labels/(?P<label>[^/:]+))?"
    r"(?:(?P<metadata>/metadata)|:(?P<verb>predict|classify|regress))?$")


def _json_error(error: ServingError) -> web.Response:
    return web.json_response({"error": error.message}, status=error.http_status)


def _message_json(message: Any) -> web.Response:
    text = json_format.MessageToJson(message, preserving_proto_field_name=True,
                                     always_print_fields_with_no_presence=True)
    return web.Response(text=text, content_type="application/json")


def _metadata_json(response: get_model_metadata_pb2.GetModelMetadataResponse
                   ) -> dict[str, Any]:
    """REST metadata as TF Serving writes it (http_rest_api_util.cc): the
    model spec and the unpacked SignatureDefMap, without the Any's "@type"."""
    signatures = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signatures)

    def as_dict(message: Any) -> dict[str, Any]:
        return json_format.MessageToDict(message, preserving_proto_field_name=True,
                                         always_print_fields_with_no_presence=True)
    return {"model_spec": as_dict(response.model_spec),
            "metadata": {"signature_def": as_dict(signatures)}}


class _Rest:
    """The REST API on aiohttp, on the gRPC front end's event loop. Model
    calls go the same way (`_run_model`): onto the batcher, else onto a
    pool of --rest_api_num_threads threads."""

    def __init__(self, manager: ModelManager, metrics: Registry, options: ServerOptions) -> None:
        self._manager = manager
        self._metrics = metrics
        self._options = options
        self._pool = futures.ThreadPoolExecutor(options.rest_api_num_threads,
                                                thread_name_prefix="rest")
        self._in_flight = 0

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self._options.max_request_bytes)
        app.router.add_get(self._options.metrics_path, self._metrics_page)
        app.router.add_route("*", "/v1/models/{tail:.*}", self._models)
        app.router.add_route("*", "/{tail:.*}", self._unknown)
        return app

    async def _metrics_page(self, request: web.Request) -> web.Response:
        return web.Response(text=self._metrics.render(), content_type="text/plain",
                            charset="utf-8")

    async def _unknown(self, request: web.Request) -> web.Response:
        return _json_error(ServingError("NOT_FOUND", f"Malformed request: {request.method} "
                                                     f"{request.path}"))

    async def _models(self, request: web.Request) -> web.Response:
        match = _PATH.match(request.path)
        start = time.perf_counter()
        name = match["name"] if match else ""
        api = (match["verb"] or ("metadata" if match["metadata"] else "status")) if match else "?"
        code = "OK"
        try:
            if match is None:
                raise ServingError("NOT_FOUND", f"Malformed request: {request.method} "
                                                f"{request.path}")
            if self._in_flight >= self._options.max_concurrent_requests:
                raise ServingError("RESOURCE_EXHAUSTED", "too many requests in flight")
            self._in_flight += 1
            try:
                return await self._dispatch(request, match, api)
            finally:
                self._in_flight -= 1
        except ServingError as error:
            code = error.code
            return _json_error(error)
        except web.HTTPRequestEntityTooLarge as error:
            code = "RESOURCE_EXHAUSTED"
            return web.json_response({"error": f"request too large: {error.text}"}, status=413)
        except Exception as error:
            code = "INTERNAL"
            log.exception("REST %s failed", request.path)
            return _json_error(ServingError("INTERNAL", f"{type(error).__name__}: {error}"))
        finally:
            self._metrics.observe_request(name, api, "REST", code,
                                          (time.perf_counter() - start) * 1e6)

    async def _dispatch(self, request: web.Request, match: Any, api: str) -> web.Response:
        name, label = match["name"], match["label"] or ""
        version = None
        if match["version"] is not None:
            if not match["version"].isdigit():
                raise ServingError("INVALID_ARGUMENT",
                                   f"version must be an integer, got {match['version']!r}")
            version = int(match["version"])
        expected = "POST" if match["verb"] else "GET"
        if request.method != expected:
            raise ServingError("INVALID_ARGUMENT",
                               f"{request.path} takes {expected}, not {request.method}")
        if api == "status":
            return _message_json(_status_response(self._manager, name, version, label))
        servable = self._manager.get(name, version, label)
        if api == "metadata":
            return web.json_response(_metadata_json(_metadata_response(servable)))
        raw = await request.read()
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ServingError("INVALID_ARGUMENT", f"JSON parse error: {error}") from None
        work = self._predict if api == "predict" else self._classify_or_regress
        return web.json_response(await work(servable, body, api))

    async def _predict(self, servable: Servable, body: Any, api: str) -> dict[str, Any]:
        signature = body.get("signature_name", "") if isinstance(body, dict) else ""
        if not isinstance(signature, str):
            raise ServingError("INVALID_ARGUMENT", "'signature_name' must be a string")
        key = servable.signature(signature)
        dtypes = {k: s.dtype for k, s in servable.inputs[key].items()}
        arrays, row_format = rest_json.parse_predict(body, dtypes)
        outputs = await _run_model(servable, self._pool, key, arrays)
        return rest_json.format_predict(outputs, row_format)

    async def _classify_or_regress(self, servable: Servable, body: Any,
                                   api: str) -> dict[str, Any]:
        examples, context = rest_json.parse_examples(body)
        serialized = [_json_example({**context, **e}) for e in examples]
        _, outputs = await _example_outputs(servable, self._pool,
                                            body.get("signature_name", ""), serialized)
        # "results", as TF Serving answers (util/json_tensor.cc); its REST
        # guide's examples say "result".
        if api == "classify":
            return {"results": [[list(c) for c in pairs]
                                for pairs in classifications(outputs, len(serialized))]}
        return {"results": regressions(outputs, len(serialized))}

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def _json_example(features: dict[str, Any]) -> bytes:
    """A REST example (feature -> value or list) as a serialized tf.Example."""
    example = tf.train.Example()
    for key, value in features.items():
        values = value if isinstance(value, list) else [value]
        feature = example.features.feature[key]
        if all(isinstance(v, (str, dict)) for v in values):
            feature.bytes_list.value.extend(rest_json.decode_strings(values))
        elif all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            feature.int64_list.value.extend(values)
        elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            feature.float_list.value.extend(values)
        else:
            raise ServingError("INVALID_ARGUMENT", f"feature '{key}': mixed or unsupported values")
    return example.SerializeToString()


# ---------------------------------------------------------------- the server


class ModelServer:
    """gRPC + REST + the model manager; `start()`, then `stop()` drains and ends.
    Both front ends run on one asyncio event loop in a thread of its own."""

    def __init__(self, options: ServerOptions) -> None:
        self.options = options
        self.metrics = Registry()
        self.manager = ModelManager(list(options.models), batching=options.batching,
                                    metrics=self.metrics)
        self._grpc: grpc.aio.Server | None = None
        self._pool: futures.ThreadPoolExecutor | None = None
        self._rest: _Rest | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._config_poller: ConfigFilePoller | None = None
        self.grpc_port = 0
        self.rest_port = 0

    def start(self) -> None:
        """Loads the models, then opens the ports (so AVAILABLE means servable)."""
        self.manager.start(self.options.poll_wait_s)
        if self.options.model_config_file and self.options.config_poll_wait_s > 0:
            self._config_poller = ConfigFilePoller(
                self.manager, self.options.model_config_file, self.options.model_config_text,
                self.options.config_poll_wait_s)
            self._config_poller.start()
        self._loop = asyncio.new_event_loop()
        self._loop_thread = threading.Thread(target=self._loop.run_forever, name="serving-loop",
                                             daemon=True)
        self._loop_thread.start()
        self._on_loop(self._open_grpc())
        if self.options.rest_api_port:
            self._on_loop(self._open_rest())
        log.info("serving gRPC on %s:%d%s", self.options.host, self.grpc_port,
                 f", REST on {self.options.host}:{self.rest_port}" if self.rest_port else "")

    def _on_loop(self, work: Coroutine[Any, Any, Any], timeout_s: float = 30.0) -> Any:
        """Runs `work` on the server's event loop; its result, or its exception."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(work, self._loop).result(timeout_s)

    async def _open_grpc(self) -> None:
        limit = self.options.max_request_bytes
        self._pool = futures.ThreadPoolExecutor(self.options.grpc_max_threads,
                                                thread_name_prefix="grpc")
        self._grpc = grpc.aio.server(
            maximum_concurrent_rpcs=self.options.max_concurrent_requests,
            options=[("grpc.max_receive_message_length", limit),
                     ("grpc.max_send_message_length", limit), ("grpc.so_reuseport", 0),
                     *self.options.grpc_channel_arguments])
        servicer = _Grpc(self.manager, self.metrics, self._pool, self.options.tensor_content)
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(servicer, self._grpc)
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(servicer, self._grpc)
        address = f"{self.options.host}:{self.options.port}"
        if self.options.ssl is not None:
            ssl = self.options.ssl
            credentials = grpc.ssl_server_credentials(
                [(ssl.server_key.encode(), ssl.server_cert.encode())],
                root_certificates=ssl.custom_ca.encode() or None,
                require_client_auth=ssl.client_verify)
            self.grpc_port = self._grpc.add_secure_port(address, credentials)
        else:
            self.grpc_port = self._grpc.add_insecure_port(address)
        if self.options.grpc_socket_path:  # local clients, without TLS (as TF Serving)
            self._grpc.add_insecure_port(f"unix:{self.options.grpc_socket_path}")
        await self._grpc.start()

    async def _open_rest(self) -> None:
        self._rest = _Rest(self.manager, self.metrics, self.options)
        self._runner = web.AppRunner(self._rest.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.options.host, self.options.rest_api_port,
                           shutdown_timeout=30)
        await site.start()
        self.rest_port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def _drain(self, grace_s: float) -> None:
        """Both front ends refuse new requests and finish those in flight, together."""
        closing = []
        if self._runner is not None:
            closing.append(self._runner.cleanup())
        if self._grpc is not None:
            closing.append(self._grpc.stop(grace_s))
        await asyncio.gather(*closing)

    def stop(self, grace_s: float = 30.0) -> None:
        """Stops config changes, refuses new requests, waits for those in
        flight, then unloads."""
        if self._config_poller is not None:
            self._config_poller.stop()
        if self._loop is not None and self._loop_thread is not None:
            try:
                self._on_loop(self._drain(grace_s), grace_s + 5)
            finally:
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._loop_thread.join(10)
        if self._rest is not None:
            self._rest.close()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        self.manager.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the server until SIGTERM/SIGINT, then drains and exits 0."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s",
                        stream=sys.stderr)
    options = parse_flags(sys.argv[1:] if argv is None else argv)
    check_ports_free(options)
    # Before the first model loads: TF fixes its thread pools on first use.
    tf.config.threading.set_intra_op_parallelism_threads(options.intra_op_threads)
    tf.config.threading.set_inter_op_parallelism_threads(options.inter_op_threads)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    server = ModelServer(options)
    server.start()
    while not stop.wait(3600):
        pass
    log.info("signal received: draining in-flight requests")
    server.stop()
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
