"""ModelService.HandleReloadConfigRequest over real gRPC: the server switches
to exactly the models of the new ModelServerConfig (added, removed, new
policies, labels and base paths), refuses a config it cannot apply as a
whole while the previous models keep serving, and fails no request in
flight during a switch.

One server for the module; before each test it is reloaded back to the
baseline config (imdb: latest of v1, v2; other: v5), so tests do not
depend on each other's order.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import requests
from tensorflow_serving.apis import model_management_pb2, model_service_pb2_grpc

from serving import protos
from serving.client import ServingError
from serving.flags import parse_flags
from serving.process import RunningServer, running_server
from tests.serving_fixtures import build_versions, requests_in_flight

POSITIVE = "A great film, I love it!"


def _model(name: str, base: Path | str, extra: str = "") -> str:
    return (f'config {{ name: "{name}" base_path: "{base}" model_platform: "tensorflow" '
            f'{extra} }}')


def _config(*models: str) -> Any:
    """A ModelServerConfig from text-format `config { ... }` entries."""
    return protos.parse_text("model_config_list { " + " ".join(models) + " }",
                             protos.ModelServerConfig)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("reload")
    build_versions(root / "imdb", [1, 2])
    build_versions(root / "other", [5])
    build_versions(root / "third", [7])
    (root / "corrupt" / "1").mkdir(parents=True)
    (root / "corrupt" / "1" / "saved_model.pb").write_bytes(b"not a protobuf")
    return root


def _baseline(root: Path) -> Any:
    return _config(_model("imdb", root / "imdb"), _model("other", root / "other"))


@pytest.fixture(scope="module")
def server(root: Path) -> Iterator[RunningServer]:
    config = root / "models.config"
    config.write_text(protos.to_text(_baseline(root)))
    with running_server([f"--model_config_file={config}", "--enable_batching",
                         "--file_system_poll_wait_seconds=0.5"],
                        root / "server.log", wait_for="other") as running:
        yield running


@pytest.fixture(autouse=True)
def baseline(server: RunningServer, root: Path) -> None:
    with server.grpc("imdb", deadline_s=60) as client:
        client.reload_config(_baseline(root))


def _version(server: RunningServer, model: str, **spec: object) -> int:
    """The version that answers a Predict for `model` (ServingError if none)."""
    with server.grpc(model, retries=0, **spec) as client:
        request = client.predict_request("serving_text", [POSITIVE])
        return int(client.predict_raw(request).model_spec.version.value)


def _states(server: RunningServer, model: str) -> dict[str, str]:
    with server.grpc(model, retries=0) as client:
        return {row["version"]: row["state"] for row in client.status()}


def _served(server: RunningServer) -> dict[str, object]:
    """What each model of the test answers now: its version, or the error code."""
    answers: dict[str, object] = {}
    for model in ("imdb", "other", "third"):
        try:
            answers[model] = _version(server, model)
        except ServingError as error:
            answers[model] = error.code
    return answers


def test_reload_adds_a_model_that_serves_as_soon_as_the_reply_is_ok(
        server: RunningServer, root: Path) -> None:
    """The reply comes once the new model loaded: the RPC succeeds with
    status OK, and the new model answers at once over gRPC and REST, while
    the models already there keep serving."""
    request = model_management_pb2.ReloadConfigRequest()
    request.config.CopyFrom(_config(_model("imdb", root / "imdb"),
                                    _model("other", root / "other"),
                                    _model("third", root / "third")))
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        reply = model_service_pb2_grpc.ModelServiceStub(channel).HandleReloadConfigRequest(
            request, timeout=60)
    assert reply.status.error_code == 0 and reply.status.error_message == ""
    assert _served(server) == {"imdb": 2, "other": 5, "third": 7}
    assert server.rest("third").predict([POSITIVE])[0] > 0.5
    assert _states(server, "third") == {"7": "AVAILABLE"}


def test_reload_removes_a_model_whose_requests_then_get_not_found(
        server: RunningServer, root: Path) -> None:
    """A model left out of the new config is unloaded: Predict gets NOT_FOUND
    (gRPC) / 404 (REST), its status lists the version as END, and its
    version gauge drops to 0."""
    with server.grpc("imdb", deadline_s=60) as client:
        client.reload_config(_config(_model("imdb", root / "imdb")))
    assert _served(server) == {"imdb": 2, "other": "NOT_FOUND", "third": "NOT_FOUND"}
    response = requests.post(f"{server.rest_url}/v1/models/other:predict",
                             json={"instances": [POSITIVE]}, timeout=10)
    assert response.status_code == 404 and "other" in response.json()["error"]
    assert _states(server, "other")["5"] == "END"
    assert set(_states(server, "other").values()) == {"END"}
    metrics = requests.get(f"{server.rest_url}/monitoring/prometheus/metrics", timeout=10).text
    assert ':tensorflow:serving:model_version_available{model_name="other",version="5"} 0' \
        in metrics


def test_reload_applies_changed_version_policies_and_labels(
        server: RunningServer, root: Path) -> None:
    """latest -> specific [1] with a label serves v1 only (v2 unloaded, END);
    then `all` with two labels serves both, each label its version."""
    with server.grpc("imdb", deadline_s=60) as client:
        client.reload_config(_config(_model(
            "imdb", root / "imdb", "model_version_policy { specific { versions: 1 } } "
            'version_labels { key: "stable" value: 1 }')))
        assert _version(server, "imdb") == 1
        assert _version(server, "imdb", version_label="stable") == 1
        with pytest.raises(ServingError) as caught:
            _version(server, "imdb", version=2)
        assert caught.value.code == "NOT_FOUND"
        assert _states(server, "imdb") == {"1": "AVAILABLE", "2": "END"}
        client.reload_config(_config(_model(
            "imdb", root / "imdb", "model_version_policy { all {} } "
            'version_labels { key: "stable" value: 1 } '
            'version_labels { key: "canary" value: 2 }')))
    assert _version(server, "imdb") == 2
    assert _version(server, "imdb", version_label="stable") == 1
    assert _version(server, "imdb", version_label="canary") == 2
    assert server.rest("imdb", version_label="canary").status()[0]["version"] == "2"
    assert _states(server, "imdb") == {"1": "AVAILABLE", "2": "AVAILABLE"}


def test_reload_moves_a_model_to_another_base_path(server: RunningServer, root: Path) -> None:
    """A changed base_path serves the versions found there instead."""
    with server.grpc("imdb", deadline_s=60) as client:
        client.reload_config(_config(_model("imdb", root / "imdb"),
                                     _model("other", root / "third")))
    assert _served(server) == {"imdb": 2, "other": 7, "third": "NOT_FOUND"}
    states = _states(server, "other")
    assert states["7"] == "AVAILABLE" and states["5"] == "END"


#: Bad entries; each config also drops `other`, adds `third` and pins imdb
#: to v1, so any part of it that was applied would show.
_CHANGES = ('config { name: "imdb" base_path: "{root}/imdb" model_platform: "tensorflow" '
            "model_version_policy { specific { versions: 1 } } } "
            'config { name: "third" base_path: "{root}/third" model_platform: "tensorflow" }')


@pytest.mark.parametrize(("bad", "code", "needle"), [
    (_model("ghost", "{root}/nowhere"), "NOT_FOUND", "ghost"),
    (_model("third", "{root}/other"), "INVALID_ARGUMENT", "third multiple times"),
    (_model("extra", "{root}/other", 'version_labels { key: "stable" value: 4 }'),
     "FAILED_PRECONDITION", "label 'stable' to version 4 of model extra"),
    (_model("extra", "{root}/other", "model_version_policy { specific { versions: 9 } }"),
     "NOT_FOUND", "extra"),
    (_model("extra", "gs://bucket/other"), "INVALID_ARGUMENT", "gs://bucket/other"),
    (_model("extra", "relative/other"), "INVALID_ARGUMENT", "relative/other"),
    (_model("extra", "{root}/other", "logging_config { }"), "INVALID_ARGUMENT",
     "logging_config"),
    ('config { name: "extra" base_path: "{root}/other" model_platform: "pytorch" }',
     "INVALID_ARGUMENT", "pytorch"),
    (_model("broken", "{root}/corrupt"), "UNKNOWN", "model 'broken' version 1"),
], ids=["missing-base-path", "duplicate-name", "label-to-unloaded-version",
        "no-version-matches-policy", "non-local-path", "relative-path", "logging-config",
        "unsupported-platform", "corrupt-version"])
def test_bad_config_is_refused_whole_and_previous_models_keep_serving(
        server: RunningServer, root: Path, bad: str, code: str, needle: str) -> None:
    """A config that cannot be applied is answered with the error (the RPC
    itself succeeds, as in TF Serving) naming the model and the problem, and
    nothing of it is applied: the same models answer with the same versions."""
    before = _served(server), _states(server, "imdb"), _states(server, "other")
    request = model_management_pb2.ReloadConfigRequest()
    text = "model_config_list { " + _CHANGES + " " + bad + " }"
    request.config.CopyFrom(protos.parse_text(text.replace("{root}", str(root)),
                                              protos.ModelServerConfig))
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        reply = model_service_pb2_grpc.ModelServiceStub(channel).HandleReloadConfigRequest(
            request, timeout=60)
    assert grpc.StatusCode[code].value[0] == reply.status.error_code, reply.status
    assert needle in reply.status.error_message
    assert (_served(server), _states(server, "imdb"), _states(server, "other")) == before
    assert before[0] == {"imdb": 2, "other": 5, "third": "NOT_FOUND"}


@pytest.mark.parametrize(("config", "code"), [
    ("custom_model_config { }", "INVALID_ARGUMENT"),
    ("model_config_list { }", "INVALID_ARGUMENT"),
    ("", "OK"),
], ids=["custom-model-config", "empty-model-list", "no-config"])
def test_custom_or_empty_configs_change_nothing(
        server: RunningServer, config: str, code: str) -> None:
    """custom_model_config and an empty model list are refused; no config
    at all is TF Serving's "no action" (OK). The models keep serving."""
    request = model_management_pb2.ReloadConfigRequest()
    request.config.CopyFrom(protos.parse_text(config, protos.ModelServerConfig))
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        reply = model_service_pb2_grpc.ModelServiceStub(channel).HandleReloadConfigRequest(
            request, timeout=60)
    assert reply.status.error_code == grpc.StatusCode[code].value[0], reply.status
    assert _served(server) == {"imdb": 2, "other": 5, "third": "NOT_FOUND"}


