"""The one place where errors become HTTP answers, plus the JSON/SSE encoders shared by every endpoint."""

from __future__ import annotations

import json
import logging
from http import HTTPStatus
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive

from mcp_gateway.core.encoded_lists import encode_answer
from mcp_gateway.errors import (
    BadRequest,
    GatewayError,
    PayloadTooLarge,
    RateLimited,
    RequestTimeout,
    StoreUnavailable,
)
from mcp_gateway.http.json_nesting import nesting_bound

logger = logging.getLogger(__name__)

JSON_MEDIA_TYPE = "application/json"
SSE_MEDIA_TYPE = "text/event-stream"
SSE_HEADERS = {"cache-control": "no-cache, no-transform", "x-accel-buffering": "no"}


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON; a memoised list answer (``EncodedList``) is spliced in, not encoded again. A lone
    surrogate (one a client sent, echoed in a message) is written as the JSON escape it came in as, instead of
    failing the answer (``encoded_lists.encode``)."""
    return encode_answer(value)


def json_response(value: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(dumps(value), status_code=status, media_type=JSON_MEDIA_TYPE, headers=headers)


def error_response(error: GatewayError) -> Response:
    """``{"error": <stable code>, "message": <human text>}`` with the contract's status and auth challenge."""
    message = error.message
    if isinstance(error, StoreUnavailable):
        # The detail names internal hosts: the client gets the fact only. The operator's log already has each outage
        # once (store/health.py); a line per refused request would flood it while the store is down.
        logger.debug("refusing a request, fail closed: %s", error.message)
        message = "the session store is unreachable; the request was refused"
    body: dict[str, Any] = {"error": error.code, "message": message}
    if error.details is not None:
        body["details"] = error.details
    headers: dict[str, str] = {}
    if isinstance(error, RequestTimeout):
        # The rest of a body that stalled may still come: the connection cannot carry another request.
        headers["connection"] = "close"
    if isinstance(error, RateLimited):
        headers["retry-after"] = str(max(1, -(-error.retry_after_ms // 1000)))
    if error.challenge is not None:
        headers["www-authenticate"] = error.challenge.header()
    return json_response(body, error.status, headers)


def http_error_response(request: Request, exc: Exception) -> Response:
    """Routing's own refusals (no such path, method not allowed) in the same JSON shape as every other error."""
    assert isinstance(exc, HTTPException)
    code = HTTPStatus(exc.status_code).phrase.lower().replace(" ", "_")
    if exc.status_code == 404:
        message = f"no route for {request.url.path}"
    elif exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow", "")
        message = f"{request.method} is not allowed on {request.url.path}; allowed: {allowed}"
    else:
        message = exc.detail
    return json_response({"error": code, "message": message}, exc.status_code, dict(exc.headers or {}))


def internal_error_response(request: Request, exc: Exception) -> Response:
    """A bug of ours: the client gets JSON without the details, the log gets the traceback (Starlette re-raises)."""
    return json_response({"error": "internal_error", "message": "the gateway failed to handle the request"}, 500)


def sse_event(message: Any, event_id: str | None = None) -> bytes:
    head = b"id: " + event_id.encode() + b"\r\n" if event_id is not None else b""
    return head + b"event: message\r\ndata: " + dumps(message) + b"\r\n\r\n"


def sse_priming_event(event_id: str, retry_ms: int) -> bytes:
    """The 2025-11-25 priming event (SEP-1699): an id and a reconnection delay, with empty data."""
    return b"id: " + event_id.encode() + b"\r\nretry: " + str(retry_ms).encode() + b"\r\ndata: \r\n\r\n"


async def read_body(request: Request, limit: int) -> bytes:
    """Read at most ``limit`` bytes; a declared or actual larger body is refused before it is buffered."""
    return await receive_body(request.receive, request.headers.get("content-length"), limit)


async def receive_body(receive: Receive, declared: str | None, limit: int) -> bytes:
    """``read_body`` from the ASGI ``receive`` and the ``Content-Length`` value (None when absent)."""
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise BadRequest("the client closed the connection before sending the whole body")
        if message["type"] != "http.request":
            continue
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes")
            chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def read_json_object(request: Request, limit: int, max_depth: int, shape: str) -> dict[str, Any]:
    """A REST body: at most ``limit`` bytes of JSON nesting at most ``max_depth`` levels, holding an object.

    ``shape`` describes the expected object for the error message. Every way to get it wrong is a 400 ``bad_request``,
    never a parser's ``RecursionError``, and never a string with a lone surrogate (``"\\ud800"``): JSON allows the
    escape, but no UTF-8 text can hold it, so it would fail later wherever the value is stored or sent (RFC 7493
    forbids it for the same reason).
    """
    body = await read_body(request, limit)
    if nesting_bound(body, max_depth) > max_depth:
        raise BadRequest(f"body nests deeper than {max_depth} levels")
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise BadRequest(f"body is not valid JSON: {exc}") from exc
    # Only a \u escape (or raw surrogate bytes, which the parser lets through) can produce one.
    if b"\\u" in body or b"\xed" in body:
        try:
            json.dumps(payload, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as exc:
            raise BadRequest("body holds a lone surrogate (\\ud800 to \\udfff), which no UTF-8 text can hold") from exc
    if not isinstance(payload, dict):
        raise BadRequest(f"body must be a JSON object ({shape})")
    return payload
