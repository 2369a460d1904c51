"""The server's command line: `tensorflow_model_server`'s flags (plus
`--host`, `--max_concurrent_requests`, `--max_request_bytes`), parsed once
into ServerOptions.

Every flag of `tensorflow_model_server --help` is accepted, so a
deployment's command line starts this server too: those that change
nothing here (`NO_EFFECT`) log one warning line each saying why. A bad
value, or a config file that cannot be read or parsed, stops the server at
start with one line naming the flag and the file.
"""

from __future__ import annotations

import argparse
import logging
import math
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from google.protobuf import text_format

# The one-line parser and integer ranges the pipeline's flags use (the
# server's bad values read as the pipeline's do).
from pipeline.config import OneLineParser, int_at_least
from serving import protos
from serving.batching import BatchingOptions
from serving.errors import ServingError
from serving.manager import ModelConfig, model_configs

__all__ = ["ServerOptions", "parse_flags", "check_ports_free", "refuse", "NO_EFFECT",
           "DEFAULT_METRICS_PATH", "PROG"]

log = logging.getLogger("serving")
PROG = "python -m serving.server"
DEFAULT_METRICS_PATH = "/monitoring/prometheus/metrics"
VERSION = "serving.server (TF-Serving-compatible API, tensorflow_model_server flags)"

#: tensorflow_model_server flags accepted with no effect here, and why.
NO_EFFECT: dict[str, str] = {
    "rest_api_timeout_in_ms": "REST requests run to completion (clients keep their own "
                              "timeouts)",
    "rest_api_enable_cors_support": "no CORS headers are sent",
    "allow_version_labels_for_unavailable_models": "a label must name a version that "
                                                   "serves (refused otherwise)",
    "enable_per_model_batching_parameters": "one BatchingParameters file applies to "
                                            "every model",
    "num_load_threads": "versions load one at a time",
    "num_unload_threads": "versions unload one at a time",
    "max_num_load_retries": "a version that failed to load is retried when its files "
                            "change",
    "load_retry_interval_micros": "a version that failed to load is retried when its "
                                  "files change",
    "flush_filesystem_caches": "there is no filesystem cache to flush",
    "tensorflow_session_parallelism": "use --tensorflow_intra_op_parallelism and "
                                      "--tensorflow_inter_op_parallelism",
    "tensorflow_session_config_file": "TF2 functions run without a Session ConfigProto",
    "use_alts_credentials": "Google ALTS is not available; use --ssl_config_file",
    "platform_config_file": "only TensorFlow SavedModels are served",
    "per_process_gpu_memory_fraction": "TensorFlow's own GPU memory growth applies",
    "saved_model_tags": "SavedModels load with the 'serve' tag set",
    "enable_model_warmup": "warm-up records (assets.extra) are always replayed",
    "num_request_iterations_for_warmup": "each warm-up record is replayed once",
    "remove_unused_fields_from_bundle_metagraph": "the MetaGraphDef is not kept",
    "prefer_tflite_model": "TFLite files are for phones here (serving.mobile)",
    "num_tflite_pools": "TFLite files are for phones here (serving.mobile)",
    "num_tflite_interpreters_per_pool": "TFLite files are for phones here (serving.mobile)",
    "enable_signature_method_name_check": "Classify/Regress accept any signature from "
                                          "serialized tf.Examples to one score",
    "xla_cpu_compilation_enabled": "models run as exported (XLA as their functions say)",
    "xla_gpu_compilation_enabled": "models run as exported (XLA as their functions say)",
    "enable_profiler": "no profiler service",
    "thread_pool_factory_config_file": "use --tensorflow_intra_op_parallelism and "
                                       "--tensorflow_inter_op_parallelism",
    "mixed_precision": "models run in the precision they were exported in",
    "skip_initialize_tpu": "no TPU support",
    "enable_grpc_healthcheck_service": "no gRPC health service; GetModelStatus answers "
                                       "whether a version serves",
}


