"""`run_fn` as two MultiWorkerMirroredStrategy workers on loopback, against
a single-process run of the same job.

The workers are real processes with their own TF_CONFIG, as a TFJob or a
Vertex AI worker pool starts them; they get the same FnArgs (the same output
folders), as they would on a cluster.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from models import contract
from models.distribution import cluster_role
from tests.transformed_fixtures import write_transformed

#: |p_two_workers - p_single_process| allowed per review. Both runs go through
#: the same training loop and apply the same updates to the same global
#: batches (2 replicas each, DATA sharding); only the all-reduce's summation
#: order may differ, which leaves float32 rounding noise (~1e-7 per step) that
#: a few Adam steps cannot grow past this. Measured: bit-identical (0.0).
TOLERANCE = 1e-4
TRANSFORM = {"vocab_size": 40, "num_oov_buckets": 1, "max_length": 16}
TRAIN = {"embedding_dim": 8, "filters": 4, "dropout": 0.0, "epochs": 3, "batch_size": 16,
         "learning_rate": 0.01, "bigram_buckets": 0, "early_stopping_patience": 5, "seed": 7}
PROBE = ["a great wonderful film", "awful boring mess", "great acting but a boring plot"]


def test_tf_config_decides_the_chief_and_the_worker_count():
    """Worker 0 is the chief unless the cluster names a `chief` task;
    without TF_CONFIG the process trains alone and is the chief."""
    two = {"cluster": {"worker": ["h:1", "h:2"]}, "task": {"type": "worker", "index": 1}}
    assert not cluster_role({"TF_CONFIG": json.dumps(two)}).is_chief
    assert cluster_role({"TF_CONFIG": json.dumps(two)}).workers == 2
    two["task"]["index"] = 0
    assert cluster_role({"TF_CONFIG": json.dumps(two)}).is_chief
    with_chief = {"cluster": {"chief": ["h:0"], "worker": ["h:1"]},
                  "task": {"type": "worker", "index": 0}}
    assert not cluster_role({"TF_CONFIG": json.dumps(with_chief)}).is_chief
    assert cluster_role({"TF_CONFIG": json.dumps(with_chief)}).workers == 2
    alone = cluster_role({})
    assert alone.is_chief and not alone.multi_worker


def worker_main(job_file: str) -> None:
    """One training process: `python -c ... worker_main(job.json)`."""
    job = json.loads(Path(job_file).read_text())
    if "TF_CONFIG" not in os.environ:
        # As the local runner does: 2 logical CPUs, 2 replicas like the two workers.
        from models.distribution import configure_logical_cpus

        configure_logical_cpus(2)
    import keras
    from absl import logging
    from tfx.components.trainer.fn_args_utils import FnArgs

    logging.set_verbosity(logging.INFO)  # as in a TFX executor: the strategy logs its role

    keras.config.disable_traceback_filtering()  # a failure names the real frame

    from models.trainer import run_fn

    run_fn(FnArgs(train_files=[job["train"]], eval_files=[job["valid"]],
                  transform_output=job["transform"], serving_model_dir=job["serving"],
                  model_run_dir=job["run"],
                  custom_config={"train": TRAIN, "transform": TRANSFORM}))


def _start(job: dict[str, str], path: Path, tf_config: dict[str, Any] | None) -> subprocess.Popen:
    path.write_text(json.dumps(job))
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    # A temp folder of its own, to check that a worker leaves nothing there.
    env["TMPDIR"] = str(path.with_name(path.stem + "_tmp"))
    Path(env["TMPDIR"]).mkdir()
    if tf_config is not None:
        env["TF_CONFIG"] = json.dumps(tf_config)
    code = f"from tests.test_kubeflow_multiworker import worker_main; worker_main({str(path)!r})"
    return subprocess.Popen([sys.executable, "-c", code], env=env, cwd=Path(__file__).parent.parent,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(two-worker output root, single-process output root) after training."""
    import portpicker

    root = tmp_path_factory.mktemp("multiworker")
    write_transformed(root, TRANSFORM)
    data = {"train": str(root / "train" / "*.gz"), "valid": str(root / "valid" / "*.gz"),
            "transform": str(root / "transform")}
    multi = {**data, "serving": str(root / "multi" / "serving"), "run": str(root / "multi" / "run")}
    single = {**data, "serving": str(root / "single" / "serving"),
              "run": str(root / "single" / "run")}
    ports = [portpicker.pick_unused_port() for _ in range(2)]
    cluster = {"worker": [f"localhost:{p}" for p in ports]}
    processes = {
        f"worker {i}": _start(multi, root / f"worker{i}.json",
                              {"cluster": cluster, "task": {"type": "worker", "index": i}})
        for i in range(2)}
    processes["single"] = _start(single, root / "single.json", None)
    try:
        outputs = {name: p.communicate(timeout=900)[0] for name, p in processes.items()}
    finally:
        for p in processes.values():
            if p.poll() is None:
                p.kill()
    return root / "multi", root / "single", outputs, {n: p.returncode for n, p in
                                                      processes.items()}


def _all_finished(trained) -> None:
    *_, outputs, codes = trained
    for name, code in codes.items():
        assert code == 0, f"{name} failed:\n{outputs[name][-4000:]}"


def _probabilities(model_dir: Path) -> np.ndarray:
    import tensorflow as tf

    serve = tf.saved_model.load(str(model_dir)).signatures[contract.SIGNATURE_TEXT]
    return serve(**{contract.INPUT_TEXT: tf.constant(PROBE)})[contract.OUTPUT_KEY].numpy()


@pytest.mark.slow
def test_two_workers_finish_and_only_the_chief_exports_with_the_agreed_signatures(trained):
    _all_finished(trained)
    multi, _, outputs, _ = trained
    assert "MultiWorkerMirroredStrategy: 2 worker(s)" in outputs["worker 0"] + outputs["worker 1"]
    import tensorflow as tf

    loaded = tf.saved_model.load(str(multi / "serving"))
    assert set(loaded.signatures) == {contract.SIGNATURE_EXAMPLES, contract.SIGNATURE_TEXT,
                                      contract.SIGNATURE_TOKEN_IDS}
    history = json.loads((multi / "run" / contract.HISTORY_FILE).read_text())
    assert len(history["loss"]) == TRAIN["epochs"]
    # The non-chief's scratch export (in its temp folder) is gone.
    temp_folders = list(multi.parent.glob("worker*_tmp"))
    assert len(temp_folders) == 2
    assert not [p for folder in temp_folders for p in folder.glob("non_chief_*")]


@pytest.mark.slow
def test_two_worker_predictions_match_a_single_process_run(trained):
    _all_finished(trained)
    multi, single, _, _ = trained
    p_multi, p_single = _probabilities(multi / "serving"), _probabilities(single / "serving")
    np.testing.assert_allclose(p_multi, p_single, atol=TOLERANCE, rtol=0)
    # And the job really learned something, so the comparison means something.
    assert p_single[0] > 0.5 > p_single[1]
