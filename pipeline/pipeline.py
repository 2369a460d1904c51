"""`create_pipeline(config, ...)`: the one pipeline factory both runners use.

Pure: no file system access, no path resolution, no runner defaults. Every
path and knob comes from the PipelineConfig (paths already resolved by the
runner), the ML Metadata connection and Beam arguments from the runner, and
the code fingerprints that make caches notice edits from `code_versions()`.
"""

from __future__ import annotations

import dataclasses
import json
import posixpath
from collections.abc import Sequence
from typing import Any

import tensorflow_model_analysis as tfma
from tensorflow_model_analysis.proto import config_pb2
from tfx import v1 as tfx

from components.anomalies_gate import AnomaliesGate
from components.imdb_example_gen.component import imdb_example_gen
from components.infra_validation import InfraValidation
from components.release.component import Release, ServedBaseline
from components.release.layout import serving_dir
from components.tflite_converter.component import TFLiteCheck
from components.tflite_converter.convert import VARIANTS
from models import contract, features
from models.config import INT8_TFLITE, TOKENIZERS, for_pretraining, pretraining_settings
from pipeline.config import CheckConfig, EvalConfig, PipelineConfig
from pipeline.fingerprints import CodeVersions

__all__ = ["PREPROCESSING_FN", "PRETRAIN_FN", "RUN_FN", "RuntimeInputs", "create_pipeline",
           "eval_config", "release_thresholds", "tflite_tolerances", "trainer_custom_config"]

_UNFINGERPRINTED = CodeVersions()
PREPROCESSING_FN = "models.preprocessing.preprocessing_fn"
RUN_FN = "models.trainer.run_fn"
PRETRAIN_FN = "models.pretraining.run_fn"
#: Loads the models with TF Text's ops registered (WordPiece models need them).
EVALUATOR_MODULE = "models.evaluation"


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
        model_specs=[tfma.ModelSpec(signature_name=contract.SIGNATURE_EXAMPLES,
                                    label_key=features.LABEL,
                                    prediction_key=contract.OUTPUT_KEY)],
        slicing_specs=[tfma.SlicingSpec(), tfma.SlicingSpec(feature_keys=[features.RATING])],
        metrics_specs=[tfma.MetricsSpec(metrics=metrics)],
    )


def trainer_custom_config(config: PipelineConfig, code_versions: CodeVersions) -> dict[str, Any]:
    """The Trainer's custom_config: what `run_fn` reads (and its cache key)."""
    return {"train": dataclasses.asdict(config.train),
            "transform": dataclasses.asdict(config.transform), "code": code_versions.trainer}


def release_thresholds(config: EvalConfig) -> str:
    """The blessing thresholds as the Release step reports them (JSON)."""
    return json.dumps(dataclasses.asdict(config))


@dataclasses.dataclass(frozen=True)
class RuntimeInputs:
    """Exec properties a runner supplies as values given at run time (Kubeflow
    RuntimeParameters) instead of the config's values; None keeps the config's.

    `data_root` replaces ImdbExampleGen's input_base (the aclImdb/ folder, or
    the folder holding the archive); `train_config` the Trainer's
    custom_config (JSON of `trainer_custom_config`); `eval_config` the
    Evaluator's (JSON of the tfma.EvalConfig, thresholds included);
    `thresholds` the Release step's report of them (`release_thresholds`);
    `trainer_platform_config` goes to `Trainer.with_platform_config` (a KFP
    ResourceSpec: CPU, memory, GPUs).
    """

    data_root: Any = None
    train_config: Any = None
    eval_config: Any = None
    thresholds: Any = None
    trainer_platform_config: Any = None


_COMPILED = RuntimeInputs()


def _or(value: Any, default: Any) -> Any:
    return default if value is None else value


def tflite_tolerances(config: CheckConfig) -> dict[str, dict[str, float]]:
    """{variant: {max_abs_diff?, min_agreement?, probe_max_abs_diff?}}: the `<variant>_*` config
    fields that are set, overriding the variants' defaults."""
    overrides: dict[str, dict[str, float]] = {}
    for variant in VARIANTS:
        for limit in ("max_abs_diff", "min_agreement", "probe_max_abs_diff"):
            value = getattr(config, f"{variant.name}_{limit}")
            if value is not None:
                overrides.setdefault(variant.name, {})[limit] = value
    return overrides


def _transformed_splits(config: PipelineConfig) -> list[str]:
    """train and valid; plus unsup when the encoder is pre-trained on it."""
    extra = [contract.UNSUP] if config.pretrain.pretrain else []
    return [*contract.TRAINER_SPLITS, *extra]


