"""Training speed of a model against the number of logical CPU devices
(and dropout rates, and the training loop).

    .venv/bin/python -m bench.train_step_speed --model=minilm [--devices=1,2]
        [--dropouts=0.1] [--loops=custom,fit] [--max_length=128] [--batch_size=32]
        [--steps=12] [--precision=float32] [--jit_compile=true] [--repeats=1]

Without a GPU the Trainer runs MirroredStrategy over `--num_cpu_devices`
logical CPU devices, which share the same cores and thread pools. This
measures what that split costs or gains: for each device count, in a fresh
process (TF fixes its devices at start), the project's own model and
training loop (`models.training_loop.fit`) run `--steps` steps on random
token ids, and the median step time after the first two (compilation) is
reported in reviews/s, with the ratio to the first row given. Each
`--dropouts` rate is measured at each device count: dropout draws a random
mask for every activation it touches, which on CPUs costs more than its
arithmetic suggests. `--loops=custom,fit` also times Keras's own `Model.fit`
on the same model, data and strategy (XLA as `--jit_compile` says for both):
the project trains with its own loop (models/training_loop.py says why), and
this shows what that costs per step. `--repeats=N` runs every setting N
times, interleaved (each round runs every setting once), and ends with each
setting's median over the rounds: on a shared VM one run of each can differ
by 10-20%, more than the loops differ.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

from pipeline.config import (
    OneLineParser,
    TrainConfig,
    comma_list,
    field_flag_type,
    int_at_least,
    positive_int_list,
)

__all__ = ["measure", "median_step_seconds", "main"]

_WARMUP_STEPS = 2
#: --dropouts values, each checked against TrainConfig's --dropout range.
_DROPOUT_LIST = comma_list(field_flag_type(TrainConfig, "dropout"))
#: The training loops --loops can time.
LOOPS = ("custom", "fit")


def _loop_name(text: str) -> str:
    if text not in LOOPS:
        raise argparse.ArgumentTypeError(f"must be one of {', '.join(LOOPS)}")
    return text


def measure(model_name: str, devices: int, dropout: float, max_length: int, batch_size: int,
            steps: int, precision: str, jit_compile: bool, loop: str = "custom",
            ) -> dict[str, Any]:
    """Median seconds per step of `steps` training steps (after the first
    two) with the project's loop or Keras's `Model.fit`, in this process:
    call before anything starts TF's runtime."""
    import keras
    import numpy as np
    import tensorflow as tf

    from models import trainer, training_loop
    from models.config import TrainConfig
    from models.distribution import configure_logical_cpus, make_strategy
    from models.job import global_batch

    configure_logical_cpus(devices)
    strategy = make_strategy({})
    config = TrainConfig(model=model_name, precision=precision, jit_compile=jit_compile,
                         batch_size=batch_size, num_cpu_devices=devices, epochs=1,
                         dropout=dropout)
    batch = global_batch(batch_size, strategy.num_replicas_in_sync)
    rng = np.random.default_rng(0)
    vocab = 20_000 if model_name != "minilm" else 30_000
    ids = rng.integers(1, vocab, size=(batch * steps, max_length), dtype=np.int32)
    labels = rng.integers(0, 2, size=(batch * steps, 1)).astype(np.float32)
    train = tf.data.Dataset.from_tensor_slices((ids, labels)).batch(batch)
    valid = tf.data.Dataset.from_tensor_slices((ids[:batch], labels[:batch])).batch(batch)
    with strategy.scope():
        model = trainer.compiled_model(config, vocab + 1, max_length, None, steps)
    ends: list[float] = []

    class _Clock(keras.callbacks.Callback):
        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            ends.append(time.perf_counter())

    start = time.perf_counter()
    if loop == "fit":
        model.jit_compile = jit_compile  # Keras's "auto" would turn XLA on by itself
        model.fit(train, epochs=1, steps_per_epoch=steps, callbacks=[_Clock()], verbose=0)
    else:
        training_loop.fit(model, strategy, train, valid, epochs=1, steps_per_epoch=steps,
                          callbacks=[_Clock()], jit_compile=jit_compile)
    step_seconds = statistics.median(b - a for a, b in zip(ends[_WARMUP_STEPS:],
                                                            ends[_WARMUP_STEPS + 1:],
                                                            strict=False))
    return {"devices": devices, "dropout": dropout, "loop": loop,
            "replicas": strategy.num_replicas_in_sync, "batch": batch,
            "step_seconds": step_seconds, "reviews_per_s": batch / step_seconds,
            "first_steps_seconds": ends[_WARMUP_STEPS - 1] - start}


