"""`create_pipeline(config)`: the one pipeline factory both runners use.

Pure: every path and knob comes from the PipelineConfig; nothing here knows
which runner will execute the result.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import tensorflow_model_analysis as tfma
from tensorflow_model_analysis.proto import config_pb2
from tfx import v1 as tfx
from tfx.dsl.components.base import executor_spec

from components import dedup_pusher
from components.anomalies_gate import AnomaliesGate
from components.imdb_example_gen.component import imdb_example_gen
from components.imdb_example_gen.executor import EVAL, TRAIN, UNSUP
from components.run_report import RunReport
from components.tflite_converter.component import TFLiteConverter
from models import features
from models.trainer import OUTPUT_KEY, SIGNATURE_EXAMPLES
from pipeline.config import EvalConfig, PipelineConfig

__all__ = ["create_pipeline", "eval_config", "SCHEMA_DIR", "PREPROCESSING_FN", "RUN_FN"]

REPO = Path(__file__).resolve().parent.parent
SCHEMA_DIR = REPO / "pipeline" / "schema"
PREPROCESSING_FN = "models.preprocessing.preprocessing_fn"
RUN_FN = "models.trainer.run_fn"
# The code behind each dotted path: its fingerprint joins the cache key, so an
# edited preprocessing_fn or model re-runs Transform or Trainer.
_TRANSFORM_CODE = ("models/preprocessing.py", "models/text.py", "models/features.py")
_TRAINER_CODE = ("models", "pipeline/config.py")


def code_fingerprint(paths: tuple[str, ...]) -> str:
    digest = hashlib.sha256()
    for rel in paths:
        target = REPO / rel
        for file in sorted(target.rglob("*.py")) if target.is_dir() else [target]:
            digest.update(str(file.relative_to(REPO)).encode())
            digest.update(file.read_bytes())
    return digest.hexdigest()[:16]


def eval_config(config: EvalConfig) -> tfma.EvalConfig:
    """Metrics, slices and the blessing thresholds of the Evaluator."""
    accuracy_threshold = tfma.MetricThreshold(
        value_threshold=tfma.GenericValueThreshold(lower_bound={"value": config.min_accuracy}),
        change_threshold=tfma.GenericChangeThreshold(
            direction=tfma.MetricDirection.HIGHER_IS_BETTER,
            absolute={"value": -config.max_accuracy_drop}))
    metrics = [
        tfma.MetricConfig(class_name="ExampleCount"),
        # Thresholds judge the overall slice only: per-rating slices (rating 4
        # or 7 reviews are hard) are reported, not gated.
        tfma.MetricConfig(class_name="BinaryAccuracy", per_slice_thresholds=[
            config_pb2.PerSliceMetricThreshold(slicing_specs=[tfma.SlicingSpec()],
                                         threshold=accuracy_threshold)]),
        tfma.MetricConfig(class_name="Precision"),
        tfma.MetricConfig(class_name="Recall"),
        tfma.MetricConfig(class_name="F1Score"),
        tfma.MetricConfig(class_name="AUC"),
        tfma.MetricConfig(class_name="ConfusionMatrixAtThresholds",
                          config=json.dumps({"thresholds": [0.5]})),
        tfma.MetricConfig(class_name="ConfusionMatrixPlot",
                          config=json.dumps({"num_thresholds": 100})),
    ]
    return tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(signature_name=SIGNATURE_EXAMPLES, label_key=features.LABEL,
                                    prediction_key=OUTPUT_KEY)],
        slicing_specs=[tfma.SlicingSpec(), tfma.SlicingSpec(feature_keys=[features.RATING])],
        metrics_specs=[tfma.MetricsSpec(metrics=metrics)],
    )


def create_pipeline(config: PipelineConfig) -> tfx.dsl.Pipeline:
    """ExampleGen -> stats/schema/validation -> Transform -> Trainer -> Evaluator
    -> Pusher -> TFLite -> report. `config.data.data` must be a resolved path."""
    source = config.data.data
    if not source or not Path(source).exists():
        raise ValueError(f"create_pipeline needs a resolved dataset path, got {source!r}")
    out = config.output_dir
    example_gen = imdb_example_gen(source, config.data.eval_fraction, config.data.include_unsup)
    labelled = [TRAIN, EVAL]
    statistics_gen = tfx.components.StatisticsGen(
        examples=example_gen.outputs["examples"], exclude_splits=[UNSUP])
    schema_gen = tfx.components.SchemaGen(
        statistics=statistics_gen.outputs["statistics"], infer_feature_shape=True)
    curated_schema = tfx.dsl.Importer(
        source_uri=str(SCHEMA_DIR), artifact_type=tfx.types.standard_artifacts.Schema,
    ).with_id("curated_schema")
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"],
        schema=curated_schema.outputs["result"], exclude_splits=[UNSUP])
    gate = AnomaliesGate(anomalies=example_validator.outputs["anomalies"],
                         schema=curated_schema.outputs["result"])
    transform_params = dataclasses.asdict(config.transform)
    transform = tfx.components.Transform(
        examples=example_gen.outputs["examples"],
        schema=gate.outputs["validated_schema"],
        preprocessing_fn=PREPROCESSING_FN,
        splits_config=tfx.proto.SplitsConfig(analyze=[TRAIN], transform=labelled),
        custom_config={**transform_params, "code": code_fingerprint(_TRANSFORM_CODE)},
        # Statistics of token ids say little that StatisticsGen did not; skipping
        # them saves two TFDV passes over the data.
        disable_statistics=True,
    )
    trainer = tfx.components.Trainer(
        run_fn=RUN_FN,
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        train_args=tfx.proto.TrainArgs(splits=[TRAIN]),
        eval_args=tfx.proto.EvalArgs(splits=[EVAL]),
        custom_config={"train": dataclasses.asdict(config.train), "transform": transform_params,
                       "code": code_fingerprint(_TRAINER_CODE)},
    )
    resolver = tfx.dsl.Resolver(
        strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
        model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
        model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
    ).with_id("latest_blessed_model_resolver")
    evaluator = tfx.components.Evaluator(
        examples=example_gen.outputs["examples"],
        model=trainer.outputs["model"],
        baseline_model=resolver.outputs["model"],
        example_splits=[EVAL],
        eval_config=eval_config(config.eval),
    )
    pusher = tfx.components.Pusher(
        model=trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(
                base_directory=str(out / "serving" / config.run.model_name))),
        custom_executor_spec=executor_spec.ExecutorClassSpec(dedup_pusher.Executor),
    )
    tflite = TFLiteConverter(
        model=trainer.outputs["model"], pushed_model=pusher.outputs["pushed_model"],
        transform_graph=transform.outputs["transform_graph"],
        examples=example_gen.outputs["examples"], output_dir=str(out / "tflite"),
        num_oov_buckets=config.transform.num_oov_buckets)
    report = RunReport(
        evaluation=evaluator.outputs["evaluation"], blessing=evaluator.outputs["blessing"],
        pushed_model=pusher.outputs["pushed_model"], model_run=trainer.outputs["model_run"],
        tflite=tflite.outputs["tflite"], output_dir=str(out),
        thresholds=json.dumps(dataclasses.asdict(config.eval)))
    return tfx.dsl.Pipeline(
        pipeline_name=config.run.pipeline_name,
        pipeline_root=str(out / "tfx" / "pipeline_root"),
        components=[example_gen, statistics_gen, schema_gen, curated_schema, example_validator,
                    gate, transform, trainer, resolver, evaluator, pusher, tflite, report],
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            str(out / "tfx" / "metadata.sqlite")),
        beam_pipeline_args=[f"--direct_running_mode={config.run.beam_mode}",
                            "--direct_num_workers=0" if config.run.beam_mode != "in_memory"
                            else "--direct_num_workers=1"],
        enable_cache=True,
    )
