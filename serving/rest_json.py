"""TF Serving's REST JSON formats: request bodies to arrays, answers to JSON.

Predict takes the row format (`instances`: one entry per example) or the
columnar one (`inputs`: one entry per input); strings are UTF-8 text unless
written `{"b64": "..."}`. A signature with a single input (or output) may
omit its name, as TF Serving allows. Every malformed body raises
INVALID_ARGUMENT with a message saying what is wrong.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

import numpy as np

from serving.errors import ServingError

__all__ = ["parse_predict", "format_predict", "parse_examples", "decode_strings",
           "encode_value"]

# types_pb2 enum values of the dtypes REST requests can carry (no TF import here).
_DT_STRING = 7
_NUMPY = {1: np.float32, 2: np.float64, 3: np.int32, 4: np.uint8, 5: np.int16, 6: np.int8,
          9: np.int64, 10: np.bool_}


def _bad(message: str) -> ServingError:
    return ServingError("INVALID_ARGUMENT", message)


def decode_strings(value: Any) -> Any:
    """JSON strings -> UTF-8 bytes and {"b64": ...} -> bytes, through nested lists."""
    if isinstance(value, list):
        return [decode_strings(v) for v in value]
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, dict) and set(value) == {"b64"} and isinstance(value["b64"], str):
        try:
            return base64.b64decode(value["b64"], validate=True)
        except (binascii.Error, ValueError):
            raise _bad("'b64' value is not valid base64") from None
    raise _bad(f"expected a string or {{\"b64\": ...}} for a string tensor, got {value!r:.80}")


def _array(value: Any, dtype: int, key: str) -> np.ndarray:
    if dtype == _DT_STRING:
        decoded = decode_strings(value)
        array = np.array(decoded, dtype=object)
        if array.dtype != object or any(not isinstance(v, bytes) for v in array.flat):
            raise _bad(f"input '{key}': ragged or non-string values")
        return array
    if dtype not in _NUMPY:
        raise _bad(f"input '{key}': dtype enum {dtype} is not supported over REST")
    try:
        if any(isinstance(v, str) for v in np.asarray(value, dtype=object).flat):
            raise ValueError("string")
        return np.asarray(value, dtype=_NUMPY[dtype])
    except (ValueError, TypeError, OverflowError):
        raise _bad(f"input '{key}': values do not convert to the signature's dtype") from None


def parse_predict(body: Any, input_dtypes: Mapping[str, int]) -> tuple[dict[str, np.ndarray],
                                                                       bool]:
    """(arrays by input name, row format?) from a :predict body."""
    if not isinstance(body, dict):
        raise _bad("the request body must be a JSON object")
    if ("instances" in body) == ("inputs" in body):
        raise _bad("the body must have exactly one of 'instances' (row format) "
                   "or 'inputs' (columnar format)")
    single = next(iter(input_dtypes)) if len(input_dtypes) == 1 else None
    if "instances" in body:
        rows = body["instances"]
        if not isinstance(rows, list):
            raise _bad("'instances' must be a list")
        if not rows:
            raise _bad("empty batch: 'instances' is an empty list")
        named = all(isinstance(r, dict) and "b64" not in r for r in rows)
        if single is not None and not named:
            columns: dict[str, list[Any]] = {single: rows}
        elif named:
            columns = {}
            for row in rows:
                if set(row) != set(columns or row):
                    raise _bad("every instance must name the same inputs")
                for key, value in row.items():
                    columns.setdefault(key, []).append(value)
        else:
            raise _bad("this signature has several inputs: each instance must be an object "
                       "naming them")
        return {k: _array(v, _dtype(input_dtypes, k), k) for k, v in columns.items()}, True
    inputs = body["inputs"]
    if isinstance(inputs, dict) and "b64" not in inputs:
        return {k: _array(v, _dtype(input_dtypes, k), k) for k, v in inputs.items()}, False
    if single is None:
        raise _bad("this signature has several inputs: 'inputs' must be an object naming them")
    return {single: _array(inputs, input_dtypes[single], single)}, False


def _dtype(input_dtypes: Mapping[str, int], key: str) -> int:
    if key not in input_dtypes:
        raise _bad(f"input tensor alias not found in signature: {key}. Inputs expected to be "
                   f"in the set {{{','.join(sorted(input_dtypes))}}}.")
    return input_dtypes[key]


def encode_value(array: np.ndarray) -> Any:
    """An answer array as JSON values (bytes as text, or {"b64"} if not UTF-8)."""
    if array.dtype == object:
        def text(v: Any) -> Any:
            if isinstance(v, list):
                return [text(x) for x in v]
            try:
                return v.decode("utf-8")
            except UnicodeDecodeError:
                return {"b64": base64.b64encode(v).decode("ascii")}
        return text(array.tolist())
    return array.tolist()


def format_predict(outputs: Mapping[str, np.ndarray], row_format: bool) -> dict[str, Any]:
    """{"predictions": ...} (row) or {"outputs": ...} (columnar); a single
    output's name is omitted, as TF Serving does."""
    if not row_format:
        if len(outputs) == 1:
            return {"outputs": encode_value(next(iter(outputs.values())))}
        return {"outputs": {k: encode_value(v) for k, v in outputs.items()}}
    if len(outputs) == 1:
        return {"predictions": encode_value(next(iter(outputs.values())))}
    columns = {k: encode_value(v) for k, v in outputs.items()}
    rows = len(next(iter(columns.values())))
    return {"predictions": [{k: v[i] for k, v in columns.items()} for i in range(rows)]}


def parse_examples(body: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(examples, context) of a :classify / :regress body: feature name -> value(s)."""
    if not isinstance(body, dict) or not isinstance(body.get("examples"), list):
        raise _bad("the body must be a JSON object with an 'examples' list")
    examples, context = body["examples"], body.get("context", {})
    if not examples:
        raise _bad("empty batch: 'examples' is an empty list")
    if not all(isinstance(e, dict) for e in examples) or not isinstance(context, dict):
        raise _bad("each example and the context must be JSON objects of features")
    return examples, context
