"""Answering one JSON-RPC request, as a JSON body or as an SSE stream that carries what the call sends first.

A call may have to send its client messages before its answer: progress, log messages, and (handshake era) requests
of its own that the upstream made mid-call. Those need an SSE stream. A caller that asked for progress gets the stream
at once; otherwise, where the client accepts SSE, the answer stays JSON until the first such message, and switches
to SSE only then.

Both paths are small ASGI responses of their own rather than a StreamingResponse over a generator or an answer
computed before the response starts: the handler runs in a task group next to a disconnect watcher, so a client that
closes its connection cancels the upstream call (which the upstream connection turns into ``notifications/cancelled``
or a closed stream) instead of leaving it running, whether it waits for an SSE stream or for a plain JSON body.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectSendStream
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

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
from mcp_gateway.proxy import ProgressSink

logger = logging.getLogger(__name__)

Emit = Callable[[dict[str, Any]], Awaitable[None]]
"""Sends one JSON-RPC message to the client ahead of the call's answer (switching the answer to SSE)."""

Run = Callable[[Emit | None], Awaitable[dict[str, Any] | None]]
"""Runs the call and returns its finished JSON-RPC message, or None when the call was cancelled (no answer)."""

KEEPALIVE_SECONDS = 15.0
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


class EventStream(Response):
    """Base for SSE answers: headers without a Content-Length, body written by the subclass's ``__call__``."""

    def __init__(self, headers: Mapping[str, str] | None = None) -> None:
        self.status_code = 200
        self.background = None
        merged = {"content-type": SSE_MEDIA_TYPE, **SSE_HEADERS, **(headers or {})}
        self.raw_headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in merged.items()]


class CallStream(EventStream):
    """Runs one call; streams what it emits, then its answer. JSON instead when it emitted nothing (``lazy``).

    With ``event_ids`` (a prefix unique to this stream) the stream opens with a priming event and every event carries
    an id, as the 2025-11-25 transport describes; the gateway never closes a call's stream before its answer, so a
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
        super().__init__(headers)
        self._run = run
        self._lazy = lazy
        self._event_ids = event_ids
        self._error_status = error_status
        self._extra_headers = dict(headers or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # (message, is_answer); the answer is None when the call was cancelled.
        sender, receiver = anyio.create_memory_object_stream[tuple[dict[str, Any] | None, bool]](64)
        streaming = False
        sent = 0

        def next_id() -> str | None:
            nonlocal sent
            sent += 1
            return None if self._event_ids is None else f"{self._event_ids}-{sent}"

        async def start_stream() -> None:
            nonlocal streaming
            if not streaming:
                streaming = True
                await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
                if self._event_ids is not None:
                    priming = sse_priming_event(f"{self._event_ids}-0", RETRY_MS)
                    await send({"type": "http.response.body", "body": priming, "more_body": True})

        async with anyio.create_task_group() as tg:

            async def produce(out: MemoryObjectSendStream[tuple[dict[str, Any] | None, bool]]) -> None:
                async with out:

                    async def emit(message: dict[str, Any]) -> None:
                        await out.send((message, False))

                    await out.send((await self._run(emit), True))

            tg.start_soon(produce, sender)
            tg.start_soon(cancel_on_disconnect, receive, tg.cancel_scope)
            if not self._lazy:
                await start_stream()
            async with receiver:
                while True:
                    with anyio.move_on_after(KEEPALIVE_SECONDS if streaming else float("inf")) as waited:
                        try:
                            message, is_answer = await receiver.receive()
                        except anyio.EndOfStream:
                            break
                    if waited.cancelled_caught:
                        await send({"type": "http.response.body", "body": b": keepalive\r\n\r\n", "more_body": True})
                        continue
                    if is_answer and not streaming and message is not None:
                        await self._send_json(message, send)
                        tg.cancel_scope.cancel()
                        return
                    await start_stream()
                    if message is not None:
                        event = sse_event(message, next_id())
                        await send({"type": "http.response.body", "body": event, "more_body": True})
                    if is_answer:
                        break
            await start_stream()
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            tg.cancel_scope.cancel()

    async def _send_json(self, message: dict[str, Any], send: Send) -> None:
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


class JsonCall(Response):
    """Runs one call whose answer is a JSON body; a client that goes away first cancels it and is sent nothing.

    Without the watcher the call would run to its end for nobody (and be audited ``ok``); with it, the call ends as
    it would on a closed SSE stream: ``cancelled``. The watcher is a bare asyncio task beside the call rather than an
    anyio task group around it: measured on this path, cancelling a task group's watcher cost ~300 µs per answer, a
    task ~25 µs (``CallStream`` needs the group; a JSON answer, the common case, does not).
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

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        call = anyio.CancelScope()
        watcher = asyncio.ensure_future(cancel_on_disconnect(receive, call))
        message: dict[str, Any] | None = None
        try:
            with call:
                message = await self._run(None)
        finally:
            watcher.cancel()
        if call.cancel_called:
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
