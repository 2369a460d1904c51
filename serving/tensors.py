"""TensorProto <-> numpy, and the checks of a request's inputs against a
signature, shared by the gRPC and the REST front ends."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2

from serving.errors import ServingError

__all__ = ["TensorSpec", "to_array", "to_proto", "dtype_name", "matches_specs", "check_inputs"]


@dataclass(frozen=True)
class TensorSpec:
    """One signature input or output: its dtype enum and shape (-1 = any)."""

    dtype: int
    shape: tuple[int, ...] | None  # None: unknown rank

    @property
    def batch_major(self) -> bool:
        """Whether rows of several requests can be stacked on axis 0."""
        return self.shape is not None and len(self.shape) >= 1 and self.shape[0] == -1


def dtype_name(dtype: int) -> str:
    """'DT_STRING' for types_pb2.DT_STRING: the names TF Serving's messages use."""
    return str(types_pb2.DataType.Name(dtype))


def to_array(proto: tensor_pb2.TensorProto) -> np.ndarray:
    """The request tensor as numpy (strings as an object array of bytes)."""
    try:
        if proto.dtype == types_pb2.DT_STRING and not proto.tensor_content:
            shape = [d.size for d in proto.tensor_shape.dim]
            values = np.empty(len(proto.string_val), dtype=object)
            values[:] = list(proto.string_val)
            return values.reshape(shape)
        return np.asarray(tf.make_ndarray(proto))
    except (ValueError, TypeError) as error:
        raise ServingError("INVALID_ARGUMENT", f"malformed tensor: {error}") from None


#: The typed field TF Serving's Tensor::AsProtoField fills for each dtype.
_TYPED_FIELDS: dict[np.dtype, tuple[int, str]] = {
    np.dtype(np.float32): (types_pb2.DT_FLOAT, "float_val"),
    np.dtype(np.float64): (types_pb2.DT_DOUBLE, "double_val"),
    np.dtype(np.int32): (types_pb2.DT_INT32, "int_val"),
    np.dtype(np.int16): (types_pb2.DT_INT16, "int_val"),
    np.dtype(np.int8): (types_pb2.DT_INT8, "int_val"),
    np.dtype(np.uint8): (types_pb2.DT_UINT8, "int_val"),
    np.dtype(np.uint16): (types_pb2.DT_UINT16, "int_val"),
    np.dtype(np.int64): (types_pb2.DT_INT64, "int64_val"),
    np.dtype(np.uint32): (types_pb2.DT_UINT32, "uint32_val"),
    np.dtype(np.uint64): (types_pb2.DT_UINT64, "uint64_val"),
    np.dtype(np.bool_): (types_pb2.DT_BOOL, "bool_val"),
}


def to_proto(array: np.ndarray, tensor_content: bool = False) -> tf.TensorProto:
    """An answer tensor as TF Serving writes it: every value in the dtype's
    typed field (`float_val`, `int64_val`, `string_val`...), which is what
    clients that read `.float_val` expect; with `tensor_content` (its
    --enable_serialization_as_tensor_content) numbers go packed in
    `tensor_content` instead. Other dtypes (half, complex) as TensorFlow
    writes them."""
    array = np.asarray(array)
    typed = _TYPED_FIELDS.get(array.dtype)
    if typed is None or tensor_content:
        return tf.make_tensor_proto(array)  # numbers packed in tensor_content
    dtype, field_name = typed
    shape = tensor_shape_pb2.TensorShapeProto(
        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=n) for n in array.shape])
    proto = tensor_pb2.TensorProto(dtype=dtype, tensor_shape=shape)
    getattr(proto, field_name).extend(array.ravel().tolist())
    return proto


def matches_specs(specs: Mapping[str, TensorSpec], arrays: Mapping[str, np.ndarray]) -> bool:
    """Whether every array has its signature input's rank and sizes (-1:
    any): only such requests are checked for their batch and merged with
    others by a batcher."""
    return all(specs[key].shape is not None and array.ndim == len(specs[key].shape) and all(
        want in (-1, got) for want, got in zip(specs[key].shape, array.shape, strict=True))
        for key, array in arrays.items())


def check_inputs(signature: str, specs: Mapping[str, TensorSpec],
                 arrays: Mapping[str, np.ndarray]) -> None:
    """Raises INVALID_ARGUMENT unless `arrays` are exactly the signature's
    inputs; when their shapes are the signature's, also unless they share
    one non-empty batch. Other shapes go to the model as sent, as TF Serving
    feeds them (`[3]` for a `[-1, 1]` input is the canonical REST example):
    the model call then answers or refuses them."""
    extra = sorted(set(arrays) - set(specs))
    missing = sorted(set(specs) - set(arrays))
    if extra or missing:
        raise ServingError(
            "INVALID_ARGUMENT",
            f"Request inputs do not match required inputs for signature '{signature}'. "
            f"Send extra: {{{', '.join(extra)}}}. Missing but required: {{{', '.join(missing)}}}.")
    if not matches_specs(specs, arrays):
        return
    batch = None
    for key, array in arrays.items():
        spec = specs[key]
        if spec.batch_major:
            if array.shape[0] == 0:
                raise ServingError("INVALID_ARGUMENT", f"empty batch: input '{key}' has 0 rows")
            if batch is not None and array.shape[0] != batch:
                raise ServingError("INVALID_ARGUMENT", "inputs differ in batch size")
            batch = array.shape[0]