def test_requests_in_flight_across_reloads_all_succeed(
        server: RunningServer, root: Path) -> None:
    """Four clients predicting on imdb while the config flips imdb between
    v2 (latest) and v1 (specific) and adds and removes other models: every
    request is answered, by v1 or v2."""
    pinned = _config(_model("imdb", root / "imdb",
                            "model_version_policy { specific { versions: 1 } }"),
                     _model("third", root / "third"))
    with requests_in_flight(server, "imdb", POSITIVE, clients=4, deadline_s=30,
                            max_requests=3000, max_s=60) as results:
        with server.grpc("imdb", deadline_s=60) as admin:
            for config in (pinned, _baseline(root)) * 2:
                time.sleep(0.2)
                admin.reload_config(config)
        time.sleep(0.2)
    errors = [r for r in results if isinstance(r, Exception)]
    assert errors == [] and len(results) > 20
    assert {1, 2} <= set(results) <= {1, 2}


def test_models_config_at_start_is_checked_by_the_same_rules(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--model_config_file is parsed by the code that parses reloads: a
    duplicated model name or an unsupported field stops the server at start
    with the same message, in one line naming the file, instead of being
    silently dropped."""
    config = tmp_path / "models.config"
    cases = [([_model("imdb", tmp_path), _model("imdb", tmp_path)], "imdb multiple times"),
             ([_model("imdb", tmp_path, "logging_config { }")], "logging_config")]
    for entries, needle in cases:
        config.write_text(protos.to_text(_config(*entries)))
        with pytest.raises(SystemExit) as caught:
            parse_flags([f"--model_config_file={config}"])
        assert caught.value.code == 2
        [line] = capsys.readouterr().err.splitlines()
        assert line.startswith(f"python -m serving.server: error: --model_config_file={config}: ")
        assert needle in line
