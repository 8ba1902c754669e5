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
from contextlib import AbstractContextManager, nullcontext
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
    METHOD_NOT_FOUND,
    SERVER_INFO_META_KEY,
)
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from starlette.datastructures import Headers
from starlette.responses import Response

from mcp_gateway.config import Identity
from mcp_gateway.core.proxy import Caller, ClientLink
from mcp_gateway.core.tool_calls import ResolvedTool
from mcp_gateway.eras.answers import progress_sink, progress_token
from mcp_gateway.eras.calls import Emit, PreparedCall
from mcp_gateway.eras.context import LIST_METHODS, McpContext, MethodHandler
from mcp_gateway.eras.jsonrpc import Envelope, Refused, method_not_found, result_body
from mcp_gateway.eras.listen_streams import ListenStream, listening
from mcp_gateway.eras.log_levels import LOG_LEVELS
from mcp_gateway.eras.modern_client import ModernDownstream
from mcp_gateway.eras.request_headers import McpHeaders
from mcp_gateway.http.responses import json_response

LIST_TTL_MS = 60_000
"""How long a modern client may reuse a list; capped by the task session's remaining life."""

_DROP_FROM_UPSTREAM = ("ttlMs", "cacheScope")
_CACHEABLE_READS = frozenset({"resources/read"})
"""Results that are not lists but still must carry cache hints in 2026-07-28 (SEP-2549)."""


def _status(code: int) -> int:
    return ERROR_CODE_HTTP_STATUS.get(code, 200)


def _refused(request_id: Any, code: int, message: str, data: Any = None) -> Refused:
    return Refused(request_id, code, message, data, status=_status(code))


class ModernEra:
    def __init__(self, context: McpContext) -> None:
        self.context = context

    def error_status(self, code: int) -> int:
        return _status(code)

    async def notification(self, headers: McpHeaders, identity: Identity, envelope: Envelope) -> Response:
        """The 2026 wire defines no client→server notifications; accept and drop them, as the SDK does."""
        requested = headers.protocol_version or ""
        if (unsupported := unsupported_protocol_version_rejection(requested)) is not None:
            raise _refused(None, unsupported.code, unsupported.message, unsupported.data)
        return Response(status_code=202)

    async def prepare(self, headers: McpHeaders, caller: Caller, envelope: Envelope) -> PreparedCall | Response:
        """The header ladder and the ``Mcp-Param-*`` checks, then the call (or the answer of a method of this era)."""
        mcp_headers = Headers(raw=headers.mcp)
        if (duplicate := find_duplicated_routing_header(mcp_headers.items())) is not None:
            raise _refused(envelope.id, HEADER_MISMATCH, f"{duplicate} header appears more than once")
        verdict = classify_inbound_request(envelope.raw, headers=mcp_headers)
        if isinstance(verdict, InboundLadderRejection):
            raise _refused(envelope.id, verdict.code, verdict.message, verdict.data)
        method = envelope.method
        params = envelope.params
        handler: MethodHandler | None = self.context.methods.get(method)
        if method == "tools/call":
            # The tool is resolved once: its Mcp-Param-* headers are checked against it and the call goes to it.
            tool = self.context.proxy.find_tool(caller, params)
            if tool is not None:
                self._check_param_headers(mcp_headers, tool, params)
                handler = functools.partial(self.context.proxy.call_tool, tool=tool)
        if method == "server/discover":
            return json_response(result_body(envelope.id, self.discover_result()))
        if method == "subscriptions/listen":
            return self._listen(headers, caller, envelope)
        if handler is None:
            raise method_not_found(envelope.id, method, _status(METHOD_NOT_FOUND))

        meta = params.get("_meta")
        meta = meta if isinstance(meta, Mapping) else {}
        capabilities = meta.get(CLIENT_CAPABILITIES_META_KEY)
        log_level = meta.get(LOG_LEVEL_META_KEY)
        if log_level is not None and log_level not in LOG_LEVELS:
            message = f"_meta.{LOG_LEVEL_META_KEY} must be one of {', '.join(LOG_LEVELS)}"
            raise _refused(envelope.id, INVALID_PARAMS, message)
        token = progress_token(params)
        return PreparedCall(
            envelope.id,
            method,
            params,
            caller,
            handler,
            self,
            # Progress asked for: SSE at once. Log messages opted in to: SSE from the first one, if any comes.
            stream=(token is not None or log_level is not None) and headers.accepts_sse,
            lazy=token is None,
            progress=token,
            capabilities=capabilities if isinstance(capabilities, Mapping) else {},
            log_level=log_level,
        )

    def calling(self, call: PreparedCall, emit: Emit | None) -> AbstractContextManager[ClientLink]:
        token = call.progress
        capabilities = call.capabilities or {}
        link = ClientLink(
            progress=progress_sink(emit, token) if emit is not None and token is not None else None,
            downstream=ModernDownstream(capabilities, emit, call.log_level),
            answers_input_required=True,
            capabilities=capabilities,
            log_level=call.log_level,
            answers_verbatim=True,
        )
        return nullcontext(link)

    @staticmethod
    def _check_param_headers(headers: Headers, tool: ResolvedTool, params: Mapping[str, Any]) -> None:
        arguments = params.get("arguments") or {}
        schema = tool.param_header_schema
        if schema is None or not isinstance(arguments, dict):
            return
        rejection = validate_mcp_param_headers(schema, arguments, headers)
        if rejection is not None:
            raise _refused(None, rejection.code, rejection.message, rejection.data)

    def _listen(self, headers: McpHeaders, caller: Caller, envelope: Envelope) -> Response:
        if not isinstance(envelope.params.get("notifications"), Mapping):
            raise _refused(envelope.id, INVALID_PARAMS, "subscriptions/listen requires params.notifications")
        if not headers.accepts_sse:
            message = "subscriptions/listen answers with a stream: send Accept: text/event-stream"
            raise _refused(envelope.id, INVALID_REQUEST, message)
        context = self.context
        visible = functools.partial(context.proxy.resource_visible, caller)
        subscription = listening(caller, envelope.id, envelope.params, visible, context.notifier, context.subscriptions)
        if isinstance(subscription, str):
            raise _refused(envelope.id, INVALID_PARAMS, subscription)
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
