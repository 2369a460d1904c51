"""A SavedModel's signatures as callables, loaded the way TF Serving can.

`tf.saved_model.load` restores TF2 SavedModels and most TF1 ones as
functions. Some TF1 SavedModels that TF Serving serves it cannot: their
signatures declare shapes the graph's tensors do not have (TF Serving's own
`saved_model_half_plus_three` declares scalars for [?, 1] tensors), and the
TF2 loader's `set_shape` refuses them ("Shapes must be equal rank"). TF
Serving's C++ loader runs such graphs in a Session, feeding and fetching the
signature's tensor names; so does `SessionSignature`, the fallback here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import config_pb2

__all__ = ["SessionSignature", "load_signatures"]

log = logging.getLogger("serving")
Signature = Callable[..., dict[str, Any]]


class SessionSignature:
    """One signature of a TF1 graph run in a Session: keyword inputs (by the
    signature's input keys) -> {output key: numpy array}.

    Through a Session callable, not `Session.run`: `run` refuses a feed whose
    shape differs from the placeholder's in Python, where TF Serving feeds
    the tensor as sent (x [3] for a [?, 1] placeholder)."""

    def __init__(self, session: Any, signature_def: Any) -> None:
        self._input_keys = sorted(signature_def.inputs)
        self._output_keys = sorted(signature_def.outputs)
        options = config_pb2.CallableOptions(
            feed=[signature_def.inputs[key].name for key in self._input_keys],
            fetch=[signature_def.outputs[key].name for key in self._output_keys])
        self._run = session._make_callable_from_options(options)

    def __call__(self, **inputs: Any) -> dict[str, np.ndarray]:
        values = self._run(*(np.asarray(inputs[key]) for key in self._input_keys))
        return dict(zip(self._output_keys, values, strict=True))


def load_signatures(path: str, keys: Iterable[str]) -> tuple[Any, dict[str, Signature]]:
    """(what must stay alive while they serve, {signature key: callable})."""
    keys = list(keys)
    try:
        loaded = tf.saved_model.load(path)
        return loaded, {key: loaded.signatures[key] for key in keys}
    except ValueError as error:
        log.info("%s: tf.saved_model.load cannot restore it (%s); loading its graph into a "
                 "Session, as TF Serving does", path, str(error).splitlines()[0])
    graph = tf.Graph()
    session = tf.compat.v1.Session(graph=graph)
    with graph.as_default():
        meta_graph = tf.compat.v1.saved_model.loader.load(session, ["serve"], path)
    return session, {key: SessionSignature(session, meta_graph.signature_def[key])
                     for key in keys}
