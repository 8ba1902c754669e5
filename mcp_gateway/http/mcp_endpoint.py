"""``/mcp``: the front door for MCP clients of both protocol eras.

Every POST goes through the same steps before any method runs: Origin check, bounded body read, bearer
authentication, JSON-RPC envelope check, task-token binding. Then the era decides the rest: a
``MCP-Protocol-Version`` header naming a 2026-07-28-or-later revision selects the stateless modern path; anything
else is the legacy handshake/``Mcp-Session-Id`` path.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from mcp_gateway.errors import GatewayError
from mcp_gateway.http.legacy import LegacyEra
from mcp_gateway.http.mcp_context import Envelope, McpContext, is_modern, parse_envelope
from mcp_gateway.http.modern import ModernEra
from mcp_gateway.http.responses import error_response, json_response, read_body


class McpEndpoint:
    """Starlette endpoint for POST/GET/DELETE /mcp."""

    def __init__(self, context: McpContext) -> None:
        self.context = context
        self.modern = ModernEra(context)
        self.legacy = LegacyEra(context)

    async def __call__(self, request: Request) -> Response:
        try:
            self.context.check_origin(request)
            if request.method == "POST":
                return await self._post(request)
            identity = await self.context.authenticate(request)
            # Same rule as for POST: a task token, when sent or required, must be valid and owned.
            await self.context.bind_task(identity, request)
            if request.method == "GET":
                if is_modern(request):
                    return json_response({"error": "method_not_allowed", "message": "GET is legacy-era only"}, 405)
                return await self.legacy.open_stream(request, identity)
            if request.method == "DELETE":
                return await self.legacy.end_session(request, identity)
            return json_response({"error": "method_not_allowed", "message": "use POST"}, 405)
        except GatewayError as exc:
            return error_response(exc)

    async def _post(self, request: Request) -> Response:
        identity = await self.context.authenticate(request)
        body = await read_body(request, self.context.server.max_body_bytes)
        envelope = parse_envelope(body)
        if not isinstance(envelope, Envelope):
            return json_response(envelope, 400)
        modern = is_modern(request)
        self.context.metrics.requests.labels(envelope.method or "response", "modern" if modern else "legacy").inc()
        if envelope.is_notification:
            return await (self.modern if modern else self.legacy).notification(request, identity, envelope)
        caller = await self.context.bind_task(identity, request)
        if modern:
            return await self.modern.request(request, caller, envelope)
        return await self.legacy.request(request, caller, envelope)
