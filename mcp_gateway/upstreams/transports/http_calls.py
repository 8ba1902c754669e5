"""The call path to a streamable HTTP upstream: JSON-RPC written and read directly over one pooled aiohttp client.

Why not the SDK's client for calls: under load its stack (the session's dispatcher, a transport task per request,
anyio memory streams, pydantic models of every message, httpx2 and httpcore2) was two thirds of the gateway's CPU per
forwarded call (``benchmarks/README.md``). The SDK session still does everything else: it negotiates (handshake or
``server/discover``), holds the standalone GET or ``subscriptions/listen`` stream and fetches the lists. Each call
here is stamped by that same session, so its ``_meta`` envelope and headers are exactly what the SDK would send.
What goes into a body and what an answer means is ``upstreams/jsonrpc.py``'s; this module is the HTTP around it.

What the SDK transport does for a call, this does too: a JSON answer or an SSE stream (progress for the call, log
messages and, in the handshake era, server→client requests relayed to the caller and answered on a POST of their
own; other notifications go to the connection), resuming a dropped SSE stream once per event id the server gave, a
JSON-RPC error body on a non-2xx status, 404 for a forgotten ``Mcp-Session-Id`` reported as a lost session, and
``notifications/cancelled`` (handshake era) or a closed stream (2026-07-28) when the call is abandoned.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import anyio
from mcp.shared.dispatcher import ProgressFnT
from mcp_types import CONNECTION_CLOSED, INTERNAL_ERROR, INVALID_REQUEST, METHOD_NOT_FOUND

from mcp_gateway.errors import RpcError, UpstreamUnavailable
from mcp_gateway.ops.tracing import TRACEPARENT, trace_headers
from mcp_gateway.upstreams.client_requests import Downstream, ask
from mcp_gateway.upstreams.jsonrpc import (
    answer_result,
    cancelled_body,
    error_in,
    reply_body,
    request_body,
    stamp_progress_token,
    stream_event,
)

logger = logging.getLogger(__name__)

MCP_SESSION_ID = "mcp-session-id"
_LAST_EVENT_ID = "last-event-id"
_ACCEPT = "application/json, text/event-stream"
_MAX_SSE_EVENT = 64 * 1024 * 1024
"""One event's bound: a runaway stream must not take the process's memory, yet a tool with progress may answer a
result of several megabytes in its last event, as it could in a JSON answer."""
_RESUME_ATTEMPTS = 2
_CANCEL_TIMEOUT = 2.0
_READ_BUFFER = 4 * 1024 * 1024
"""aiohttp's read buffer per response (its default is 64 KiB). An answer is read whole anyway; with the default a
1 MB result is read in many small steps that pause and resume the socket: measured ~0.7 ms of CPU per MB read, ~0.55
ms with this (with ``memory_reuse`` on; without it page faults dwarf both). It bounds nothing we rely on: every call
reads its answer to the end (SSE events are bounded below)."""

NotificationHandler = Callable[[str, dict[str, Any]], Awaitable[None]]
"""Receives notifications an upstream sends on a call's stream that are not about the call (``list_changed``...)."""


class CredentialRefused(Exception):
    """The upstream answered 401: the credential the request carried is not (or no longer) good there."""


@dataclass
class HttpSessionState:
    """What the upstream's HTTP session says about itself, captured from the SDK transport's responses."""

    session_id: str | None = None


@dataclass
class _Call:
    request_id: str
    progress_token: str | None
    on_progress: ProgressFnT | None
    downstream: Downstream | None
    headers: dict[str, str]
    verbatim: bool = False
    """Keep the result's members other than ``VERBATIM_EXCEPT`` (``upstreams/jsonrpc.py``) as the upstream's bytes."""
    last_event_id: str | None = None
    retry_ms: int | None = None