@dataclass(frozen=True)
class ServerOptions:
    """Everything a server needs, parsed once from the command line."""

    models: tuple[ModelConfig, ...]
    host: str = "127.0.0.1"
    port: int = 8500
    rest_api_port: int = 0
    poll_wait_s: float = 1.0
    batching: BatchingOptions | None = None
    grpc_max_threads: int = 16
    rest_api_num_threads: int = 8
    max_concurrent_requests: int = 256
    max_request_bytes: int = 64 * 1024 * 1024
    ssl: Any = None  # protos.SSLConfig
    metrics_path: str = DEFAULT_METRICS_PATH
    model_config_file: str = ""
    #: The content `models` came from: the config poller applies only a change.
    model_config_text: str = ""
    config_poll_wait_s: float = 0.0
    #: TF's thread pools for model calls (0: TF's default, one thread per core).
    intra_op_threads: int = 0
    inter_op_threads: int = 0
    #: Predict answers numbers packed in tensor_content, not in the typed
    #: *_val fields (TF Serving's --enable_serialization_as_tensor_content).
    tensor_content: bool = False
    #: gRPC also listens on this Unix socket ("" : none).
    grpc_socket_path: str = ""
    #: --grpc_channel_arguments, as (key, value) options of the gRPC server.
    grpc_channel_arguments: tuple[tuple[str, int | str], ...] = ()


def _bool(value: str) -> bool:
    if value.lower() in ("1", "true", "yes"):
        return True
    if value.lower() in ("0", "false", "no"):
        return False
    raise argparse.ArgumentTypeError(f"not a boolean: {value}")


def _seconds(value: str) -> float:
    """A wait in seconds, >= 0: a negative or infinite wait has no meaning,
    so it is refused at start rather than turned into 'never'."""
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {value!r}") from None
    if not math.isfinite(seconds) or seconds < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds >= 0, "
                                         f"got {value!r}")
    return seconds


def channel_arguments(text: str) -> tuple[tuple[str, int | str], ...]:
    """TF Serving's --grpc_channel_arguments: comma-separated key=value,
    integer values as integers (gRPC's options take both)."""
    pairs: list[tuple[str, int | str]] = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, equals, value = item.partition("=")
        if not equals or not key:
            raise argparse.ArgumentTypeError(f"expected key=value, got {item!r}")
        pairs.append((key, int(value) if value.lstrip("-").isdigit() else value))
    return tuple(pairs)


