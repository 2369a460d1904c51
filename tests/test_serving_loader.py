"""TF1 SavedModels that TF Serving serves load here too: those whose
signatures tf.saved_model.load cannot restore run in a Session."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from serving.manager import Servable


def _tf1_half_plus_three(path: Path) -> None:
    """y = 0.5 x + 3 in a TF1 graph whose signature declares scalars for its
    [?, 1] tensors, as TF Serving's saved_model_half_plus_three does."""
    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, [None, 1], name="x")
        a = v1.Variable(0.5, name="a")
        y = tf.add(a * x, 3.0, name="y")
        scalar = tf.TensorShape([]).as_proto()
        inputs = {"x": v1.saved_model.utils.build_tensor_info(x)}
        outputs = {"y": v1.saved_model.utils.build_tensor_info(y)}
        for info in (*inputs.values(), *outputs.values()):
            info.tensor_shape.CopyFrom(scalar)
        signature = v1.saved_model.signature_def_utils.build_signature_def(
            inputs, outputs, "tensorflow/serving/predict")
        with v1.Session(graph=graph) as session:
            session.run(v1.global_variables_initializer())
            builder = v1.saved_model.Builder(str(path))
            builder.add_meta_graph_and_variables(session, ["serve"],
                                                 signature_def_map={"serving_default": signature})
            builder.save()


def test_a_tf1_graph_tf2_cannot_restore_is_served_from_a_session(tmp_path: Path) -> None:
    _tf1_half_plus_three(tmp_path / "1")
    with pytest.raises(ValueError, match="rank"):
        tf.saved_model.load(str(tmp_path / "1"))
    servable = Servable("half_plus_three", 1, str(tmp_path / "1"), batching=None)
    outputs = servable.predict("", {"x": np.array([[1.0], [2.0]], np.float32)})
    np.testing.assert_allclose(outputs["y"], [[3.5], [4.0]])
    as_sent = servable.predict("", {"x": np.array([1.0, 2.0], np.float32)})  # [2] for [?, 1]
    np.testing.assert_allclose(as_sent["y"], [3.5, 4.0])
    assert servable.inputs["serving_default"]["x"].shape == ()  # as declared, stale or not
