"""Deployment files for real TF Serving, generated from a run's released models.

    python -m serving.deploy_config --output_dir=OUTPUT   (make deploy-config)

reads `OUTPUT/serving/<model>/<version>/` and writes `OUTPUT/deploy/`:
`models.config` (ModelServerConfig: every released model, latest version,
`stable`/`canary` labels), `batching_parameters.txt`, `monitoring.config`,
`docker-compose.yaml` (the official `tensorflow/serving` image, pinned),
`k8s/` (Deployment with a readiness probe on the REST status endpoint,
Service 8500/8501, HorizontalPodAutoscaler, ConfigMap of the config files),
`prometheus.yml` and `grafana_dashboard.json`. The protobuf files are written
with protobuf's text format from the official messages, the rest with
json/yaml, so every value comes from one dict here.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

import yaml

from serving import metrics, protos

__all__ = ["TF_SERVING_IMAGE", "GRPC_PORT", "REST_PORT", "MODELS_MOUNT", "released_versions",
           "model_server_config", "batching_parameters", "monitoring_config", "compose",
           "kubernetes", "grafana_dashboard", "write_deploy_config", "main"]

#: The official image, pinned: the tensorflow-serving-api version of requirements.txt.
TF_SERVING_IMAGE = "tensorflow/serving:2.19.1"
GRPC_PORT = 8500
REST_PORT = 8501
MODELS_MOUNT = "/models"
CONFIG_MOUNT = "/config"
APP = "imdb-sentiment-serving"


def released_versions(serving_dir: str) -> dict[str, list[int]]:
    """model name -> released integer versions (ascending) under OUTPUT/serving."""
    found: dict[str, list[int]] = {}
    for name in sorted(os.listdir(serving_dir)):
        path = os.path.join(serving_dir, name)
        versions = sorted(int(v) for v in os.listdir(path) if v.isdigit()
                          and os.path.exists(os.path.join(path, v, "saved_model.pb")))
        if versions:
            found[name] = versions
    return found


def model_server_config(models: dict[str, list[int]], mount: str = MODELS_MOUNT) -> Any:
    """ModelServerConfig serving each model's two newest versions: the newest
    labelled `stable`, the one before `previous` (a rollback is a label change)."""
    config = protos.ModelServerConfig()
    for name, versions in models.items():
        entry = config.model_config_list.config.add(name=name, base_path=f"{mount}/{name}",
                                                    model_platform="tensorflow")
        kept = versions[-2:]
        entry.model_version_policy.specific.versions.extend(kept)
        entry.version_labels["stable"] = kept[-1]
        if len(kept) == 2:
            entry.version_labels["previous"] = kept[0]
    return config


def batching_parameters(max_batch_size: int = 64, timeout_micros: int = 1000,
                        threads: int = 4) -> Any:
    """BatchingParameters for --enable_batching (a batch per ms at most)."""
    params = protos.BatchingParameters()
    params.max_batch_size.value = max_batch_size
    params.batch_timeout_micros.value = timeout_micros
    params.max_enqueued_batches.value = 100
    params.num_batch_threads.value = threads
    return params


def monitoring_config() -> Any:
    """MonitoringConfig exposing Prometheus metrics on the REST port."""
    config = protos.MonitoringConfig()
    config.prometheus_config.enable = True
    config.prometheus_config.path = "/monitoring/prometheus/metrics"
    return config


def _server_args() -> list[str]:
    return [f"--port={GRPC_PORT}", f"--rest_api_port={REST_PORT}",
            f"--model_config_file={CONFIG_MOUNT}/models.config",
            "--model_config_file_poll_wait_seconds=60",
            "--file_system_poll_wait_seconds=30", "--enable_batching=true",
            f"--batching_parameters_file={CONFIG_MOUNT}/batching_parameters.txt",
            f"--monitoring_config_file={CONFIG_MOUNT}/monitoring.config"]


def compose(serving_dir: str, config_dir: str) -> dict[str, Any]:
    """docker-compose.yaml: TF Serving on 127.0.0.1:8500/8501 plus Prometheus."""
    return {"services": {
        "tfserving": {
            "image": TF_SERVING_IMAGE,
            "command": _server_args(),
            "ports": [f"127.0.0.1:{GRPC_PORT}:{GRPC_PORT}", f"127.0.0.1:{REST_PORT}:{REST_PORT}"],
            "volumes": [f"{serving_dir}:{MODELS_MOUNT}:ro", f"{config_dir}:{CONFIG_MOUNT}:ro"],
            "restart": "unless-stopped",
        },
        "prometheus": {
            "image": "prom/prometheus:v2.53.0",
            "volumes": [f"{config_dir}/prometheus.yml:/etc/prometheus/prometheus.yml:ro"],
            "ports": ["127.0.0.1:9090:9090"],
            "depends_on": ["tfserving"],
        },
    }}


def prometheus_config(target: str = f"tfserving:{REST_PORT}") -> dict[str, Any]:
    """prometheus.yml scraping TF Serving's metrics path."""
    return {"global": {"scrape_interval": "15s"},
            "scrape_configs": [{"job_name": "tfserving",
                                "metrics_path": "/monitoring/prometheus/metrics",
                                "static_configs": [{"targets": [target]}]}]}


