"""Infra validation: the candidate, served by `python -m serving.server` on a
free loopback port, must load, report AVAILABLE and answer its warm-up
requests over gRPC exactly as the SavedModel does in-process.

TFX's InfraValidator needs Docker or Kubernetes to start TF Serving; this
does the same check with this project's TF-Serving-compatible server, so the
local pipeline can require it before the release step.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any

import numpy as np
import portpicker

from models import wordpiece
from serving.client import ClientOptions, GrpcClient, ServingError, float_values
from serving.manager import DEFAULT_SIGNATURE
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
    base = tempfile.mkdtemp(prefix="infra_validation_")
    server: subprocess.Popen[bytes] | None = None
    log_path = os.path.join(base, "server.log")
    try:
        os.symlink(os.path.abspath(saved_model_dir), os.path.join(base, str(_VERSION)))
        port = portpicker.pick_unused_port()
        start = time.monotonic()
        with open(log_path, "wb") as log:
            server = subprocess.Popen(
                [sys.executable, "-m", "serving.server", f"--model_name={model_name}",
                 f"--model_base_path={base}", f"--port={port}", "--host=127.0.0.1",
                 "--file_system_poll_wait_seconds=0"],
                stdout=log, stderr=subprocess.STDOUT,
                cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        options = ClientOptions(f"127.0.0.1:{port}", model_name, deadline_s=30, retries=0)
        with GrpcClient(options) as client:
            while True:
                if server.poll() is not None:
                    return {**result, "reason": "server exited with code "
                            f"{server.returncode}: {_tail(log_path)}"}
                if time.monotonic() - start > timeout_s:
                    return {**result, "reason": f"not AVAILABLE within {timeout_s} s: "
                            f"{_tail(log_path)}"}
                try:
                    rows = client.status()
                except ServingError:
                    rows = []
                if any(r["state"] == "AVAILABLE" for r in rows):
                    break
                failed = [r for r in rows if r["status"]["error_code"] != "OK"]
                if failed:
                    return {**result, "reason": f"load failed: {failed[0]['status']}"}
                time.sleep(0.2)
            result["cold_start_s"] = round(time.monotonic() - start, 3)
            expected = _expected(saved_model_dir, requests)
            worst = 0.0
            for request, want in zip(requests, expected, strict=True):
                response = client.predict_raw(request)
                for key, value in want.items():
                    got = np.array(float_values(response.outputs[key]))
                    if got.shape != np.ravel(value).shape:
                        return {**result, "reason": f"output '{key}' has {got.size} values, "
                                f"expected {np.size(value)}"}
                    worst = max(worst, float(np.max(np.abs(got - np.ravel(value)))))
                result["requests"] += 1
        result["max_abs_diff"] = worst
        if worst > TOLERANCE:
            return {**result, "reason": f"served answers differ by {worst:.3g} > {TOLERANCE}"}
        return {**result, "ok": True}
    except ServingError as error:
        return {**result, "reason": f"request failed: {error}"}
    except Exception as error:  # a broken candidate is a verdict, not a crash
        return {**result, "reason": f"{type(error).__name__}: {error}"}
    finally:
        if server is not None and server.poll() is None:
            server.kill()
            server.wait(30)
        shutil.rmtree(base, ignore_errors=True)


def _tail(path: str, lines: int = 5) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return " | ".join(handle.read().splitlines()[-lines:])
    except OSError:
        return ""
