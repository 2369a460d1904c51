"""JSON that strict parsers read: every output file of a run goes through
here. Python's json writes NaN and Infinity, which are not JSON (JavaScript's
JSON.parse, jq and Go refuse them); a value that is undefined or not finite
is written as null instead."""

from __future__ import annotations

import json
import math
from typing import Any

__all__ = ["finite", "dumps"]


def finite(value: Any) -> Any:
    """`value` with every float that is NaN or infinite replaced by None,
    in dicts, lists and tuples at any depth."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite(item) for item in value]
    return value


def dumps(value: Any, **kwargs: Any) -> str:
    """json.dumps of `finite(value)`; refuses (ValueError) anything left
    that strict JSON cannot hold."""
    return json.dumps(finite(value), allow_nan=False, **kwargs)
