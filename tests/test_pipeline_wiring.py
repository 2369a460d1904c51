"""The pipeline object built by the pure factory, inspected without running it."""

from __future__ import annotations

import dataclasses
import json

import pytest
from tfx import v1 as tfx

from components.tflite_converter.component import CHECK_SPLIT
from models import contract
from models.config import (
    PRETRAIN_REGULARISATION,
    PRETRAIN_TRAIN_FIELDS,
    PretrainConfig,
    TrainConfig,
)
from pipeline.config import DataConfig, PipelineConfig, RunConfig
from pipeline.fingerprints import CodeVersions
from pipeline.pipeline import create_pipeline

COMPONENTS = ["ImdbExampleGen", "StatisticsGen", "SchemaGen", "curated_schema", "ExampleValidator",
         "AnomaliesGate", "Transform", "Trainer", "ServedBaseline", "Evaluator", "TFLiteCheck",
         "InfraValidation", "Release"]
#: The only components that may read ExampleGen's output (which holds `eval`),
#: and the splits each of them is allowed to read.
EXAMPLE_READERS = {"StatisticsGen", "Transform", "Evaluator", "TFLiteCheck", "InfraValidation"}


def _pipeline(**sections):  # type: ignore[no-untyped-def]
    """Paths that do not exist anywhere: building the pipeline must not look."""
    config = PipelineConfig(
        data=DataConfig(data="/nonexistent/aclImdb", schema_dir="/nonexistent/schema"),
        run=RunConfig(output_dir="/nonexistent/out"), **sections)
    return create_pipeline(
        config,
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            "/nonexistent/mlmd.sqlite"),
        beam_pipeline_args=["--runner=DirectRunner"],
        code_versions=CodeVersions(ingest="i", transform="t", trainer="m", tflite="l",
                                   schema="s"),
        run_token="token")


@pytest.fixture(scope="module")
def pipeline():
    return _pipeline()


def _by_id(pipeline):
    return {c.id: c for c in pipeline.components}


def _producers(component) -> dict[str, tuple[str, str]]:
    return {key: (channel.producer_component_id, channel.output_key)
            for key, channel in component.inputs.items()}


def test_every_component_is_there_and_the_release_step_runs_last(pipeline):
    ids = [c.id for c in pipeline.components]  # topologically sorted by TFX
    assert sorted(ids) == sorted(COMPONENTS)
    assert ids[-1] == "Release"
    assert {u.id for u in pipeline.components[-1].upstream_nodes} >= {
        "Evaluator", "TFLiteCheck", "InfraValidation", "ServedBaseline", "Trainer"}
    assert pipeline.pipeline_info.pipeline_root == "/nonexistent/out/tfx/pipeline_root"
    assert pipeline.beam_pipeline_args == ["--runner=DirectRunner"]


def test_each_component_takes_its_inputs_from_the_right_step(pipeline):
    c = _by_id(pipeline)
    assert _producers(c["Transform"]) == {
        "examples": ("ImdbExampleGen", "examples"), "schema": ("AnomaliesGate", "validated_schema")}
    assert _producers(c["Trainer"]) == {
        "examples": ("Transform", "transformed_examples"),
        "transform_graph": ("Transform", "transform_graph")}
    assert _producers(c["Evaluator"]) == {
        "examples": ("ImdbExampleGen", "examples"), "model": ("Trainer", "model"),
        "baseline_model": ("ServedBaseline", "baseline")}
    assert _producers(c["Release"]) == {
        "model": ("Trainer", "model"), "blessing": ("Evaluator", "blessing"),
        "evaluation": ("Evaluator", "evaluation"), "baseline": ("ServedBaseline", "baseline"),
        "tflite": ("TFLiteCheck", "tflite"), "infra_blessing": ("InfraValidation", "blessing"),
        "model_run": ("Trainer", "model_run")}


def test_the_eval_split_reaches_the_evaluator_only(pipeline):
    """Official test reviews are read by statistics/validation and the
    Evaluator; Transform transforms train and valid only, so the Trainer
    cannot see eval; the TFLite check reads valid."""
    c = _by_id(pipeline)
    readers = {cid for cid, comp in c.items()
               if ("ImdbExampleGen", "examples") in _producers(comp).values()}
    assert readers == EXAMPLE_READERS
    splits = json.loads(c["Transform"].exec_properties["splits_config"])
    assert splits == {"analyze": [contract.TRAIN], "transform": [contract.TRAIN, contract.VALID]}
    trainer = c["Trainer"].exec_properties
    assert json.loads(trainer["train_args"])["splits"] == [contract.TRAIN]
    assert json.loads(trainer["eval_args"])["splits"] == [contract.VALID]
    assert json.loads(c["Evaluator"].exec_properties["example_splits"]) == [contract.EVAL]
    assert CHECK_SPLIT == contract.VALID


def test_pretraining_adds_a_pretrainer_on_unsup_and_train_that_feeds_the_trainer():
    """--pretrain: ExampleGen ingests unsup, Transform transforms it (the
    vocabulary is still analysed on train), the Pretrainer reads unsup and
    train only, and the Trainer starts from its model (lineage in MLMD)."""
    c = _by_id(_pipeline(train=TrainConfig(model="transformer"),
                         pretrain=PretrainConfig(pretrain=True)))
    assert set(c) == {*COMPONENTS, "Pretrainer"}
    inputs = json.loads(c["ImdbExampleGen"].exec_properties["input_config"])
    assert contract.UNSUP in [split["name"] for split in inputs["splits"]]
    splits = json.loads(c["Transform"].exec_properties["splits_config"])
    assert splits == {"analyze": [contract.TRAIN],
                      "transform": [contract.TRAIN, contract.VALID, contract.UNSUP]}
    pretrainer = c["Pretrainer"].exec_properties
    assert json.loads(pretrainer["train_args"])["splits"] == [contract.UNSUP, contract.TRAIN]
    assert json.loads(pretrainer["eval_args"])["splits"] == [contract.UNSUP]
    assert json.loads(pretrainer["custom_config"])["pretrain"]["pretrain"] is True
    assert _producers(c["Trainer"])["base_model"] == ("Pretrainer", "model")
    assert json.loads(c["Trainer"].exec_properties["train_args"])["splits"] == [contract.TRAIN]


