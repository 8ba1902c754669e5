"""The 2026-07-28 (stateless) era at ``/mcp``.

Each POST is self-contained: the ``_meta`` envelope and the ``Mcp-Method``/``Mcp-Name``/``Mcp-Param-*`` headers are
checked against the body with the SDK's own validation ladder (``mcp.shared.inbound``), so a header that disagrees
with the body is refused with -32020 before anything is authorized or forwarded. Results get ``resultType`` and,
for lists, cache hints that are always ``private`` (the lists are computed for this caller) and never outlive the
caller's task session.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping
from typing import Any

from mcp.shared.inbound import (
    ERROR_CODE_HTTP_STATUS,
    InboundLadderRejection,
    classify_inbound_request,
    find_duplicated_routing_header,
    unsupported_protocol_version_rejection,
    validate_mcp_param_headers,
)
from mcp_types import (
    CLIENT_CAPABILITIES_META_KEY,
    HEADER_MISMATCH,
    INVALID_PARAMS,
    INVALID_REQUEST,
    LOG_LEVEL_META_KEY,
    SERVER_INFO_META_KEY,
)
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import Response

from mcp_gateway.config import Identity
from mcp_gateway.core.proxy import Caller, ClientLink
from mcp_gateway.core.tool_calls import ResolvedTool
from mcp_gateway.eras.answers import Emit, answer, progress_sink, progress_token
from mcp_gateway.eras.context import LIST_METHODS, Envelope, McpContext, accepts_sse, method_not_found
from mcp_gateway.eras.listen_streams import ListenStream, listening
from mcp_gateway.eras.log_levels import LOG_LEVELS
from mcp_gateway.eras.modern_client import ModernDownstream
from mcp_gateway.http.responses import json_response, rpc_error_body, rpc_result_body

LIST_TTL_MS = 60_000
"""How long a modern client may reuse a list; capped by the task session's remaining life."""

_DROP_FROM_UPSTREAM = ("ttlMs", "cacheScope")
_CACHEABLE_READS = frozenset({"resources/read"})
"""Results that are not lists but still must carry cache hints in 2026-07-28 (SEP-2549)."""
_OPTIONAL_WHITESPACE = " \t"
"""RFC 9110 §5.5: a field value excludes the spaces and tabs around it, so ``Mcp-Name:  x `` names ``x``."""


def _trimmed_mcp_headers(request: Request) -> Headers:
    """The request's headers with the optional whitespace around every ``Mcp-*`` value removed.

    Only the ``Mcp-*`` family is compared with the body; other headers pass unchanged.
    """
    raw = [
        (name, value.strip(_OPTIONAL_WHITESPACE.encode()) if name.lower().startswith(b"mcp-") else value)
        for name, value in request.headers.raw
    ]
    return Headers(raw=raw)


def _status(code: int) -> int:
    return ERROR_CODE_HTTP_STATUS.get(code, 200)


def _rejection(request_id: Any, code: int, message: str, data: Any = None) -> Response:
    return json_response(rpc_error_body(request_id, code, message, data), _status(code))