def kubernetes(model_name: str, config_files: dict[str, str]) -> list[dict[str, Any]]:
    """ConfigMap, Deployment, Service and HPA (models on a PersistentVolumeClaim)."""
    labels = {"app": APP}
    container = {
        "name": "tfserving", "image": TF_SERVING_IMAGE, "args": _server_args(),
        "ports": [{"name": "grpc", "containerPort": GRPC_PORT},
                  {"name": "http", "containerPort": REST_PORT}],
        "readinessProbe": {"httpGet": {"path": f"/v1/models/{model_name}", "port": REST_PORT},
                           "initialDelaySeconds": 5, "periodSeconds": 5, "failureThreshold": 3},
        "livenessProbe": {"tcpSocket": {"port": GRPC_PORT}, "initialDelaySeconds": 30,
                          "periodSeconds": 10},
        "resources": {"requests": {"cpu": "1", "memory": "1Gi"},
                      "limits": {"cpu": "2", "memory": "2Gi"}},
        "volumeMounts": [{"name": "models", "mountPath": MODELS_MOUNT, "readOnly": True},
                         {"name": "config", "mountPath": CONFIG_MOUNT, "readOnly": True}],
    }
    return [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"{APP}-config"},
         "data": config_files},
        {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": {"name": APP, "labels": labels},
         "spec": {"replicas": 2, "selector": {"matchLabels": labels},
                  "template": {"metadata": {"labels": labels, "annotations": {
                      "prometheus.io/scrape": "true", "prometheus.io/port": str(REST_PORT),
                      "prometheus.io/path": "/monitoring/prometheus/metrics"}},
                      "spec": {"containers": [container], "volumes": [
                          {"name": "models",
                           "persistentVolumeClaim": {"claimName": f"{APP}-models"}},
                          {"name": "config", "configMap": {"name": f"{APP}-config"}}]}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": APP, "labels": labels},
         "spec": {"selector": labels, "ports": [
             {"name": "grpc", "port": GRPC_PORT, "targetPort": GRPC_PORT},
             {"name": "http", "port": REST_PORT, "targetPort": REST_PORT}]}},
        {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
         "metadata": {"name": APP},
         "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": APP},
                  "minReplicas": 2, "maxReplicas": 10, "metrics": [
                      {"type": "Resource", "resource": {"name": "cpu", "target": {
                          "type": "Utilization", "averageUtilization": 70}}}]}},
    ]


def grafana_dashboard(model_name: str) -> dict[str, Any]:
    """Request rate, latency p50/p90/p99, errors by status, served version."""
    count, latency, version = (metrics.REQUEST_COUNT, metrics.REQUEST_LATENCY,
                               metrics.MODEL_VERSION)
    selector = f'model_name="{model_name}"'

    def panel(pid: int, title: str, exprs: list[tuple[str, str]], unit: str) -> dict[str, Any]:
        return {"id": pid, "type": "timeseries", "title": title,
                "datasource": {"type": "prometheus", "uid": "${DS_PROMETHEUS}"},
                "gridPos": {"h": 8, "w": 12, "x": 12 * ((pid - 1) % 2), "y": 8 * ((pid - 1) // 2)},
                "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
                "targets": [{"refId": chr(65 + i), "expr": e, "legendFormat": legend}
                            for i, (e, legend) in enumerate(exprs)]}
    buckets = f"rate({latency}_bucket{{{selector}}}[5m])"
    quantiles = [(f"histogram_quantile({q}, sum by (le) ({buckets}))", f"p{int(q * 100)}")
                 for q in (0.5, 0.9, 0.99)]
    return {
        "title": f"TF Serving: {model_name}", "uid": f"tfserving-{model_name}"[:40],
        "schemaVersion": 39, "version": 1, "time": {"from": "now-1h", "to": "now"},
        "templating": {"list": [{"name": "DS_PROMETHEUS", "type": "datasource",
                                 "query": "prometheus"}]},
        "panels": [
            panel(1, "Request rate", [(f"sum(rate({count}{{{selector}}}[5m]))", "requests/s")],
                  "reqps"),
            panel(2, "Latency percentiles", quantiles, "µs"),
            panel(3, "Errors by status", [(
                f'sum by (status) (rate({count}{{{selector},status!="OK"}}[5m]))', "{{status}}")],
                "reqps"),
            panel(4, "Model version served", [(f"max by (version) ({version}{{{selector}}})",
                                               "v{{version}}")], "none"),
        ],
    }


def write_deploy_config(output_dir: str) -> dict[str, str]:
    """Writes OUTPUT/deploy/ from OUTPUT/serving/; returns file name -> path."""
    serving_dir = os.path.abspath(os.path.join(output_dir, "serving"))
    models = released_versions(serving_dir)
    if not models:
        raise FileNotFoundError(f"no released model under {serving_dir}")
    deploy = os.path.join(output_dir, "deploy")
    os.makedirs(os.path.join(deploy, "k8s"), exist_ok=True)
    config_text = {
        "models.config": protos.to_text(model_server_config(models)),
        "batching_parameters.txt": protos.to_text(batching_parameters()),
        "monitoring.config": protos.to_text(monitoring_config()),
    }
    first = next(iter(models))
    files: dict[str, Any] = {
        **config_text,
        "prometheus.yml": yaml.safe_dump(prometheus_config(), sort_keys=False),
        "docker-compose.yaml": yaml.safe_dump(compose(serving_dir, os.path.abspath(deploy)),
                                              sort_keys=False),
        "k8s/serving.yaml": yaml.safe_dump_all(kubernetes(first, config_text), sort_keys=False),
        "grafana_dashboard.json": json.dumps(grafana_dashboard(first), indent=2) + "\n",
    }
    written = {}
    for name, content in files.items():
        path = os.path.join(deploy, name)
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(content)
        written[name] = path
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: --output_dir of a run."""
    parser = argparse.ArgumentParser(prog="python -m serving.deploy_config", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", default="output")
    args = parser.parse_args(argv)
    for name, path in write_deploy_config(args.output_dir).items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
