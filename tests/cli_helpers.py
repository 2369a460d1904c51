"""How the tests hold a command line to the project's rule for bad flags:
refused at parse time, exit status 2, one line on stderr, no traceback."""

from __future__ import annotations

from collections.abc import Callable

import pytest


def refused_in_one_line(parse: Callable[[], object],
                        capsys: pytest.CaptureFixture[str]) -> str:
    """Calls `parse` (a main or a parser given bad flags), checks it exits
    with status 2 after writing exactly one line to stderr, and returns that
    line for the caller to check what it names."""
    with pytest.raises(SystemExit) as exit_info:
        parse()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.endswith("\n"), err
    return err.rstrip("\n")
