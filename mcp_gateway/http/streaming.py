"""Answering one JSON-RPC request, as a JSON body or as an SSE stream that carries progress first.

The SSE path is a small ASGI response of its own rather than a StreamingResponse over a generator: the handler
runs in a task group next to a disconnect watcher, so a client that closes the stream cancels the upstream call
(which the upstream connection turns into ``notifications/cancelled``) instead of leaving it running.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectSendStream
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from mcp_gateway.errors import RpcError
from mcp_gateway.http.responses import SSE_HEADERS, SSE_MEDIA_TYPE, json_response, sse_event
from mcp_gateway.proxy import ProgressSink

logger = logging.getLogger(__name__)

Outcome = Callable[[Any], Awaitable[dict[str, Any]]]
"""Runs the handler with a progress sink (or None) and returns the finished JSON-RPC message."""

KEEPALIVE_SECONDS = 15.0


def progress_token(params: Mapping[str, Any]) -> str | int | None:
    meta = params.get("_meta")
    if isinstance(meta, Mapping):
        token = meta.get("progressToken")
        if isinstance(token, str | int) and not isinstance(token, bool):
            return token
    return None


class EventStream(Response):
    """Base for SSE answers: headers without a Content-Length, body written by the subclass's ``__call__``."""

    def __init__(self, headers: Mapping[str, str] | None = None) -> None:
        self.status_code = 200
        self.background = None
        merged = {"content-type": SSE_MEDIA_TYPE, **SSE_HEADERS, **(headers or {})}
        self.raw_headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in merged.items()]


class SseResponse(EventStream):
    """Streams progress notifications, then the final JSON-RPC message, then ends."""

    def __init__(self, run: Outcome, token: str | int, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(headers)
        self._run = run
        self._token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        sender, receiver = anyio.create_memory_object_stream[bytes](64)

        async with anyio.create_task_group() as tg:

            async def produce(out: MemoryObjectSendStream[bytes]) -> None:
                async with out:

                    async def progress(progress: float, total: float | None, message: str | None) -> None:
                        params: dict[str, Any] = {"progressToken": self._token, "progress": progress}
                        if total is not None:
                            params["total"] = total
                        if message is not None:
                            params["message"] = message
                        note = {"jsonrpc": "2.0", "method": "notifications/progress", "params": params}
                        await out.send(sse_event(note))

                    sink: ProgressSink = progress
                    message = await self._run(sink)
                    await out.send(sse_event(message))

            async def watch_disconnect() -> None:
                while True:
                    event: Message = await receive()
                    if event["type"] == "http.disconnect":
                        tg.cancel_scope.cancel()
                        return

            tg.start_soon(produce, sender)
            tg.start_soon(watch_disconnect)
            async with receiver:
                while True:
                    with anyio.move_on_after(KEEPALIVE_SECONDS) as waited:
                        try:
                            chunk = await receiver.receive()
                        except anyio.EndOfStream:
                            break
                    if waited.cancelled_caught:
                        chunk = b": keepalive\r\n\r\n"
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            tg.cancel_scope.cancel()


async def answer(
    request_id: Any,
    handler: Callable[[ProgressSink | None], Awaitable[dict[str, Any]]],
    finish: Callable[[dict[str, Any]], dict[str, Any]],
    error_status: Callable[[int], int],
    *,
    token: str | int | None,
    accepts_sse: bool,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """Run ``handler`` and frame its result: SSE when the caller asked for progress and accepts it, else JSON."""

    async def run(progress: ProgressSink | None) -> dict[str, Any]:
        try:
            result = finish(await handler(progress))
        except RpcError as exc:
            return rpc_error(request_id, exc)
        return {"jsonrpc": "2.0", "id": request_id, "result": result}

    if token is not None and accepts_sse:
        return SseResponse(run, token, headers)
    message = await run(None)
    status = error_status(message["error"]["code"]) if "error" in message else 200
    return json_response(message, status, dict(headers or {}))


def rpc_error(request_id: Any, exc: RpcError) -> dict[str, Any]:
    error: dict[str, Any] = {"code": exc.code, "message": exc.message}
    if exc.data is not None:
        error["data"] = exc.data
    return {"jsonrpc": "2.0", "id": request_id, "error": error}