def _setting_name(row: dict[str, Any]) -> str:
    return (f"{row['devices']} logical CPU device(s), dropout {row['dropout']}, "
            f"{row['loop']} loop")


def median_step_seconds(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Each setting's median seconds per step over its rows, settings in the
    order they first appear."""
    by_setting: dict[str, list[float]] = {}
    for row in rows:
        by_setting.setdefault(_setting_name(row), []).append(row["step_seconds"])
    return {name: statistics.median(seconds) for name, seconds in by_setting.items()}


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = OneLineParser(prog="python -m bench.train_step_speed",
                           description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("cnn", "transformer", "minilm"), default="minilm")
    parser.add_argument("--devices", type=positive_int_list, default=[1, 2])
    parser.add_argument("--dropouts", type=_DROPOUT_LIST, default=[0.1],
                        help="dropout rates, each measured at every device count")
    parser.add_argument("--loops", type=comma_list(_loop_name), default=["custom"],
                        help="training loops, each measured at every device count: the "
                             "project's (custom) and Keras's Model.fit")
    parser.add_argument("--max_length", type=int, default=128)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--precision", choices=("float32", "mixed_bfloat16"), default="float32")
    parser.add_argument("--jit_compile", choices=("true", "false"), default="true")
    parser.add_argument("--repeats", type=int_at_least(1), default=1,
                        help="rounds; each runs every setting once, in a fresh process")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # a child run
    args = parser.parse_args(argv)
    if args.steps <= _WARMUP_STEPS + 1:
        parser.error(f"--steps must be more than {_WARMUP_STEPS + 1}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    settings = (args.model, args.max_length, args.batch_size, args.steps, args.precision,
                args.jit_compile == "true")
    if args.one:
        print(json.dumps(measure(args.model, args.devices[0], args.dropouts[0],
                                 *settings[1:], loop=args.loops[0])))
        return 0
    settings_list = list(itertools.product(args.devices, args.dropouts, args.loops))
    rows = []
    for _, (devices, dropout, loop) in itertools.product(range(args.repeats), settings_list):
        child = [sys.executable, "-m", "bench.train_step_speed", "--one",
                 f"--devices={devices}", f"--dropouts={dropout}", f"--loops={loop}",
                 f"--model={args.model}",
                 f"--max_length={args.max_length}", f"--batch_size={args.batch_size}",
                 f"--steps={args.steps}", f"--precision={args.precision}",
                 f"--jit_compile={args.jit_compile}"]
        done = subprocess.run(child, capture_output=True, text=True, check=False)
        if done.returncode:
            print(done.stderr[-3000:], file=sys.stderr)
            return done.returncode
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        row = rows[-1]
        print(f"{args.model} {args.precision} jit={args.jit_compile} {args.max_length} tokens, "
              f"{_setting_name(row)}, global batch {row['batch']}: "
              f"{row['step_seconds']:.3f} s/step, {row['reviews_per_s']:.2f} reviews/s "
              f"({row['reviews_per_s'] / rows[0]['reviews_per_s']:.2f}x "
              f"{_setting_name(rows[0])}); first "
              f"{_WARMUP_STEPS} steps {row['first_steps_seconds']:.1f} s",
              flush=True)
    if args.repeats > 1:
        medians = median_step_seconds(rows)
        first = next(iter(medians.values()))
        for name, seconds in medians.items():
            print(f"median of {args.repeats} rounds, {name}: {seconds:.3f} s/step "
                  f"({seconds / first:.3f}x the first setting's time)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
