"""JSON-RPC as the gateway speaks it to upstreams: the per-hop envelope both ways, every body the gateway sends an
upstream, and every answer read back into a result or an ``RpcError``.

The client side has ``eras/jsonrpc.py``; this is its twin towards upstreams, so what the gateway strips, stamps and
accepts on this side is decided in one place whichever transport carries the message: the HTTP call path
(``transports/http_calls.py``) or an SDK session (every call over stdio; lists and handshakes over either). It must
never learn about a transport: no HTTP status, header or stream here, only messages.

The gateway relays what clients and upstreams say without narrowing it to what this SDK version models: params go
out as the client sent them and results come back as the upstream sent them, unknown fields included. Only the
envelope is per hop: the previous hop's ``_meta`` envelope (``io.modelcontextprotocol/...`` keys) and progress token
are dropped on the way out, the session stamps its own for whichever era it negotiated, and the upstream's own
envelope keys are dropped on the way back. Nothing here copies or walks a result more than that requires: a result
whose ``_meta`` has no envelope key is returned as it came, and a verbatim answer (``json_codec.loads_answer``) keeps
the upstream's bytes for every member the gateway does not read.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mcp.client import ClientSession
from mcp.shared.dispatcher import CallOptions
from mcp_types import CLIENT_CAPABILITIES_META_KEY, INTERNAL_ERROR, LOG_LEVEL_META_KEY, PARSE_ERROR

from mcp_gateway import json_codec
from mcp_gateway.errors import RpcError
from mcp_gateway.upstreams.transports.encoding import UnforwardableRequest, encode_json

# The 2026-07-28 envelope keys and the progress token belong to the hop that sent them.
_ENVELOPE_PREFIX = "io.modelcontextprotocol/"
_HOP_META_KEYS = frozenset({"progressToken"})

VERBATIM_EXCEPT = frozenset({"isError", "resultType", "_meta", "ttlMs", "cacheScope", "inputRequests", "requestState"})
"""The members of a result the gateway reads (audit outcome, MRTR, era framing, its own ``_meta`` stamp): decoded even
when the rest of a result is read verbatim (``json_codec.loads_answer``)."""


# Outbound: the envelope.


def forwarded_params(params: Mapping[str, Any], **replace: Any) -> dict[str, Any]:
    """The client's params for the upstream, names swapped back; ``outbound_params`` drops the client's envelope."""
    return {**params, **replace}


def outbound_params(params: Mapping[str, Any] | None) -> dict[str, Any]:
    """A copy of ``params`` without the previous hop's envelope and progress token."""
    out = {key: value for key, value in (params or {}).items() if key != "_meta"}
    meta = (params or {}).get("_meta")
    if isinstance(meta, Mapping):
        kept = {
            key: value
            for key, value in meta.items()
            if isinstance(key, str) and not key.startswith(_ENVELOPE_PREFIX) and key not in _HOP_META_KEYS
        }
        if kept:
            out["_meta"] = kept
    return out


def stamped(
    session: ClientSession,
    method: str,
    params: Mapping[str, Any] | None,
    opts: CallOptions,
    *,
    client_capabilities: Mapping[str, Any] | None = None,
    log_level: str | None = None,
) -> dict[str, Any] | None:
    """``params`` with the session's envelope for ``method``; the routing headers go into ``opts``.

    ``ClientSession`` offers only typed requests, which re-serialize params through its models and validate and
    trim the result. The session's stamp still has to run, because it writes the 2026-07-28 ``_meta`` envelope and
    the routing headers for whichever era was negotiated. The SDK's own ``mcp.client.subscriptions.listen`` sends
    raw requests the same way, through these same two private attributes (``_stamp`` here, ``_dispatcher`` in
    ``send_raw``); this module is the only place we touch them.

    ``client_capabilities`` replaces the stamped 2026-07-28 ``clientCapabilities`` with those of the client the
    request is made for, so the upstream asks only for input that client can give; ``log_level`` is that client's
    2026-07-28 log opt-in (without it a 2026-07-28 upstream sends no log messages for the request).
    """
    data: dict[str, Any] = {"method": method}
    if params is not None:
        data["params"] = dict(params)
    session._stamp(data, opts)
    out: dict[str, Any] | None = data.get("params")
    meta = out.get("_meta") if out is not None else None
    if isinstance(meta, dict) and CLIENT_CAPABILITIES_META_KEY in meta:
        if client_capabilities is not None:
            meta[CLIENT_CAPABILITIES_META_KEY] = dict(client_capabilities)
        if log_level is not None:
            meta[LOG_LEVEL_META_KEY] = log_level
    return out


def stamp_progress_token(params: dict[str, Any], token: str) -> None:
    """Ask for progress on this hop under ``token`` (the client's own token went with its envelope)."""
    meta = params.get("_meta")
    params["_meta"] = {**meta, "progressToken": token} if isinstance(meta, dict) else {"progressToken": token}


async def send_raw(
    session: ClientSession,
    method: str,
    params: Mapping[str, Any] | None,
    opts: CallOptions,
    *,
    client_capabilities: Mapping[str, Any] | None = None,
    log_level: str | None = None,
) -> dict[str, Any]:
    """Send a request through ``session`` untyped: params as given, the result dict exactly as received.

    Raises ``MCPError`` for a JSON-RPC error answer or a closed connection, as the SDK does (``upstream_error``
    turns it into the gateway's ``RpcError``).
    """
    out = stamped(session, method, params, opts, client_capabilities=client_capabilities, log_level=log_level)
    return await session._dispatcher.send_raw_request(method, out, opts)


