"""Benchmark: a released classifier, NB-LR, and their blend, on the pipeline's splits.

Issue #10 asks whether combining the fine-tuned encoder with an NB-weighted
uni+bigram logistic model pays. This scores one exported SavedModel (its
`serving_text` signature, raw reviews in) on `valid` and `eval`, tunes and
refits NB-LR exactly as `bench.ngram_baselines` does (grid on `valid`, refit
on `train`), then blends the two models' logits with the weights
`models.blend.fit_blend` fits on `valid` predictions: the rule the Trainer
applies inside the exported model. The sum of the two logits standardised by
their `valid` mean and spread (the issue's recipe) is reported beside it.

Every choice (NB-LR's setting, blend weights, standardisation) is made on
`valid`; `eval` (the official test slice) is scored once at the end.

    nice -n 19 .venv/bin/python -m bench.combination --data=PATH \
        --model=OUTPUT/serving/imdb_sentiment/<version> --output_dir=DIR \
        [--name=MiniLM] [--train_seconds=S]

Writes DIR/combination.json and, when --train_seconds is given, a test
accuracy against train time plot (combination.png) and one `--extra` file
per model for `bench.ngram_baselines`' plot.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.metrics import accuracy_score, f1_score

from bench import ngram_baselines as nb
from components.errors import UserFacingError
from models import blend, contract
from models.contract import EVAL, TRAIN, VALID
from pipeline.config import OneLineParser

__all__ = ["Scores", "Row", "standardised_sum", "rows", "main"]

PROG = "bench.combination"
JSON_FILE = "combination.json"
PNG_FILE = "combination.png"
_BATCH = 64

Floats = NDArray[np.float64]


@dataclasses.dataclass(frozen=True)
class Scores:
    """One model's logits on valid and eval."""

    valid: Floats
    test: Floats


@dataclasses.dataclass(frozen=True)
class Row:
    name: str
    valid_accuracy: float
    accuracy: float
    f1: float
    detail: dict[str, Any]


def standardised_sum(models: Sequence[Scores]) -> Scores:
    """Sum of the logits, each centred and scaled by its valid mean and
    standard deviation (the issue's recipe); threshold 0."""
    def z(values: Floats, reference: Floats) -> Floats:
        spread = float(reference.std()) or 1.0
        out: Floats = (values - reference.mean()) / spread
        return out

    return Scores(sum((z(m.valid, m.valid) for m in models), np.zeros_like(models[0].valid)),
                  sum((z(m.test, m.valid) for m in models), np.zeros_like(models[0].test)))


def _row(name: str, scores: Scores, valid_labels: NDArray[Any], test_labels: NDArray[Any],
         detail: dict[str, Any]) -> Row:
    valid_predicted = (scores.valid > 0).astype(int)
    predicted = (scores.test > 0).astype(int)
    return Row(name, float(accuracy_score(valid_labels, valid_predicted)),
               float(accuracy_score(test_labels, predicted)),
               float(f1_score(test_labels, predicted)), detail)


def rows(encoder_name: str, encoder: Scores, ngram: Scores, valid_labels: NDArray[Any],
         test_labels: NDArray[Any]) -> list[Row]:
    """The table: each model alone, the blend fitted on valid, the
    standardised sum. Only valid labels enter a choice."""
    valid_logits = np.stack([encoder.valid, ngram.valid], axis=1)
    weights = blend.fit_blend(valid_logits, valid_labels)
    blended = Scores(
        blend.to_logit(blend.apply_blend(weights, valid_logits)),
        blend.to_logit(blend.apply_blend(weights, np.stack([encoder.test, ngram.test], 1))))
    disagree = float(np.mean((encoder.test > 0) != (ngram.test > 0)))
    return [
        _row(encoder_name, encoder, valid_labels, test_labels, {}),
        _row("NB-LR", ngram, valid_labels, test_labels, {}),
        _row(f"{encoder_name} + NB-LR (blend fitted on valid)", blended, valid_labels,
             test_labels, {"weights": {encoder_name: float(weights[0]), "NB-LR": float(weights[1]),
                                       "bias": float(weights[2])}, "test_disagreement": disagree}),
        _row(f"{encoder_name} + NB-LR (standardised sum)", standardised_sum([encoder, ngram]),
             valid_labels, test_labels, {}),
    ]


