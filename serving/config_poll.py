"""--model_config_file_poll_wait_seconds: re-reads models.config and applies
an edited one through the manager's all-or-nothing reload, as
`tensorflow_model_server` does, so a deployment changes its models by
editing the mounted file (a Kubernetes ConfigMap) instead of restarting.

A file that cannot be read or parsed, or a config the manager refuses, is
logged once with the file and the reason; the models served before keep
serving and the next edit is tried. The same refused content is not tried
again on every poll: that would reload a corrupt version every N seconds.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from google.protobuf import text_format

from serving.errors import ServingError
from serving.manager import ModelManager, parse_model_server_config

__all__ = ["ConfigFilePoller", "Outcome", "read_config_file"]

log = logging.getLogger("serving")


def read_config_file(path: str) -> str:
    """The file's content (OSError or UnicodeDecodeError if it cannot be read)."""
    with open(path, encoding="utf-8") as handle:
        return handle.read()


@dataclass(frozen=True)
class Outcome:
    """What one poll did: `applied`, `unchanged`, `unreadable` or `refused`."""

    kind: str
    reason: str = ""


class ConfigFilePoller:
    """Polls one models.config every `wait_s` seconds on a background thread
    (`start()`, `stop()`); `poll_once()` is one look, for tests and the loop."""

    def __init__(self, manager: ModelManager, path: str, applied_text: str,
                 wait_s: float) -> None:
        """`applied_text` is the content the server started from: only a change
        from it is applied."""
        if wait_s <= 0:
            raise ValueError(f"wait_s must be > 0, got {wait_s}")
        self._manager, self._path, self._wait_s = manager, path, wait_s
        self._tried = applied_text  # the content last applied or refused
        self._unreadable = ""  # the last read error logged (logged once while it lasts)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def poll_once(self) -> Outcome:
        """Reads the file and, if its content changed, reloads the manager with it."""
        try:
            text = read_config_file(self._path)
        except (OSError, UnicodeDecodeError) as error:
            reason = f"{type(error).__name__}: {error}"
            if reason != self._unreadable:
                log.error("model config file %s unreadable, previous models keep serving: %s",
                          self._path, reason)
                self._unreadable = reason
            return Outcome("unreadable", reason)
        self._unreadable = ""
        if text == self._tried:
            return Outcome("unchanged")
        self._tried = text
        try:
            self._manager.reload(parse_model_server_config(text))
        except text_format.ParseError as error:
            return self._refused(f"not a text-format ModelServerConfig: {error}")
        except ServingError as error:
            return self._refused(f"{error.code}: {error.message}")
        log.info("model config file %s applied", self._path)
        return Outcome("applied")

    def _refused(self, reason: str) -> Outcome:
        log.error("model config file %s refused, previous models keep serving "
                  "(retried when the file changes): %s", self._path, reason)
        return Outcome("refused", reason)

    def start(self) -> None:
        """Polls every `wait_s` seconds until `stop()`."""
        self._thread = threading.Thread(target=self._poll_loop, name="config-file-poller",
                                        daemon=True)
        self._thread.start()

    def _poll_loop(self) -> None:
        while not self._stop.wait(self._wait_s):
            try:
                self.poll_once()
            except Exception:  # the poll loop must survive anything a reload does
                log.exception("polling model config file %s failed", self._path)

    def stop(self) -> None:
        """Stops polling; waits for a reload in progress to finish."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
            self._thread = None