# Outbound: the bodies the HTTP call path sends.


def request_body(request_id: str, method: str, params: Mapping[str, Any]) -> bytes:
    """One stamped request, encoded; ``UnforwardableRequest`` when its params cannot be encoded."""
    return encode_json({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params})


def reply_body(request_id: Any, answer: Mapping[str, Any] | RpcError) -> bytes:
    """The body answering an upstream's request to the gateway (sampling, elicitation, roots): the client's result or
    an error. A client's answer that cannot be encoded becomes an error, so the upstream still gets an answer."""
    reply: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id}
    if isinstance(answer, RpcError):
        error: dict[str, Any] = {"code": answer.code, "message": answer.message}
        if answer.data is not None:
            error["data"] = answer.data
        reply["error"] = error
    else:
        reply["result"] = answer
    try:
        return encode_json(reply)
    except UnforwardableRequest as exc:
        error = {"code": INTERNAL_ERROR, "message": f"the client's answer cannot be relayed: {exc.message}"}
        return encode_json({"jsonrpc": "2.0", "id": request_id, "error": error})


def cancelled_body(request_id: str, reason: str) -> bytes:
    """``notifications/cancelled`` for a request of ours the caller abandoned (handshake era)."""
    note = {
        "jsonrpc": "2.0",
        "method": "notifications/cancelled",
        "params": {"requestId": request_id, "reason": reason},
    }
    return encode_json(note)


# Inbound: answers and results.


def upstream_error(code: object, message: object, data: Any = None) -> RpcError:
    """An upstream's JSON-RPC error as the gateway raises it, whichever path read it (the HTTP call path's JSON or
    the SDK's ``MCPError``): code, message and data as sent, a code that is not an integer ``INTERNAL_ERROR`` and a
    message that is not text a generic one."""
    return RpcError(
        code if isinstance(code, int) and not isinstance(code, bool) else INTERNAL_ERROR,
        message if isinstance(message, str) else "upstream error",
        data,
    )


def error_of(error: Mapping[str, Any]) -> RpcError:
    """A JSON-RPC ``error`` member as an ``RpcError``."""
    return upstream_error(error.get("code"), error.get("message"), error.get("data"))


def parse_message(raw: bytes) -> dict[str, Any]:
    """One JSON-RPC message from the upstream; ``RpcError`` (-32700) when it is not a JSON object."""
    try:
        message = json_codec.loads(raw)
    except ValueError as exc:
        raise RpcError(PARSE_ERROR, f"the upstream's answer is not JSON: {exc}") from exc
    if not isinstance(message, dict):
        raise RpcError(PARSE_ERROR, "the upstream's answer is not a JSON-RPC message")
    return message


def result_of(request_id: str, message: Mapping[str, Any]) -> dict[str, Any]:
    """The result object of the answer ``message``; its error, or -32700 without a result object, as ``RpcError``."""
    error = message.get("error")
    if isinstance(error, dict):
        raise error_of(error)
    result = message.get("result")
    if not isinstance(result, dict):
        raise RpcError(PARSE_ERROR, f"the upstream's answer to {request_id} has no result object")
    return result


def answer_result(request_id: str, raw: bytes, *, verbatim: bool) -> dict[str, Any]:
    """The result of a JSON answer body (the only message a JSON response carries, so its id is not compared).

    ``verbatim``: members outside ``VERBATIM_EXCEPT`` stay the upstream's bytes when the answer is a plain result;
    anything else is read as usual, with the usual errors.
    """
    if verbatim and (answer := json_codec.loads_answer(raw, VERBATIM_EXCEPT)) is not None:
        return answer[1]
    return result_of(request_id, parse_message(raw))


def stream_event(request_id: str, raw: bytes, *, verbatim: bool) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """One event of a call's SSE stream: ``(result, None)`` when it answers ``request_id``, ``(None, message)`` for a
    request or notification the call path handles, ``(None, None)`` for an answer to another id. An error answer to
    ``request_id`` is raised as ``RpcError``."""
    if verbatim and (answer := json_codec.loads_answer(raw, VERBATIM_EXCEPT)) is not None:
        return (answer[1], None) if answer[0] == request_id else (None, None)
    message = parse_message(raw)
    if "method" in message:
        return None, message
    if message.get("id") == request_id:
        return result_of(request_id, message), None
    return None, None


def error_in(raw: bytes) -> RpcError | None:
    """The JSON-RPC error a JSON body of an HTTP error status carries, if it carries one."""
    try:
        message = json_codec.loads(raw)
    except ValueError:
        return None
    if isinstance(message, dict) and isinstance(error := message.get("error"), dict):
        return error_of(error)
    return None


def inbound_result(result: dict[str, Any]) -> dict[str, Any]:
    """``result`` without the upstream's own envelope keys (its ``serverInfo`` stamp, say).

    The client talks to the gateway: a 2026-07-28 answer carries the gateway's stamp, a handshake-era one none.
    """
    meta = result.get("_meta")
    if not isinstance(meta, Mapping) or not any(isinstance(k, str) and k.startswith(_ENVELOPE_PREFIX) for k in meta):
        return result
    kept = {k: v for k, v in meta.items() if not (isinstance(k, str) and k.startswith(_ENVELOPE_PREFIX))}
    out = {k: v for k, v in result.items() if k != "_meta"}
    if kept:
        out["_meta"] = kept
    return out