@dataclass
class HttpHop:
    """Sends requests to one upstream endpoint; one per connection, shared by every call.

    ``on_lost`` is the connection's signal that the upstream is unreachable or forgot our session, so it reconnects.
    """

    url: str
    static_headers: Mapping[str, str]
    """Lower-cased names, so a per-call header of the same name replaces it instead of going out twice."""
    state: HttpSessionState
    on_lost: Callable[[], None]
    on_notification: NotificationHandler
    connect_timeout: float
    legacy: bool
    _client: aiohttp.ClientSession | None = None
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    def _http(self) -> aiohttp.ClientSession:
        if self._client is None or self._client.closed:
            self._client = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=30),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.connect_timeout),
                # Nothing here may be changed on the way: no cookie jar, no automatic decompression surprises.
                cookie_jar=aiohttp.DummyCookieJar(),
                skip_auto_headers=("User-Agent",),
                read_bufsize=_READ_BUFFER,
            )
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    def _base_headers(self) -> dict[str, str]:
        headers = {**self.static_headers, "accept": _ACCEPT, "content-type": "application/json"}
        if self.state.session_id:
            headers[MCP_SESSION_ID] = self.state.session_id
        return headers

    async def request(
        self,
        method: str,
        params: dict[str, Any],
        headers: Mapping[str, str],
        *,
        on_progress: ProgressFnT | None,
        downstream: Downstream | None,
        verbatim: bool = False,
    ) -> dict[str, Any]:
        """POST one stamped request; return its result dict or raise ``RpcError``/``UpstreamUnavailable``.

        ``verbatim``: the members of the result the gateway does not read stay the bytes the upstream sent.
        """
        request_id = f"gw-{next(self._ids)}"
        token: str | None = None
        if on_progress is not None:
            token = request_id
            stamp_progress_token(params, token)
        call = _Call(request_id, token, on_progress, downstream, {**self._base_headers(), **headers}, verbatim)
        meta = params.get("_meta")
        if isinstance(meta, dict) and TRACEPARENT in meta:
            # The trace context in _meta (the gateway's upstream span when tracing is on) goes as headers too.
            call.headers.update(trace_headers(meta))
        body = request_body(request_id, method, params)
        try:
            return await self._post_and_read(call, body)
        except (RpcError, UpstreamUnavailable, CredentialRefused):
            raise  # answered, or nobody left to tell
        except BaseException:
            if self.legacy:
                # Abandoned (timeout, the caller went away): a handshake-era server hears of it; at 2026-07-28 the
                # closed stream says it.
                await self._send_cancelled(call)
            raise

    async def _post_and_read(self, call: _Call, body: bytes) -> dict[str, Any]:
        try:
            async with self._http().post(self.url, data=body, headers=call.headers, allow_redirects=False) as response:
                answer = await self._read_resumable(call, self._read(call, response))
                if answer is not None:
                    return answer
            for _ in range(_RESUME_ATTEMPTS):
                if call.last_event_id is None:
                    break
                answer = await self._read_resumable(call, self._resume(call))
                if answer is not None:
                    return answer
        except aiohttp.ClientConnectionError as exc:
            self.on_lost()
            raise UpstreamUnavailable(f"upstream at {self.url} is unreachable: {exc or type(exc).__name__}") from exc
        except aiohttp.ClientPayloadError as exc:
            raise UpstreamUnavailable(f"upstream at {self.url} cut its answer short: {exc}") from exc
        except aiohttp.ClientError as exc:
            raise RpcError(INTERNAL_ERROR, f"upstream at {self.url}: {exc or type(exc).__name__}") from exc
        raise RpcError(CONNECTION_CLOSED, "the upstream's event stream ended without an answer")

    @staticmethod
    async def _read_resumable(call: _Call, reading: Awaitable[dict[str, Any] | None]) -> dict[str, Any] | None:
        """An answer, or ``None`` when an event stream broke off after the server gave an event id: a dropped
        connection (reset mid-event, a cut chunk) is then resumed like a stream that ended, as the SDK's client does;
        before any event id there is nothing to resume from, and the break is the upstream's failure."""
        try:
            return await reading
        except aiohttp.ClientPayloadError:
            if call.last_event_id is None:
                raise
            return None

    async def _resume(self, call: _Call) -> dict[str, Any] | None:
        """Reconnect a dropped SSE answer with ``Last-Event-ID`` (the server gave event ids, so it can replay)."""
        if call.retry_ms:
            await anyio.sleep(call.retry_ms / 1000)
        headers = {k: v for k, v in call.headers.items() if k != "content-type"}
        headers["accept"] = "text/event-stream"
        headers[_LAST_EVENT_ID] = call.last_event_id or ""
        async with self._http().get(self.url, headers=headers, allow_redirects=False) as response:
            if response.status != 200 or not _is_sse(response):
                return None
            return await self._read_sse(call, response)

    async def _read(self, call: _Call, response: aiohttp.ClientResponse) -> dict[str, Any] | None:
        status = response.status
        if status == 200 and _content_type(response).startswith("application/json"):
            return answer_result(call.request_id, await response.read(), verbatim=call.verbatim)
        if status == 200 and _is_sse(response):
            return await self._read_sse(call, response)
        if status == 202:
            raise RpcError(INVALID_REQUEST, "server answered a request with 202 Accepted")
        if 300 <= status < 400:
            location = response.headers.get("location", "?")
            raise RpcError(INVALID_REQUEST, f"Redirect to {location} not followed; use that URL as the endpoint")
        if status == 401:
            raise CredentialRefused(f"upstream at {self.url} refused the credential (HTTP 401)")
        if status == 404 and MCP_SESSION_ID in call.headers:
            # Whatever the body says (the SDK's server adds a JSON-RPC error): the session is gone, so reconnect.
            self.on_lost()
            raise UpstreamUnavailable(f"upstream at {self.url} no longer knows our session")
        if status >= 400:
            if _content_type(response).startswith("application/json"):
                error = error_in(await response.read())
                if error is not None:
                    raise error
            if status == 404:
                raise RpcError(METHOD_NOT_FOUND, "Not Found")
            raise RpcError(INTERNAL_ERROR, f"Server returned an error response (HTTP {status})")
        raise RpcError(INVALID_REQUEST, f"Unexpected content type: {_content_type(response) or '(none)'}")

    async def _read_sse(self, call: _Call, response: aiohttp.ClientResponse) -> dict[str, Any] | None:
        """Read events until the call's answer; ``None`` if the stream ended first (the caller may resume)."""
        async for event_id, retry, data in _sse_events(response.content):
            if event_id:
                call.last_event_id = event_id
            if retry is not None:
                call.retry_ms = retry
            if not data:
                continue
            result, message = stream_event(call.request_id, data.encode(), verbatim=call.verbatim)
            if result is not None:
                return result
            if message is not None:
                await self._incoming(call, message)
        return None

    async def _incoming(self, call: _Call, message: dict[str, Any]) -> None:
        method = message["method"]
        params = message.get("params")
        params = params if isinstance(params, dict) else {}
        if "id" in message:
            await self._answer_server_request(call, message["id"], method, params)
        elif method == "notifications/progress":
            if call.on_progress is not None and params.get("progressToken") == call.progress_token:
                progress = params.get("progress")
                if isinstance(progress, int | float):
                    total = params.get("total")
                    text = params.get("message")
                    await call.on_progress(
                        float(progress),
                        float(total) if isinstance(total, int | float) else None,
                        text if isinstance(text, str) else None,
                    )
        elif method == "notifications/message":
            if call.downstream is not None:
                await call.downstream.notify(method, params)
        else:
            await self.on_notification(method, params)

    async def _answer_server_request(self, call: _Call, request_id: Any, method: str, params: dict[str, Any]) -> None:
        """Relay a server→client request to the caller and POST its answer back (handshake era)."""
        answer: dict[str, Any] | RpcError
        try:
            if call.downstream is None:
                raise RpcError(INVALID_REQUEST, f"{method}: no client can be asked (not attributable to a call)")
            answer = await ask(call.downstream, method, params)
        except RpcError as exc:
            answer = exc
        # An answer that cannot be encoded goes as an error: the upstream still gets an answer, and the call goes on.
        await self._post_message(call, reply_body(request_id, answer))

    async def _send_cancelled(self, call: _Call) -> None:
        note = cancelled_body(call.request_id, "the gateway's caller abandoned the request")
        with anyio.CancelScope(shield=True), anyio.move_on_after(_CANCEL_TIMEOUT):
            try:
                await self._post_message(call, note)
            except (aiohttp.ClientError, OSError) as exc:
                logger.debug("could not tell %s that request %s was cancelled: %s", self.url, call.request_id, exc)

    async def _post_message(self, call: _Call, body: bytes) -> None:
        """POST an encoded response or notification: no answer is expected beyond 202."""
        headers = {k: v for k, v in call.headers.items() if not k.lower().startswith(("mcp-method", "mcp-name"))}
        async with self._http().post(self.url, data=body, headers=headers) as response:
            if response.status >= 300:
                logger.warning("upstream at %s refused a message (HTTP %d)", self.url, response.status)
            await response.read()


