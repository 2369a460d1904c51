"""MirroredStrategy over every GPU, or over N logical CPU devices without one.

Logical CPU devices can only be declared before TensorFlow initialises its
runtime, so `configure_logical_cpus` runs at process start (the local runner,
the test session); `make_strategy` then mirrors over whatever exists.
"""

from __future__ import annotations

import tensorflow as tf
from absl import logging

__all__ = ["configure_logical_cpus", "make_strategy"]


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


def make_strategy() -> tf.distribute.MirroredStrategy:
    """All GPUs if any (default all-reduce, NCCL), else all logical CPU devices.

    On CPUs the reduction goes through one device: the default collective
    all-reduce fails on the second strategy of a process ("Shape mismatch in
    the collective instance") when the embeddings' sparse gradients differ in
    size between replicas, as they do from batch to batch.
    """
    gpus = tf.config.list_logical_devices("GPU")
    if gpus:
        devices = [d.name for d in gpus]
        strategy = tf.distribute.MirroredStrategy(devices)
    else:
        devices = [d.name for d in tf.config.list_logical_devices("CPU")]
        strategy = tf.distribute.MirroredStrategy(
            devices, cross_device_ops=tf.distribute.ReductionToOneDevice(devices[0]))
    logging.info("MirroredStrategy over %d replica(s): %s", strategy.num_replicas_in_sync, devices)
    return strategy
