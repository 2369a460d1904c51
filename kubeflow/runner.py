"""Compiles the pipeline for Kubeflow Pipelines v2, and submits runs of it.

    python -m kubeflow.runner compile --output imdb.yaml --output_dir=gs://B/imdb \\
        --data=gs://B/aclImdb_v1.tar.gz --image=REGISTRY/imdb-sentiment-tfx:TAG [flags]
    python -m kubeflow.runner submit --host=http://localhost:8080 [same flags]

The pipeline is `create_pipeline(...)`, the factory the local runner uses.
This module only decides what differs on a cluster: shared storage for every
path, the project image on every executor, Beam arguments for a distributed
runner, the Trainer's resources, and which exec properties are run-time
parameters (so a run changes them without recompiling).

`.yaml` output is the KFP package (pipeline spec, then the Kubernetes
platform spec with the Trainer's node selector and tolerations), what
`kfp.Client` uploads; `.json` output is TFX's PipelineJob, what Vertex AI's
`PipelineJob(template_path=...)` takes.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import posixpath
import sys
import time
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kubeflow.config import (
    KFP_NAME,
    KubeflowConfig,
    SubmitConfig,
    is_shared_storage,
    kfp_name,
    node_selector,
    tolerations,
)
from pipeline.config import PipelineConfig

__all__ = ["NOT_CACHED", "PARAMETERS", "CompiledSpec", "compile_spec", "main",
           "resolve_config", "runtime_values", "stage_schema", "submit", "write_spec"]

#: The run-time parameters of the spec, each with what it replaces.
PARAMETERS = {
    "data_root": "ImdbExampleGen's input_base: the aclImdb/ folder, or the folder holding "
                 "the archive named at compile time",
    "train_config": "the Trainer's custom_config (JSON: model, epochs, learning_rate, ...)",
    "eval_config": "the Evaluator's tfma.EvalConfig (JSON, with the blessing thresholds)",
    "release_thresholds": "the thresholds the Release step reports (JSON)",
}
#: Steps that read the published serving folder, which no cache key sees:
#: they run every time (on KFP, caching is turned off for them in the spec;
#: the local runner passes a per-run token instead).
NOT_CACHED = ("ServedBaseline", "Release")
_BEAM_COMPONENTS = ("ImdbExampleGen", "StatisticsGen", "Transform", "Evaluator")


def _data_root(data: str) -> str:
    from components.imdb_example_gen.component import input_splits

    return input_splits(data, include_unsup=False)[0]


def runtime_values(config: PipelineConfig, code_trainer: str) -> dict[str, str]:
    """The value of every run-time parameter for `config`: the compiled
    defaults, and what `submit` sends so flags given at submission win."""
    from google.protobuf import json_format

    from pipeline.fingerprints import CodeVersions
    from pipeline.pipeline import eval_config, release_thresholds, trainer_custom_config

    assert config.data.data
    return {
        "data_root": _data_root(config.data.data),
        "train_config": json.dumps(trainer_custom_config(
            config, CodeVersions(trainer=code_trainer)), sort_keys=True),
        "eval_config": json_format.MessageToJson(eval_config(config.eval), sort_keys=True,
                                                 indent=None),
        "release_thresholds": release_thresholds(config.eval),
    }


def resolve_config(config: PipelineConfig) -> PipelineConfig:
    """Checks that every location is on shared storage; without --schema_dir
    the schema goes to OUTPUT_DIR/schema/<fingerprint> (see `stage_schema`).
    Pure: reads and writes nothing."""
    out = config.run.output_dir.rstrip("/")
    if not is_shared_storage(out):
        raise ValueError(f"--output_dir={out}: a pod cannot reach it; give gs://..., s3://... "
                         "or the absolute path of a volume mounted in every pod")
    if not config.data.data or config.data.data == "demo" or not is_shared_storage(
            config.data.data):
        raise ValueError(f"--data={config.data.data}: give the aclImdb/ folder or "
                         "aclImdb_v1.tar.gz on shared storage (gs://, s3:// or a mounted path)")
    schema_dir = config.data.schema_dir or posixpath.join(out, "schema", _bundled_schema_hash())
    if not is_shared_storage(schema_dir):
        raise ValueError(f"--schema_dir={schema_dir}: must be on shared storage")
    return dataclasses.replace(
        config, data=dataclasses.replace(config.data, schema_dir=schema_dir),
        run=dataclasses.replace(config.run, output_dir=out,
                                pipeline_name=kfp_name(config.run.pipeline_name)))


def _bundled_schema_hash() -> str:
    from pipeline.fingerprints import SCHEMA_DIR, code_versions

    return code_versions(schema_dir=SCHEMA_DIR).schema


def stage_schema(destination: str) -> list[str]:
    """Copies the bundled pipeline/schema/*.pbtxt to `destination` (any
    tf.io.gfile location). The folder is named by the schema's fingerprint,
    so an edited schema lands in a new folder and never changes one a run
    is reading. Returns the files written."""
    import tensorflow as tf

    from pipeline.fingerprints import SCHEMA_DIR

    written = []
    try:
        tf.io.gfile.makedirs(destination)
        for file in sorted(SCHEMA_DIR.glob("*.pbtxt")):
            target = posixpath.join(destination, file.name)
            tf.io.gfile.copy(str(file), target, overwrite=True)
            written.append(target)
    except tf.errors.OpError as err:  # unreachable bucket, no credentials, not a folder
        raise OSError(f"cannot stage the schema in {destination}: "
                      f"{err.message.splitlines()[0]}") from err
    return written


def _resource_spec(kf: KubeflowConfig) -> Any:
    from kfp.pipeline_spec import pipeline_spec_pb2

    spec = pipeline_spec_pb2.PipelineDeploymentConfig.PipelineContainerSpec.ResourceSpec()
    if kf.trainer_cpu:
        spec.cpu_limit = kf.trainer_cpu
    if kf.trainer_memory_gib:
        spec.memory_limit = kf.trainer_memory_gib
    if kf.trainer_gpus:
        spec.accelerator.type = kf.trainer_accelerator
        spec.accelerator.count = kf.trainer_gpus
    empty = pipeline_spec_pb2.PipelineDeploymentConfig.PipelineContainerSpec.ResourceSpec()
    return None if spec == empty else spec


def _platform_spec(kf: KubeflowConfig, trainer_executor: str) -> dict[str, Any]:
    """The Kubernetes platform spec (kfp-kubernetes' format) for the Trainer's
    node selector and tolerations; empty when neither is set."""
    executor: dict[str, Any] = {}
    labels = node_selector(kf.trainer_node_selector)
    if labels:
        executor["nodeSelector"] = {"labels": labels}
    found = tolerations(kf.trainer_tolerations)
    if found:
        executor["tolerations"] = [
            {k: v for k, v in dataclasses.asdict(t).items() if v} for t in found]
    if not executor:
        return {}
    return {"platforms": {"kubernetes": {"deploymentSpec": {
        "executors": {trainer_executor: executor}}}}}


@dataclasses.dataclass(frozen=True)
class CompiledSpec:
    """TFX's PipelineJob dict and the Kubernetes platform spec beside it."""

    pipeline_job: dict[str, Any]
    platform_spec: dict[str, Any]

    @property
    def pipeline_spec(self) -> dict[str, Any]:
        return typing.cast(dict[str, Any], self.pipeline_job["pipelineSpec"])


def compile_spec(config: PipelineConfig, kf: KubeflowConfig, code_versions: Any) -> CompiledSpec:
    """The KFP v2 spec of `create_pipeline(config)` for a resolved config.

    Pure apart from compiling: writes nothing (the pipeline has no
    module_file, so TFX packages no wheel into the pipeline root).
    """
    from tfx import v1 as tfx
    from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner as v2

    from pipeline.pipeline import RuntimeInputs, create_pipeline

    if not KFP_NAME.match(config.run.pipeline_name):
        raise ValueError(f"--pipeline_name={config.run.pipeline_name}: KFP needs "
                         f"{KFP_NAME.pattern}")
    defaults = runtime_values(config, code_versions.trainer)
    params = {name: tfx.dsl.experimental.RuntimeParameter(name=name, ptype=str,
                                                           default=defaults[name])
              for name in PARAMETERS}
    pipeline = create_pipeline(
        config, metadata_connection_config=None, beam_pipeline_args=kf.beam_pipeline_args,
        code_versions=code_versions,
        runtime=RuntimeInputs(data_root=params["data_root"], train_config=params["train_config"],
                              eval_config=params["eval_config"],
                              thresholds=params["release_thresholds"],
                              trainer_platform_config=_resource_spec(kf)))
    ids = {}
    for component in pipeline.components:
        ids[component.id] = kfp_name(component.id)
        component.with_id(ids[component.id])
    # Schema 2.1: what KFP 2 backends read (parameterType, defaultValue).
    runner = v2.KubeflowV2DagRunner(config=v2.KubeflowV2DagRunnerConfig(
        default_image=kf.image, use_pipeline_spec_2_1=True))
    job = runner.run(pipeline, parameter_values=defaults, write_out=False)
    # TFX puts the defaults in the PipelineJob's runtimeConfig only; a KFP
    # package carries them in the root's input definitions.
    for name, value in defaults.items():
        job["pipelineSpec"]["root"]["inputDefinitions"]["parameters"][name].update(
            defaultValue=value, isOptional=True)
    # Where KFP puts artifacts when a run names no root (TFX writes it only
    # into the PipelineJob's runtimeConfig).
    job["pipelineSpec"]["defaultPipelineRoot"] = job["runtimeConfig"]["gcsOutputDirectory"]
    tasks = job["pipelineSpec"]["root"]["dag"]["tasks"]
    for name in NOT_CACHED:
        tasks[ids[name]]["cachingOptions"] = {}
    trainer_executor = job["pipelineSpec"]["components"][ids["Trainer"]]["executorLabel"]
    return CompiledSpec(job, _platform_spec(kf, trainer_executor))


def write_spec(spec: CompiledSpec, output: str) -> None:
    """`.yaml`/`.yml`: the KFP package; anything else: TFX's PipelineJob JSON."""
    import tensorflow as tf
    import yaml

    with tf.io.gfile.GFile(output, "w") as handle:
        if output.endswith((".yaml", ".yml")):
            docs = [spec.pipeline_spec] + ([spec.platform_spec] if spec.platform_spec else [])
            yaml.safe_dump_all(docs, handle, sort_keys=True)
        else:
            json.dump(spec.pipeline_job, handle, sort_keys=True, indent=1)


def _code_versions(config: PipelineConfig) -> Any:
    from pipeline.fingerprints import SCHEMA_DIR, code_versions

    versions = code_versions(schema_dir=SCHEMA_DIR)
    if config.data.schema_dir.rstrip("/").endswith(versions.schema):
        return versions
    # A schema given on shared storage: its URI is its identity (publish an
    # edited schema under a new URI, as `stage_schema` does).
    return dataclasses.replace(versions, schema=hashlib.sha256(
        config.data.schema_dir.encode()).hexdigest()[:16])


def submit(spec: CompiledSpec, values: dict[str, str], submit_config: SubmitConfig,
           package: str) -> str:
    """Uploads the package and starts a run; returns the run id. Raises
    ConnectionError with one line when the endpoint does not answer."""
    import kfp

    write_spec(spec, package)
    try:
        client = kfp.Client(host=submit_config.host, namespace=submit_config.namespace or None)
        run = client.create_run_from_pipeline_package(
            package, arguments=values,
            run_name=submit_config.run_name or f"{spec.pipeline_spec['pipelineInfo']['name']}-"
                                               f"{time.strftime('%Y%m%d-%H%M%S')}",
            experiment_name=submit_config.experiment,
            namespace=submit_config.namespace or None)
    except Exception as err:  # kfp wraps urllib3/HTTP errors in many types
        text = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ConnectionError(f"KFP endpoint {submit_config.host} unreachable or refused the "
                              f"run: {text}") from err
    return str(run.run_id)


def main(argv: Sequence[str] | None = None) -> int:
    """Exit status 0 on success, 1 when compiling or submitting failed (one
    line), 2 for a bad flag. Pipeline flags are those of
    `python -m pipeline.local_runner --help`."""
    from pipeline.config import add_section, build_section, from_args

    parser = argparse.ArgumentParser(
        prog="kubeflow.runner", description=__doc__.split("\n\n")[0],
        epilog="Every flag of `python -m pipeline.local_runner --help` is accepted too.")
    parser.add_argument("command", choices=("compile", "submit"))
    parser.add_argument("--output", default="", help="compiled spec (.yaml: KFP package, "
                        ".json: PipelineJob); submit: where the package is written")
    add_section(parser, KubeflowConfig, "kubeflow")
    add_section(parser, SubmitConfig, "submit")
    known, rest = parser.parse_known_args(argv)
    values = vars(known)
    try:
        kf = build_section(KubeflowConfig, values, "kubeflow")
        submit_config = build_section(SubmitConfig, values, "submit")
    except ValueError as err:
        parser.error(str(err))
    config = from_args(rest, prog="kubeflow.runner")
    try:
        config = resolve_config(config)
        versions = _code_versions(config)
        if kf.stage_schema and config.data.schema_dir.endswith(versions.schema):
            stage_schema(config.data.schema_dir)
        spec = compile_spec(config, kf, versions)
        if known.command == "compile":
            output = known.output or f"{config.run.pipeline_name}.yaml"
            write_spec(spec, output)
            tasks = len(spec.pipeline_spec["root"]["dag"]["tasks"])
            print(f"Compiled {config.run.pipeline_name} ({tasks} tasks, image {kf.image}) "
                  f"-> {output}")
            return 0
        package = known.output or str(Path(f"{config.run.pipeline_name}.yaml").resolve())
        run_id = submit(spec, runtime_values(config, versions.trainer), submit_config, package)
        print(f"Started run {run_id} on {submit_config.host}")
        return 0
    except (ValueError, ConnectionError, OSError) as err:
        print(f"kubeflow.runner: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