def test_fine_tuning_flags_leave_the_pretrainer_cached_and_encoder_flags_do_not():
    """The Pretrainer's cache key (its custom_config) holds only what
    pre-training reads: changing how the classifier is fine-tuned, its
    regularisation included, reuses the pre-trained encoder; changing the
    encoder's shape or pre-training's own regularisation pre-trains anew."""
    def pretrainer_config(pretrain: dict | None = None, **train: object) -> dict:
        c = _by_id(_pipeline(train=TrainConfig(model="transformer", **train),
                             pretrain=PretrainConfig(pretrain=True, **(pretrain or {}))))
        return json.loads(c["Pretrainer"].exec_properties["custom_config"])

    base = pretrainer_config()
    fine_tuned = pretrainer_config(learning_rate=3e-4, epochs=2, warmup_fraction=0.1,
                                   layer_lr_decay=0.8, gradual_unfreezing=True, batch_size=32,
                                   dropout=0.0, weight_decay=0.0, clipnorm=0.0)
    assert fine_tuned == base
    assert pretrainer_config(num_layers=3) != base
    assert pretrainer_config(seed=7) != base
    assert set(PRETRAIN_TRAIN_FIELDS) <= set(base["train"])
    for source, target in PRETRAIN_REGULARISATION.items():
        changed = pretrainer_config(pretrain={source: 0.0})
        assert changed["train"][target] == 0.0 != base["train"][target]
        assert source not in changed["pretrain"]


@pytest.mark.parametrize(("model", "tokenizer", "int8"), [
    ("cnn", "words", 1), ("transformer", "words", 0), ("minilm", "wordpiece", 0)])
def test_the_tflite_check_ships_the_tokenizer_transform_applies(model, tokenizer, int8):
    """The phone must tokenise as Transform does: TFLiteCheck is told the
    model's tokenizer (its vocabulary, tokenizer.json and metadata follow),
    and whether the model ships an int8 variant (the CNN only)."""
    c = _by_id(_pipeline(train=TrainConfig(model=model)))
    assert json.loads(c["Transform"].exec_properties["custom_config"])["tokenizer"] == tokenizer
    assert c["TFLiteCheck"].exec_properties["tokenizer"] == tokenizer
    assert c["TFLiteCheck"].exec_properties["int8"] == int8


def test_code_and_schema_fingerprints_join_the_cache_keys(pipeline):
    c = _by_id(pipeline)
    assert json.loads(c["Transform"].exec_properties["custom_config"])["code"] == "t"
    assert json.loads(c["Trainer"].exec_properties["custom_config"])["code"] == "m"
    assert c["TFLiteCheck"].exec_properties["code_version"] == "l"
    assert c["curated_schema"].outputs["result"].additional_custom_properties == {
        "fingerprint": "s"}
    assert c["curated_schema"].exec_properties["artifact_uri"] == "/nonexistent/schema"


def test_steps_that_read_the_published_release_get_the_run_token(pipeline):
    c = _by_id(pipeline)
    assert c["ServedBaseline"].exec_properties["run_token"] == "token"
    assert c["Release"].exec_properties["run_token"] == "token"
    assert c["ServedBaseline"].exec_properties["serving_dir"] == \
        "/nonexistent/out/serving/imdb_sentiment"


def test_an_unresolved_config_is_refused():
    config = dataclasses.replace(PipelineConfig(), data=DataConfig(data=None))
    with pytest.raises(ValueError, match="runner resolves"):
        create_pipeline(config, metadata_connection_config=None, beam_pipeline_args=[])


def test_runtime_inputs_replace_exactly_the_exec_properties_they_name():
    """What the Kubeflow runner hands over as run-time parameters; the local
    runner passes none, so its exec properties are the config's (tests above)."""
    from kfp.pipeline_spec import pipeline_spec_pb2

    from pipeline.pipeline import RuntimeInputs

    resources = pipeline_spec_pb2.PipelineDeploymentConfig.PipelineContainerSpec.ResourceSpec(
        cpu_limit=4)
    train = tfx.dsl.experimental.RuntimeParameter(name="train_config", ptype=str, default="{}")
    runtime = RuntimeInputs(data_root="DATA", train_config=train, eval_config="{}",
                            thresholds="THRESHOLDS", trainer_platform_config=resources)
    config = PipelineConfig(
        data=DataConfig(data="/nonexistent/aclImdb_v1.tar.gz", schema_dir="/nonexistent/s"),
        run=RunConfig(output_dir="/nonexistent/out"))
    c = _by_id(create_pipeline(config, metadata_connection_config=None, beam_pipeline_args=[],
                               runtime=runtime))
    assert c["ImdbExampleGen"].exec_properties["input_base"] == "DATA"
    assert json.loads(c["ImdbExampleGen"].exec_properties["input_config"])["splits"][0][
        "pattern"] == "aclImdb_v1.tar.gz"
    assert c["Trainer"].exec_properties["custom_config"] is train
    assert c["Trainer"].platform_config == resources
    assert c["Evaluator"].exec_properties["eval_config"] == "{}"
    assert c["Release"].exec_properties["thresholds"] == "THRESHOLDS"
    assert c["Transform"].platform_config is None
