"""The handshake era (2024-11-05 … 2025-11-25) at ``/mcp``.

``initialize`` opens a session whose state (owner identity, negotiated version, client capabilities) lives in the
store, not in this process, so any replica behind a load balancer can serve the session's next request. A session
belongs to the identity that opened it: another identity presenting its id gets the same 404 as for an unknown id.
"""

from __future__ import annotations

import json
import math
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, replace
from typing import Any

import anyio
from mcp_types import INVALID_PARAMS, INVALID_REQUEST
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, LATEST_HANDSHAKE_VERSION
from starlette.requests import Request
from starlette.responses import Response

from mcp_gateway.config import Identity
from mcp_gateway.core.notifications import Notifier
from mcp_gateway.core.proxy import Caller, ClientLink, unknown_resource
from mcp_gateway.eras.answers import (
    END,
    Emit,
    EventStream,
    Frame,
    NextFrame,
    answer,
    progress_sink,
    progress_token,
)
from mcp_gateway.eras.context import SESSION_HEADER, Envelope, McpContext, accepts_sse, method_not_found
from mcp_gateway.eras.handshake_calls import LegacyCalls
from mcp_gateway.eras.log_levels import LOG_LEVELS
from mcp_gateway.errors import RpcError
from mcp_gateway.http.responses import json_response, rpc_error_body, rpc_result_body

_MODERN_ONLY_FIELDS = ("resultType", "ttlMs", "cacheScope")
SESSION_KEY_PREFIX = "mcpsession:"
# A session's expiry slides with use, but a replica renews it at most this often (and at most every quarter of the
# TTL): in between, requests read the record through the store's coherent local copy, with no round trip. So a
# session expires between ``ttl - window`` and ``ttl`` after its last request.
_RENEW_EVERY_SECONDS = 60.0
_RENEWALS_KEPT = 100_000
# Methods whose upstream may need the client mid-call (progress, log messages, requests), so may answer over SSE.
_LINKED_METHODS = frozenset({"tools/call", "resources/read", "prompts/get"})
_RESUMABLE_STREAMS_SINCE = "2025-11-25"
"""The first revision whose SSE streams open with a priming event and carry event ids (versions compare as text)."""


@dataclass(frozen=True)
class LegacySession:
    id: str
    identity_id: str
    protocol_version: str
    client_capabilities: dict[str, Any]
    client_info: dict[str, Any]
    log_level: str | None = None
    """Set by ``logging/setLevel``: log messages below it are not relayed to this session."""


def _error(request_id: Any, code: int, message: str, status: int) -> Response:
    return json_response(rpc_error_body(request_id, code, message), status)


def finish_for_handshake_era(result: dict[str, Any]) -> dict[str, Any]:
    """A 2025-era client must not see the 2026 result fields a modern upstream may have sent."""
    if any(key in result for key in _MODERN_ONLY_FIELDS):
        return {k: v for k, v in result.items() if k not in _MODERN_ONLY_FIELDS}
    return result


