"""serving.process: a child server is yielded only once its probe passes, a
failed start says why with the log's tail, and the child never outlives the
block (SIGTERM first, SIGKILL if it will not stop)."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import pytest

from serving.process import StartError, child_until_ready, model_available


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_a_child_that_exits_is_a_start_error_with_its_code_and_log(tmp_path: Path) -> None:
    log = tmp_path / "child.log"
    exits = _python("print('port 1 is taken'); raise SystemExit(3)")
    with (pytest.raises(StartError, match=r"exited with code 3: .*port 1 is taken"),
          child_until_ready(exits, log, lambda: False, timeout_s=30, poll_s=0.05)):
        pass


def test_a_child_never_ready_is_stopped_after_the_timeout(tmp_path: Path) -> None:
    children = []

    def never() -> bool:
        return False

    sleeps = _python("import time; time.sleep(60)")
    with (pytest.raises(StartError, match=r"not ready within 0.5 s"),
          child_until_ready(sleeps, tmp_path / "child.log", never, timeout_s=0.5,
                            poll_s=0.05) as child):
        children.append(child)
    assert not children  # the block never ran


def test_the_child_runs_while_the_block_runs_and_gets_sigterm_after(tmp_path: Path) -> None:
    ready_file = tmp_path / "ready"
    code = f"import pathlib, time; pathlib.Path({str(ready_file)!r}).touch(); time.sleep(60)"
    with child_until_ready(_python(code), tmp_path / "child.log", ready_file.exists,
                           timeout_s=30, poll_s=0.05) as child:
        assert child.poll() is None
    assert child.returncode == -signal.SIGTERM


def test_a_child_that_ignores_sigterm_is_killed_after_the_drain_time(tmp_path: Path) -> None:
    ready_file = tmp_path / "ready"
    code = ("import pathlib, signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            f"pathlib.Path({str(ready_file)!r}).touch(); time.sleep(60)")
    with child_until_ready(_python(code), tmp_path / "child.log", ready_file.exists,
                           timeout_s=30, poll_s=0.05, stop_timeout_s=0.5) as child:
        pass
    assert child.returncode == -signal.SIGKILL


def _rows(state: str, error_code: str = "OK") -> list[dict[str, object]]:
    return [{"version": "1", "state": state,
             "status": {"error_code": error_code, "error_message": ""}}]


def test_the_model_probe_waits_for_available_and_gives_up_on_a_failed_load() -> None:
    assert not model_available(lambda: _rows("LOADING"))()
    assert model_available(lambda: _rows("AVAILABLE"))()
    with pytest.raises(StartError, match="load failed"):
        model_available(lambda: _rows("END", "NOT_FOUND"))()


def test_the_model_probe_treats_a_server_not_yet_listening_as_not_ready() -> None:
    def refused() -> list[dict[str, object]]:
        raise ConnectionRefusedError("127.0.0.1:1")

    assert not model_available(refused)()
