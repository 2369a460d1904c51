"""The server's command line is tensorflow_model_server's: every flag of
its --help starts the server (those with no effect here warn once), and a
bad value or config file is one line naming it."""

from __future__ import annotations

import logging
import socket
import subprocess
from pathlib import Path

import pytest

from serving import flags
from serving.flags import NO_EFFECT, parse_flags

ROOT = Path(__file__).resolve().parents[1]


def _refused(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    with pytest.raises(SystemExit) as caught:
        parse_flags(argv)
    assert caught.value.code == 2
    [line] = capsys.readouterr().err.splitlines()
    return line


def test_every_flag_with_no_effect_here_is_accepted_with_one_warning_naming_it(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    argv = [f"--model_base_path={tmp_path}", *(f"--{name}=1" for name in NO_EFFECT)]
    with caplog.at_level(logging.WARNING, logger="serving"):
        options = parse_flags(argv)
    assert options.models[0].base_path == str(tmp_path)
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == len(NO_EFFECT)
    for name, why in NO_EFFECT.items():
        assert f"--{name} has no effect in this server: {why}" in warned


def test_a_boolean_flag_may_be_given_bare_as_tf_serving_allows(tmp_path: Path) -> None:
    options = parse_flags([f"--model_base_path={tmp_path}", "--enable_model_warmup",
                           "--enable_batching"])
    assert options.batching is not None


def test_grpc_channel_arguments_become_server_options_with_integer_values(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    options = parse_flags([f"--model_base_path={tmp_path}", "--grpc_channel_arguments="
                           "grpc.max_connection_age_ms=2000,grpc.primary_user_agent=imdb"])
    assert options.grpc_channel_arguments == (("grpc.max_connection_age_ms", 2000),
                                              ("grpc.primary_user_agent", "imdb"))
    line = _refused(capsys, [f"--model_base_path={tmp_path}",
                             "--grpc_channel_arguments=grpc.keepalive_time_ms"])
    assert "--grpc_channel_arguments" in line and "key=value" in line


@pytest.mark.parametrize(("content", "says"), [
    # TF Serving's own words, which its tests and operators' log searches look for
    ("model_config_list { config { name: 'a' base_path: '/m' } ",
     "Error parsing text-format tensorflow.serving.ModelServerConfig"),
    ("model_config_list { config { nme: 'a' } }",
     "Error parsing text-format tensorflow.serving.ModelServerConfig"),
    ("model_config_list { config { name: 'a' base_path: 'relative' } }", "relative"),
])
def test_a_bad_model_config_file_stops_the_server_in_one_line_naming_the_file(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, says: str) -> None:
    config = tmp_path / "models.config"
    config.write_text(content)
    line = _refused(capsys, [f"--model_config_file={config}"])
    assert line.startswith(f"{flags.PROG}: error: --model_config_file={config}: ")
    assert says in line


@pytest.mark.parametrize("flag", ["model_config_file", "ssl_config_file",
                                  "monitoring_config_file", "batching_parameters_file"])
def test_a_config_file_that_is_missing_or_not_its_proto_is_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str) -> None:
    base = [] if flag == "model_config_file" else [f"--model_base_path={tmp_path}",
                                                    "--enable_batching"]
    line = _refused(capsys, [*base, f"--{flag}={tmp_path / 'absent'}"])
    assert f"--{flag}={tmp_path / 'absent'}: cannot be read" in line
    garbage = tmp_path / "garbage.txt"
    garbage.write_text("this is { not a proto")
    line = _refused(capsys, [*base, f"--{flag}={garbage}"])
    assert f"--{flag}={garbage}: Error parsing text-format tensorflow.serving." in line


def test_version_prints_one_line_and_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        parse_flags(["--version"])
    assert caught.value.code == 0
    assert capsys.readouterr().out.strip() == flags.VERSION


def test_a_port_another_process_holds_is_refused_in_one_line_before_any_model_loads(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from serving import server

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        # main() stops before it loads: the base path holds no model at all.
        for flag in ("--port", "--rest_api_port"):
            with pytest.raises(SystemExit) as caught:
                server.main([f"--model_base_path={tmp_path / 'nothing'}", f"{flag}={port}",
                             *([] if flag == "--port" else ["--port=0"])])
            assert caught.value.code == 2
            [line] = [ln for ln in capsys.readouterr().err.splitlines() if "error:" in ln]
            assert line.startswith(f"{flags.PROG}: error: {flag}={port}: 127.0.0.1:{port} "
                                   "cannot be bound")


def test_make_serve_without_a_released_model_says_so_in_one_line(tmp_path: Path) -> None:
    done = subprocess.run(["make", "--no-print-directory", "serve", f"OUTPUT={tmp_path}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode != 0
    [line] = done.stderr.splitlines()
    assert f"no released model in {tmp_path}/serving/" in line and "make run" in line
