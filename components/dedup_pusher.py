"""A Pusher that never pushes the same model twice.

Why: on a cached re-run the Resolver hands the Evaluator the very model it
blessed last time, the Evaluator re-blesses it, and the stock Pusher would
copy it again as a new version. This executor fingerprints the model's files
and skips the push when a version with the same content is already in the
model base dir, recording which one (`duplicate_of_version`).
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

from absl import logging
from tfx.components.pusher import executor as pusher_executor
from tfx.dsl.io import fileio
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import proto_utils

__all__ = ["Executor", "model_fingerprint", "DUPLICATE_OF"]

DUPLICATE_OF = "duplicate_of_version"


def model_fingerprint(model_dir: str) -> str:
    """sha256 over every file's relative path and bytes."""
    digest = hashlib.sha256()
    for root, _dirs, files in sorted(fileio.walk(model_dir)):
        for name in sorted(files):
            path = os.path.join(root, name)
            digest.update(os.path.relpath(path, model_dir).encode())
            with fileio.open(path, "rb") as handle:
                digest.update(handle.read())
    return digest.hexdigest()


def _existing_versions(base: str) -> list[str]:
    if not fileio.exists(base):
        return []
    return sorted((v.rstrip("/") for v in fileio.listdir(base) if v.rstrip("/").isdigit()),
                  key=int)


class Executor(pusher_executor.Executor):
    def Do(self, input_dict: dict[str, list[Any]], output_dict: dict[str, list[Any]],
           exec_properties: dict[str, Any]) -> None:
        destination = pusher_pb2.PushDestination()
        proto_utils.json_to_proto(
            exec_properties[standard_component_specs.PUSH_DESTINATION_KEY], destination)
        base = destination.filesystem.base_directory
        if self.CheckBlessing(input_dict):
            candidate = model_fingerprint(self.GetModelPath(input_dict))
            for version in _existing_versions(base):
                if model_fingerprint(os.path.join(base, version)) == candidate:
                    pushed = artifact_utils.get_single_instance(
                        output_dict[standard_component_specs.PUSHED_MODEL_KEY])
                    self._MarkNotPushed(pushed)
                    pushed.set_string_custom_property(DUPLICATE_OF, version)
                    logging.info("Pusher: this model is already version %s in %s; "
                                 "nothing pushed", version, base)
                    return
        super().Do(input_dict, output_dict, exec_properties)
