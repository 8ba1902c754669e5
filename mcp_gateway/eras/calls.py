"""One prepared call and the one function that runs it: link → method → ``era.finish`` → the answer's body.

An era's ``prepare`` checks a request against that era's rules and, when the request is a call of the method table,
hands back a ``PreparedCall``: everything the call needs, decided before the response starts. ``run_call`` is then
the same for both eras; the era contributes only the link to its client (``calling``: progress, log messages,
mid-call requests, and for the handshake era the in-flight registration that ``notifications/cancelled`` and the
client's answers find) and the result framing (``finish``). ``answers.py`` runs it under the response, JSON or SSE.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from mcp_gateway.core.proxy import Caller, ClientLink
from mcp_gateway.eras.context import MethodHandler
from mcp_gateway.eras.jsonrpc import result_body, rpc_error_of
from mcp_gateway.errors import RpcError

if TYPE_CHECKING:
    from mcp_gateway.eras.session_records import LegacySession

Emit = Callable[[dict[str, Any]], Awaitable[None]]
"""Sends one JSON-RPC message to the client ahead of the call's answer (switching the answer to SSE)."""


class Era(Protocol):
    """What differs between the eras once a call is prepared."""

    def calling(self, call: PreparedCall, emit: Emit | None) -> AbstractContextManager[ClientLink]:
        """The link to the client for the call's duration (``emit``: its SSE stream, None for a JSON answer)."""

    def finish(self, method: str, caller: Caller, result: dict[str, Any]) -> dict[str, Any]:
        """The result as this era's clients must see it."""

    def error_status(self, code: int) -> int:
        """The HTTP status of a JSON-RPC error answered with a JSON body."""


@dataclass(frozen=True, slots=True)
class PreparedCall:
    """A request of the method table that passed its era's checks, with how its answer may travel."""

    request_id: Any
    method: str
    params: Mapping[str, Any]
    caller: Caller
    handler: MethodHandler
    era: Era
    stream: bool
    """The answer may be SSE (the client accepts it and the call may send something first)."""
    lazy: bool
    """SSE only once the call sends something before its answer; JSON if it sends nothing."""
    event_ids: str | None = None
    """A prefix for SSE event ids (2025-11-25 resumable streams); None: no ids, no priming event."""
    progress: str | int | None = None
    capabilities: Mapping[str, Any] | None = None
    """What a 2026-07-28 client declared in ``_meta`` (the handshake era's are in its session)."""
    log_level: str | None = None
    session: LegacySession | None = None


async def run_call(call: PreparedCall, emit: Emit | None) -> dict[str, Any] | None:
    """The call's answer (a result or an error body), or None when its client cancelled it (nothing to answer)."""
    result: dict[str, Any] | None = None
    try:
        with call.era.calling(call, emit) as link:
            result = await call.handler(call.caller, call.params, link)
    except RpcError as exc:
        return rpc_error_of(call.request_id, exc)
    if result is None:
        return None
    return result_body(call.request_id, call.era.finish(call.method, call.caller, result))
