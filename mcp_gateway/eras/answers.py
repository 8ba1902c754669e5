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
from mcp_gateway.eras.calls import Emit, PreparedCall, run_call
from mcp_gateway.eras.jsonrpc import error_body
from mcp_gateway.http.responses import (
    JSON_MEDIA_TYPE,
    SSE_HEADERS,
    SSE_MEDIA_TYPE,
    dumps,
    sse_event,
    sse_priming_event,
)

logger = logging.getLogger(__name__)

KEEPALIVE_SECONDS = 15.0
KEEPALIVE = b": keepalive\r\n\r\n"
"""An SSE comment: keeps proxies from closing an idle stream, and tells the gateway when its client has gone."""
_JSON_MEDIA_TYPE = JSON_MEDIA_TYPE.encode("latin-1")
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


_SSE_RAW_HEADERS = tuple(
    (k.encode("latin-1"), v.encode("latin-1")) for k, v in {"content-type": SSE_MEDIA_TYPE, **SSE_HEADERS}.items()
)

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
        if headers:
            merged = {"content-type": SSE_MEDIA_TYPE, **SSE_HEADERS, **headers}
            self.raw_headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in merged.items()]
        else:
            self.raw_headers = list(_SSE_RAW_HEADERS)
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

    def __init__(self, call: PreparedCall) -> None:
        super().__init__(lazy=call.lazy, event_ids=call.event_ids)
        self._call = call

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
                    await sender.send((await run_call(self._call, emit), True))

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
        await send_json(message, self._call.era.error_status, send)


async def send_json(message: dict[str, Any], error_status: Callable[[int], int], send: Send) -> None:
    status = error_status(message["error"]["code"]) if "error" in message else 200
    body = dumps(message)
    raw = [(b"content-type", _JSON_MEDIA_TYPE), (b"content-length", str(len(body)).encode("latin-1"))]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body, "more_body": False})


class JsonCall(DisconnectWatched):
    """Runs one call whose answer is a JSON body; a client that goes away first cancels it and is sent nothing.

    Without the watcher the call would run to its end for nobody (and be audited ``ok``); with it, the call ends as
    it would on a closed SSE stream: ``cancelled``.
    """

    def __init__(self, call: PreparedCall) -> None:
        self.status_code = 200
        self.background = None
        self._call = call

    async def _respond(self, send: Send, work: anyio.CancelScope) -> None:
        call = self._call
        message = await run_call(call, None)
        if work.cancel_called:
            return  # the client went away: nobody is left to answer
        if message is None:
            # Cancelled by the client's notifications/cancelled (handshake era): a JSON body must say something.
            message = error_body(call.request_id, REQUEST_CANCELLED, "Request cancelled")
        await send_json(message, call.era.error_status, send)


def answer(call: PreparedCall) -> Response:
    """The response that runs ``call``: SSE when the client accepts it and the call may use it (``lazy``: only once
    the call emits something), else a JSON body (the call then gets no ``Emit``)."""
    return CallStream(call) if call.stream else JsonCall(call)
