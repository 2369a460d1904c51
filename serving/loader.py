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

__all__ = ["SessionSignature", "load_signatures"]

log = logging.getLogger("serving")
Signature = Callable[..., dict[str, Any]]


class SessionSignature:
    """One signature of a TF1 graph run in a Session: keyword inputs (by the
    signature's input keys) -> {output key: numpy array}."""

    def __init__(self, session: Any, signature_def: Any) -> None:
        self._session = session
        self._inputs = {key: info.name for key, info in signature_def.inputs.items()}
        self._outputs = {key: info.name for key, info in signature_def.outputs.items()}

    def __call__(self, **inputs: Any) -> dict[str, np.ndarray]:
        feed = {self._inputs[key]: np.asarray(value) for key, value in inputs.items()}
        keys = list(self._outputs)
        values = self._session.run([self._outputs[key] for key in keys], feed_dict=feed)
        return dict(zip(keys, values, strict=True))


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
