"""Infra validation: the candidate, served by `python -m serving.server` on a
free loopback port, must load, report AVAILABLE and answer its warm-up
requests over gRPC exactly as the SavedModel does in-process.

TFX's InfraValidator needs Docker or Kubernetes to start TF Serving; this
does the same check with this project's TF-Serving-compatible server, so the
local pipeline can require it before the release step.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import portpicker

from models import wordpiece
from serving.client import ClientOptions, GrpcClient, ServingError, float_values
from serving.manager import DEFAULT_SIGNATURE
from serving.process import StartError, child_until_ready, model_available
from serving.tensors import to_array
from serving.warmup import DEFAULT_TEXTS, read_warmup_requests, warmup_requests

__all__ = ["TOLERANCE", "validate"]

#: Largest |served - in-process| probability accepted. Both run the same graph
#: on the same CPU; only a different batch composition (server-side batching)
#: may change float summation order, which moves a sigmoid by ~1e-7.
TOLERANCE = 1e-5
_VERSION = 1


def _expected(saved_model_dir: str, requests: list[Any]) -> list[dict[str, np.ndarray]]:
    import tensorflow as tf

    wordpiece.register_ops()  # the candidate may tokenise with TF Text inside
    loaded = tf.saved_model.load(saved_model_dir)
    answers = []
    for request in requests:
        function = loaded.signatures[request.model_spec.signature_name or DEFAULT_SIGNATURE]
        inputs = {k: tf.constant(to_array(v)) for k, v in request.inputs.items()}
        answers.append({k: v.numpy() for k, v in function(**inputs).items()})
    return answers


def validate(saved_model_dir: str, model_name: str, *, timeout_s: float = 120) -> dict[str, Any]:
    """Serves the candidate on 127.0.0.1 and replays its warm-up requests over
    gRPC; returns {ok, cold_start_s, requests, max_abs_diff, tolerance,
    reason}. A candidate that fails is ok=False with the reason, not an error.
    """
    result: dict[str, Any] = {"ok": False, "model_name": model_name, "cold_start_s": None,
                              "requests": 0, "max_abs_diff": None, "tolerance": TOLERANCE,
                              "reason": ""}
    requests = read_warmup_requests(saved_model_dir) or warmup_requests(DEFAULT_TEXTS,
                                                                        model_name)
    base = Path(tempfile.mkdtemp(prefix="infra_validation_"))
    try:
        (base / str(_VERSION)).symlink_to(Path(saved_model_dir).resolve())
        port = portpicker.pick_unused_port()
        command = [sys.executable, "-m", "serving.server", f"--model_name={model_name}",
                   f"--model_base_path={base}", f"--port={port}", "--host=127.0.0.1",
                   "--file_system_poll_wait_seconds=0"]
        options = ClientOptions(f"127.0.0.1:{port}", model_name, deadline_s=30, retries=0)
        with GrpcClient(options) as client:
            start = time.monotonic()
            with child_until_ready(command, base / "server.log", model_available(client.status),
                                   timeout_s=timeout_s):
                result["cold_start_s"] = round(time.monotonic() - start, 3)
                worst = _replay(client, requests, _expected(saved_model_dir, requests))
                result["requests"] = len(requests)
        result["max_abs_diff"] = worst
        if worst > TOLERANCE:
            return {**result, "reason": f"served answers differ by {worst:.3g} > {TOLERANCE}"}
        return {**result, "ok": True}
    except StartError as error:
        return {**result, "reason": f"server {error}"}
    except ServingError as error:
        return {**result, "reason": f"request failed: {error.code}: {error.message}"}
    except Exception as error:  # a broken candidate is a verdict, not a crash
        return {**result, "reason": f"{type(error).__name__}: {error}"}
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _replay(client: GrpcClient, requests: list[Any],
            expected: list[dict[str, np.ndarray]]) -> float:
    """Sends each request; returns the largest |served - expected| over all
    outputs, or raises ValueError when an output's size differs."""
    worst = 0.0
    for request, want in zip(requests, expected, strict=True):
        response = client.predict_raw(request)
        for key, value in want.items():
            got = np.array(float_values(response.outputs[key]))
            if got.shape != np.ravel(value).shape:
                raise ValueError(f"output '{key}' has {got.size} values, expected "
                                 f"{np.size(value)}")
            worst = max(worst, float(np.max(np.abs(got - np.ravel(value)))))
    return worst