def _read(flag: str, path: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except (OSError, UnicodeDecodeError) as error:
        refuse(f"--{flag}={path}: cannot be read: {getattr(error, 'strerror', None) or error}")


def refuse(message: str) -> NoReturn:
    """Stops the server at start: one line on stderr, exit status 2."""
    print(f"{PROG}: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def _parse(flag: str, path: str, text: str, message_class: Any) -> Any:
    """`text`, the content of `path`, as a text-format proto, or one line
    naming the flag, the file and what is wrong with it."""
    try:
        return protos.parse_text(text, message_class)
    except text_format.ParseError as error:
        refuse(f"--{flag}={path}: Error parsing text-format "
               f"{message_class.DESCRIPTOR.full_name}: {error}")


def _parse_file(flag: str, path: str, message_class: Any) -> Any:
    """A text-format proto file (`_parse`)."""
    return _parse(flag, path, _read(flag, path), message_class)


def _batching(path: str) -> BatchingOptions:
    defaults = BatchingOptions()
    if not path:
        return defaults
    params = _parse_file("batching_parameters_file", path, protos.BatchingParameters)

    def get(name: str, default: float) -> float:
        return float(getattr(params, name).value) if params.HasField(name) else default
    return BatchingOptions(
        max_batch_size=int(get("max_batch_size", defaults.max_batch_size)),
        batch_timeout_s=get("batch_timeout_micros", defaults.batch_timeout_s * 1e6) / 1e6,
        max_enqueued_batches=int(get("max_enqueued_batches", defaults.max_enqueued_batches)),
        num_batch_threads=int(get("num_batch_threads", defaults.num_batch_threads)))


def _models(args: argparse.Namespace, parser: argparse.ArgumentParser,
            ) -> tuple[list[ModelConfig], str]:
    if not args.model_config_file:
        if not args.model_base_path:
            parser.error("give --model_base_path (and --model_name) or --model_config_file")
        return [ModelConfig(args.model_name, args.model_base_path)], ""
    path = args.model_config_file
    text = _read("model_config_file", path)
    config = _parse("model_config_file", path, text, protos.ModelServerConfig)
    try:
        return model_configs(config), text
    except ServingError as error:
        refuse(f"--model_config_file={path}: {error.message}")


def _add_flags(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    port = int_at_least(0, 65535)
    positive = int_at_least(1)
    add("--port", type=port, default=8500, help="gRPC port (0: any free port)")
    add("--grpc_socket_path", default="", help="also serve gRPC on this Unix socket")
    add("--grpc_channel_arguments", type=channel_arguments, default=(),
        help="gRPC server options, e.g. grpc.max_connection_age_ms=2000,...")
    add("--rest_api_port", type=port, default=0, help="REST port (0: no REST API)")
    add("--host", default="127.0.0.1", help="address to bind (TF Serving: all interfaces)")
    add("--model_name", default="default")
    add("--model_base_path", default="")
    add("--model_config_file", default="", help="text-format ModelServerConfig")
    add("--file_system_poll_wait_seconds", type=_seconds, default=1.0, metavar="N",
        help="look for new versions every N seconds; 0: only at start (TF Serving's "
             "negative, 'wait forever for a first model', is for its own tests and refused)")
    add("--model_config_file_poll_wait_seconds", type=_seconds, default=0.0, metavar="N",
        help="with --model_config_file: re-read that file every N seconds and, when "
             "its content changed, switch to its models all or nothing (a file that "
             "cannot be read, parsed or applied is logged and the previous models keep "
             "serving); 0: read it once at start")
    add("--enable_batching", type=_bool, nargs="?", const=True, default=False)
    add("--batching_parameters_file", default="")
    add("--ssl_config_file", default="", help="text-format SSLConfig (gRPC)")
    add("--monitoring_config_file", default="", help="text-format MonitoringConfig")
    add("--grpc_max_threads", type=positive, default=16)
    add("--rest_api_num_threads", type=positive, default=8)
    add("--max_concurrent_requests", type=positive, default=256,
        help="in-flight requests per API beyond which RESOURCE_EXHAUSTED is answered")
    add("--max_request_bytes", type=positive, default=64 * 1024 * 1024)
    add("--tensorflow_intra_op_parallelism", type=int_at_least(0), default=0, metavar="N",
        help="threads one model op may use (0: one per core)")
    add("--tensorflow_inter_op_parallelism", type=int_at_least(0), default=0, metavar="N",
        help="model ops that may run at once (0: one per core)")
    add("--enable_serialization_as_tensor_content", type=_bool, nargs="?", const=True,
        default=False, help="Predict answers numbers packed in tensor_content instead of "
                            "the typed *_val fields (as TF Serving)")
    add("--version", action="version", version=VERSION)
    for name, why in NO_EFFECT.items():
        add(f"--{name}", nargs="?", const="true", default=None, metavar="V",
            help=f"accepted, no effect: {why}")


def parse_flags(argv: Sequence[str]) -> ServerOptions:
    """ServerOptions from tensorflow_model_server's flags (plus --host)."""
    parser = OneLineParser(prog=PROG, description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_flags(parser)
    args = parser.parse_args(argv)
    for name, why in NO_EFFECT.items():
        if getattr(args, name) is not None:
            log.warning("--%s has no effect in this server: %s", name, why)
    models, config_text = _models(args, parser)
    ssl = (_parse_file("ssl_config_file", args.ssl_config_file, protos.SSLConfig)
           if args.ssl_config_file else None)
    metrics_path = DEFAULT_METRICS_PATH
    if args.monitoring_config_file:
        monitoring = _parse_file("monitoring_config_file", args.monitoring_config_file,
                                 protos.MonitoringConfig)
        metrics_path = monitoring.prometheus_config.path or DEFAULT_METRICS_PATH
    batching = (_batching(args.batching_parameters_file) if args.enable_batching else None)
    return ServerOptions(tuple(models), args.host, args.port, args.rest_api_port,
                         args.file_system_poll_wait_seconds, batching, args.grpc_max_threads,
                         args.rest_api_num_threads, args.max_concurrent_requests,
                         args.max_request_bytes, ssl, metrics_path, args.model_config_file,
                         config_text, args.model_config_file_poll_wait_seconds,
                         args.tensorflow_intra_op_parallelism,
                         args.tensorflow_inter_op_parallelism,
                         args.enable_serialization_as_tensor_content,
                         args.grpc_socket_path, args.grpc_channel_arguments)


def check_ports_free(options: ServerOptions) -> None:
    """Refuses, in one line naming the flag, a port another process holds,
    before any model loads (a bind error would otherwise come after a load
    of many seconds). A check, not a reservation: the ports are bound again
    when the server opens them."""
    for flag, port in (("port", options.port), ("rest_api_port", options.rest_api_port)):
        if not port:
            continue
        with socket.socket(socket.AF_INET6 if ":" in options.host else socket.AF_INET) as probe:
            # As the server binds: a port left in TIME_WAIT by a previous run is free.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((options.host, port))
            except OSError as error:
                refuse(f"--{flag}={port}: {options.host}:{port} cannot be bound "
                       f"({error.strerror or error}): another process may be using it")
