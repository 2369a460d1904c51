"""The distribution strategy of a training process.

Several workers named in `TF_CONFIG` (what Kubeflow's TFJob, Vertex AI
Training worker pools and the TFX Vertex Trainer set): MultiWorkerMirrored
over all of them. Otherwise MirroredStrategy over every GPU of the pod, or
over N logical CPU devices without one.

Logical CPU devices can only be declared before TensorFlow initialises its
runtime, so `configure_logical_cpus` runs at process start (the local runner,
the test session); `make_strategy` then mirrors over whatever exists.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from typing import Any

import tensorflow as tf
from absl import logging

__all__ = ["ClusterRole", "cluster_role", "configure_logical_cpus", "make_strategy"]

#: Task types of TF_CONFIG that train (an "evaluator" or "ps" task does not).
_TRAINING_TASKS = ("chief", "worker")


@dataclasses.dataclass(frozen=True)
class ClusterRole:
    """Where this process stands in the TF_CONFIG cluster."""

    workers: int = 1
    task_type: str = "worker"
    task_id: int = 0
    has_chief: bool = False

    @property
    def multi_worker(self) -> bool:
        return self.workers > 1

    @property
    def is_chief(self) -> bool:
        """The one process whose files are kept: the `chief` task if the
        cluster has one, else worker 0 (TF's own convention)."""
        if self.has_chief:
            return self.task_type == "chief"
        return self.task_type == "worker" and self.task_id == 0


def cluster_role(environ: Mapping[str, str] = os.environ) -> ClusterRole:
    """Parses TF_CONFIG (absent: a single-process role, which is the chief)."""
    raw = environ.get("TF_CONFIG", "")
    config: dict[str, Any] = json.loads(raw) if raw else {}
    cluster = config.get("cluster", {})
    task = config.get("task", {})
    return ClusterRole(
        workers=max(1, sum(len(cluster.get(kind, [])) for kind in _TRAINING_TASKS)),
        task_type=str(task.get("type", "worker")), task_id=int(task.get("index", 0)),
        has_chief=bool(cluster.get("chief")))


def configure_logical_cpus(count: int) -> bool:
    """Splits the CPU into `count` logical devices when there is no GPU.
    Returns whether the split is in place."""
    if tf.config.list_physical_devices("GPU"):
        return False
    cpu = tf.config.list_physical_devices("CPU")[0]
    current = tf.config.get_logical_device_configuration(cpu)
    if current and len(current) == count:
        return True
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(count)])
    except RuntimeError as err:  # runtime already initialised
        logging.warning("Cannot split the CPU into %d logical devices: %s", count, err)
        return False
    return True


def make_strategy(
    environ: Mapping[str, str] = os.environ,
) -> tf.distribute.MirroredStrategy | tf.distribute.MultiWorkerMirroredStrategy:
    """MultiWorkerMirrored when TF_CONFIG names several workers; else all
    GPUs if any (default all-reduce, NCCL), else all logical CPU devices.

    The multi-worker strategy configures collective ops, which TensorFlow
    allows only before its runtime starts: call this first in `run_fn`.

    On CPUs the single-process reduction goes through one device: the default
    collective all-reduce fails on the second strategy of a process ("Shape
    mismatch in the collective instance") when the embeddings' sparse
    gradients differ in size between replicas, as they do from batch to batch.
    """
    role = cluster_role(environ)
    if role.multi_worker:
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        logging.info("MultiWorkerMirroredStrategy: %d worker(s), this is %s %d (%s), "
                     "%d replica(s) in sync", role.workers, role.task_type, role.task_id,
                     "chief" if role.is_chief else "not chief", strategy.num_replicas_in_sync)
        return strategy
    gpus = tf.config.list_logical_devices("GPU")
    if gpus:
        devices = [d.name for d in gpus]
        mirrored = tf.distribute.MirroredStrategy(devices)
    else:
        devices = [d.name for d in tf.config.list_logical_devices("CPU")]
        mirrored = tf.distribute.MirroredStrategy(
            devices, cross_device_ops=tf.distribute.ReductionToOneDevice(devices[0]))
    logging.info("MirroredStrategy over %d replica(s): %s", mirrored.num_replicas_in_sync, devices)
    return mirrored
