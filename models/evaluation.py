"""The Evaluator's user module (`module_path="models.evaluation"`).

TFX's Evaluator loads the candidate and the served model itself, in its own
process (its own container on Kubeflow), where nothing of this project has
been imported. A model that tokenises with WordPiece inside needs
tensorflow-text's ops registered before TensorFlow can load it: this hook is
how the Evaluator lets a pipeline do that, in every runner.
"""

from __future__ import annotations

from typing import Any

from models import wordpiece

__all__ = ["custom_eval_shared_model"]


def custom_eval_shared_model(eval_saved_model_path: str, model_name: str, eval_config: Any,
                             **kwargs: Any) -> Any:
    """TFMA's default shared model, once the TF Text ops are registered."""
    import tensorflow_model_analysis as tfma

    wordpiece.register_ops()
    return tfma.default_eval_shared_model(eval_saved_model_path=eval_saved_model_path,
                                          model_name=model_name, eval_config=eval_config,
                                          **kwargs)
