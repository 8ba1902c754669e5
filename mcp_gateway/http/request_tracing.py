"""The span of each ``/mcp`` and ``/v1`` request (``tracing.py``), as the outermost ASGI middleware.

Outermost, so the span covers everything the request meets, the front door's refusals included, and ends only when
the response has been sent in full: a call answered over SSE runs while its response streams. With tracing off this
is one attribute check per request.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mcp_gateway.http.front_door import guarded_path
from mcp_gateway.ops import tracing
from mcp_gateway.ops.tracing import Tracing


class TraceRequests:
    def __init__(self, app: ASGIApp, tracing: Tracing) -> None:
        self._app = app
        self._tracing = tracing

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._tracing.tracer is None or scope["type"] != "http" or not guarded_path(scope["path"]):
            await self._app(scope, receive, send)
            return
        method: str = scope["method"]
        path: str = scope["path"]
        trace = self._tracing.begin(method, path, Headers(scope=scope))
        assert trace is not None
        status = 0

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        token = tracing.bind(trace)
        error: str | None = None
        try:
            if not (method == "POST" and path == "/mcp"):
                # Only a POST to /mcp carries a _meta trace context, so only its span waits for the body.
                trace.open()
            await self._app(scope, receive, send_noting_status)
        except BaseException as exc:
            error = type(exc).__name__
            raise
        finally:
            trace.finish(status, error)
            tracing.unbind(token)
