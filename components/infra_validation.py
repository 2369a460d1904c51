"""InfraValidation: the candidate must be servable before it is released.

The candidate gets TF Serving warm-up requests built from `valid` reviews
(`assets.extra/tf_serving_warmup_requests`, real PredictionLog records); this
warmed copy is then loaded by the project's TF-Serving-compatible server on a
free loopback port, the warm-up requests are replayed over gRPC and the
answers must match the SavedModel called in-process (serving.infra_validation).
The warmed copy is this component's output, and it is exactly what the release
step publishes: what was validated is what is served.

TFX's own InfraValidator needs Docker or Kubernetes to start TF Serving,
neither of which a local run can assume.
"""

# No `from __future__ import annotations`: TFX's @component reads real type hints.
import json
import posixpath

from absl import logging
from tfx import v1 as tfx
from tfx.utils import io_utils, path_utils

from components.errors import UserFacingError
from components.tflite_converter.component import read_texts
from models import contract

__all__ = ["InfraValidation", "InfraValidationError", "VALIDATED_MODEL_DIR"]

#: Folder of the infra blessing holding the warmed, validated SavedModel.
VALIDATED_MODEL_DIR = "model"


class InfraValidationError(UserFacingError, RuntimeError):
    """The candidate could not be served, or served different answers."""


@tfx.dsl.components.component
def InfraValidation(
    model: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Model],
    examples: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Examples],
    blessing: tfx.dsl.components.OutputArtifact[tfx.types.standard_artifacts.InfraBlessing],
    model_name: tfx.dsl.components.Parameter[str],
    warmup_examples: tfx.dsl.components.Parameter[int] = 8,
    timeout_s: tfx.dsl.components.Parameter[int] = 300,
) -> None:
    """Writes warm-up requests into a copy of the candidate, serves it, checks
    it, and records the verdict in the blessing (`blessed`, `result`)."""
    from serving import infra_validation, warmup  # the server's client side: gRPC + protos

    warmed = posixpath.join(blessing.uri, VALIDATED_MODEL_DIR)
    io_utils.copy_dir(path_utils.serving_model_path(model.uri), warmed)
    texts = [t.decode("utf-8", errors="replace")
             for t in read_texts(examples, contract.VALID, warmup_examples)]
    warmup.write_warmup_requests(warmed, texts, model_name)
    result = infra_validation.validate(warmed, model_name, timeout_s=float(timeout_s))
    logging.info("InfraValidation: %s", result)
    blessing.set_int_custom_property("blessed", int(bool(result["ok"])))
    blessing.set_string_custom_property("result", json.dumps(result))
    if not result["ok"]:  # the release step refuses it when the candidate is blessed
        logging.warning("InfraValidation: FAILED: %s", result["reason"])