def create_pipeline(
    config: PipelineConfig, *,
    metadata_connection_config: Any,
    beam_pipeline_args: Sequence[str],
    code_versions: CodeVersions = _UNFINGERPRINTED,
    run_token: Any = "",
    runtime: RuntimeInputs = _COMPILED,
) -> tfx.dsl.Pipeline:
    """ExampleGen -> statistics, schema, validation -> Transform -> [Pretrainer]
    -> Trainer -> served baseline + Evaluator, TFLite check, infra validation -> Release.

    `config.data.data` is the dataset (aclImdb/ folder or archive),
    `config.data.schema_dir` the curated schema folder and
    `config.run.output_dir` an absolute path or URI: the runner resolves
    them. `run_token` differs per run and keeps the steps that look at the
    published release (served baseline, release) out of the cache. `runtime`
    lets a runner hand some exec properties over as run-time values.
    """
    if not config.data.data or not config.data.schema_dir:
        raise ValueError("create_pipeline needs resolved config.data.data and "
                         "config.data.schema_dir (the runner resolves them)")
    out = config.run.output_dir.rstrip("/")
    example_gen = imdb_example_gen(
        config.data.data, valid_fraction=config.data.valid_fraction,
        eval_fraction=config.data.eval_fraction,
        include_unsup=config.data.include_unsup or config.pretrain.pretrain,
        code_version=code_versions.ingest, input_base=runtime.data_root)
    examples = example_gen.outputs["examples"]
    statistics_gen = tfx.components.StatisticsGen(
        examples=examples, exclude_splits=[contract.UNSUP])
    schema_gen = tfx.components.SchemaGen(
        statistics=statistics_gen.outputs["statistics"], infer_feature_shape=True)
    # The schema's fingerprint makes an edited schema a new artifact (the
    # Importer reuses an artifact only when URI and properties match), so
    # validation and everything after it re-run.
    curated_schema = tfx.dsl.Importer(
        source_uri=config.data.schema_dir, artifact_type=tfx.types.standard_artifacts.Schema,
        custom_properties={"fingerprint": code_versions.schema},
    ).with_id("curated_schema")
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"],
        schema=curated_schema.outputs["result"], exclude_splits=[contract.UNSUP])
    gate = AnomaliesGate(anomalies=example_validator.outputs["anomalies"],
                         schema=curated_schema.outputs["result"])
    transform_params = dataclasses.asdict(config.transform)
    transform = tfx.components.Transform(
        examples=examples,
        schema=gate.outputs["validated_schema"],
        preprocessing_fn=PREPROCESSING_FN,
        # eval is never transformed: the Evaluator feeds raw eval examples to
        # the exported model, and nothing on the training side may see them.
        splits_config=tfx.proto.SplitsConfig(analyze=[contract.TRAIN],
                                             transform=_transformed_splits(config)),
        custom_config={**transform_params, "tokenizer": TOKENIZERS[config.train.model],
                       "code": code_versions.transform},
        # Statistics of token ids say little that StatisticsGen did not; skipping
        # them saves two TFDV passes over the data.
        disable_statistics=True,
    )
    pretrainer = None
    if config.pretrain.pretrain:
        pretrainer = tfx.components.Trainer(
            run_fn=PRETRAIN_FN,
            examples=transform.outputs["transformed_examples"],
            transform_graph=transform.outputs["transform_graph"],
            train_args=tfx.proto.TrainArgs(splits=list(contract.PRETRAIN_SPLITS)),
            # Unused: the masked-LM loss is watched on a hashed share of the
            # training reviews. Named so that no labelled split is handed over.
            eval_args=tfx.proto.EvalArgs(splits=[contract.UNSUP]),
            # Only what pre-training reads: fine-tuning flags keep it cached.
            custom_config={**trainer_custom_config(config, code_versions),
                           "train": dataclasses.asdict(for_pretraining(config.train,
                                                                       config.pretrain)),
                           "pretrain": pretraining_settings(config.pretrain)},
        ).with_id("Pretrainer")
    trainer = tfx.components.Trainer(
        run_fn=RUN_FN,
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        base_model=pretrainer.outputs["model"] if pretrainer else None,
        train_args=tfx.proto.TrainArgs(splits=[contract.TRAIN]),
        eval_args=tfx.proto.EvalArgs(splits=[contract.VALID]),
        custom_config=_or(runtime.train_config, trainer_custom_config(config, code_versions)),
    )
    if runtime.trainer_platform_config is not None:
        trainer.with_platform_config(runtime.trainer_platform_config)
    model = trainer.outputs["model"]
    served = ServedBaseline(model=model, serving_dir=serving_dir(out, config.run.model_name),
                            run_token=run_token)
    evaluator = tfx.components.Evaluator(
        examples=examples,
        model=model,
        baseline_model=served.outputs["baseline"],
        example_splits=[contract.EVAL],
        eval_config=_or(runtime.eval_config, eval_config(config.eval)),
        module_path=EVALUATOR_MODULE,
    )
    tflite = TFLiteCheck(
        model=model, transform_graph=transform.outputs["transform_graph"], examples=examples,
        tolerances=json.dumps(tflite_tolerances(config.checks), sort_keys=True),
        num_oov_buckets=config.transform.num_oov_buckets,
        check_examples=config.checks.tflite_check_examples, code_version=code_versions.tflite,
        tokenizer=TOKENIZERS[config.train.model], int8=int(INT8_TFLITE[config.train.model]))
    infra = InfraValidation(model=model, examples=examples, model_name=config.run.model_name)
    release = Release(
        model=model, blessing=evaluator.outputs["blessing"],
        evaluation=evaluator.outputs["evaluation"], baseline=served.outputs["baseline"],
        tflite=tflite.outputs["tflite"], infra_blessing=infra.outputs["blessing"],
        model_run=trainer.outputs["model_run"],
        output_dir=out, model_name=config.run.model_name,
        thresholds=_or(runtime.thresholds, release_thresholds(config.eval)),
        run_token=run_token)
    return tfx.dsl.Pipeline(
        pipeline_name=config.run.pipeline_name,
        pipeline_root=posixpath.join(out, "tfx", "pipeline_root"),
        components=[example_gen, statistics_gen, schema_gen, curated_schema, example_validator,
                    gate, transform, *([pretrainer] if pretrainer else []), trainer, served,
                    evaluator, tflite, infra, release],
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=list(beam_pipeline_args),
        enable_cache=True,
    )
