"""Models and their versions: which are on disk, which to serve, loading,
hot swap and unloading, the way `tensorflow_model_server` manages servables.

A version is served only after it loaded completely and answered its warm-up
requests; the previous one is unloaded only after that. A version directory
that is incomplete or corrupt is logged with the reason and skipped (retried
only once its files change), so the version served before stays served.
Requests hold a reference to the version they resolved, so an unload never
fails a request in flight: the version's object lives until its last answer.
A config reload (`ModelManager.reload`) is all or nothing: it checks and
loads everything the new config needs before it switches, in one step.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2
from tensorflow_serving.config import model_server_config_pb2

from models import wordpiece
from models.contract import INPUT_TEXT
from serving import protos
from serving.batching import Batcher, BatchingOptions
from serving.errors import GRPC_CODE_NAMES, ServingError
from serving.loader import load_signatures
from serving.metrics import Registry
from serving.tensors import TensorSpec, check_inputs, matches_specs, to_array

__all__ = ["ModelConfig", "VersionPolicy", "Servable", "ModelManager", "model_configs",
           "aspired_versions", "parse_model_server_config",
           "DEFAULT_SIGNATURE", "PLATFORM", "WARMUP_FILE", "filtered"]

DEFAULT_SIGNATURE = "serving_default"  # TF Serving's default, not this project's choice
PLATFORM = "tensorflow"  # the only model_platform served: SavedModels
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

    def __str__(self) -> str:
        """As an operator reads it in an error: `latest 1`, `all`, `specific [3, 4]`."""
        if self.kind == "all":
            return "all"
        if self.kind == "specific":
            return f"specific {list(self.versions)}"
        return f"latest {self.num_versions}"


@dataclass(frozen=True)
class ModelConfig:
    """One entry of models.config (or of --model_name/--model_base_path)."""

    name: str
    base_path: str
    policy: VersionPolicy = VersionPolicy()
    labels: Mapping[str, int] = field(default_factory=dict)


def _policy(entry: Any) -> VersionPolicy:
    choice = entry.model_version_policy.WhichOneof("policy_choice")
    if choice == "all":
        return VersionPolicy("all")
    if choice == "specific":
        versions = tuple(entry.model_version_policy.specific.versions)
        if not versions:
            raise ServingError("INVALID_ARGUMENT", f"model '{entry.name}': "
                               "model_version_policy.specific lists no version")
        return VersionPolicy("specific", versions=versions)
    latest = entry.model_version_policy.latest.num_versions
    return VersionPolicy("latest", num_versions=max(1, latest))


def _check_entry(entry: Any) -> None:
    """Refuses what this server cannot honour, naming the model and the field:
    ignoring a field would serve something other than what the config asks for."""
    model = f"model '{entry.name}'"
    if not entry.name:
        raise ServingError("INVALID_ARGUMENT", "a model config entry has no name")
    if "://" in entry.base_path:
        raise ServingError("INVALID_ARGUMENT",
                           f"{model}: base_path '{entry.base_path}' is not a local path "
                           "(this server reads local directories only)")
    if not os.path.isabs(entry.base_path):
        raise ServingError("INVALID_ARGUMENT", f"Expected {model} to have an absolute "
                           f"base_path; got base_path='{entry.base_path}'")
    if entry.model_type and entry.model_platform:
        raise ServingError("INVALID_ARGUMENT", f"{model}: both model_type (deprecated) "
                           "and model_platform are set")
    if (entry.model_type == model_server_config_pb2.OTHER
            or entry.model_platform not in ("", PLATFORM)):
        raise ServingError("INVALID_ARGUMENT", f"{model}: model_platform "
                           f"'{entry.model_platform or 'other'}' is not supported "
                           f"(only '{PLATFORM}')")
    if entry.HasField("logging_config"):
        raise ServingError("INVALID_ARGUMENT", f"{model}: logging_config (request logging) "
                           "is not supported")


def model_configs(config: Any) -> list[ModelConfig]:
    """The models of a ModelServerConfig (models.config at start, or a reload
    request), or INVALID_ARGUMENT naming the entry and field that cannot apply."""
    if config.WhichOneof("config") == "custom_model_config":
        raise ServingError("INVALID_ARGUMENT", "custom_model_config is not supported: "
                           "only model_config_list")
    result: list[ModelConfig] = []
    for entry in config.model_config_list.config:
        _check_entry(entry)
        if any(c.name == entry.name for c in result):
            raise ServingError("INVALID_ARGUMENT", f"Illegal to list model {entry.name} "
                               "multiple times in config list")
        result.append(ModelConfig(entry.name, entry.base_path, _policy(entry),
                                  dict(entry.version_labels)))
    if not result:
        raise ServingError("INVALID_ARGUMENT", "the model config lists no model "
                           "(model_config_list { config {...} })")
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


def filtered(outputs: Mapping[str, np.ndarray],
             output_filter: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The outputs a request's output_filter names (all when it is empty)."""
    return {k: v for k, v in outputs.items() if not output_filter or k in output_filter}


