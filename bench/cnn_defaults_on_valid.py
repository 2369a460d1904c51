"""Benchmark: the CNN's default hyper-parameters against alternatives, judged on `valid`.

Defaults must not be chosen by looking at the official test set. This runs
the real pipeline once per candidate and seed into one output folder
(ingestion and Transform stay cached between candidates that share them) and
compares the candidates on the `valid` split only: the Trainer's best epoch
by validation loss (the weights early stopping restores), its valid accuracy
and AUC (mean and spread over the seeds), and the wall time of the Trainer.

Only after the choice is made does it report the chosen candidate's accuracy
on the official test slice (`eval`), once, as the held-out figure: the other
candidates' test numbers are never printed.

    .venv/bin/python -m bench.cnn_defaults_on_valid --data=PATH --output_dir=DIR \
        [--candidates=defaults,no_bigrams,max_length_400,constant_lr] [--seeds=42,43,44]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from bench.pipeline_point import best_valid, latest_history

#: Candidate name -> flags on top of the defaults.
CANDIDATES: dict[str, list[str]] = {
    "defaults": [],
    "no_bigrams": ["--bigram_buckets=0"],
    "max_length_400": ["--max_length=400"],
    "constant_lr": ["--lr_schedule=constant"],
    "wider": ["--embedding_dim=128", "--filters=128"],
    # The transformer from scratch and fine-tuned from masked-LM pre-training
    # on unsup + train, with BERT's dropout (0.1; the CNN's 0.5 is far more
    # than attention layers take) and a warm-up, as fine-tuning wants.
    "transformer": ["--model=transformer", "--dropout=0.1", "--warmup_fraction=0.05"],
    "transformer_pretrained": ["--model=transformer", "--pretrain=true", "--dropout=0.1",
                               "--warmup_fraction=0.05"],
}


def _eval_accuracy(output_dir: Path) -> float:
    """The candidate's accuracy on `eval` from the run's verdict file (read
    for the final report only, never for the choice)."""
    verdict = json.loads((output_dir / "last_run.json").read_text())
    return float(verdict["metrics"]["overall"]["binary_accuracy"])


def _spread(values: list[float]) -> str:
    mean = statistics.fmean(values)
    return f"{mean:.4f}" if len(values) < 2 else f"{mean:.4f}±{statistics.stdev(values):.4f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--candidates", default=",".join(CANDIDATES))
    parser.add_argument("--seeds", default="42", help="comma-separated training seeds")
    args = parser.parse_args(argv)
    names = args.candidates.split(",")
    unknown = sorted(set(names) - set(CANDIDATES))
    if unknown:
        parser.error(f"--candidates: unknown {unknown}; known: {', '.join(CANDIDATES)}")
    try:
        seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        parser.error(f"--seeds: expected comma-separated integers, got {args.seeds!r}")

    from pipeline import local_runner
    from pipeline.config import from_args

    output_dir = Path(args.output_dir)
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    held_out: dict[str, list[float]] = {name: [] for name in names}
    for name in names:
        for seed in seeds:
            config = from_args([f"--data={args.data}", f"--output_dir={output_dir}",
                                f"--seed={seed}", *CANDIDATES[name]])
            started = time.monotonic()
            durations = local_runner.run(config)
            runs[name].append({**best_valid(latest_history(output_dir)[0]), "seed": seed,
                               "trainer_s": durations.get("Trainer", 0.0),
                               "run_s": time.monotonic() - started})
            held_out[name].append(_eval_accuracy(output_dir))
    accuracy = {n: [r["val_accuracy"] for r in rs] for n, rs in runs.items()}
    baseline = statistics.fmean(accuracy["defaults"]) if "defaults" in accuracy else None
    print(f"\nvalid, over seeds {seeds}:")
    print(f"{'candidate':<16} {'valid acc':>15} {'valid auc':>15} {'epochs':>8} "
          f"{'trainer s':>9} {'Δacc vs defaults':>17}")
    for name, rs in runs.items():
        mean = statistics.fmean(accuracy[name])
        delta = f"{mean - baseline:+.4f}" if baseline is not None else "-"
        print(f"{name:<16} {_spread(accuracy[name]):>15} "
              f"{_spread([r['val_auc'] for r in rs]):>15} "
              f"{'/'.join(str(int(r['epoch'])) for r in rs):>8} "
              f"{statistics.fmean(r['trainer_s'] for r in rs):>9.0f} {delta:>17}")
    winner = max(runs, key=lambda n: statistics.fmean(accuracy[n]))
    print(f"\nbest on valid: {winner}")
    print(f"held-out (official test slice, reported once, for {winner} only): accuracy "
          f"{_spread(held_out[winner])} over seeds {seeds} "
          f"({', '.join(f'{a:.4f}' for a in held_out[winner])})")
    (output_dir / "cnn_defaults_on_valid.json").write_text(json.dumps(
        {"seeds": seeds, "valid": runs, "chosen": winner,
         "eval_accuracy_of_chosen": held_out[winner]}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
