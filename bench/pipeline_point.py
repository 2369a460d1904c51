"""A pipeline run as one model of the side-by-side table: an `--extra` file.

`bench.ngram_baselines` tables and plots the n-gram baselines beside other
models read from `--extra` files. This writes that file for a `make run`
output folder, from what the run recorded in ML Metadata: accuracy and F1
on the official test slice from the Evaluator's evaluation of the newest
trained model (also when a later check stopped the release), the train
wall time (the newest Trainer and Pretrainer executions that ran, not
cached: the whole component, pre-training and the NB-LR blend included),
and the `valid` figures the Trainer wrote (history.json, and blend.json
when the model blends with NB-LR).

    .venv/bin/python -m bench.pipeline_point --output_dir=OUTPUT --name=NAME \
        [--out=FILE.json]
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from components.errors import UserFacingError
from pipeline.config import OneLineParser

__all__ = ["train_seconds", "latest_history", "test_metrics", "best_valid", "point", "main"]

PROG = "bench.pipeline_point"
#: The node ids whose wall time is the model's training time.
TRAINING_NODES = ("Pretrainer", "Trainer")


@dataclass(frozen=True)
class _Record:
    """What ML Metadata says about a run folder, read once: the store, the
    newest execution that ran (not cached) of each node id, and the Trainer's."""

    output_dir: Path
    store: Any
    newest: dict[str, Any]

    @property
    def trainer(self) -> Any:
        return self.newest["Trainer"]


def _record(output_dir: Path) -> _Record:
    from ml_metadata.metadata_store import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    path = output_dir / "tfx" / "metadata.sqlite"
    if not path.is_file():
        raise UserFacingError(f"{output_dir}: no ML Metadata store at {path} (not a run folder)")
    connection = metadata_store_pb2.ConnectionConfig()
    connection.sqlite.filename_uri = str(path)
    store = metadata_store.MetadataStore(connection)
    newest = _newest_runs(store, metadata_store_pb2.Execution.COMPLETE)
    if "Trainer" not in newest:
        raise UserFacingError(f"{output_dir}: ML Metadata records no completed Trainer run")
    return _Record(output_dir, store, newest)


def _node(store: Any, execution: Any) -> str:
    """The pipeline node id of an execution (its node context is `<pipeline>.<id>`)."""
    names = [c.name for c in store.get_contexts_by_execution(execution.id)]
    return next((n.rsplit(".", 1)[1] for n in names if "." in n and ":" not in n), "")


def _newest_runs(store: Any, complete: int) -> dict[str, Any]:
    """The newest execution that ran of each node id (state COMPLETE; a cached
    one is CACHED)."""
    newest: dict[str, Any] = {}
    for execution in store.get_executions():
        node = _node(store, execution)
        ran = execution.last_known_state == complete
        if ran and (node not in newest or execution.id > newest[node].id):
            newest[node] = execution
    return newest


def _artifacts(store: Any, execution: Any, event_type: int, type_name: str) -> list[Any]:
    ids = [e.artifact_id for e in store.get_events_by_execution_ids([execution.id])
           if e.type == event_type]
    types = {t.id: t.name for t in store.get_artifact_types()}
    return [a for a in store.get_artifacts_by_id(ids) if types[a.type_id] == type_name]


def _train_seconds(record: _Record) -> dict[str, float]:
    return {node: (e.last_update_time_since_epoch - e.create_time_since_epoch) / 1000
            for node, e in record.newest.items() if node in TRAINING_NODES}


def train_seconds(output_dir: Path) -> dict[str, float]:
    """Wall time (s) of the newest completed execution of each training node."""
    return _train_seconds(_record(output_dir))


def _history(record: _Record) -> tuple[dict[str, list[float]], Path]:
    from ml_metadata.proto import metadata_store_pb2

    from models.contract import HISTORY_FILE

    [run] = _artifacts(record.store, record.trainer, metadata_store_pb2.Event.OUTPUT,
                       "ModelRun")
    folder = Path(run.uri)
    return json.loads((folder / HISTORY_FILE).read_text()), folder


def latest_history(output_dir: Path) -> tuple[dict[str, list[float]], Path]:
    """history.json of the newest Trainer run recorded in ML Metadata, and its folder."""
    return _history(_record(output_dir))


def _test_metrics(record: _Record) -> dict[str, Any]:
    from ml_metadata.proto import metadata_store_pb2

    from components.release.report import collect_metrics

    store, event = record.store, metadata_store_pb2.Event
    [model] = _artifacts(store, record.trainer, event.OUTPUT, "Model")
    evaluator = record.newest.get("Evaluator")
    evaluated = evaluator is not None and model.id in {
        a.id for a in _artifacts(store, evaluator, event.INPUT, "Model")}
    if not evaluated:
        raise UserFacingError(f"{record.output_dir}: the newest trained model has no "
                              "evaluation (the run stopped before the Evaluator)")
    [evaluation] = _artifacts(store, evaluator, event.OUTPUT, "ModelEvaluation")
    return collect_metrics(evaluation.uri)["overall"]


def test_metrics(output_dir: Path) -> dict[str, Any]:
    """The Evaluator's overall metrics (the official test slice) of the model
    the newest Trainer run produced: read from its evaluation, so a run that
    stopped after the Evaluator (a failed TFLite check, say) still counts."""
    return _test_metrics(_record(output_dir))


def best_valid(history: dict[str, list[float]]) -> dict[str, float]:
    """The epoch early stopping keeps (lowest val_loss) and its valid metrics."""
    losses = history["val_loss"]
    best = min(range(len(losses)), key=losses.__getitem__)
    return {"epoch": best + 1, "epochs_run": len(losses), "val_loss": losses[best],
            "val_accuracy": history["val_accuracy"][best], "val_auc": history["val_auc"][best]}


def point(output_dir: Path, name: str) -> dict[str, Any]:
    """The run as an `--extra` object, with its valid figures and timings beside."""
    record = _record(output_dir)
    overall = _test_metrics(record)
    verdict_path = output_dir / "last_run.json"
    status = json.loads(verdict_path.read_text()).get("status") if verdict_path.is_file() \
        else None
    seconds = _train_seconds(record)
    history, folder = _history(record)
    blend_path = folder / "blend.json"
    return {"name": name, "accuracy": overall["binary_accuracy"], "f1": overall["f1_score"],
            "auc": overall.get("auc"), "train_seconds": sum(seconds.values()),
            "component_seconds": seconds, "valid": best_valid(history),
            "blend": json.loads(blend_path.read_text()) if blend_path.is_file() else None,
            "run_status": status, "source": str(output_dir)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = OneLineParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--output_dir", required=True, type=Path, help="a make run OUTPUT")
    parser.add_argument("--name", required=True, help="the model's name in the table")
    parser.add_argument("--out", type=Path, help="the --extra file (default: stdout only)")
    args = parser.parse_args(argv)
    try:
        result = point(args.output_dir.resolve(), args.name)
    except UserFacingError as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return 1
    text = json.dumps(result, indent=2) + "\n"
    if args.out:
        args.out.write_text(text, encoding="utf-8")
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
