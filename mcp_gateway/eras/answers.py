"""Answering one JSON-RPC request, as a JSON body or as an SSE stream that carries what the call sends first.

A call may have to send its client messages before its answer: progress, log messages, and (handshake era) requests
of its own that the upstream made mid-call. Those need an SSE stream. A caller that asked for progress gets the stream
at once; otherwise, where the client accepts SSE, the answer stays JSON until the first such message, and switches
to SSE only then.

Both paths are small ASGI responses of their own rather than a StreamingResponse over a generator or an answer
computed before the response starts: the handler runs under a cancel scope a disconnect watcher cancels, so a client
that closes its connection cancels the upstream call (which the upstream connection turns into
``notifications/cancelled`` or a closed stream) instead of leaving it running, whether it waits for an SSE stream or
for a plain JSON body. ``EventStream`` is every SSE answer of the gateway (a call's, the handshake era's GET stream,
``subscriptions/listen``): each kind supplies only its messages.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from mcp_gateway.core.proxy import ProgressSink
from mcp_gateway.errors import RpcError
from mcp_gateway.http.responses import (
    JSON_MEDIA_TYPE,
    SSE_HEADERS,
    SSE_MEDIA_TYPE,
    dumps,
    rpc_error_body,
    rpc_result_body,
    sse_event,
    sse_priming_event,
)

logger = logging.getLogger(__name__)

Emit = Callable[[dict[str, Any]], Awaitable[None]]
"""Sends one JSON-RPC message to the client ahead of the call's answer (switching the answer to SSE)."""

Run = Callable[[Emit | None], Awaitable[dict[str, Any] | None]]
"""Runs the call and returns its finished JSON-RPC message, or None when the call was cancelled (no answer)."""

KEEPALIVE_SECONDS = 15.0
KEEPALIVE = b": keepalive\r\n\r\n"
"""An SSE comment: keeps proxies from closing an idle stream, and tells the gateway when its client has gone."""
RETRY_MS = 1000
"""The reconnection delay a priming event asks for."""
REQUEST_CANCELLED = -32800
"""Answer to a call its client cancelled, when a JSON body must say something (LSP's code; MCP names none)."""


def progress_token(params: Mapping[str, Any]) -> str | int | None:
    meta = params.get("_meta")
    if isinstance(meta, Mapping):
        token = meta.get("progressToken")
        if isinstance(token, str | int) and not isinstance(token, bool):
            return token
    return None


def progress_sink(emit: Emit, token: str | int) -> ProgressSink:
    """A progress callback that sends ``notifications/progress`` for ``token`` through ``emit``."""

    async def progress(progress: float, total: float | None, message: str | None) -> None:
        params: dict[str, Any] = {"progressToken": token, "progress": progress}
        if total is not None:
            params["total"] = total
        if message is not None:
            params["message"] = message
        await emit({"jsonrpc": "2.0", "method": "notifications/progress", "params": params})

    return progress


async def cancel_on_disconnect(receive: Receive, scope: anyio.CancelScope) -> None:
    """Cancel ``scope`` when the client goes away (the request body has been read, so nothing else arrives)."""
    while (await receive())["type"] != "http.disconnect":
        pass
    scope.cancel()


class DisconnectWatched(Response):
    """A response whose work a client that goes away cancels (an upstream call then ends as ``cancelled``).

    The watcher is a bare asyncio task beside the work rather than an anyio task group around it: measured on this
    path, cancelling a task group's watcher cost ~200 to 300 µs per answer, a task ~25 µs.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        work = anyio.CancelScope()
        watcher = asyncio.ensure_future(cancel_on_disconnect(receive, work))
        try:
            with work:
                await self._respond(send, work)
        finally:
            watcher.cancel()

    async def _respond(self, send: Send, work: anyio.CancelScope) -> None:
        """Send the response; ``work.cancel_called`` says the client has gone."""
        raise NotImplementedError


Frame = tuple[dict[str, Any] | None, bool]
"""One message for the stream and whether it is the last; ``(None, True)`` ends the stream without one."""

END: Frame = (None, True)

NextFrame = Callable[[], Awaitable[Frame]]
"""Waits for a stream's next frame. It must be cancel-safe (a keepalive interrupts it), which is why a stream hands
the base a receive function rather than an async generator: timing out a generator's ``__anext__`` would close it."""


class EventStream(DisconnectWatched):
    """The one SSE answer: owns the response start, the disconnect watch, keepalives, event ids and the last frame.

    A stream kind supplies only ``_frames``: the messages to send, behind a context that holds what they need (a
    running call, a notifier subscription). ``lazy``: the response starts only with the first message, and a first
    message that is also the last goes out as ``_unstreamed`` (a JSON body) instead. ``event_ids`` (a prefix unique to
    the stream): a priming event opens it and every event carries an id, as the 2025-11-25 transport describes.
    """

    keepalive_seconds = KEEPALIVE_SECONDS

    def __init__(
        self, headers: Mapping[str, str] | None = None, *, lazy: bool = False, event_ids: str | None = None
    ) -> None:
        self.status_code = 200
        self.background = None
        merged = {"content-type": SSE_MEDIA_TYPE, **SSE_HEADERS, **(headers or {})}
        self.raw_headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in merged.items()]
        self._lazy = lazy
        self._event_ids = event_ids

    def _frames(self) -> AbstractAsyncContextManager[NextFrame]:
        raise NotImplementedError

    async def _unstreamed(self, message: dict[str, Any], send: Send) -> None:
        """Answer a lazy stream whose only message came before it started."""
        raise NotImplementedError

    async def _respond(self, send: Send, work: anyio.CancelScope) -> None:
        started = False
        sent = 0

        async def start() -> None:
            nonlocal started
            if not started:
                started = True
                await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
                if self._event_ids is not None:
                    priming = sse_priming_event(f"{self._event_ids}-0", RETRY_MS)
                    await send({"type": "http.response.body", "body": priming, "more_body": True})

        if not self._lazy:
            await start()
        async with self._frames() as next_frame:
            while True:
                with anyio.move_on_after(self.keepalive_seconds if started else math.inf) as waited:
                    message, last = await next_frame()
                if waited.cancelled_caught:
                    await send({"type": "http.response.body", "body": KEEPALIVE, "more_body": True})
                    continue
                if last and message is not None and not started:
                    await self._unstreamed(message, send)
                    return
                await start()
                if message is not None:
                    sent += 1
                    event_id = None if self._event_ids is None else f"{self._event_ids}-{sent}"
                    await send({"type": "http.response.body", "body": sse_event(message, event_id), "more_body": True})
                if last:
                    break
            await send({"type": "http.response.body", "body": b"", "more_body": False})


