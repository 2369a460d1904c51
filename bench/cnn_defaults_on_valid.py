"""Benchmark: the CNN's default hyper-parameters against alternatives, judged on `valid`.

Defaults must not be chosen by looking at the official test set. This runs
the real pipeline once per candidate into one output folder (ingestion and
Transform stay cached between candidates that share them) and compares the
candidates on the `valid` split only: the Trainer's best epoch by validation
loss (the weights early stopping restores), its valid accuracy and AUC, and
the wall time of the Trainer. The eval split's numbers are not read here.

    .venv/bin/python -m bench.cnn_defaults_on_valid --data=PATH --output_dir=DIR \
        [--candidates=defaults,no_bigrams,max_length_400,constant_lr]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

#: Candidate name -> flags on top of the defaults.
CANDIDATES: dict[str, list[str]] = {
    "defaults": [],
    "no_bigrams": ["--bigram_buckets=0"],
    "max_length_400": ["--max_length=400"],
    "constant_lr": ["--lr_schedule=constant"],
    "wider": ["--embedding_dim=128", "--filters=128"],
}


def _latest_history(output_dir: Path) -> dict[str, list[float]]:
    """history.json of the newest Trainer run recorded in ML Metadata."""
    from ml_metadata.metadata_store import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    from models.contract import HISTORY_FILE

    connection = metadata_store_pb2.ConnectionConfig()
    connection.sqlite.filename_uri = str(output_dir / "tfx" / "metadata.sqlite")
    store = metadata_store.MetadataStore(connection)
    runs = sorted(store.get_artifacts_by_type("ModelRun"), key=lambda a: a.id)
    return json.loads((Path(runs[-1].uri) / HISTORY_FILE).read_text())


def best_epoch(history: dict[str, list[float]]) -> dict[str, float]:
    """The epoch early stopping keeps (lowest val_loss) and its valid metrics."""
    losses = history["val_loss"]
    best = min(range(len(losses)), key=losses.__getitem__)
    return {"epoch": best + 1, "epochs_run": len(losses), "val_loss": losses[best],
            "val_accuracy": history["val_accuracy"][best], "val_auc": history["val_auc"][best]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--candidates", default=",".join(CANDIDATES))
    args = parser.parse_args(argv)
    names = args.candidates.split(",")
    unknown = sorted(set(names) - set(CANDIDATES))
    if unknown:
        parser.error(f"--candidates: unknown {unknown}; known: {', '.join(CANDIDATES)}")

    from pipeline import local_runner
    from pipeline.config import from_args

    results = {}
    for name in names:
        config = from_args([f"--data={args.data}", f"--output_dir={args.output_dir}",
                            *CANDIDATES[name]])
        started = time.monotonic()
        durations = local_runner.run(config)
        results[name] = {**best_epoch(_latest_history(Path(args.output_dir))),
                         "trainer_s": durations.get("Trainer", 0.0),
                         "run_s": time.monotonic() - started}
    baseline = results.get("defaults")
    print(f"\n{'candidate':<16} {'valid acc':>9} {'valid auc':>9} {'val loss':>8} "
          f"{'epoch':>7} {'trainer s':>9} {'Δacc vs defaults':>17}")
    for name, r in results.items():
        delta = f"{r['val_accuracy'] - baseline['val_accuracy']:+.4f}" if baseline else "-"
        print(f"{name:<16} {r['val_accuracy']:>9.4f} {r['val_auc']:>9.4f} {r['val_loss']:>8.4f} "
              f"{r['epoch']:>3}/{r['epochs_run']:<3} {r['trainer_s']:>9.0f} {delta:>17}")
    winner = max(results, key=lambda n: results[n]["val_accuracy"])
    print(f"\nbest on valid: {winner}")
    (Path(args.output_dir) / "cnn_defaults_on_valid.json").write_text(
        json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
