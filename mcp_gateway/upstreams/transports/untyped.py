"""Forwarding untyped requests through an SDK client session.

The gateway relays what clients and upstreams say without narrowing it to what this SDK version models: params go
out as the client sent them and results come back as the upstream sent them, unknown fields included. Only the
envelope is per hop: the previous hop's ``_meta`` envelope and progress token are dropped, and the session stamps
its own for whichever protocol era it negotiated.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mcp.client import ClientSession
from mcp.shared.dispatcher import CallOptions
from mcp_types import CLIENT_CAPABILITIES_META_KEY, LOG_LEVEL_META_KEY

# The 2026-07-28 envelope keys and the progress token belong to the hop that sent them.
_ENVELOPE_PREFIX = "io.modelcontextprotocol/"
_HOP_META_KEYS = frozenset({"progressToken"})


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
    raw requests the same way, through these same two private attributes; this module is the only place we touch
    them.

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

    Raises ``MCPError`` for a JSON-RPC error answer or a closed connection, as the SDK does.
    """
    out = stamped(session, method, params, opts, client_capabilities=client_capabilities, log_level=log_level)
    return await session._dispatcher.send_raw_request(method, out, opts)


def hop_params(params: Mapping[str, Any] | None) -> dict[str, Any]:
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


def hop_result(result: dict[str, Any]) -> dict[str, Any]:
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
