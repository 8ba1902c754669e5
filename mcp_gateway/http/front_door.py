"""The front door: what every ``/mcp`` and ``/v1`` request must pass before any route sees it.

A browser page's ``Origin``, the declared media type of a body and how long a client may take to send that body are
properties of the HTTP request, not of one endpoint, so they are checked once, here, for every route under these
paths, including routes added later (``/mcp`` runs the same ``FrontDoorRules`` inside its endpoint's one pass, on
the headers it has read once). The front door never reads the body itself: authentication comes before the
body (an unauthenticated client never gets to upload), so it only puts a deadline on whoever reads it.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

import anyio
from mcp_types import INVALID_REQUEST
from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mcp_gateway.config import ServerConfig
from mcp_gateway.eras.jsonrpc import error_body
from mcp_gateway.errors import Forbidden, RequestTimeout, UnsupportedMediaType
from mcp_gateway.http.responses import JSON_MEDIA_TYPE, error_response, json_response

_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
_BODY_METHODS = frozenset({"POST"})
_REST_BODY_METHODS = frozenset({"PUT", "PATCH"})


def guarded_path(path: str) -> bool:
    """The paths the front door watches: the MCP endpoint and the REST API (health and metrics stay open)."""
    return path == "/mcp" or path.startswith(("/mcp/", "/v1/")) or path == "/v1"


class OriginPolicy:
    """A web page must not drive the gateway with a browser as its proxy (DNS rebinding, CSRF).

    Non-browser clients send no ``Origin`` and pass. A browser's ``Origin`` passes only when it is listed in
    ``server.allowedOrigins`` or is a page served from this machine's loopback (a local inspector, say).
    Comparing ``Origin`` with ``Host`` would not do: after a DNS rebinding both name the attacker's domain.
    """

    def __init__(self, allowed: Iterable[str]) -> None:
        self._allowed = frozenset(origin.rstrip("/") for origin in allowed)

    def allows(self, origin: str | None) -> bool:
        if origin is None:
            return True
        origin = origin.rstrip("/")
        return origin in self._allowed or _is_loopback_origin(origin)


def _is_loopback_origin(origin: str) -> bool:
    """Whether ``origin`` is an http(s) page on a loopback name or address (which no outside site can claim)."""
    try:
        parsed = urlsplit(origin)
        host = parsed.hostname
    except ValueError:
        return False
    return parsed.scheme in ("http", "https") and host is not None and host in _LOOPBACK_HOSTS


def _is_json_media_type(content_type: str | None) -> bool:
    """``application/json``, in any case, with or without parameters such as ``charset``."""
    return content_type is not None and content_type.partition(";")[0].strip().lower() == JSON_MEDIA_TYPE


class FrontDoorRules:
    """The checks themselves, for the middleware below and for ``/mcp``, whose endpoint runs them in its own pass."""

    def __init__(self, server: ServerConfig) -> None:
        self._origins = OriginPolicy(server.allowed_origins)
        self.body_read_timeout = server.body_read_timeout

    def refusal(self, path: str, origin: str | None, content_type: str | None, body: bool) -> Response | None:
        """A foreign ``origin``, or a ``body`` the request declares but not as JSON; None when the request passes."""
        if not self._origins.allows(origin):
            return error_response(Forbidden(f"origin {origin!r} is not allowed"))
        if body and not _is_json_media_type(content_type):
            message = "the request body must be sent as Content-Type: application/json"
            if path == "/mcp":
                # An MCP client reads a JSON-RPC error; the SDK's own server answers the same code with 415.
                return json_response(error_body(None, INVALID_REQUEST, message), UnsupportedMediaType.status)
            return error_response(UnsupportedMediaType(message))
        return None

    def body_deadline(self, receive: Receive) -> Receive:
        return _body_deadline(receive, self.body_read_timeout)


class FrontDoor:
    """Pure ASGI middleware: refuse a foreign origin or a body that is not JSON, and time the body's arrival."""

    def __init__(self, app: ASGIApp, server: ServerConfig) -> None:
        self.app = app
        self._rules = FrontDoorRules(server)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not guarded_path(scope["path"]):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        path = scope["path"]
        body = carries_body(scope["method"], path, headers.get("content-length"), "transfer-encoding" in headers)
        refusal = self._rules.refusal(path, headers.get("origin"), headers.get("content-type"), body)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self.app(scope, self._rules.body_deadline(receive), send)


def carries_body(method: str, path: str, content_length: str | None, chunked: bool) -> bool:
    """A request with a body to declare: POST anywhere, and PUT/PATCH on the REST API (``PUT /mcp`` is a 405, not a
    415), unless it says it sends nothing (``POST …/activate`` with ``Content-Length: 0``)."""
    if method not in _BODY_METHODS and not (method in _REST_BODY_METHODS and path.startswith("/v1/")):
        return False
    return (content_length is not None and content_length != "0") or chunked


def _body_deadline(receive: Receive, seconds: float) -> Receive:
    """``receive`` that raises ``RequestTimeout`` if the body is not complete ``seconds`` after it was first awaited.

    The clock starts when a handler starts reading, so time spent authenticating is not charged to the client.
    Once the body is complete, later calls (a stream watching for the client to leave) wait as long as they like.
    """
    deadline: float | None = None
    complete = False

    async def receive_in_time() -> Message:
        nonlocal deadline, complete
        if complete:
            return await receive()
        if deadline is None:
            deadline = anyio.current_time() + seconds
        with anyio.move_on_after(deadline - anyio.current_time()):
            message = await receive()
            complete = message["type"] != "http.request" or not message.get("more_body", False)
            return message
        raise RequestTimeout(f"the request body did not arrive within {seconds:g} seconds")

    return receive_in_time
