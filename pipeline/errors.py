"""How a failed run reaches the user: one line for their errors, a traceback for bugs.

A user error (bad data, a failed check: components.errors.UserFacingError,
or a missing file) prints `error: <message>` and where the traceback was
saved; `--verbose` prints the traceback too. Anything else is a bug and
prints its traceback. Either way the traceback is kept under OUTPUT/logs/
for bug reports, and OUTPUT/last_run.json records the failure.
"""

from __future__ import annotations

import datetime
import json
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path

from components.errors import UserFacingError
from components.release.layout import LAST_RUN_FILE

__all__ = ["report", "user_error"]

#: Exit status of a run that failed (a check, the data, a bug); 2 is a bad flag.
FAILED = 1


def _chain(err: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def user_error(err: BaseException) -> BaseException | None:
    """The user-facing error behind `err` (orchestrators wrap executor errors), if any."""
    for link in _chain(err):
        if isinstance(link, UserFacingError | FileNotFoundError):
            return link
    return None


def _save(err: BaseException, output_dir: Path) -> Path | None:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = output_dir / "logs" / f"error-{stamp}.log"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(traceback.format_exception(err)))
        (output_dir / LAST_RUN_FILE).write_text(json.dumps(
            {"status": "failed", "error": str(err).splitlines()[0] if str(err) else repr(err),
             "log": str(path)}, indent=2))
    except OSError:
        return None
    return path


def report(err: BaseException, output_dir: Path, *, verbose: bool) -> int:
    """Prints the failure and returns the exit status."""
    saved = _save(err, output_dir)
    cause = user_error(err)
    if cause is None or verbose:
        traceback.print_exception(err, file=sys.stderr)
    where = f"; traceback in {saved}" if saved else ""
    if cause is not None:
        print(f"error: {cause}", file=sys.stderr)
        if not verbose:
            print(f"(run with --verbose to see the traceback{where})", file=sys.stderr)
    else:
        print(f"error: the run failed with an unexpected {type(err).__name__}{where}",
              file=sys.stderr)
    return FAILED
