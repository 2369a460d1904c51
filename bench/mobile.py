"""Benchmark: the shipped TFLite files against the SavedModel they came from.

On the official test slice (the `test/` folder of the archive; nothing was
tuned on it), for each variant of OUTPUT/tflite/<v>/: file size and ratio to
float32, accuracy, agreement of the 0.5 decision with the SavedModel's
`serving_text`, and single-review latency (median of N runs) with the LiteRT
interpreter, beside the SavedModel's single-review latency in the same run.
Then MediaPipe's TextClassifier, which tokenizes raw text itself from the
embedded metadata, on the int8 and float32 files: agreement and latency.

Texts reach the TFLite models through serving/mobile.py (the TF-free
reference tokenizer), exactly as an app would do it.

    .venv/bin/python -m bench.mobile --data=PATH [--output_dir=output] [--runs=1000]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MEDIAPIPE_PYTHON = ROOT / ".cache" / "mediapipe-venv" / "bin" / "python"


def _latest(folder: Path) -> Path:
    versions = [p for p in folder.iterdir() if p.name.isdigit()]
    if not versions:
        raise SystemExit(f"{folder}: no released version")
    return max(versions, key=lambda p: int(p.name))


def _test_reviews(data: str, limit: int | None) -> tuple[list[str], list[int]]:
    from components.imdb_example_gen.reader import Review, read_reviews

    texts, labels = [], []
    for record in read_reviews(data, include_test=True, include_unsup=False):
        if isinstance(record, Review) and record.split == "test":
            texts.append(record.text)
            labels.append(record.label)
            if limit and len(texts) >= limit:
                break
    return texts, labels


def _median_ms(samples: list[float]) -> float:
    return 1000 * statistics.median(samples)


def _savedmodel(model_dir: Path, texts: list[str], runs: int) -> dict[str, Any]:
    import numpy as np
    import tensorflow as tf

    from models import contract

    serve = tf.saved_model.load(str(model_dir)).signatures[contract.SIGNATURE_TEXT]
    probabilities = np.concatenate([
        serve(**{contract.INPUT_TEXT: tf.constant(texts[i:i + 256])})[contract.OUTPUT_KEY].numpy()
        for i in range(0, len(texts), 256)])
    single = [tf.constant([texts[i % len(texts)]]) for i in range(runs)]
    serve(**{contract.INPUT_TEXT: single[0]})  # warm-up
    timings = []
    for batch in single:
        start = time.perf_counter()
        serve(**{contract.INPUT_TEXT: batch})[contract.OUTPUT_KEY].numpy()
        timings.append(time.perf_counter() - start)
    return {"probabilities": probabilities, "latency_ms": _median_ms(timings)}


def _tflite(release: Path, variant: str, texts: list[str], runs: int,
            num_threads: int) -> dict[str, Any]:
    import numpy as np

    from serving.mobile import MobileClassifier

    classifier = MobileClassifier(release, variant, num_threads=num_threads)
    rows = [classifier.tokenizer.ids(t) for t in texts]
    probabilities = np.array([classifier.probability_of_ids(r) for r in rows])
    invoke, end_to_end = [], []
    for i in range(runs):
        row, review = rows[i % len(rows)], texts[i % len(texts)]
        start = time.perf_counter()
        classifier.probability_of_ids(row)
        invoke.append(time.perf_counter() - start)
        start = time.perf_counter()
        classifier.probability(review)
        end_to_end.append(time.perf_counter() - start)
    return {"probabilities": probabilities, "invoke_ms": _median_ms(invoke),
            "text_to_probability_ms": _median_ms(end_to_end)}


def _mediapipe(model: Path, texts: list[str], runs: int) -> dict[str, Any] | str:
    import numpy as np

    if not MEDIAPIPE_PYTHON.exists():
        return f"skipped: {MEDIAPIPE_PYTHON} missing (bash scripts/setup_mediapipe_venv.sh)"
    stdin = "".join(json.dumps(t) + "\n" for t in texts)
    done = subprocess.run([str(MEDIAPIPE_PYTHON), str(ROOT / "bench" / "mediapipe_classify.py"),
                           str(model)], input=stdin, capture_output=True, text=True,
                          env={**os.environ, "GLOG_minloglevel": "2"}, check=False)
    if done.returncode:
        return f"failed: {done.stderr[-500:]}"
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    from models import contract

    return {"probabilities": np.array([x["scores"][contract.POSITIVE_LABEL] for x in lines]),
            "latency_ms": _median_ms([x["seconds"] for x in lines[:runs]])}


def run(data: str, output_dir: Path, runs: int, limit: int | None,
        num_threads: int) -> dict[str, Any]:
    """Every figure of the benchmark, as a JSON-ready dict."""
    import numpy as np

    from components.tflite_converter import convert as conv
    from serving.mobile import VARIANTS

    model_dir = _latest(output_dir / "serving" / "imdb_sentiment")
    release = output_dir / "tflite" / model_dir.name
    texts, labels = _test_reviews(data, limit)
    label_array = np.array(labels)
    saved = _savedmodel(model_dir, texts, runs)
    reference = saved["probabilities"]
    report: dict[str, Any] = {
        "version": int(model_dir.name), "reviews": len(texts), "runs": runs,
        "litert_threads": num_threads,
        "savedmodel": {"accuracy": conv.accuracy(reference, label_array),
                       "latency_ms": saved["latency_ms"]},
        "variants": {}, "mediapipe": {}}
    float32_size = (release / conv.variant_file("float32")).stat().st_size
    for variant in VARIANTS:
        path = release / conv.variant_file(variant)
        result = _tflite(release, variant, texts, runs, num_threads)
        report["variants"][variant] = {
            "size_bytes": path.stat().st_size,
            "size_ratio_to_float32": path.stat().st_size / float32_size,
            "accuracy": conv.accuracy(result["probabilities"], label_array),
            **conv.agreement(reference, result["probabilities"]),
            "invoke_ms": result["invoke_ms"],
            "text_to_probability_ms": result["text_to_probability_ms"]}
    for variant in ("float32", "int8"):
        result = _mediapipe(release / conv.variant_file(variant), texts, runs)
        report["mediapipe"][variant] = result if isinstance(result, str) else {
            "accuracy": conv.accuracy(result["probabilities"], label_array),
            **conv.agreement(reference, result["probabilities"]),
            "latency_ms": result["latency_ms"]}
    return report


def _print(report: dict[str, Any]) -> None:
    saved = report["savedmodel"]
    print(f"version {report['version']}, {report['reviews']} official test reviews, "
          f"latency = median of {report['runs']} single-review calls")
    print(f"SavedModel serving_text: accuracy {saved['accuracy']:.4f}, "
          f"latency {saved['latency_ms']:.2f} ms")
    print(f"{'variant':14} {'size MB':>8} {'ratio':>6} {'accuracy':>8} {'agree':>7} "
          f"{'max|dp|':>8} {'invoke ms':>9} {'text->p ms':>10}")
    for name, v in report["variants"].items():
        print(f"{name:14} {v['size_bytes'] / 1e6:8.2f} {v['size_ratio_to_float32']:6.3f} "
              f"{v['accuracy']:8.4f} {v['label_agreement']:7.4f} {v['max_abs_diff']:8.4f} "
              f"{v['invoke_ms']:9.3f} {v['text_to_probability_ms']:10.3f}")
    for name, m in report["mediapipe"].items():
        if isinstance(m, str):
            print(f"MediaPipe {name}: {m}")
        else:
            print(f"MediaPipe TextClassifier {name}: accuracy {m['accuracy']:.4f}, agreement "
                  f"{m['label_agreement']:.4f}, max|dp| {m['max_abs_diff']:.4f}, "
                  f"latency {m['latency_ms']:.3f} ms")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="aclImdb/ or aclImdb_v1.tar.gz")
    parser.add_argument("--output_dir", default="output", help="a pipeline run's OUTPUT")
    parser.add_argument("--runs", type=int, default=1000, help="single-review latency samples")
    parser.add_argument("--limit", type=int, default=None, help="first N test reviews only")
    parser.add_argument("--num_threads", type=int, default=1, help="LiteRT threads")
    parser.add_argument("--json", default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    report = run(args.data, Path(args.output_dir), args.runs, args.limit, args.num_threads)
    _print(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