class LegacyEra:
    def __init__(self, context: McpContext) -> None:
        self.context = context
        self._ttl = context.server.mcp_session_ttl
        self._renew_every = min(_RENEW_EVERY_SECONDS, self._ttl / 4)
        self._renewed: dict[str, float] = {}
        self.calls = LegacyCalls()

    async def _load(self, request: Request, identity: Identity, request_id: Any) -> LegacySession | Response:
        session_id = request.headers.get(SESSION_HEADER)
        if not session_id:
            return _error(request_id, INVALID_REQUEST, "Bad Request: Mcp-Session-Id header is required", 400)
        raw = await self._read(session_id)
        if raw is None:
            return _error(request_id, INVALID_REQUEST, "Session not found", 404)
        session = LegacySession(**json.loads(raw))
        if session.identity_id != identity.id:
            return _error(request_id, INVALID_REQUEST, "Session not found", 404)
        self.context.subscriptions.touch(_target(session.id), self._ttl)
        return session

    async def _read(self, session_id: str) -> bytes | None:
        """The session record; its expiry slides (GETEX on Redis) when this replica has not renewed it lately."""
        key = SESSION_KEY_PREFIX + session_id
        now = time.monotonic()
        if now - self._renewed.get(session_id, -math.inf) < self._renew_every:
            return await self.context.store.get_cached(key)
        raw = await self.context.store.get_touch(key, self._ttl)
        if raw is not None:
            if len(self._renewed) >= _RENEWALS_KEPT:
                self._renewed.clear()  # forgetting only costs one early renewal each
            self._renewed[session_id] = now
        return raw

    async def notification(self, request: Request, identity: Identity, envelope: Envelope) -> Response:
        """A notification, or the client's response to a request the gateway sent it during a call."""
        loaded = await self._load(request, identity, None)
        if isinstance(loaded, Response):
            return loaded
        if not envelope.method:
            self.calls.deliver(loaded.id, envelope.raw)
        elif envelope.method == "notifications/cancelled":
            self.calls.cancel(loaded.id, envelope.params.get("requestId"))
        return Response(status_code=202)

    async def request(self, request: Request, caller: Caller, envelope: Envelope) -> Response:
        if envelope.method == "initialize":
            return await self._initialize(caller.identity, envelope)
        loaded = await self._load(request, caller.identity, envelope.id)
        if isinstance(loaded, Response):
            return loaded
        if envelope.method == "ping":
            # Only the handshake era has ping; 2026-07-28 dropped it, so the modern era answers -32601.
            return json_response(rpc_result_body(envelope.id, {}))
        if envelope.method == "logging/setLevel":
            return await self._set_log_level(loaded, envelope)
        if envelope.method in ("resources/subscribe", "resources/unsubscribe"):
            return await self._subscription(caller, loaded, envelope)
        handler = self.context.methods.get(envelope.method)
        if handler is None:
            error = method_not_found(envelope.method)
            return _error(envelope.id, error["code"], error["message"], 200)

        token = progress_token(envelope.params)
        session = loaded

        async def run(emit: Emit | None) -> dict[str, Any] | None:
            downstream = self.calls.downstream(session.id, session.client_capabilities, emit, session.log_level)
            progress = progress_sink(emit, token) if emit is not None and token is not None else None
            # A handshake-era client gets every level until it sets one; with no stream it can be sent nothing.
            log_level = (session.log_level or LOG_LEVELS[0]) if emit is not None else None
            link = ClientLink(progress=progress, downstream=downstream, log_level=log_level, answers_verbatim=True)
            result: dict[str, Any] | None = None
            with self.calls.running(session.id, envelope.id):
                try:
                    result = await handler(caller, envelope.params, link)
                finally:
                    downstream.close()
            return result

        # A 2025-11-25 session gets the resumable stream that revision describes (SEP-1699), opened at once with its
        # priming event; an older one gets SSE only once the call has something to send before its answer.
        resumable = session.protocol_version >= _RESUMABLE_STREAMS_SINCE
        return await answer(
            envelope.id,
            run,
            finish_for_handshake_era,
            lambda code: 200,
            stream=accepts_sse(request) and envelope.method in _LINKED_METHODS,
            lazy=token is None and not resumable,
            event_ids=secrets.token_urlsafe(12) if resumable else None,
        )

    async def _subscription(self, caller: Caller, session: LegacySession, envelope: Envelope) -> Response:
        """Updates reach the session's GET stream; the subscription lives on this replica only.

        A URI the caller may not see is refused as unknown whether or not it exists; unsubscribing stays idempotent.
        """
        uri = envelope.params.get("uri")
        if not isinstance(uri, str) or not uri:
            return _error(envelope.id, INVALID_PARAMS, "params.uri must be a non-empty string", 200)
        subscriptions = self.context.subscriptions
        try:
            if envelope.method == "resources/subscribe":
                if not self.context.proxy.resource_visible(caller, uri):
                    raise unknown_resource(uri)
                await subscriptions.subscribe(_target(session.id), uri, idle_lifetime=self._ttl)
            else:
                await subscriptions.unsubscribe(_target(session.id), uri)
        except RpcError as exc:
            return _error(envelope.id, exc.code, exc.message, 200)
        return json_response(rpc_result_body(envelope.id, {}))

    async def _set_log_level(self, session: LegacySession, envelope: Envelope) -> Response:
        """Kept in the session record, so every replica filters this session's log messages the same way.

        The upstreams' own levels are left alone: they serve every client, and one client's choice is not theirs.
        """
        level = envelope.params.get("level")
        if level not in LOG_LEVELS:
            message = f"params.level must be one of {', '.join(LOG_LEVELS)}"
            return _error(envelope.id, INVALID_PARAMS, message, 200)
        await self._save(replace(session, log_level=level))
        return json_response(rpc_result_body(envelope.id, {}))

    async def _save(self, session: LegacySession) -> None:
        await self.context.store.set(SESSION_KEY_PREFIX + session.id, json.dumps(asdict(session)).encode(), self._ttl)

    async def _initialize(self, identity: Identity, envelope: Envelope) -> Response:
        requested = envelope.params.get("protocolVersion")
        if not isinstance(requested, str):
            return _error(envelope.id, INVALID_PARAMS, "initialize requires params.protocolVersion", 200)
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
        await self._save(session)
        result = {
            "protocolVersion": version,
            "capabilities": self.context.capabilities,
            "serverInfo": self.context.server_info,
        }
        return json_response(rpc_result_body(envelope.id, result), headers={SESSION_HEADER: session.id})

    async def end_session(self, request: Request, identity: Identity) -> Response:
        loaded = await self._load(request, identity, None)
        if isinstance(loaded, Response):
            return loaded
        await self.context.store.delete(SESSION_KEY_PREFIX + loaded.id)
        self._renewed.pop(loaded.id, None)
        await self.context.subscriptions.drop(_target(loaded.id))
        return Response(status_code=204)

    async def open_stream(self, request: Request, caller: Caller) -> Response:
        """The standalone GET stream: carries merged list_changed notifications until the client goes away."""
        loaded = await self._load(request, caller.identity, None)
        if isinstance(loaded, Response):
            return loaded
        return _NotificationStream(self.context.notifier, _target(loaded.id), caller)


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
