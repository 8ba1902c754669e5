"""The gateway's own error types.

Domain code raises these; the HTTP layer (``mcp_gateway.http.responses``) is the one place that turns them into
status codes, ``WWW-Authenticate`` headers and JSON bodies, so the contract's error codes live in one table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar


class ConfigError(Exception):
    """Every problem found in a config file, each prefixed with its path in the file."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


@dataclass(frozen=True)
class BearerChallenge:
    """The parameters of a ``WWW-Authenticate: Bearer`` challenge (RFC 6750 section 3, RFC 9728 section 5.1).

    Every value is a fixed text or comes from config, never from the request: a header cannot carry arbitrary
    characters (a non-latin-1 one fails the response, CR/LF ends it), and a caller must not write into it.
    ``error`` is None when the request carried no credential at all, as RFC 6750 asks.
    """

    error: str | None = "invalid_token"
    description: str | None = None
    scope: str | None = None
    resource_metadata: str | None = None

    def header(self) -> str:
        params = [
            ("realm", "mcp-gateway"),
            ("error", self.error),
            ("error_description", self.description),
            ("resource_metadata", self.resource_metadata),
            ("scope", self.scope),
        ]
        return "Bearer " + ", ".join(f'{name}="{value}"' for name, value in params if value)


class GatewayError(Exception):
    """An error with a stable ``error`` code string, an HTTP status and, for auth failures, a Bearer challenge."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"

    def __init__(self, message: str, *, details: Any = None, challenge: BearerChallenge | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        self.challenge = challenge


class BadRequest(GatewayError):
    status = 400
    code = "bad_request"


class Unauthorized(GatewayError):
    """401. The challenge defaults to a generic ``invalid_token`` one; the message may say more than the challenge
    but, like it, never quotes the credential or anything decoded from it."""

    status = 401
    code = "unauthorized"
    default_description: ClassVar[str] = "the bearer credential was not accepted"

    def __init__(self, message: str, *, details: Any = None, challenge: BearerChallenge | None = None) -> None:
        super().__init__(
            message, details=details, challenge=challenge or BearerChallenge(description=self.default_description)
        )


class InvalidTaskToken(Unauthorized):
    code = "invalid_task_token"
    default_description = "the X-Task-Token is missing, invalid or expired"


class TaskRequired(Unauthorized):
    code = "task_required"
    default_description = "this identity must send an X-Task-Token header"


class Forbidden(GatewayError):
    status = 403
    code = "forbidden"


class TaskNotPermitted(Forbidden):
    """The identity may not open sessions of this task: it is not in ``startableBy``, or the task would widen it."""

    code = "task_not_permitted"


class InsufficientScope(Forbidden):
    """403 for a valid access token without a scope this resource requires; the challenge names the scopes."""

    code = "insufficient_scope"


class NotFound(GatewayError):
    status = 404
    code = "not_found"


class Conflict(GatewayError):
    """The request is well-formed but clashes with what exists: a taken id, a read-only definition."""

    status = 409
    code = "conflict"


class RequestTimeout(GatewayError):
    status = 408
    code = "request_timeout"


class PayloadTooLarge(GatewayError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(GatewayError):
    status = 415
    code = "unsupported_media_type"


class ValidationFailed(GatewayError):
    status = 422
    code = "validation_failed"


class RateLimited(GatewayError):
    """429: over a rate limit; ``Retry-After`` (whole seconds, rounded up) tells the caller when to try again."""

    status = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after_ms: int) -> None:
        super().__init__(message, details={"retryAfterMs": retry_after_ms})
        self.retry_after_ms = retry_after_ms


class StoreUnavailable(GatewayError):
    status = 503
    code = "store_unavailable"


class AuthorizationServerUnavailable(GatewayError):
    """503: a token could not be checked because the authorization server did not answer (fail closed)."""

    status = 503
    code = "authorization_server_unavailable"


class UpstreamUnavailable(GatewayError):
    status = 502
    code = "upstream_unavailable"


POLICY_DENIED = -32003
"""JSON-RPC code of a ``resources/read``, ``prompts/get`` or ``completion/complete`` that a policy blocked (a blocked
``tools/call`` answers an ``isError`` result instead). In the implementation-defined server range, clear of the
codes the MCP SDK uses (-32000 connection closed, -32001 request timeout, -32002 resource not found, -32020..-32042)."""

TOOL_WITHHELD = -32004
"""JSON-RPC code of a ``tools/call`` to a tool withheld because its definition changed upstream and awaits an admin's
approval (``pinning: enforce``); only a caller allowed to see the tool gets it, others get "Unknown tool"."""

RATE_LIMITED = -32005
"""JSON-RPC code of a ``tools/call`` refused by a rate limit (``limits:``); ``data`` holds ``retryAfterMs`` and the
``limit`` that refused. Next to ``POLICY_DENIED`` for the same reasons."""

BUDGET_EXHAUSTED = -32006
"""JSON-RPC code of a ``tools/call`` refused because its task session spent a budget; ``data`` names the ``budget``
(``totalCalls`` or ``tools.<name>``) and its ``limit``. Unlike a rate limit it never refills: the session is done."""

GATEWAY_REFUSED = -32007
"""JSON-RPC code of a request refused before any method ran, where no HTTP status can say why (``mcp-gateway stdio``):
``data`` holds the stable ``error`` string and the HTTP ``status`` the same refusal gets at ``/mcp`` (401 for a
credential or task token not accepted, 403, 503 while the store is unavailable)."""


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
