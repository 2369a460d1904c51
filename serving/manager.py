"""Models and their versions: which are on disk, which to serve, loading,
hot swap and unloading, the way `tensorflow_model_server` manages servables.

A version is served only after it loaded completely and answered its warm-up
requests; the previous one is unloaded only after that. A version directory
that is incomplete or corrupt is logged with the reason and skipped (retried
only once its files change), so the version served before stays served.
Requests hold a reference to the version they resolved, so an unload never
fails a request in flight: the version's object lives until its last answer.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2

from models.contract import INPUT_TEXT
from serving import protos
from serving.batching import Batcher, BatchingOptions
from serving.errors import GRPC_CODE_NAMES, ServingError
from serving.metrics import Registry
from serving.tensors import TensorSpec, check_inputs, to_array

__all__ = ["ModelConfig", "VersionPolicy", "Servable", "ModelManager", "model_configs",
           "aspired_versions", "DEFAULT_SIGNATURE", "WARMUP_FILE"]

DEFAULT_SIGNATURE = "serving_default"  # TF Serving's default, not this project's choice
#: Where TF Serving looks for warm-up requests inside a SavedModel.
WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
_MAX_WARMUP_RECORDS = 1000  # TF Serving's own cap

log = logging.getLogger("serving")


@dataclass(frozen=True)
class VersionPolicy:
    """ServableVersionPolicy: `latest` n, `all`, or `specific` versions."""

    kind: str = "latest"
    num_versions: int = 1
    versions: tuple[int, ...] = ()


@dataclass(frozen=True)
class ModelConfig:
    """One entry of models.config (or of --model_name/--model_base_path)."""

    name: str
    base_path: str
    policy: VersionPolicy = VersionPolicy()
    labels: Mapping[str, int] = field(default_factory=dict)


def model_configs(config: Any) -> list[ModelConfig]:
    """The models of a parsed ModelServerConfig (text-format models.config)."""
    result = []
    for entry in config.model_config_list.config:
        choice = entry.model_version_policy.WhichOneof("policy_choice")
        if choice == "all":
            policy = VersionPolicy("all")
        elif choice == "specific":
            policy = VersionPolicy("specific",
                                   versions=tuple(entry.model_version_policy.specific.versions))
        else:
            latest = entry.model_version_policy.latest.num_versions
            policy = VersionPolicy("latest", num_versions=max(1, latest))
        result.append(ModelConfig(entry.name, entry.base_path, policy,
                                  dict(entry.version_labels)))
    if not result:
        raise ValueError("the model config lists no model (model_config_list { config {...} })")
    return result


def aspired_versions(on_disk: list[int], policy: VersionPolicy) -> list[int]:
    """Which of the loadable versions on disk the policy wants served."""
    if policy.kind == "all":
        return sorted(on_disk)
    if policy.kind == "specific":
        return sorted(set(on_disk) & set(policy.versions))
    return sorted(on_disk)[-policy.num_versions:]


def _fingerprint(path: str) -> tuple[tuple[str, int, int], ...]:
    """Names, sizes and mtimes of a version dir: a failed load is retried only
    once this changes (a copy still in progress, a fixed file)."""
    rows = []
    for root, _, files in os.walk(path):
        for name in files:
            full = os.path.join(root, name)
            try:
                stat = os.stat(full)
            except OSError:
                continue
            rows.append((os.path.relpath(full, path), stat.st_size, stat.st_mtime_ns))
    return tuple(sorted(rows))


def _specs(tensors: Any) -> dict[str, TensorSpec]:
    return {key: TensorSpec(info.dtype, None if info.tensor_shape.unknown_rank
                            else tuple(d.size for d in info.tensor_shape.dim))
            for key, info in tensors.items()}


def _check_utf8(values: np.ndarray) -> None:
    """Raw review text must be UTF-8: TF's string ops would silently score
    the bytes of a wrongly encoded review, so it is refused instead."""
    for index, value in enumerate(values.flat):
        try:
            value.decode("utf-8")
        except UnicodeDecodeError as error:
            raise ServingError("INVALID_ARGUMENT",
                               f"input '{INPUT_TEXT}' row {index} is not valid UTF-8: "
                               f"{error.reason} at byte {error.start}") from None


def _op_message(message: str) -> str:
    """The cause of a TF op error, without the graph-execution preamble."""
    noise = ("Graph execution error", "Detected at node", "<stack traces", "\t [[")
    lines = [ln for ln in message.splitlines() if ln.strip() and not ln.startswith(noise)]
    return "; ".join(lines[:2])[:500] or message[:500]


def _status_code(error: Exception) -> str:
    if isinstance(error, ServingError):
        return error.code
    code = getattr(error, "error_code", 2)  # tf.errors.OpError carries a canonical code
    return GRPC_CODE_NAMES[code] if 0 <= code < len(GRPC_CODE_NAMES) else "UNKNOWN"


class Servable:
    """One loaded version of one model: its signatures and how to run them."""

    def __init__(self, name: str, version: int, path: str,
                 batching: BatchingOptions | None) -> None:
        self.name, self.version, self.path = name, version, path
        proto = saved_model_pb2.SavedModel()
        with open(os.path.join(path, "saved_model.pb"), "rb") as handle:
            proto.ParseFromString(handle.read())
        serve = [g for g in proto.meta_graphs if "serve" in g.meta_info_def.tags]
        if not serve:
            raise ValueError("no MetaGraph tagged 'serve'")
        self.meta_graph: meta_graph_pb2.MetaGraphDef = serve[0]
        self.signature_defs = {k: v for k, v in self.meta_graph.signature_def.items()
                               if not k.startswith("__")}
        self._loaded = tf.saved_model.load(path)
        self._functions = {k: self._loaded.signatures[k] for k in self.signature_defs}
        self.inputs = {k: _specs(v.inputs) for k, v in self.signature_defs.items()}
        self.outputs = {k: _specs(v.outputs) for k, v in self.signature_defs.items()}
        self._batchers: dict[str, Batcher] = {}
        if batching is not None:
            for key in self.signature_defs:
                specs = [*self.inputs[key].values(), *self.outputs[key].values()]
                if specs and all(s.batch_major for s in specs):
                    self._batchers[key] = Batcher(self._runner(key), batching,
                                                  f"{name}-{version}-{key}")

    def _runner(self, signature: str) -> Callable[[Mapping[str, np.ndarray]],
                                                  dict[str, np.ndarray]]:
        function = self._functions[signature]
        dtypes = {k: tf.dtypes.as_dtype(s.dtype) for k, s in self.inputs[signature].items()}

        def run(inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
            try:
                tensors = {k: tf.constant(v, dtype=dtypes[k]) for k, v in inputs.items()}
                return {k: v.numpy() for k, v in function(**tensors).items()}
            except tf.errors.OpError as error:
                raise ServingError(_status_code(error), _op_message(error.message)) from None
            except (ValueError, TypeError) as error:
                raise ServingError("INVALID_ARGUMENT", str(error)) from None
        return run

    def signature(self, name: str) -> str:
        """The signature key a request names ('' = serving_default), or FAILED_PRECONDITION."""
        key = name or DEFAULT_SIGNATURE
        if key not in self.signature_defs:
            raise ServingError("FAILED_PRECONDITION", f'Serving signature key "{key}" not found.')
        return key

    def predict(self, signature: str, inputs: Mapping[str, np.ndarray],
                output_filter: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
        """Runs one request (checked against the signature) through the batcher if any."""
        key = self.signature(signature)
        check_inputs(key, self.inputs[key], inputs)
        if INPUT_TEXT in inputs and inputs[INPUT_TEXT].dtype == object:
            _check_utf8(inputs[INPUT_TEXT])
        unknown = [name for name in output_filter if name not in self.outputs[key]]
        if unknown:
            raise ServingError("INVALID_ARGUMENT",
                               f"output tensor alias not found in signature: {unknown[0]}")
        batcher = self._batchers.get(key)
        outputs = batcher.submit(inputs) if batcher else self._runner(key)(inputs)
        return {k: v for k, v in outputs.items() if not output_filter or k in output_filter}

    def warm_up(self) -> int:
        """Replays assets.extra/tf_serving_warmup_requests (Predict records), as
        TF Serving does before it marks a version AVAILABLE; returns how many."""
        path = os.path.join(self.path, WARMUP_FILE)
        if not os.path.exists(path):
            return 0
        from tensorflow_serving.apis import prediction_log_pb2

        count = 0
        for record in tf.data.TFRecordDataset(path).take(_MAX_WARMUP_RECORDS):
            entry = prediction_log_pb2.PredictionLog.FromString(record.numpy())
            if entry.WhichOneof("log_type") != "predict_log":
                raise ValueError("warm-up records other than Predict are not supported")
            request = entry.predict_log.request
            arrays = {k: to_array(v) for k, v in request.inputs.items()}
            self.predict(request.model_spec.signature_name, arrays)
            count += 1
        return count

    def close(self) -> None:
        """Stops the batchers after their queued requests ran."""
        for batcher in self._batchers.values():
            batcher.close()


@dataclass
class _VersionState:
    state: str  # LOADING, AVAILABLE, UNLOADING, END
    error_code: str = "OK"
    error_message: str = ""


class _Model:
    def __init__(self, config: ModelConfig) -> None:
        self.config = config
        self.available: dict[int, Servable] = {}
        self.states: dict[int, _VersionState] = {}
        self.failed: dict[int, tuple[Any, ...]] = {}  # version -> fingerprint that failed
        self.waiting: set[int] = set()  # versions without saved_model.pb yet (logged once)



def _labelled(model: _Model, version: int | None, label: str) -> int | None:
    """The version a request names, through its version label if it has one."""
    if not label:
        return version
    if label not in model.config.labels:
        raise ServingError("INVALID_ARGUMENT", f"Unrecognized servable version label: {label}")
    return int(model.config.labels[label])


class ModelManager:
    """Every configured model, polled for new versions on a background thread."""

    def __init__(self, configs: list[ModelConfig], *, batching: BatchingOptions | None = None,
                 metrics: Registry | None = None) -> None:
        self._models = {c.name: _Model(c) for c in configs}
        self._batching = batching
        self._metrics = metrics or Registry()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---------- resolving requests ----------

    def get(self, name: str, version: int | None = None, label: str = "") -> Servable:
        """The servable a request's ModelSpec names, or NOT_FOUND / INVALID_ARGUMENT."""
        model = self._models.get(name)
        if model is None:
            raise ServingError("NOT_FOUND", f"Servable not found for request: Latest({name})")
        version = _labelled(model, version, label)
        with self._lock:
            available = dict(model.available)
        if version is None:
            if not available:
                raise ServingError("NOT_FOUND", f"Servable not found for request: Latest({name})")
            return available[max(available)]
        if version not in available:
            raise ServingError("NOT_FOUND",
                               f"Servable not found for request: Specific({name}, {version})")
        return available[version]

    def status(self, name: str, version: int | None = None,
               label: str = "") -> list[tuple[int, _VersionState]]:
        """(version, state) rows as GetModelStatus reports them."""
        model = self._models.get(name)
        if model is None:
            raise ServingError("NOT_FOUND", f"Could not find any versions of model {name}")
        version = _labelled(model, version, label)
        with self._lock:
            rows = sorted(model.states.items())
        if version is not None:
            rows = [(v, s) for v, s in rows if v == version]
            if not rows:
                raise ServingError("NOT_FOUND",
                                   f"Could not find version {version} of model {name}")
        elif not rows:
            raise ServingError("NOT_FOUND", f"Could not find any versions of model {name}")
        return rows

    def model_names(self) -> list[str]:
        """Names of the configured models."""
        return list(self._models)

    # ---------- polling, loading, unloading ----------

    def poll_once(self) -> None:
        """One look at every base path: load what the policy wants, then unload the rest."""
        for model in self._models.values():
            try:
                self._reconcile(model)
            except Exception:  # the poll loop must survive anything one model does
                log.exception("polling %s failed", model.config.name)

    def _versions_on_disk(self, model: _Model) -> dict[int, str]:
        base = model.config.base_path
        try:
            names = os.listdir(base)
        except OSError as error:
            log.warning("model %s: base path %s unreadable: %s", model.config.name, base, error)
            return {}
        return {int(n): os.path.join(base, n) for n in names
                if n.isdigit() and os.path.isdir(os.path.join(base, n))}

    def _reconcile(self, model: _Model) -> None:
        on_disk = self._versions_on_disk(model)
        loadable = []
        for version, path in on_disk.items():
            failed = model.failed.get(version)
            if failed is not None and failed == _fingerprint(path):
                continue
            if not os.path.exists(os.path.join(path, "saved_model.pb")):
                if version not in model.waiting:
                    log.warning("model %s version %d: no saved_model.pb yet; not loading",
                                model.config.name, version)
                    model.waiting.add(version)
                continue
            loadable.append(version)
        aspired = aspired_versions(loadable, model.config.policy)
        for version in aspired:
            if version not in model.available:
                self._load(model, version, on_disk[version])
        with self._lock:
            serving_aspired = [v for v in aspired if v in model.available]
            # Availability first: keep the old versions until an aspired one serves.
            retire = [v for v in model.available if v not in aspired] if serving_aspired else []
        for version in retire:
            self._unload(model, version)

    def _load(self, model: _Model, version: int, path: str) -> None:
        name = model.config.name
        with self._lock:
            model.states[version] = _VersionState("LOADING")
        fingerprint = _fingerprint(path)
        try:
            servable = Servable(name, version, path, self._batching)
            warmed = servable.warm_up()
        except Exception as error:  # corrupt/incomplete: keep serving what serves now
            message = f"{type(error).__name__}: {error}".splitlines()[0][:500]
            log.error("model %s version %d at %s NOT loaded (%s); still serving %s", name,
                      version, path, message, sorted(model.available) or "nothing")
            model.failed[version] = fingerprint
            with self._lock:
                model.states[version] = _VersionState("END", _status_code(error), message)
            return
        model.failed.pop(version, None)
        with self._lock:
            model.available[version] = servable
            model.states[version] = _VersionState("AVAILABLE")
            versions = sorted(model.available)
        self._metrics.set_versions(name, versions)
        log.info("model %s version %d AVAILABLE (%d warm-up requests)", name, version, warmed)

    def _unload(self, model: _Model, version: int) -> None:
        with self._lock:
            servable = model.available.pop(version)
            model.states[version] = _VersionState("UNLOADING")
            versions = sorted(model.available)
        self._metrics.set_versions(model.config.name, versions)
        servable.close()  # in-flight requests hold their own reference
        with self._lock:
            model.states[version] = _VersionState("END")
        log.info("model %s version %d unloaded", model.config.name, version)

    def start(self, poll_wait_s: float) -> None:
        """Loads what is there now, then polls every `poll_wait_s` (0: never again)."""
        self.poll_once()
        if poll_wait_s > 0:
            self._thread = threading.Thread(target=self._poll_loop, args=(poll_wait_s,),
                                            name="model-poller", daemon=True)
            self._thread.start()

    def _poll_loop(self, wait_s: float) -> None:
        while not self._stop.wait(wait_s):
            self.poll_once()

    def stop(self) -> None:
        """Stops polling and unloads everything (after in-flight batches ran)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
        for model in self._models.values():
            for version in list(model.available):
                self._unload(model, version)


def load_model_server_config(path: str) -> list[ModelConfig]:
    """The models of a text-format models.config file."""
    with open(path, encoding="utf-8") as handle:
        return model_configs(protos.parse_text(handle.read(), protos.ModelServerConfig))
