"""Benchmark: the CNN trained by a plain Keras script vs inside the pipeline.

Same data, same model, same hyper-parameters, same MirroredStrategy. The plain
script reads the reviews with the project's reader, tokenises in Python and
fits; the pipeline run is the real local runner (ingest, statistics,
validation, Transform, Trainer, Evaluator, Pusher, TFLite, report). Prints both
wall times, the Trainer's share, and the overhead ratio.

    .venv/bin/python -m bench.pipeline_overhead --data=PATH [--epochs=2]
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
import time
from pathlib import Path


def _plain_keras(data: str, epochs: int, args: list[str]) -> dict[str, float]:
    import numpy as np
    import tensorflow as tf

    from components.imdb_example_gen.reader import Review, read_reviews
    from models import text
    from models.cnn import build_cnn
    from models.distribution import make_strategy
    from models.trainer import make_optimizer
    from pipeline.config import from_args

    config = from_args(args)
    started = time.monotonic()
    reviews = [r for r in read_reviews(data, include_unsup=False) if isinstance(r, Review)]
    train = [r for r in reviews if r.split == "train"]
    tokens = [text.tokenize_py(r.text) for r in train]
    counts = collections.Counter(t for ts in tokens for t in ts)
    vocab = {w: i for i, (w, _) in enumerate(counts.most_common(config.transform.vocab_size))}
    ids = np.array([text.lookup_ids(ts, vocab, config.transform.max_length) for ts in tokens],
                   dtype="int32")
    labels = np.array([r.label for r in train])
    prepared = time.monotonic()
    dataset = (tf.data.Dataset.from_tensor_slices((ids, labels))
               .shuffle(len(labels), seed=config.train.seed).batch(config.train.batch_size))
    with make_strategy().scope():
        model = build_cnn(config.train, len(vocab) + 2, config.transform.max_length)
        steps = len(labels) // config.train.batch_size * epochs
        model.compile(optimizer=make_optimizer(config.train, steps), loss="binary_crossentropy",
                      metrics=["accuracy"])
    model.fit(dataset, epochs=epochs, verbose=2)
    done = time.monotonic()
    return {"total_s": done - started, "prepare_s": prepared - started, "train_s": done - prepared}


def _pipeline(data: str, epochs: int, args: list[str]) -> dict[str, float]:
    from pipeline import local_runner
    from pipeline.config import from_args

    with tempfile.TemporaryDirectory() as out:
        started = time.monotonic()
        durations = local_runner.run(from_args([f"--data={data}", f"--output_dir={out}", *args,
                                                "--early_stopping_patience=1000"]))
        total = time.monotonic() - started
        history = json.loads((Path(out) / "metrics.json").read_text())["training_history"]
    assert len(history["loss"]) == epochs
    return {"total_s": total, "trainer_s": durations.get("Trainer", float("nan"))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--epochs", type=int, default=2)
    parsed, extra = parser.parse_known_args(argv)
    args = [f"--epochs={parsed.epochs}", *extra]
    from models.distribution import configure_logical_cpus

    configure_logical_cpus(2)
    plain = _plain_keras(parsed.data, parsed.epochs, args)
    pipe = _pipeline(parsed.data, parsed.epochs, args)
    print(f"plain Keras script : {plain['total_s']:8.1f} s  (prepare {plain['prepare_s']:.1f} s,"
          f" fit {plain['train_s']:.1f} s)")
    print(f"TFX pipeline       : {pipe['total_s']:8.1f} s  (every component; Trainer "
          f"{pipe['trainer_s']:.1f} s)")
    print(f"overhead ratio     : {pipe['total_s'] / plain['total_s']:8.2f}x (whole run)")
    print(f"trainer vs plain   : {pipe['trainer_s'] / plain['total_s']:8.2f}x (Trainer alone)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
