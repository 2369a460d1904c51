"""What the release step uses: warm-up records, infra validation, and the
deployment files for real TF Serving, each parsed with its real parser."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import tensorflow as tf
import yaml
from tensorflow_serving.apis import prediction_log_pb2

from models.contract import INPUT_EXAMPLES, INPUT_TEXT, SIGNATURE_EXAMPLES, SIGNATURE_TEXT
from models.features import TEXT
from serving import deploy_config, infra_validation, metrics, protos
from serving.warmup import write_warmup_requests
from tests.serving_fixtures import build_versions

TEXTS = ("A great film!", "Boring and awful.", "Ça va, <br/> rien de spécial.")


@pytest.fixture(scope="module")
def released(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """OUTPUT/ with serving/imdb_sentiment/{1,2} (demo models)."""
    output = tmp_path_factory.mktemp("output")
    build_versions(output / "serving" / "imdb_sentiment", [1, 2])
    return output


def test_warmup_file_holds_predict_logs_for_both_text_signatures(released: Path) -> None:
    """write_warmup_requests writes assets.extra/tf_serving_warmup_requests:
    PredictionLogs for serving_default (tf.Example with 'text') and serving_text."""
    version = released / "serving" / "imdb_sentiment" / "2"
    path = write_warmup_requests(str(version), TEXTS, "imdb_sentiment")
    assert path == str(version / "assets.extra" / "tf_serving_warmup_requests")
    logs = [prediction_log_pb2.PredictionLog.FromString(r.numpy())
            for r in tf.data.TFRecordDataset(path)]
    requests = {log.predict_log.request.model_spec.signature_name: log.predict_log.request
                for log in logs}
    assert set(requests) == {SIGNATURE_EXAMPLES, SIGNATURE_TEXT}
    assert all(r.model_spec.name == "imdb_sentiment" for r in requests.values())
    assert [v.decode() for v in requests[SIGNATURE_TEXT].inputs[INPUT_TEXT].string_val] == list(
        TEXTS)
    first = tf.train.Example.FromString(requests[SIGNATURE_EXAMPLES].inputs[INPUT_EXAMPLES]
                                        .string_val[0])
    assert first.features.feature[TEXT].bytes_list.value[0].decode() == TEXTS[0]


def test_infra_validation_passes_a_good_candidate_and_fails_a_corrupt_one(
        released: Path, tmp_path: Path) -> None:
    """validate() serves the candidate on loopback, replays its warm-up over
    gRPC and matches the in-process answers; a candidate whose variables are
    gone is ok=False with a reason, not an exception."""
    good = released / "serving" / "imdb_sentiment" / "2"
    write_warmup_requests(str(good), TEXTS, "imdb_sentiment")
    result = infra_validation.validate(str(good), "imdb_sentiment", timeout_s=120)
    assert result["ok"], result
    assert result["requests"] == 2 and result["max_abs_diff"] <= infra_validation.TOLERANCE
    assert 0 < result["cold_start_s"] < 120
    json.dumps(result)
    broken = tmp_path / "broken"
    shutil.copytree(good, broken)
    shutil.rmtree(broken / "variables")
    failed = infra_validation.validate(str(broken), "imdb_sentiment", timeout_s=120)
    assert not failed["ok"] and "load failed" in failed["reason"], failed


def test_deploy_config_files_parse_and_point_at_the_released_versions(released: Path) -> None:
    """Every generated file parses with its real parser (protobuf text format
    on the official/declared messages, YAML, JSON) and carries the values the
    deployment needs."""
    files = {name: Path(path) for name, path in
             deploy_config.write_deploy_config(str(released)).items()}
    config = protos.parse_text(files["models.config"].read_text(), protos.ModelServerConfig)
    (entry,) = config.model_config_list.config
    assert entry.name == "imdb_sentiment" and entry.base_path == "/models/imdb_sentiment"
    assert list(entry.model_version_policy.specific.versions) == [1, 2]
    assert dict(entry.version_labels) == {"stable": 2, "previous": 1}
    batching = protos.parse_text(files["batching_parameters.txt"].read_text(),
                                 protos.BatchingParameters)
    assert batching.max_batch_size.value == 64 and batching.num_batch_threads.value > 0
    monitoring = protos.parse_text(files["monitoring.config"].read_text(),
                                   protos.MonitoringConfig)
    assert monitoring.prometheus_config.enable
    metrics_path = monitoring.prometheus_config.path
    compose = yaml.safe_load(files["docker-compose.yaml"].read_text())
    tfs = compose["services"]["tfserving"]
    assert tfs["image"] == deploy_config.TF_SERVING_IMAGE and ":latest" not in tfs["image"]
    assert "127.0.0.1:8500:8500" in tfs["ports"] and "127.0.0.1:8501:8501" in tfs["ports"]
    assert "--model_config_file=/config/models.config" in tfs["command"]
    assert "--enable_batching=true" in tfs["command"]
    assert any(v.startswith(str(released / "serving") + ":/models") for v in tfs["volumes"])
    prometheus = yaml.safe_load(files["prometheus.yml"].read_text())
    assert prometheus["scrape_configs"][0]["metrics_path"] == metrics_path
    k8s = {doc["kind"]: doc for doc in yaml.safe_load_all(files["k8s/serving.yaml"].read_text())}
    assert set(k8s) == {"ConfigMap", "Deployment", "Service", "HorizontalPodAutoscaler"}
    container = k8s["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == deploy_config.TF_SERVING_IMAGE
    assert container["readinessProbe"]["httpGet"] == {"path": "/v1/models/imdb_sentiment",
                                                      "port": 8501}
    assert container["resources"]["limits"]["cpu"]
    assert {p["name"]: p["port"] for p in k8s["Service"]["spec"]["ports"]} == {
        "grpc": 8500, "http": 8501}
    assert k8s["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]["name"] == (
        k8s["Deployment"]["metadata"]["name"])
    assert protos.parse_text(k8s["ConfigMap"]["data"]["models.config"],
                             protos.ModelServerConfig) == config
    dashboard = json.loads(files["grafana_dashboard.json"].read_text())
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    titles = [p["title"] for p in dashboard["panels"]]
    assert titles == ["Request rate", "Latency percentiles", "Errors by status",
                      "Model version served"]
    for name in (metrics.REQUEST_COUNT, metrics.REQUEST_LATENCY, metrics.MODEL_VERSION):
        assert name in exprs
    assert "histogram_quantile(0.99" in exprs
