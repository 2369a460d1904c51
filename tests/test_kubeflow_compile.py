"""The KFP v2 package of the pipeline, compiled into a temp dir and read back
with the KFP SDK's protos; and one executor run from its container command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

from kubeflow.config import KubeflowConfig
from pipeline.fingerprints import REPO

BEAM = "--runner=DirectRunner --direct_running_mode=in_memory --direct_num_workers=1"
IMAGE = "registry.example/imdb-sentiment-tfx:abc123"
FLAGS = ["--output_dir=gs://bucket/imdb", "--data=gs://bucket/data/aclImdb_v1.tar.gz",
         "--stage_schema=false", f"--image={IMAGE}", f"--beam_args={BEAM}", "--trainer_gpus=2",
         "--trainer_node_selector=cloud.google.com/gke-accelerator=nvidia-l4",
         "--trainer_tolerations=nvidia.com/gpu:NoSchedule", "--epochs=7"]
TASKS = {  # task -> the tasks it depends on
    "imdb-example-gen": set(), "statistics-gen": {"imdb-example-gen"},
    "schema-gen": {"statistics-gen"}, "curated-schema": set(),
    "example-validator": {"statistics-gen", "curated-schema"},
    "anomalies-gate": {"example-validator", "curated-schema"},
    "transform": {"imdb-example-gen", "anomalies-gate"}, "trainer": {"transform"},
    "served-baseline": {"trainer"},
    "evaluator": {"imdb-example-gen", "trainer", "served-baseline"},
    "tflite-check": {"trainer", "transform", "imdb-example-gen"},
    "infra-validation": {"trainer", "imdb-example-gen"},
    "release": {"trainer", "evaluator", "served-baseline", "tflite-check", "infra-validation"},
}
BEAM_TASKS = ("imdb-example-gen", "statistics-gen", "transform", "evaluator")


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    """(PipelineSpec, PlatformSpec, raw docs) of `kubeflow.runner compile --output x.yaml`."""
    from kubeflow.runner import main

    out = tmp_path_factory.mktemp("kfp") / "imdb.yaml"
    assert main(["compile", f"--output={out}", *FLAGS]) == 0
    docs = list(yaml.safe_load_all(out.read_text()))
    pipeline = json_format.ParseDict(docs[0], pipeline_spec_pb2.PipelineSpec())
    platform = json_format.ParseDict(docs[1], pipeline_spec_pb2.PlatformSpec())
    return pipeline, platform, docs


def _executor(pipeline, task: str):
    label = pipeline.components[pipeline.root.dag.tasks[task].component_ref.name].executor_label
    return json_format.MessageToDict(pipeline.deployment_spec)["executors"][label]


def test_every_component_is_a_task_with_its_dependencies(package):
    pipeline, _, _ = package
    assert pipeline.pipeline_info.name == "imdb-sentiment"
    tasks = pipeline.root.dag.tasks
    assert {name: set(task.dependent_tasks) for name, task in tasks.items()} == TASKS


def test_every_executor_runs_the_project_image_with_the_tfx_entrypoint(package):
    pipeline, _, _ = package
    for task in TASKS:
        executor = _executor(pipeline, task)
        if task == "curated-schema":
            assert "importer" in executor  # run by the KFP backend itself, no container
            continue
        assert executor["container"]["image"] == IMAGE, task
        assert executor["container"]["command"] == [
            "python", "-m", "tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor"]


def test_runtime_parameters_are_exposed_with_the_compiled_defaults(package):
    pipeline, _, _ = package
    params = pipeline.root.input_definitions.parameters
    assert set(params) == {"data_root", "train_config", "eval_config", "release_thresholds"}
    assert params["data_root"].default_value.string_value == "gs://bucket/data"
    train = json.loads(params["train_config"].default_value.string_value)
    assert train["train"]["epochs"] == 7 and train["train"]["model"] == "cnn"
    eval_config = json.loads(params["eval_config"].default_value.string_value)
    assert "BinaryAccuracy" in json.dumps(eval_config)
    uses = {(task, key): p.component_input_parameter
            for task, spec in pipeline.root.dag.tasks.items()
            for key, p in spec.inputs.parameters.items() if p.component_input_parameter}
    assert uses == {("imdb-example-gen", "input_base"): "data_root",
                    ("trainer", "custom_config"): "train_config",
                    ("evaluator", "eval_config"): "eval_config",
                    ("release", "thresholds"): "release_thresholds"}


def test_beam_args_reach_every_beam_component(package):
    pipeline, _, _ = package
    for task in BEAM_TASKS:
        args = list(_executor(pipeline, task)["container"]["args"])
        assert args[-3:] == BEAM.split(), task
    driver = _executor(pipeline, "imdb-example-gen")["container"]["lifecycle"]["preCacheCheck"]
    assert list(driver["args"])[-3:] == BEAM.split()


def test_the_trainer_alone_asks_for_gpus_a_node_selector_and_tolerations(package):
    pipeline, platform, _ = package
    for task in TASKS:
        resources = _executor(pipeline, task).get("container", {}).get("resources")
        if task == "trainer":
            assert resources["accelerator"] == {"type": "nvidia.com/gpu", "count": "2"}
        else:
            assert not resources, task
    executors = {k: json_format.MessageToDict(v) for k, v in
                 platform.platforms["kubernetes"].deployment_spec.executors.items()}
    assert list(executors) == ["trainer_executor"]
    assert executors["trainer_executor"]["nodeSelector"]["labels"] == {
        "cloud.google.com/gke-accelerator": "nvidia-l4"}
    assert list(executors["trainer_executor"]["tolerations"]) == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]


def test_steps_reading_the_published_release_are_never_cached(package):
    pipeline, _, _ = package
    cached = {name for name, task in pipeline.root.dag.tasks.items()
              if task.caching_options.enable_cache}
    assert not {"served-baseline", "release"} & cached
    assert set(BEAM_TASKS) | {"trainer", "tflite-check", "infra-validation"} <= cached


def _strings(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [s for k, v in node.items() for s in [k, *_strings(v)]]
    if isinstance(node, list):
        return [s for v in node for s in _strings(v)]
    return [node] if isinstance(node, str) else []


def test_no_local_filesystem_path_is_left_in_the_spec(package):
    """Everything a pod reads or writes is on the shared storage; the user
    code is in the image, so no wheel path either."""
    _, _, docs = package
    texts = _strings(docs)
    assert not [t for t in texts if str(REPO) in t or "/tmp" in t or "_wheels" in t]
    # Paths inside JSON values (custom configs) count too.
    assert not [t for t in texts if t.startswith("/") or '"/' in t]
    assert any("gs://bucket/imdb/schema/" in t for t in texts)
    assert any("gs://bucket/imdb/tfx/pipeline_root" in t for t in texts)


def test_local_paths_and_the_demo_corpus_are_refused_for_a_cluster():
    import dataclasses

    from kubeflow.runner import resolve_config
    from pipeline.config import DataConfig, PipelineConfig, RunConfig

    good = PipelineConfig(data=DataConfig(data="s3://b/aclImdb"),
                          run=RunConfig(output_dir="/mnt/shared/imdb"))
    assert resolve_config(good).data.schema_dir.startswith("/mnt/shared/imdb/schema/")
    with pytest.raises(ValueError, match="--output_dir=output"):
        resolve_config(dataclasses.replace(good, run=RunConfig(output_dir="output")))
    with pytest.raises(ValueError, match="--data=demo"):
        resolve_config(dataclasses.replace(good, data=DataConfig(data="demo")))
    with pytest.raises(ValueError, match="trainer_tolerations"):
        KubeflowConfig(trainer_tolerations="gpu=yes:Sometimes")


def test_the_bundled_schema_is_staged_under_its_fingerprint(tmp_path):
    from kubeflow.runner import stage_schema
    from pipeline.fingerprints import SCHEMA_DIR

    written = stage_schema(str(tmp_path / "schema" / "f00"))
    assert [Path(w).name for w in written] == ["schema.pbtxt"]
    assert Path(written[0]).read_bytes() == (SCHEMA_DIR / "schema.pbtxt").read_bytes()


def test_the_image_is_built_on_the_pinned_tfx_version():
    from tfx import version

    from kubeflow.image import TFX_BASE_IMAGE, TFX_VERSION, default_image

    assert version.__version__ == TFX_VERSION
    assert f"tfx[kfp]=={TFX_VERSION}" in (REPO / "requirements.in").read_text()
    dockerfile = (REPO / "Dockerfile").read_text()
    assert f"ARG TFX_VERSION={TFX_VERSION}" in dockerfile
    assert "FROM gcr.io/tfx-oss-public/tfx:${TFX_VERSION}" in dockerfile
    assert TFX_BASE_IMAGE.endswith(TFX_VERSION) and default_image().endswith(TFX_VERSION)
    assert KubeflowConfig().image == default_image()


def _executor_input(pipeline, task: str, root: Path, params: dict[str, str]) -> dict[str, Any]:
    """What the KFP launcher hands the container as `{{$}}`: the task's
    parameter values (constants, or the root parameters) and output URIs."""
    spec = pipeline.root.dag.tasks[task]
    component = pipeline.components[spec.component_ref.name]
    values: dict[str, Any] = {}
    for key, p in spec.inputs.parameters.items():
        if p.component_input_parameter:
            values[key] = params.get(p.component_input_parameter) or \
                pipeline.root.input_definitions.parameters[p.component_input_parameter] \
                .default_value.string_value
        else:
            values[key] = json_format.MessageToDict(p.runtime_value.constant)
    outputs = {name: {"artifacts": [{"name": name, "uri": str(root / task / name),
                                     "type": json_format.MessageToDict(d.artifact_type),
                                     "metadata": {}}]}
               for name, d in component.output_definitions.artifacts.items()}
    return {"inputs": {"parameterValues": values},
            "outputs": {"artifacts": outputs,
                        "outputFile": str(root / task / "executor_output.json")}}


@pytest.mark.slow
def test_the_example_gen_container_command_runs_as_compiled(package, tiny_archive, tmp_path):
    """The spec's command and args for ImdbExampleGen, `{{$}}` filled in as
    the KFP launcher does, data_root given at run time (a local folder
    standing in for the bucket), storage on a temp dir."""
    pipeline, _, _ = package
    container = _executor(pipeline, "imdb-example-gen")["container"]
    invocation = _executor_input(pipeline, "imdb-example-gen", tmp_path,
                                 {"data_root": str(tiny_archive.parent)})
    args = [json.dumps(invocation) if a == "{{$}}" else a for a in container["args"]]
    command = [sys.executable if c == "python" else c for c in container["command"]]
    done = subprocess.run(command + args, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    examples = tmp_path / "imdb-example-gen" / "examples"
    assert {p.name for p in examples.iterdir()} >= {"Split-train", "Split-valid", "Split-eval",
                                                    "ingest_report.json"}
    output = json.loads((tmp_path / "imdb-example-gen" / "executor_output.json").read_text())
    assert "examples" in output["artifacts"]


def test_submitting_to_an_unreachable_endpoint_fails_in_one_line(tmp_path, capsys):
    """A closed loopback port stands for a KFP endpoint that does not answer."""
    import portpicker

    from kubeflow.runner import main

    port = portpicker.pick_unused_port()
    status = main(["submit", f"--host=http://127.0.0.1:{port}", f"--output={tmp_path}/p.yaml",
                   *FLAGS])
    assert status == 1
    [line] = [x for x in capsys.readouterr().err.splitlines() if "error" in x]
    assert line.startswith(f"kubeflow.runner: error: KFP endpoint http://127.0.0.1:{port} "
                           "unreachable")
    assert (tmp_path / "p.yaml").exists()  # the package is kept for a later upload


def test_unwritable_schema_storage_fails_in_one_line(tmp_path, capsys):
    """Staging the schema is the compile's one write: storage it cannot
    write (here a 'folder' that is a file) ends in one error line, exit 1."""
    from kubeflow.runner import main

    blocker = tmp_path / "not_a_folder"
    blocker.write_text("")
    flags = [f for f in FLAGS if not f.startswith(("--output_dir", "--stage_schema"))]
    status = main(["compile", f"--output={tmp_path}/p.yaml", f"--output_dir={blocker}/imdb",
                   *flags])
    assert status == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    [line] = [x for x in err.splitlines() if "error" in x]
    assert line.startswith(f"kubeflow.runner: error: cannot stage the schema in {blocker}/imdb")


def test_a_pretrained_transformer_compiles_with_the_pretrainer_before_the_trainer(tmp_path):
    from kubeflow.runner import main

    out = tmp_path / "imdb.yaml"
    assert main(["compile", f"--output={out}", *FLAGS, "--model=transformer",
                 "--pretrain=true"]) == 0
    pipeline = json_format.ParseDict(next(yaml.safe_load_all(out.read_text())),
                                     pipeline_spec_pb2.PipelineSpec())
    tasks = pipeline.root.dag.tasks
    assert set(tasks) == {*TASKS, "pretrainer"}
    assert set(tasks["pretrainer"].dependent_tasks) == {"transform"}
    assert set(tasks["trainer"].dependent_tasks) == {"transform", "pretrainer"}
    assert "base_model" in tasks["trainer"].inputs.artifacts