def _encoder_scores(model_dir: str, texts: list[str]) -> Floats:
    """Logits of the SavedModel's serving_text signature, in batches."""
    import tensorflow as tf

    from models import wordpiece

    wordpiece.register_ops()  # a WordPiece model's transform graph needs TF Text's ops
    serve = tf.saved_model.load(model_dir).signatures[contract.SIGNATURE_TEXT]
    out = [serve(**{contract.INPUT_TEXT: tf.constant(texts[i:i + _BATCH])})
           [contract.OUTPUT_KEY].numpy() for i in range(0, len(texts), _BATCH)]
    return blend.to_logit(np.concatenate(out))


def _ngram_scores(splits: dict[str, nb.Split], log: nb.Log) -> tuple[Scores, dict[str, Any]]:
    """NB-LR tuned on valid, refit on train; its decision values."""
    baseline = next(b for b in nb.BASELINES if b.name == "NB-LR")
    train, valid = splits[TRAIN], splits[VALID]
    counts = nb.counts_vectorizer().fit(train.texts)
    scores = nb.tune(baseline, counts.transform(train.texts), train.labels,
                     counts.transform(valid.texts), valid.labels, log)
    setting, valid_accuracy = nb.select_on_valid(scores)
    log(f"NB-LR: chose {setting.label()} (valid {valid_accuracy:.4f}); refitting on train")
    started = time.perf_counter()
    model = nb.full_model(baseline, setting).fit(train.texts, train.labels)
    seconds = time.perf_counter() - started
    return (Scores(model.decision_function(valid.texts), model.decision_function(
        splits[EVAL].texts)), {**setting.params(), "train_seconds": seconds})


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def run(data: str, model_dir: str, output_dir: Path, name: str,
        train_seconds: float | None) -> list[Row]:
    log = nb.progress()
    output_dir.mkdir(parents=True, exist_ok=True)
    log(f"reading {data}")
    splits, meta = nb.load_splits(data)
    ngram, ngram_detail = _ngram_scores(splits, log)
    log(f"scoring {model_dir} on valid and eval (serving_text)")
    started = time.perf_counter()
    encoder = Scores(_encoder_scores(model_dir, splits[VALID].texts),
                     _encoder_scores(model_dir, splits[EVAL].texts))
    inference = time.perf_counter() - started
    reviews = len(splits[VALID].texts) + len(splits[EVAL].texts)
    log(f"{reviews:,} reviews in {inference:.0f} s ({reviews / inference:.1f} reviews/s)")
    table = rows(name, encoder, ngram, splits[VALID].labels, splits[EVAL].labels)
    print(f"\n{'model':<48} {'valid acc':>9} {'test acc':>8} {'test F1':>7}")
    for row in table:
        print(f"{row.name:<48} {row.valid_accuracy:>9.4f} {row.accuracy:>8.4f} {row.f1:>7.4f}")
    print(f"\nblend: {table[2].detail}")
    report = {**meta, "model": model_dir, "nb_lr": ngram_detail,
              "inference_reviews_per_second": reviews / inference,
              "rows": [dataclasses.asdict(r) for r in table]}
    (output_dir / JSON_FILE).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    if train_seconds is not None:
        seconds = {table[0].name: train_seconds, "NB-LR": ngram_detail["train_seconds"]}
        seconds[table[2].name] = seconds[table[3].name] = train_seconds + seconds["NB-LR"]
        points = [nb.Point(row.name, row.accuracy, row.f1, seconds[row.name]) for row in table]
        for point in points:  # a Point is also the --extra file's schema
            (output_dir / f"extra_{_slug(point.name)}.json").write_text(
                json.dumps(dataclasses.asdict(point)) + "\n")
        nb.plot(output_dir / PNG_FILE, ours=[points[1]], extras=[points[0], *points[2:]],
                subtitle=f"eval = {meta['eval']}, {len(splits[EVAL].labels):,} reviews")
    log(f"wrote {output_dir / JSON_FILE}")
    return table


def _positive(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r}: not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{raw}: must be a positive number of seconds")
    return value


def _saved_model(path: str) -> str:
    if "://" not in path and not (Path(path) / "saved_model.pb").is_file():
        raise argparse.ArgumentTypeError(f"{path}: no saved_model.pb in it")
    return path


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, type=nb.existing_path,
                        help="aclImdb/ folder or its .tar.gz archive")
    parser.add_argument("--model", required=True, type=_saved_model,
                        help="an exported SavedModel (a version folder of the pushed model)")
    parser.add_argument("--output_dir", required=True, type=nb.output_dir_path,
                        help=f"where {JSON_FILE} is written")
    parser.add_argument("--name", default="encoder", help="the model's name in the table")
    parser.add_argument("--train_seconds", type=_positive,
                        help="the model's training wall time (for the plot files)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        run(args.data, args.model, args.output_dir, args.name, args.train_seconds)
    except (UserFacingError, OSError) as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
