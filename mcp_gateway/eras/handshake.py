"""The handshake era (2024-11-05 … 2025-11-25) at ``/mcp``.

``initialize`` opens a session whose state (owner identity, negotiated version, client capabilities) lives in the
store, not in this process, so any replica behind a load balancer can serve the session's next request. A session
belongs to the identity that opened it: another identity presenting its id gets the same 404 as for an unknown id.
The records themselves are ``session_records.py``'s; this module decides who may use one and what a request in one
answers. ``prepare`` loads the session and answers the era's own methods (``initialize``, ``ping``,
``logging/setLevel``, ``resources/(un)subscribe``); ``calling`` registers a call in flight (``handshake_calls.py``) so
its client can cancel it and answer what the upstream asks it mid-call.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import replace
from typing import Any

import anyio
from mcp_types import INVALID_PARAMS, INVALID_REQUEST
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, LATEST_HANDSHAKE_VERSION
from starlette.responses import Response

from mcp_gateway.config import Identity
from mcp_gateway.core.notifications import Notifier
from mcp_gateway.core.proxy import Caller, ClientLink, unknown_resource
from mcp_gateway.eras.answers import END, EventStream, Frame, NextFrame, progress_sink, progress_token
from mcp_gateway.eras.calls import Emit, PreparedCall
from mcp_gateway.eras.context import SESSION_HEADER, McpContext
from mcp_gateway.eras.handshake_calls import LegacyCalls
from mcp_gateway.eras.jsonrpc import Envelope, Refused, method_not_found, result_body
from mcp_gateway.eras.log_levels import LOG_LEVELS
from mcp_gateway.eras.request_headers import McpHeaders
from mcp_gateway.eras.session_records import LegacySession, SessionRecords
from mcp_gateway.errors import RpcError
from mcp_gateway.http.responses import json_response

_MODERN_ONLY_FIELDS = ("resultType", "ttlMs", "cacheScope")
# Methods whose upstream may need the client mid-call (progress, log messages, requests), so may answer over SSE.
_LINKED_METHODS = frozenset({"tools/call", "resources/read", "prompts/get"})
_RESUMABLE_STREAMS_SINCE = "2025-11-25"
"""The first revision whose SSE streams open with a priming event and carry event ids (versions compare as text)."""


def _refused(request_id: Any, code: int, message: str, status: int = 200) -> Refused:
    """The handshake era answers JSON-RPC errors with 200, but for a missing (400) or unknown (404) session."""
    return Refused(request_id, code, message, status=status)


def finish_for_handshake_era(result: dict[str, Any]) -> dict[str, Any]:
    """A 2025-era client must not see the 2026 result fields a modern upstream may have sent."""
    if any(key in result for key in _MODERN_ONLY_FIELDS):
        return {k: v for k, v in result.items() if k not in _MODERN_ONLY_FIELDS}
    return result


class LegacyEra:
    def __init__(self, context: McpContext) -> None:
        self.context = context
        self.records = SessionRecords(context.store, context.server.mcp_session_ttl)
        self._ttl = context.server.mcp_session_ttl
        self.calls = LegacyCalls()

    def error_status(self, code: int) -> int:
        return 200

    async def _load(self, headers: McpHeaders, identity: Identity, request_id: Any) -> LegacySession:
        """The session the request names, when it exists and belongs to ``identity``; else ``Refused``."""
        session_id = headers.session_id
        if not session_id:
            raise _refused(request_id, INVALID_REQUEST, "Bad Request: Mcp-Session-Id header is required", 400)
        session = await self.records.load(session_id)
        if session is None or session.identity_id != identity.id:
            raise _refused(request_id, INVALID_REQUEST, "Session not found", 404)
        self.context.subscriptions.touch(_target(session.id), self._ttl)
        return session

    async def notification(self, headers: McpHeaders, identity: Identity, envelope: Envelope) -> Response:
        """A notification, or the client's response to a request the gateway sent it during a call."""
        session = await self._load(headers, identity, None)
        if not envelope.method:
            self.calls.deliver(session.id, envelope.raw)
        elif envelope.method == "notifications/cancelled":
            self.calls.cancel(session.id, envelope.params.get("requestId"))
        return Response(status_code=202)

    async def prepare(self, headers: McpHeaders, caller: Caller, envelope: Envelope) -> PreparedCall | Response:
        """The session (loaded, owner checked), then the call (or the answer of a method of this era)."""
        method = envelope.method
        if method == "initialize":
            return await self._initialize(caller.identity, envelope)
        session = await self._load(headers, caller.identity, envelope.id)
        if method == "ping":
            # Only the handshake era has ping; 2026-07-28 dropped it, so the modern era answers -32601.
            return json_response(result_body(envelope.id, {}))
        if method == "logging/setLevel":
            return await self._set_log_level(session, envelope)
        if method in ("resources/subscribe", "resources/unsubscribe"):
            return await self._subscription(caller, session, envelope)
        handler = self.context.methods.get(method)
        if handler is None:
            raise method_not_found(envelope.id, method, 200)
        token = progress_token(envelope.params)
        stream = headers.accepts_sse and method in _LINKED_METHODS
        # A 2025-11-25 session gets the resumable stream that revision describes (SEP-1699), opened at once with its
        # priming event; an older one gets SSE only once the call has something to send before its answer.
        resumable = session.protocol_version >= _RESUMABLE_STREAMS_SINCE
        return PreparedCall(
            envelope.id,
            method,
            envelope.params,
            caller,
            handler,
            self,
            stream=stream,
            lazy=token is None and not resumable,
            event_ids=secrets.token_urlsafe(12) if resumable and stream else None,
            progress=token,
            session=session,
        )

    @contextmanager
    def calling(self, call: PreparedCall, emit: Emit | None) -> Iterator[ClientLink]:
        """The call registered in flight (its client's answers and ``notifications/cancelled`` find it) for its
        duration; a cancellation ends it quietly, with no result."""
        session = call.session
        assert session is not None, "a handshake-era call is prepared with its session"
        downstream = self.calls.downstream(session.id, session.client_capabilities, emit, session.log_level)
        token = call.progress
        progress = progress_sink(emit, token) if emit is not None and token is not None else None
        # A handshake-era client gets every level until it sets one; with no stream it can be sent nothing.
        log_level = (session.log_level or LOG_LEVELS[0]) if emit is not None else None
        with self.calls.running(session.id, call.request_id):
            try:
                yield ClientLink(progress=progress, downstream=downstream, log_level=log_level, answers_verbatim=True)
            finally:
                downstream.close()

    def finish(self, method: str, caller: Caller, result: dict[str, Any]) -> dict[str, Any]:
        return finish_for_handshake_era(result)

    async def _subscription(self, caller: Caller, session: LegacySession, envelope: Envelope) -> Response:
        """Updates reach the session's GET stream; the subscription lives on this replica only.

        A URI the caller may not see is refused as unknown whether or not it exists; unsubscribing stays idempotent.
        """
        uri = envelope.params.get("uri")
        if not isinstance(uri, str) or not uri:
            raise _refused(envelope.id, INVALID_PARAMS, "params.uri must be a non-empty string")
        subscriptions = self.context.subscriptions
        try:
            if envelope.method == "resources/subscribe":
                if not self.context.proxy.resource_visible(caller, uri):
                    raise unknown_resource(uri)
                await subscriptions.subscribe(_target(session.id), uri, idle_lifetime=self._ttl)
            else:
                await subscriptions.unsubscribe(_target(session.id), uri)
        except RpcError as exc:
            raise _refused(envelope.id, exc.code, exc.message) from None
        return json_response(result_body(envelope.id, {}))

    async def _set_log_level(self, session: LegacySession, envelope: Envelope) -> Response:
        """Kept in the session record, so every replica filters this session's log messages the same way.

        The upstreams' own levels are left alone: they serve every client, and one client's choice is not theirs.
        """
        level = envelope.params.get("level")
        if level not in LOG_LEVELS:
            message = f"params.level must be one of {', '.join(LOG_LEVELS)}"
            raise _refused(envelope.id, INVALID_PARAMS, message)
        await self.records.save(replace(session, log_level=level))
        return json_response(result_body(envelope.id, {}))

    async def _initialize(self, identity: Identity, envelope: Envelope) -> Response:
        requested = envelope.params.get("protocolVersion")
        if not isinstance(requested, str):
            raise _refused(envelope.id, INVALID_PARAMS, "initialize requires params.protocolVersion")
        version = requested if requested in HANDSHAKE_PROTOCOL_VERSIONS else LATEST_HANDSHAKE_VERSION
        capabilities = envelope.params.get("capabilities")
        client_info = envelope.params.get("clientInfo")
        session = LegacySession(
            id=secrets.token_urlsafe(24),
            identity_id=identity.id,
            protocol_version=version,
            client_capabilities=capabilities if isinstance(capabilities, dict) else {},
            client_info=client_info if isinstance(client_info, dict) else {},
        )
        await self.records.save(session)
        result = {
            "protocolVersion": version,
            "capabilities": self.context.capabilities,
            "serverInfo": self.context.server_info,
        }
        return json_response(result_body(envelope.id, result), headers={SESSION_HEADER: session.id})

    async def end_session(self, headers: McpHeaders, identity: Identity) -> Response:
        session = await self._load(headers, identity, None)
        await self.records.delete(session.id)
        await self.context.subscriptions.drop(_target(session.id))
        return Response(status_code=204)

    async def open_stream(self, headers: McpHeaders, caller: Caller) -> Response:
        """The standalone GET stream: carries merged list_changed notifications until the client goes away."""
        session = await self._load(headers, caller.identity, None)
        return _NotificationStream(self.context.notifier, _target(session.id), caller)


def _target(session_id: str) -> tuple[str, str]:
    """Whom a session's resource updates are published to (see ``Notifier``)."""
    return ("mcp-session", session_id)


class _NotificationStream(EventStream):
    """Merged list_changed notifications and resource updates until the client goes away.

    When the notifier closes, the server is shutting down: the stream ends cleanly and the client reconnects.
    """

    def __init__(self, notifier: Notifier, target: tuple[str, str], caller: Caller) -> None:
        super().__init__()
        self._notifier = notifier
        self._target = target
        self._caller = caller

    @asynccontextmanager
    async def _frames(self) -> AsyncIterator[NextFrame]:
        async with self._notifier.subscribe(self._target, self._caller) as notes:

            async def next_frame() -> Frame:
                try:
                    return await notes.receive(), False
                except anyio.EndOfStream:
                    return END

            yield next_frame
