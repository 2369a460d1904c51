"""The error every layer of the server raises, and the clients too,
carrying TF Serving's status.

TF Serving answers a bad request with a canonical status code and a message
(gRPC), or with the HTTP code its REST handler maps that status to and
`{"error": message}`. Raising one exception type everywhere keeps that
mapping in one place.
"""

from __future__ import annotations

__all__ = ["ServingError", "http_status", "code_of_http_status", "GRPC_CODE_NAMES"]

#: Canonical status names (grpc.StatusCode member names), as TF Serving reports them.
GRPC_CODE_NAMES = (
    "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
    "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
    "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
    "UNAUTHENTICATED",
)

# tensorflow_serving/model_servers/http_rest_api_util: ToHTTPStatusCode.
_HTTP = {
    "OK": 200, "CANCELLED": 499, "UNKNOWN": 500, "INVALID_ARGUMENT": 400,
    "DEADLINE_EXCEEDED": 504, "NOT_FOUND": 404, "ALREADY_EXISTS": 409,
    "PERMISSION_DENIED": 403, "RESOURCE_EXHAUSTED": 429, "FAILED_PRECONDITION": 400,
    "ABORTED": 409, "OUT_OF_RANGE": 400, "UNIMPLEMENTED": 501, "INTERNAL": 500,
    "UNAVAILABLE": 503, "DATA_LOSS": 500, "UNAUTHENTICATED": 401,
}


def http_status(code: str) -> int:
    """HTTP status TF Serving's REST API answers for a canonical status name."""
    return _HTTP.get(code, 500)


def code_of_http_status(status: int) -> str:
    """The canonical status a REST client reads from an HTTP error: the first
    whose mapping (above) gives `status` (400: INVALID_ARGUMENT, 409:
    ALREADY_EXISTS, 500: UNKNOWN), else UNKNOWN."""
    return next((code for code, http in _HTTP.items() if http == status and code != "OK"),
                "UNKNOWN")


class ServingError(Exception):
    """A request failed with a canonical status (`code`, e.g. "NOT_FOUND")."""

    def __init__(self, code: str, message: str) -> None:
        if code not in _HTTP:
            raise ValueError(f"not a canonical status code: {code}")
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def http_status(self) -> int:
        """The HTTP status of this error on the REST API."""
        return http_status(self.code)
