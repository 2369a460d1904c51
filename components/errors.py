"""The marker of errors a user can fix (bad data, a failed check), as opposed to bugs.

Runners print these as one line without a traceback. Pure Python: the
runner's error handling imports it without TensorFlow.
"""

from __future__ import annotations

__all__ = ["UserFacingError"]


class UserFacingError(Exception):
    """Raised for a problem in the user's data, configuration or model, with a
    message that names the file, field or check and says what to do."""
