"""TF Serving's configuration messages that the `tensorflow-serving-api` wheel
does not ship, declared with their official names and field numbers.

`ModelServerConfig` (models.config) comes from the wheel. `SSLConfig`
(--ssl_config_file), `MonitoringConfig` (--monitoring_config_file) and
`BatchingParameters` (--batching_parameters_file) live in TF Serving's C++
tree only; declaring them here, in a private descriptor pool, lets the server
read and the deploy-config generator write and the tests parse those files
with protobuf's own text format, exactly as `tensorflow_model_server` does.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import (
    descriptor_pb2,
    descriptor_pool,
    message_factory,
    text_format,
    wrappers_pb2,
)
from tensorflow_serving.config import model_server_config_pb2

__all__ = ["SSLConfig", "MonitoringConfig", "PrometheusConfig", "BatchingParameters",
           "ModelServerConfig", "parse_text", "to_text"]

_F = descriptor_pb2.FieldDescriptorProto


def _field(message: Any, name: str, number: int, kind: int, type_name: str = "",
           repeated: bool = False) -> None:
    field = message.field.add(name=name, number=number, type=kind,
                              label=_F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL)
    if type_name:
        field.type_name = type_name


def _build_pool() -> descriptor_pool.DescriptorPool:
    pool = descriptor_pool.DescriptorPool()
    wrappers = descriptor_pb2.FileDescriptorProto()
    wrappers_pb2.DESCRIPTOR.CopyToProto(wrappers)
    pool.Add(wrappers)
    proto = descriptor_pb2.FileDescriptorProto(
        name="serving/tf_serving_configs.proto", package="tensorflow.serving", syntax="proto3",
        dependency=["google/protobuf/wrappers.proto"])
    # tensorflow_serving/config/ssl_config.proto
    ssl = proto.message_type.add(name="SSLConfig")
    _field(ssl, "server_key", 1, _F.TYPE_STRING)
    _field(ssl, "server_cert", 2, _F.TYPE_STRING)
    _field(ssl, "custom_ca", 3, _F.TYPE_STRING)
    _field(ssl, "client_verify", 4, _F.TYPE_BOOL)
    # tensorflow_serving/config/monitoring_config.proto
    prometheus = proto.message_type.add(name="PrometheusConfig")
    _field(prometheus, "enable", 1, _F.TYPE_BOOL)
    _field(prometheus, "path", 2, _F.TYPE_STRING)
    monitoring = proto.message_type.add(name="MonitoringConfig")
    _field(monitoring, "prometheus_config", 1, _F.TYPE_MESSAGE,
           ".tensorflow.serving.PrometheusConfig")
    # tensorflow_serving/servables/tensorflow/session_bundle_config.proto
    batching = proto.message_type.add(name="BatchingParameters")
    int64 = ".google.protobuf.Int64Value"
    _field(batching, "max_batch_size", 1, _F.TYPE_MESSAGE, int64)
    _field(batching, "batch_timeout_micros", 2, _F.TYPE_MESSAGE, int64)
    _field(batching, "max_enqueued_batches", 3, _F.TYPE_MESSAGE, int64)
    _field(batching, "num_batch_threads", 4, _F.TYPE_MESSAGE, int64)
    _field(batching, "thread_pool_name", 5, _F.TYPE_MESSAGE, ".google.protobuf.StringValue")
    _field(batching, "allowed_batch_sizes", 6, _F.TYPE_INT64, repeated=True)
    _field(batching, "pad_variable_length_inputs", 7, _F.TYPE_BOOL)
    pool.Add(proto)
    return pool


_POOL = _build_pool()


def _message(name: str) -> Any:
    return message_factory.GetMessageClass(_POOL.FindMessageTypeByName(name))


SSLConfig: Any = _message("tensorflow.serving.SSLConfig")
PrometheusConfig: Any = _message("tensorflow.serving.PrometheusConfig")
MonitoringConfig: Any = _message("tensorflow.serving.MonitoringConfig")
BatchingParameters: Any = _message("tensorflow.serving.BatchingParameters")
ModelServerConfig: Any = model_server_config_pb2.ModelServerConfig


def parse_text(content: str, message_class: Any) -> Any:
    """A message of `message_class` from protobuf text format (raises ParseError)."""
    return text_format.Parse(content, message_class())


def to_text(message: Any) -> str:
    """Protobuf text format of `message`, as TF Serving's config files are written."""
    return str(text_format.MessageToString(message))
