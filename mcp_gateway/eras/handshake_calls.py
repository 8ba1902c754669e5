"""The handshake-era calls this process is serving: cancellable by their client, and able to ask it things.

An upstream serving a call may ask the client something mid-call (sampling, elicitation, roots). For a 2025-era
client the gateway sends that request, under an id of its own, on the SSE stream of the POST that made the call, and
the client answers with a JSON-RPC response in a POST of its own. A client cancels a call with
``notifications/cancelled``, also a POST of its own. Both are matched to the call by (``Mcp-Session-Id``, request id)
in this process.

With several replicas those POSTs must reach the replica serving the call: route each session to one replica
(affinity on ``Mcp-Session-Id``). A response or a cancellation for a call this process is not serving is logged and
dropped; the call's upstream request then ends with the call itself (its timeout, or the client going away).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp_types import INTERNAL_ERROR, INVALID_REQUEST

from mcp_gateway.eras.calls import Emit
from mcp_gateway.eras.log_levels import LOG_LEVELS, relayed
from mcp_gateway.errors import RpcError

logger = logging.getLogger(__name__)

_Key = tuple[str, str | int]
_Reply = tuple[MemoryObjectSendStream[Mapping[str, Any]], MemoryObjectReceiveStream[Mapping[str, Any]]]


class LegacyCalls:
    """Registry of this process's in-flight handshake-era calls and of the requests they wait on the client for."""

    def __init__(self) -> None:
        self._calls: dict[_Key, anyio.CancelScope] = {}
        self._waiting: dict[_Key, MemoryObjectSendStream[Mapping[str, Any]]] = {}

    @contextmanager
    def running(self, session_id: str, request_id: str | int) -> Iterator[None]:
        """Run the block as the call ``request_id`` of the session; a ``cancel`` for it ends the block quietly."""
        key = (session_id, request_id)
        with anyio.CancelScope() as scope:
            self._calls[key] = scope
            try:
                yield
            finally:
                if self._calls.get(key) is scope:
                    del self._calls[key]

    def cancel(self, session_id: str, request_id: object) -> None:
        scope = self._calls.get((session_id, request_id)) if isinstance(request_id, str | int) else None
        if scope is None:
            logger.debug("notifications/cancelled for %r: no such call in this process", request_id)
            return
        scope.cancel()

    def deliver(self, session_id: str, message: Mapping[str, Any]) -> None:
        """Hand a client's JSON-RPC response to the call waiting for it."""
        request_id = message.get("id")
        waiting = self._waiting.get((session_id, request_id)) if isinstance(request_id, str | int) else None
        if waiting is None:
            logger.warning("a client answered request %r, which no call in this process is waiting for", request_id)
            return
        try:
            waiting.send_nowait(message)
        except (anyio.WouldBlock, anyio.ClosedResourceError, anyio.BrokenResourceError):
            logger.debug("request %r was answered twice, or after its call ended", request_id)

    @contextmanager
    def awaiting(self, session_id: str, request_id: str) -> Iterator[_Reply]:
        """Expect the client's response to ``request_id`` for the duration of the block."""
        key = (session_id, request_id)
        send, receive = anyio.create_memory_object_stream[Mapping[str, Any]](1)
        self._waiting[key] = send
        try:
            with send, receive:
                yield send, receive
        finally:
            self._waiting.pop(key, None)

    def downstream(
        self, session_id: str, capabilities: Mapping[str, Any], emit: Emit | None, log_level: str | None = None
    ) -> LegacyDownstream:
        return LegacyDownstream(self, session_id, capabilities, emit, log_level)


class LegacyDownstream:
    """A 2025-era client reached through the SSE stream of one call (``emit``; None if it accepts no SSE)."""

    def __init__(
        self,
        calls: LegacyCalls,
        session_id: str,
        capabilities: Mapping[str, Any],
        emit: Emit | None,
        log_level: str | None = None,
    ) -> None:
        self._calls = calls
        self._log_level = log_level if log_level in LOG_LEVELS else LOG_LEVELS[0]
        self._session_id = session_id
        self._capabilities = capabilities
        self._emit = emit
        self._open: set[MemoryObjectSendStream[Mapping[str, Any]]] = set()

    @property
    def capabilities(self) -> Mapping[str, Any]:
        return self._capabilities

    async def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        if self._emit is None:
            raise RpcError(INVALID_REQUEST, f"{method}: the client accepts no text/event-stream, so it cannot be asked")
        request_id = f"mgw-{secrets.token_urlsafe(12)}"
        with self._calls.awaiting(self._session_id, request_id) as (send, receive):
            self._open.add(send)
            try:
                await self._send({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}, method)
                reply = await receive.receive()
            except anyio.EndOfStream:
                raise RpcError(INTERNAL_ERROR, f"{method}: the call ended before its client answered") from None
            finally:
                self._open.discard(send)
        return _result_of(reply, method)

    async def notify(self, method: str, params: dict[str, Any]) -> None:
        if self._emit is None:
            return
        if not relayed(method, params, self._log_level):
            return
        try:
            await self._send({"jsonrpc": "2.0", "method": method, "params": params}, method)
        except RpcError:
            logger.debug("%s dropped: the call has ended", method)

    def close(self) -> None:
        """The call is over: nothing more reaches its client, and requests still waiting for an answer fail."""
        self._emit = None
        for send in self._open:
            send.close()

    async def _send(self, message: dict[str, Any], method: str) -> None:
        emit = self._emit
        if emit is None:
            raise RpcError(INTERNAL_ERROR, f"{method}: the call has ended")
        try:
            await emit(message)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            raise RpcError(INTERNAL_ERROR, f"{method}: the call has ended") from None


def _result_of(reply: Mapping[str, Any], method: str) -> dict[str, Any]:
    error = reply.get("error")
    if isinstance(error, Mapping):
        code = error.get("code")
        message = error.get("message")
        return_code = code if isinstance(code, int) and not isinstance(code, bool) else INTERNAL_ERROR
        raise RpcError(return_code, message if isinstance(message, str) else f"{method} failed", error.get("data"))
    result = reply.get("result")
    if not isinstance(result, dict):
        raise RpcError(INTERNAL_ERROR, f"{method}: the client's answer has no result object")
    return result