class Servable:
    """One loaded version of one model: its signatures and how to run them."""

    def __init__(self, name: str, version: int, path: str,
                 batching: BatchingOptions | None, metrics: Registry | None = None) -> None:
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
        # tensorflow_model_server links TF Text's ops; so does this server,
        # for models that tokenise with WordPiece inside (0.5 s, once).
        wordpiece.register_ops()
        self._loaded, self._functions = load_signatures(path, self.signature_defs)
        self.inputs = {k: _specs(v.inputs) for k, v in self.signature_defs.items()}
        self.outputs = {k: _specs(v.outputs) for k, v in self.signature_defs.items()}
        self._batchers: dict[str, Batcher] = {}
        observe = (None if metrics is None else
                   lambda rows, waits: metrics.observe_batch(name, rows, waits))
        if batching is not None:
            for key in self.signature_defs:
                specs = [*self.inputs[key].values(), *self.outputs[key].values()]
                if specs and all(s.batch_major for s in specs):
                    self._batchers[key] = Batcher(self._runner(key), batching,
                                                  f"{name}-{version}-{key}", observe)

    def _runner(self, signature: str) -> Callable[[Mapping[str, np.ndarray]],
                                                  dict[str, np.ndarray]]:
        function = self._functions[signature]
        dtypes = {k: tf.dtypes.as_dtype(s.dtype) for k, s in self.inputs[signature].items()}

        def run(inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
            try:
                tensors = {k: tf.constant(v, dtype=dtypes[k]) for k, v in inputs.items()}
                return {k: np.asarray(v) for k, v in function(**tensors).items()}
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

    def check(self, signature: str, inputs: Mapping[str, np.ndarray],
              output_filter: tuple[str, ...] = ()) -> str:
        """The signature key of a request checked against it, or ServingError."""
        key = self.signature(signature)
        check_inputs(key, self.inputs[key], inputs)
        if INPUT_TEXT in inputs and inputs[INPUT_TEXT].dtype == object:
            _check_utf8(inputs[INPUT_TEXT])
        unknown = [name for name in output_filter if name not in self.outputs[key]]
        if unknown:
            raise ServingError("INVALID_ARGUMENT",
                               f"output tensor alias not found in signature: {unknown[0]}")
        return key

    def predict(self, signature: str, inputs: Mapping[str, np.ndarray],
                output_filter: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
        """Runs one request (checked against the signature) through the batcher if any."""
        key = self.check(signature, inputs, output_filter)
        batcher = self._batcher(key, inputs)
        outputs = batcher.submit(inputs) if batcher else self._runner(key)(inputs)
        return filtered(outputs, output_filter)

    def enqueue(self, key: str, inputs: Mapping[str, np.ndarray]
                ) -> Future[dict[str, np.ndarray]] | None:
        """A checked request (`check`) queued on signature `key`'s batcher
        without blocking; None when it has none or the request must run
        alone (Batcher.enqueue): then call `predict` from a thread."""
        batcher = self._batcher(key, inputs)
        return batcher.enqueue(inputs) if batcher else None

    def _batcher(self, key: str, inputs: Mapping[str, np.ndarray]) -> Batcher | None:
        """Signature `key`'s batcher, for inputs in its shapes; None (run
        alone) for those a batch could not stack with others."""
        batcher = self._batchers.get(key)
        return batcher if batcher and matches_specs(self.inputs[key], inputs) else None

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
    """One configured model: its config, loaded versions and status rows.

    A reload builds a new _Model per entry and swaps them all in at once, so
    a request always sees one config's labels with that config's versions.
    """

    def __init__(self, config: ModelConfig, previous: _Model | None = None) -> None:
        self.config = config
        self.available: dict[int, Servable] = {}
        # GetModelStatus keeps reporting versions that ended, across reloads.
        self.states: dict[int, _VersionState] = dict(previous.states) if previous else {}
        self.failed: dict[int, tuple[Any, ...]] = {}  # version -> fingerprint that failed
        self.waiting: set[int] = set()  # versions without saved_model.pb yet (logged once)
        if previous is not None and previous.config.base_path == config.base_path:
            self.failed, self.waiting = dict(previous.failed), set(previous.waiting)


@dataclass
class _Plan:
    """What a reload does to one model: the versions to load, those to keep."""

    model: _Model  # not visible to requests until the switch
    to_load: dict[int, str]  # version -> directory
    kept: dict[int, Servable]  # already loaded from the same directory


def _labelled(labels: Mapping[str, int], version: int | None, label: str) -> int | None:
    """The version a request names, through its version label if it has one."""
    if not label:
        return version
    if label not in labels:
        raise ServingError("INVALID_ARGUMENT", f"Unrecognized servable version label: {label}")
    return int(labels[label])


def _check_labels(config: ModelConfig, versions: Sequence[int]) -> None:
    """A label must name a version the config serves, or it answers nothing."""
    for label, version in sorted(config.labels.items()):
        if version not in versions:
            raise ServingError(
                "FAILED_PRECONDITION",
                f"Request to assign label '{label}' to version {version} of model "
                f"{config.name}, which is not currently available for inference "
                f"(its version policy serves {sorted(versions)})")


def _versions_on_disk(base: str) -> dict[int, str]:
    """version -> directory of the integer-named directories under `base`."""
    try:
        names = os.listdir(base)
    except OSError as error:
        log.warning("base path %s unreadable: %s", base, error)
        return {}
    return {int(n): os.path.join(base, n) for n in names
            if n.isdigit() and os.path.isdir(os.path.join(base, n))}


def _first_line(error: Exception) -> str:
    return f"{type(error).__name__}: {error}".splitlines()[0][:500]


class ModelManager:
    """Every configured model, polled for new versions on a background thread;
    `reload()` switches to another set of models."""

    def __init__(self, configs: list[ModelConfig], *, batching: BatchingOptions | None = None,
                 metrics: Registry | None = None) -> None:
        self._models = {c.name: _Model(c) for c in configs}
        self._removed: dict[str, dict[int, _VersionState]] = {}  # status rows of removed models
        self._batching = batching
        self._metrics = metrics or Registry()
        self._lock = threading.Lock()  # the model dicts: held for microseconds
        # One poll or reload at a time: both load and unload (seconds).
        self._config_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---------- resolving requests ----------

    def get(self, name: str, version: int | None = None, label: str = "") -> Servable:
        """The servable a request's ModelSpec names, or NOT_FOUND / INVALID_ARGUMENT."""
        with self._lock:
            model = self._models.get(name)
            available = dict(model.available) if model else {}
        if model is None:
            raise ServingError("NOT_FOUND", f"Servable not found for request: Latest({name})")
        version = _labelled(model.config.labels, version, label)
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
        """(version, state) rows as GetModelStatus reports them (a removed
        model's versions stay listed as END, as TF Serving's state monitor does)."""
        with self._lock:
            model = self._models.get(name)
            states = model.states if model else self._removed.get(name, {})
            rows = sorted(states.items())
        version = _labelled(model.config.labels if model else {}, version, label)
        if version is not None:
            rows = [(v, s) for v, s in rows if v == version]
            if not rows:
                raise ServingError("NOT_FOUND",
                                   f"Could not find version {version} of model {name}")
        elif not rows:
            raise ServingError("NOT_FOUND", f"Could not find any versions of model {name}")
        return rows

    # ---------- polling, loading, unloading ----------

    def poll_once(self) -> None:
        """One look at every base path: load what the policy wants, then unload the rest."""
        with self._config_lock:
            with self._lock:
                models = list(self._models.values())
            for model in models:
                try:
                    self._reconcile(model)
                except Exception:  # the poll loop must survive anything one model does
                    log.exception("polling %s failed", model.config.name)

    def _loadable(self, model: _Model, on_disk: Mapping[int, str]) -> list[int]:
        """Versions on disk worth loading: not failed as they are, saved_model.pb there."""
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
        return loadable

    def _reconcile(self, model: _Model) -> None:
        on_disk = _versions_on_disk(model.config.base_path)
        aspired = aspired_versions(self._loadable(model, on_disk), model.config.policy)
        for version in aspired:
            if version not in model.available:
                self._load(model, version, on_disk[version])
        with self._lock:
            serving_aspired = [v for v in aspired if v in model.available]
            # Availability first: keep the old versions until an aspired one serves.
            retire = [v for v in model.available if v not in aspired] if serving_aspired else []
        for version in retire:
            self._unload(model, version)

    def _open(self, name: str, version: int, path: str) -> Servable:
        """A loaded and warmed-up servable (its batchers stopped if warm-up fails)."""
        servable = Servable(name, version, path, self._batching, self._metrics)
        try:
            warmed = servable.warm_up()
        except Exception:
            servable.close()
            raise
        log.info("model %s version %d loaded (%d warm-up requests)", name, version, warmed)
        return servable

    def _load(self, model: _Model, version: int, path: str) -> None:
        name = model.config.name
        with self._lock:
            model.states[version] = _VersionState("LOADING")
        fingerprint = _fingerprint(path)
        try:
            servable = self._open(name, version, path)
        except Exception as error:  # corrupt/incomplete: keep serving what serves now
            message = _first_line(error)
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
        log.info("model %s version %d AVAILABLE", name, version)

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

    # ---------- reloading the config ----------

    def reload(self, configs: Sequence[ModelConfig]) -> None:
        """Serves exactly `configs` from now on (HandleReloadConfigRequest).

        All or nothing: every check and every load happens before one switch
        under the lock, so a refused config (ServingError naming the model)
        leaves the previous models serving as they were. A version the new
        config keeps from the same directory keeps its loaded servable; the
        versions it drops are unloaded after the switch, and requests still
        running on them finish there.
        """
        with self._config_lock:
            with self._lock:
                current = dict(self._models)
            plans = [self._plan(config, current.get(config.name)) for config in configs]
            self._load_planned(plans)
            self._switch(plans, current)

    def _plan(self, config: ModelConfig, previous: _Model | None) -> _Plan:
        if not os.path.isdir(config.base_path):
            raise ServingError("NOT_FOUND", f"model '{config.name}': base_path "
                               f"{config.base_path} does not exist or is not a directory")
        model = _Model(config, previous)
        on_disk = _versions_on_disk(config.base_path)
        aspired = aspired_versions(self._loadable(model, on_disk), config.policy)
        if not aspired:
            raise ServingError("NOT_FOUND", f"model '{config.name}': no loadable version under "
                               f"{config.base_path} matches its version policy ({config.policy})")
        _check_labels(config, aspired)
        loaded: dict[int, Servable] = {}
        if previous is not None and previous.config.base_path == config.base_path:
            with self._lock:
                loaded = dict(previous.available)
        kept = {v: loaded[v] for v in aspired if v in loaded}
        return _Plan(model, {v: on_disk[v] for v in aspired if v not in kept}, kept)

    def _load_planned(self, plans: Sequence[_Plan]) -> None:
        """Loads every planned version into its (still invisible) model, or
        closes those it loaded and raises UNKNOWN naming the one that failed."""
        opened: list[Servable] = []
        for plan in plans:
            name = plan.model.config.name
            for version, path in sorted(plan.to_load.items()):
                try:
                    servable = self._open(name, version, path)
                except Exception as error:
                    for loaded in opened:
                        loaded.close()
                    raise ServingError("UNKNOWN", f"model '{name}' version {version} at {path} "
                                       f"did not load: {_first_line(error)}") from None
                opened.append(servable)
                plan.model.available[version] = servable
            plan.model.available.update(plan.kept)
            plan.model.states.update((v, _VersionState("AVAILABLE"))
                                     for v in plan.model.available)

    def _switch(self, plans: Sequence[_Plan], old: Mapping[str, _Model]) -> None:
        """Makes the planned models the served ones, then unloads what they dropped."""
        new = {plan.model.config.name: plan.model for plan in plans}
        retired = [(name, version, servable) for name, model in old.items()
                   for version, servable in model.available.items()
                   if name not in new or new[name].available.get(version) is not servable]
        # Status rows of the versions being dropped: UNLOADING now, END once closed.
        ending = {name: new[name].states if name in new else dict(old[name].states)
                  for name, _, _ in retired}
        replaced = {(name, v) for name, v, _ in retired if name in new and v in new[name].available}
        for name, version, _ in retired:
            if (name, version) not in replaced:
                ending[name][version] = _VersionState("UNLOADING")
        with self._lock:
            self._models = new
            for name in new:
                self._removed.pop(name, None)
            for name in old.keys() - new.keys():
                self._removed[name] = ending.get(name, dict(old[name].states))
        for name in old.keys() | new.keys():
            self._metrics.set_versions(name, sorted(new[name].available) if name in new else [])
        for name, version, servable in retired:
            servable.close()  # in-flight requests hold their own reference
            if (name, version) not in replaced:
                with self._lock:
                    ending[name][version] = _VersionState("END")
            log.info("model %s version %d unloaded", name, version)
        log.info("config reloaded: serving %s",
                 {name: sorted(m.available) for name, m in new.items()})

    # ---------- lifetime ----------

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
        with self._config_lock:
            for model in list(self._models.values()):
                for version in list(model.available):
                    self._unload(model, version)


def parse_model_server_config(text: str) -> list[ModelConfig]:
    """The models of text-format models.config content (text_format.ParseError
    if it is not a ModelServerConfig, ServingError if it cannot apply)."""
    return model_configs(protos.parse_text(text, protos.ModelServerConfig))

