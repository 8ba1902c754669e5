"""The gateway's own error types.

Domain code raises these; the HTTP layer (``mcp_gateway.http.responses``) is the one place that turns them into
status codes, ``WWW-Authenticate`` headers and JSON bodies, so the contract's error codes live in one table.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar


class ConfigError(Exception):
    """Every problem found in a config file, each prefixed with its path in the file."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


class GatewayError(Exception):
    """An error with a stable ``error`` code string and an HTTP status."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"

    def __init__(self, message: str, *, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class BadRequest(GatewayError):
    status = 400
    code = "bad_request"


class Unauthorized(GatewayError):
    status = 401
    code = "unauthorized"


class InvalidTaskToken(Unauthorized):
    code = "invalid_task_token"


class TaskRequired(Unauthorized):
    code = "task_required"


class Forbidden(GatewayError):
    status = 403
    code = "forbidden"


class NotFound(GatewayError):
    status = 404
    code = "not_found"


class Conflict(GatewayError):
    status = 409
    code = "conflict"


class PayloadTooLarge(GatewayError):
    status = 413
    code = "payload_too_large"


class ValidationFailed(GatewayError):
    status = 422
    code = "validation_failed"


class StoreUnavailable(GatewayError):
    status = 503
    code = "store_unavailable"


class UpstreamUnavailable(GatewayError):
    status = 502
    code = "upstream_unavailable"


class RpcError(Exception):
    """A JSON-RPC error to send back as-is: from our own checks (unknown tool) or relayed from an upstream."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data


def describe(exc: BaseException) -> str:
    """One line for logs and readiness: the innermost cause, not a task-group wrapper."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