def frames_until_closed(stream: MemoryObjectReceiveStream[Frame]) -> NextFrame:
    """Frames from ``stream``; its closing ends the stream."""

    async def next_frame() -> Frame:
        try:
            return await stream.receive()
        except anyio.EndOfStream:
            return END

    return next_frame


class CallStream(EventStream):
    """Runs one call; streams what it emits, then its answer. JSON instead when it emitted nothing (``lazy``).

    With ``event_ids`` every event carries an id; the gateway never closes a call's stream before its answer, so a
    client has nothing to resume unless its connection broke, which cancels the call.
    """

    def __init__(
        self,
        run: Run,
        *,
        lazy: bool,
        error_status: Callable[[int], int],
        headers: Mapping[str, str] | None = None,
        event_ids: str | None = None,
    ) -> None:
        super().__init__(headers, lazy=lazy, event_ids=event_ids)
        self._run = run
        self._error_status = error_status
        self._extra_headers = dict(headers or {})

    @asynccontextmanager
    async def _frames(self) -> AsyncIterator[NextFrame]:
        sender, receiver = anyio.create_memory_object_stream[Frame](64)

        call = anyio.CancelScope()

        async def produce() -> None:
            with call:
                async with sender:

                    async def emit(message: dict[str, Any]) -> None:
                        await sender.send((message, False))

                    # The answer is None when the call was cancelled.
                    await sender.send((await self._run(emit), True))

        # A bare task, as for the watcher, and cancelled only when the stream did not end with the call's answer:
        # anyio's CancelScope.cancel() formats the repr of the current task, ~30 µs of a task group's ~180 µs.
        producer = asyncio.ensure_future(produce())
        try:
            async with receiver:
                yield frames_until_closed(receiver)
        except BaseException:
            call.cancel()
            raise
        finally:
            with anyio.CancelScope(shield=True):
                await producer

    async def _unstreamed(self, message: dict[str, Any], send: Send) -> None:
        await send_json(message, self._error_status, self._extra_headers, send)


async def send_json(
    message: dict[str, Any], error_status: Callable[[int], int], headers: Mapping[str, str], send: Send
) -> None:
    status = error_status(message["error"]["code"]) if "error" in message else 200
    body = dumps(message)
    merged = {**headers, "content-type": JSON_MEDIA_TYPE, "content-length": str(len(body))}
    raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in merged.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body, "more_body": False})


class JsonCall(DisconnectWatched):
    """Runs one call whose answer is a JSON body; a client that goes away first cancels it and is sent nothing.

    Without the watcher the call would run to its end for nobody (and be audited ``ok``); with it, the call ends as
    it would on a closed SSE stream: ``cancelled``.
    """

    def __init__(
        self,
        request_id: Any,
        run: Run,
        *,
        error_status: Callable[[int], int],
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.status_code = 200
        self.background = None
        self._request_id = request_id
        self._run = run
        self._error_status = error_status
        self._extra_headers = dict(headers or {})

    async def _respond(self, send: Send, work: anyio.CancelScope) -> None:
        message = await self._run(None)
        if work.cancel_called:
            return  # the client went away: nobody is left to answer
        if message is None:
            # Cancelled by the client's notifications/cancelled (handshake era): a JSON body must say something.
            message = rpc_error_body(self._request_id, REQUEST_CANCELLED, "Request cancelled")
        await send_json(message, self._error_status, self._extra_headers, send)


async def answer(
    request_id: Any,
    handler: Callable[[Emit | None], Awaitable[dict[str, Any] | None]],
    finish: Callable[[dict[str, Any]], dict[str, Any]],
    error_status: Callable[[int], int],
    *,
    stream: bool,
    lazy: bool = False,
    headers: Mapping[str, str] | None = None,
    event_ids: str | None = None,
) -> Response:
    """Run ``handler`` and frame its result.

    ``stream``: the client accepts SSE and the call may use it (``lazy``: only once it emits something); else the
    handler gets no ``Emit`` and the answer is JSON. ``event_ids``: see ``CallStream``.
    """

    async def run(emit: Emit | None) -> dict[str, Any] | None:
        try:
            result = await handler(emit)
        except RpcError as exc:
            return rpc_error_body(request_id, exc.code, exc.message, exc.data)
        return None if result is None else rpc_result_body(request_id, finish(result))

    if stream:
        return CallStream(run, lazy=lazy, error_status=error_status, headers=headers, event_ids=event_ids)
    return JsonCall(request_id, run, error_status=error_status, headers=headers)