def _content_type(response: aiohttp.ClientResponse) -> str:
    return response.headers.get("content-type", "").lower()


def _is_sse(response: aiohttp.ClientResponse) -> bool:
    return _content_type(response).startswith("text/event-stream")


async def _lines(stream: aiohttp.StreamReader) -> AsyncIterator[bytes]:
    """Lines of any length (``StreamReader.readline`` refuses lines over its buffer size, and answers can be big).

    Chunks without a line end wait in a list and are joined once, when the line ends, so a multi-megabyte event costs
    linear time, not a copy of everything so far per chunk."""
    pending: list[bytes] = []
    pending_size = 0
    async for chunk in stream.iter_any():
        if b"\n" not in chunk:
            pending.append(chunk)
            pending_size += len(chunk)
            if pending_size > _MAX_SSE_EVENT:
                raise RpcError(INTERNAL_ERROR, f"an event from the upstream exceeds {_MAX_SSE_EVENT} bytes")
            continue
        *lines, rest = chunk.split(b"\n")
        if pending:
            lines[0] = b"".join((*pending, lines[0]))
        for line in lines:
            yield line
        pending, pending_size = ([rest], len(rest)) if rest else ([], 0)
    if pending:
        yield b"".join(pending)


async def _sse_events(stream: aiohttp.StreamReader) -> AsyncIterator[tuple[str | None, int | None, str]]:
    """(id, retry, data) per dispatched event, parsed as the SSE spec says; bounded in size."""
    data: list[str] = []
    size = 0
    event_id: str | None = None
    retry: int | None = None
    async for raw_line in _lines(stream):
        line = raw_line.decode("utf-8", errors="replace").removesuffix("\r")
        if not line:
            if data or event_id is not None or retry is not None:
                yield event_id, retry, "\n".join(data)
            data, size, event_id, retry = [], 0, None, None
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            size += len(value)
            if size > _MAX_SSE_EVENT:
                raise RpcError(INTERNAL_ERROR, f"an event from the upstream exceeds {_MAX_SSE_EVENT} bytes")
            data.append(value)
        elif name == "id" and "\0" not in value:
            event_id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            retry = int(value)
