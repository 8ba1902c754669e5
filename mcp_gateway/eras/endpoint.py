"""``/mcp``: the endpoint for MCP clients of both protocol eras.

Every POST goes through the same steps before any method runs: the front door's Origin and media-type checks
(``front_door.py``), bearer authentication, bounded and timed body read, nesting and JSON-RPC envelope checks, the
arguments' nesting check, task-token binding. Then the era decides the rest: a
``MCP-Protocol-Version`` header naming a 2026-07-28-or-later revision selects the stateless modern path; anything
else is the legacy handshake/``Mcp-Session-Id`` path.
"""

from __future__ import annotations

from mcp.shared.inbound import ERROR_CODE_HTTP_STATUS
from mcp_types import INVALID_PARAMS
from starlette.requests import Request
from starlette.responses import Response

from mcp_gateway.eras.context import Envelope, McpContext, is_modern, parse_envelope
from mcp_gateway.eras.handshake import LegacyEra
from mcp_gateway.eras.modern import ModernEra
from mcp_gateway.errors import GatewayError
from mcp_gateway.http.json_nesting import value_nests_deeper
from mcp_gateway.http.responses import error_response, json_response, read_body, rpc_error_body
from mcp_gateway.ops import tracing

# Methods whose ``params.arguments`` are the caller's own free-form JSON, forwarded to an upstream.
_ARGUMENT_METHODS = frozenset({"tools/call", "prompts/get"})
# Where the arguments sit in the message: {"params": {"arguments": ...}}.
_ARGUMENTS_LEVEL = 2


class McpEndpoint:
    """Starlette endpoint for POST/GET/DELETE /mcp."""

    def __init__(self, context: McpContext) -> None:
        self.context = context
        self.modern = ModernEra(context)
        self.legacy = LegacyEra(context)

    async def __call__(self, request: Request) -> Response:
        try:
            if request.method == "POST":
                return await self._post(request)
            identity = await self.context.authenticate(request)
            # Same rule as for POST: a task token, when sent or required, must be valid and owned.
            caller = await self.context.bind_task(identity, request)
            if request.method == "GET":
                if is_modern(request):
                    return json_response({"error": "method_not_allowed", "message": "GET is legacy-era only"}, 405)
                return await self.legacy.open_stream(request, caller)
            if request.method == "DELETE":
                return await self.legacy.end_session(request, identity)
            return json_response({"error": "method_not_allowed", "message": "use POST"}, 405)
        except GatewayError as exc:
            return error_response(exc)

    async def _post(self, request: Request) -> Response:
        identity = await self.context.authenticate(request)
        body = await read_body(request, self.context.server.max_body_bytes)
        envelope = parse_envelope(body, self.context.server.max_json_depth)
        if not isinstance(envelope, Envelope):
            return json_response(envelope, 400)
        tracing.request_parsed(envelope.method, envelope.params, envelope.id, request.headers)
        modern = is_modern(request)
        self.context.metrics.request(envelope.method or "response", modern)
        if envelope.is_notification:
            return await (self.modern if modern else self.legacy).notification(request, identity, envelope)
        if self._arguments_too_deep(envelope):
            limit = self.context.server.max_argument_depth
            error = rpc_error_body(envelope.id, INVALID_PARAMS, f"params.arguments nests deeper than {limit} levels")
            # Answered like any other invalid params: the SDK's status in the modern era, 200 in the legacy one.
            return json_response(error, ERROR_CODE_HTTP_STATUS[INVALID_PARAMS] if modern else 200)
        caller = await self.context.bind_task(identity, request)
        if modern:
            return await self.modern.request(request, caller, envelope)
        return await self.legacy.request(request, caller, envelope)

    def _arguments_too_deep(self, envelope: Envelope) -> bool:
        """Walks the arguments only when the whole message's nesting leaves room for them to be too deep."""
        limit = self.context.server.max_argument_depth
        if envelope.method not in _ARGUMENT_METHODS or envelope.nesting <= limit + _ARGUMENTS_LEVEL:
            return False
        return value_nests_deeper(envelope.params.get("arguments"), limit)
