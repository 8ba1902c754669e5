"""JSON-RPC as the gateway's clients speak it: the inbound envelope check and the one builder of every answer body.

Every message a client posts to ``/mcp`` passes ``parse_envelope`` before anything looks at its method, and every
JSON-RPC body the gateway sends a client (a result, an error from a check of ours, an ``RpcError`` from the core or an
upstream) is built by ``result_body`` / ``error_body`` here, so the shape of an answer is decided in one place.
``Refused`` is how a check before the method table refuses a request: it carries the HTTP status that goes with the
error in the era at hand, and the endpoint's handler table turns it into the response. Nothing here knows Starlette.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mcp_types import INVALID_REQUEST, METHOD_NOT_FOUND, PARSE_ERROR

from mcp_gateway import json_codec
from mcp_gateway.errors import RpcError
from mcp_gateway.http.json_nesting import nesting_bound


@dataclass(frozen=True, slots=True)
class Envelope:
    """A JSON-RPC message that passed the shape check."""

    id: Any
    method: str
    params: Mapping[str, Any]
    is_notification: bool
    raw: Mapping[str, Any]
    nesting: int
    """An upper bound of how deeply the whole message nests (see ``nesting_bound``)."""


class Refused(Exception):
    """A request refused with a JSON-RPC error before its method ran, answered with ``status``."""

    def __init__(self, request_id: Any, code: int, message: str, data: Any = None, *, status: int = 200) -> None:
        super().__init__(message)
        self.request_id = request_id
        self.code = code
        self.message = message
        self.data = data
        self.status = status


def error_body(request_id: Any, code: int, message: str, data: Any = None) -> dict[str, Any]:
    """The one JSON-RPC error shape every path at ``/mcp`` answers with (``data`` only when there is some)."""
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return {"jsonrpc": "2.0", "id": request_id, "error": error}


def result_body(request_id: Any, result: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "result": result}


def rpc_error_of(request_id: Any, exc: RpcError) -> dict[str, Any]:
    """An ``RpcError`` (the core's or an upstream's) as the body answering ``request_id``."""
    return error_body(request_id, exc.code, exc.message, exc.data)


def refused_body(refused: Refused) -> dict[str, Any]:
    return error_body(refused.request_id, refused.code, refused.message, refused.data)


def method_not_found(request_id: Any, method: str, status: int) -> Refused:
    return Refused(request_id, METHOD_NOT_FOUND, f"Method not found: {method}", status=status)


def parse_envelope(body: bytes, max_depth: int) -> Envelope:
    """The message; ``Refused`` with HTTP 400 when it is not one JSON-RPC 2.0 message.

    A message nesting deeper than ``max_depth`` is refused (-32600) before it is parsed.
    """
    nesting = nesting_bound(body, max_depth)
    if nesting > max_depth:
        raise _invalid(INVALID_REQUEST, f"the message nests deeper than {max_depth} levels")
    try:
        message = json_codec.loads(body)
    except (ValueError, RecursionError) as exc:
        raise _invalid(PARSE_ERROR, f"Parse error: {exc}") from None
    if isinstance(message, list):
        raise _invalid(INVALID_REQUEST, "JSON-RPC batches are not supported: send one message per request")
    if not isinstance(message, dict):
        raise _invalid(INVALID_REQUEST, "the body must be a JSON-RPC 2.0 object")
    request_id = message.get("id")
    if message.get("jsonrpc") != "2.0":
        raise _invalid(INVALID_REQUEST, 'the message must carry "jsonrpc": "2.0"', request_id)
    if "id" in message and (isinstance(request_id, bool) or not isinstance(request_id, str | int)):
        raise _invalid(INVALID_REQUEST, "id must be a string or an integer", None)
    method = message.get("method")
    if not isinstance(method, str) or not method:
        if "result" in message or "error" in message:
            # A client's answer to a request the gateway sent it mid-call; the legacy era routes it to that call.
            return Envelope(request_id, "", {}, True, message, nesting)
        raise _invalid(INVALID_REQUEST, "the message has no method", request_id)
    params = message.get("params", {})
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise _invalid(INVALID_REQUEST, "params must be an object", request_id)
    return Envelope(request_id, method, params, "id" not in message, message, nesting)


def _invalid(code: int, message: str, request_id: Any = None) -> Refused:
    return Refused(request_id, code, message, status=400)