class ModernEra:
    def __init__(self, context: McpContext) -> None:
        self.context = context

    async def notification(self, request: Request, identity: Identity, envelope: Envelope) -> Response:
        """The 2026 wire defines no client→server notifications; accept and drop them, as the SDK does."""
        requested = request.headers.get("mcp-protocol-version", "")
        if (unsupported := unsupported_protocol_version_rejection(requested)) is not None:
            return _rejection(None, unsupported.code, unsupported.message, unsupported.data)
        return Response(status_code=202)

    async def request(self, request: Request, caller: Caller, envelope: Envelope) -> Response:
        headers = _trimmed_mcp_headers(request)
        raw_headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers.raw]
        if (duplicate := find_duplicated_routing_header(raw_headers)) is not None:
            return _rejection(envelope.id, HEADER_MISMATCH, f"{duplicate} header appears more than once")
        verdict = classify_inbound_request(envelope.raw, headers=headers)
        if isinstance(verdict, InboundLadderRejection):
            return _rejection(envelope.id, verdict.code, verdict.message, verdict.data)
        # The tool is resolved once: its Mcp-Param-* headers are checked against it and the call goes to it.
        tool = self.context.proxy.find_tool(caller, envelope.params) if envelope.method == "tools/call" else None
        if tool is not None and (rejection := self._check_param_headers(headers, tool, envelope.params)) is not None:
            return rejection

        handler = self.context.methods.get(envelope.method)
        if envelope.method == "server/discover":
            return json_response(rpc_result_body(envelope.id, self.discover_result()))
        if envelope.method == "subscriptions/listen":
            return self._listen(request, caller, envelope)
        if handler is None:
            error = method_not_found(envelope.method)
            return _rejection(envelope.id, error["code"], error["message"])

        token = progress_token(envelope.params)
        meta = envelope.params.get("_meta")
        meta = meta if isinstance(meta, Mapping) else {}
        capabilities = meta.get(CLIENT_CAPABILITIES_META_KEY)
        capabilities = capabilities if isinstance(capabilities, Mapping) else {}
        log_level = meta.get(LOG_LEVEL_META_KEY)
        if log_level is not None and log_level not in LOG_LEVELS:
            message = f"_meta.{LOG_LEVEL_META_KEY} must be one of {', '.join(LOG_LEVELS)}"
            return _rejection(envelope.id, INVALID_PARAMS, message)

        async def run(emit: Emit | None) -> dict[str, Any]:
            link = ClientLink(
                progress=progress_sink(emit, token) if emit is not None and token is not None else None,
                downstream=ModernDownstream(capabilities, emit, log_level),
                answers_input_required=True,
                capabilities=capabilities,
                log_level=log_level,
                answers_verbatim=True,
            )
            if tool is not None:
                return await self.context.proxy.call_tool(caller, envelope.params, link, tool)
            return await handler(caller, envelope.params, link)

        # Progress asked for: SSE at once. Log messages opted in to: SSE from the first one, if any comes.
        return await answer(
            envelope.id,
            run,
            lambda result: self.finish(envelope.method, caller, result),
            _status,
            stream=(token is not None or log_level is not None) and accepts_sse(request),
            lazy=token is None,
        )

    @staticmethod
    def _check_param_headers(headers: Headers, tool: ResolvedTool, params: Mapping[str, Any]) -> Response | None:
        arguments = params.get("arguments") or {}
        schema = tool.param_header_schema
        if schema is None or not isinstance(arguments, dict):
            return None
        rejection = validate_mcp_param_headers(schema, arguments, headers)
        if rejection is None:
            return None
        return _rejection(None, rejection.code, rejection.message, rejection.data)

    def _listen(self, request: Request, caller: Caller, envelope: Envelope) -> Response:
        if not isinstance(envelope.params.get("notifications"), Mapping):
            return _rejection(envelope.id, INVALID_PARAMS, "subscriptions/listen requires params.notifications")
        if not accepts_sse(request):
            message = "subscriptions/listen answers with a stream: send Accept: text/event-stream"
            return _rejection(envelope.id, INVALID_REQUEST, message)
        context = self.context
        visible = functools.partial(context.proxy.resource_visible, caller)
        subscription = listening(caller, envelope.id, envelope.params, visible, context.notifier, context.subscriptions)
        if isinstance(subscription, str):
            return _rejection(envelope.id, INVALID_PARAMS, subscription)
        return ListenStream(subscription)

    def discover_result(self) -> dict[str, Any]:
        return {
            "supportedVersions": list(MODERN_PROTOCOL_VERSIONS),
            "capabilities": self.context.capabilities,
            "resultType": "complete",
            "ttlMs": LIST_TTL_MS,
            "cacheScope": "public",
            "_meta": {SERVER_INFO_META_KEY: self.context.server_info},
        }

    def finish(self, method: str, caller: Caller, result: dict[str, Any]) -> dict[str, Any]:
        """Frame an (upstream or gateway) result for a 2026-07-28 client."""
        if method in LIST_METHODS:
            result = {k: v for k, v in result.items() if k not in _DROP_FROM_UPSTREAM}
            ttl_ms = LIST_TTL_MS
            if caller.session is not None:
                remaining_ms = int((caller.session.expires_at.timestamp() - time.time()) * 1000)
                ttl_ms = max(0, min(ttl_ms, remaining_ms))
            result["ttlMs"] = ttl_ms
            result["cacheScope"] = "private"
        elif "cacheScope" in result:
            # An upstream's public hint does not survive a hop that filters and authorizes per caller.
            result = {**result, "cacheScope": "private"}
        if method in _CACHEABLE_READS and "ttlMs" not in result:
            # A handshake-era upstream gives no hint; 2026-07-28 requires one, and "do not reuse" is the only safe one.
            result = {**result, "ttlMs": 0, "cacheScope": "private"}
        if "resultType" not in result:
            result = {**result, "resultType": "complete"}
        meta = result.get("_meta")
        stamp = {SERVER_INFO_META_KEY: self.context.server_info}
        return {**result, "_meta": {**meta, **stamp} if isinstance(meta, Mapping) else stamp}
