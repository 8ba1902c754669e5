"""``/mcp``: the endpoint for MCP clients of both protocol eras, as one ASGI app.

``_post`` is the whole path of a POST, top to bottom: the front door (origin, media type, ``front_door.py``), the
store gate, bearer authentication, the bounded and timed body read, the JSON-RPC envelope (``jsonrpc.py``), the
arguments' nesting check, task-token binding; then the era (a ``MCP-Protocol-Version`` naming a 2026-07-28-or-later
revision selects the stateless modern one, anything else the handshake one) prepares the call, and ``answer`` runs it
(the method table, then ``era.finish``) as a JSON body or an SSE stream. A check that refuses raises; the errors
become responses in one table, ``_ERROR_RESPONSES``. The headers are read once (``McpHeaders``), and the front door
and the store gate run here rather than as ASGI layers of their own, so ``/mcp`` is one layer under the tracing one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from mcp_types import INVALID_PARAMS
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from mcp_gateway.eras.answers import answer
from mcp_gateway.eras.context import McpContext
from mcp_gateway.eras.handshake import LegacyEra
from mcp_gateway.eras.jsonrpc import Envelope, Refused, parse_envelope, refused_body
from mcp_gateway.eras.modern import ModernEra
from mcp_gateway.eras.request_headers import McpHeaders
from mcp_gateway.errors import GatewayError
from mcp_gateway.http.front_door import FrontDoorRules, carries_body
from mcp_gateway.http.json_nesting import value_nests_deeper
from mcp_gateway.http.responses import (
    error_response,
    http_error_response,
    internal_error_response,
    json_response,
    receive_body,
)
from mcp_gateway.ops import tracing

logger = logging.getLogger(__name__)

# Methods whose ``params.arguments`` are the caller's own free-form JSON, forwarded to an upstream.
_ARGUMENT_METHODS = frozenset({"tools/call", "prompts/get"})
# Where the arguments sit in the message: {"params": {"arguments": ...}}.
_ARGUMENTS_LEVEL = 2
_ALLOWED_METHODS = "GET, HEAD, POST, DELETE"


def _refused_response(exc: Refused) -> Response:
    return json_response(refused_body(exc), exc.status)


_ERROR_RESPONSES: dict[type[Exception], Callable[[Any], Response]] = {
    Refused: _refused_response,
    GatewayError: error_response,
}
"""How a refusal becomes the answer, by exception type (the nearest base class wins, as in Starlette's table)."""


def _error_response(exc: Exception) -> Response | None:
    for kind in type(exc).__mro__:
        handler = _ERROR_RESPONSES.get(kind)
        if handler is not None:
            return handler(exc)
    return None


class McpEndpoint:
    """The ASGI app for every method on ``/mcp``."""

    def __init__(self, context: McpContext) -> None:
        self.context = context
        self.modern = ModernEra(context)
        self.legacy = LegacyEra(context)
        self.front_door = FrontDoorRules(context.server)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            headers = McpHeaders.read(scope["headers"])
            receive = self.front_door.body_deadline(receive)
            try:
                response = await self._respond(scope, headers, receive)
            except Exception as exc:
                refusal = _error_response(exc)
                if refusal is None:
                    raise
                response = refusal
            await response(scope, receive, tracked)
        except Exception:
            # A bug of ours: the client gets JSON without the details, the log gets the traceback.
            logger.exception("unhandled error answering %s /mcp", scope["method"])
            if started:
                raise
            await internal_error_response(Request(scope), Exception())(scope, receive, send)

    async def _respond(self, scope: Scope, headers: McpHeaders, receive: Receive) -> Response:
        method = scope["method"]
        body = carries_body(method, "/mcp", headers.content_length, headers.transfer_encoding)
        refusal = self.front_door.refusal("/mcp", headers.origin, headers.content_type, body)
        if refusal is not None:
            return refusal
        self.context.check_store()
        if method == "POST":
            return await self._post(headers, receive)
        if method not in ("GET", "HEAD", "DELETE"):
            return http_error_response(Request(scope), HTTPException(405, headers={"Allow": _ALLOWED_METHODS}))
        identity = await self.context.authenticate_bearer(headers.authorization)
        # Same rule as for POST: a task token, when sent or required, must be valid and owned.
        caller = await self.context.bind_token(identity, headers.task_token)
        if method == "GET":
            if headers.modern:
                return json_response({"error": "method_not_allowed", "message": "GET is legacy-era only"}, 405)
            return await self.legacy.open_stream(headers, caller)
        if method == "DELETE":
            return await self.legacy.end_session(headers, identity)
        return json_response({"error": "method_not_allowed", "message": "use POST"}, 405)

    async def _post(self, headers: McpHeaders, receive: Receive) -> Response:
        context = self.context
        identity = await context.authenticate_bearer(headers.authorization)
        body = await receive_body(receive, headers.content_length, context.server.max_body_bytes)
        envelope = parse_envelope(body, context.server.max_json_depth)
        tracing.request_parsed(envelope.method, envelope.params, envelope.id, headers.protocol_version)
        modern = headers.modern
        era = self.modern if modern else self.legacy
        context.metrics.request(envelope.method or "response", modern)
        if envelope.is_notification:
            return await era.notification(headers, identity, envelope)
        if self._arguments_too_deep(envelope):
            limit = context.server.max_argument_depth
            # Answered like any other invalid params: the SDK's status in the modern era, 200 in the legacy one.
            message = f"params.arguments nests deeper than {limit} levels"
            raise Refused(envelope.id, INVALID_PARAMS, message, status=era.error_status(INVALID_PARAMS))
        caller = await context.bind_token(identity, headers.task_token)
        prepared = await era.prepare(headers, caller, envelope)
        if isinstance(prepared, Response):
            return prepared
        return answer(prepared)

    def _arguments_too_deep(self, envelope: Envelope) -> bool:
        """Walks the arguments only when the whole message's nesting leaves room for them to be too deep."""
        limit = self.context.server.max_argument_depth
        if envelope.method not in _ARGUMENT_METHODS or envelope.nesting <= limit + _ARGUMENTS_LEVEL:
            return False
        return value_nests_deeper(envelope.params.get("arguments"), limit)
