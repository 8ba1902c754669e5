"""``LegacyEra.prepare`` and ``calling``: the ``Mcp-Session-Id`` session (loaded, owner checked), how a call's answer
will travel for the session's revision, and the call registered in flight so its client can cancel it."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

import anyio
import pytest

from mcp_gateway.core.proxy import Caller, ClientLink
from mcp_gateway.eras.calls import PreparedCall, run_call
from mcp_gateway.eras.jsonrpc import Envelope, Refused, parse_envelope
from tests.eras.conftest import caller_of, headers_of, in_memory_endpoint, open_session
from tests.support.harness import OTHER_KEY

SSE = "application/json, text/event-stream"


def envelope(method: str, request_id: Any = 1, **params: Any) -> Envelope:
    return parse_envelope(
        json.dumps({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}).encode(), 64
    )


@pytest.mark.parametrize(
    ("version", "progress", "lazy", "ids"),
    [("2025-11-25", False, False, True), ("2025-06-18", False, True, False), ("2025-06-18", True, False, False)],
    ids=["resumable", "older-lazy", "older-progress"],
)
async def test_prepare_streams_a_linked_call_as_the_sessions_revision_describes(
    version: str, progress: bool, lazy: bool, ids: bool
) -> None:
    async with in_memory_endpoint() as endpoint:
        session_id = await open_session(endpoint, version)
        caller = await caller_of(endpoint)
        headers = headers_of({"mcp-session-id": session_id, "mcp-protocol-version": version, "accept": SSE})
        params: dict[str, Any] = {"uri": "a://x", **({"_meta": {"progressToken": 3}} if progress else {})}
        prepared = await endpoint.legacy.prepare(headers, caller, envelope("resources/read", 2, **params))
    assert isinstance(prepared, PreparedCall)
    assert (prepared.stream, prepared.lazy, prepared.event_ids is not None) == (True, lazy, ids)
    assert prepared.session is not None and prepared.session.id == session_id
    assert prepared.progress == (3 if progress else None)


async def test_prepare_answers_json_for_a_method_that_never_needs_the_client() -> None:
    async with in_memory_endpoint() as endpoint:
        session_id = await open_session(endpoint, "2025-11-25")
        headers = headers_of({"mcp-session-id": session_id, "accept": SSE})
        prepared = await endpoint.legacy.prepare(headers, await caller_of(endpoint), envelope("tools/list"))
    assert isinstance(prepared, PreparedCall)
    assert (prepared.stream, prepared.event_ids) == (False, None)


async def test_prepare_needs_a_session_of_the_callers_own() -> None:
    async with in_memory_endpoint() as endpoint:
        session_id = await open_session(endpoint, "2025-11-25", key=OTHER_KEY)
        caller = await caller_of(endpoint)
        refusals = []
        for headers in ({}, {"mcp-session-id": "no-such-session"}, {"mcp-session-id": session_id}):
            with pytest.raises(Refused) as refused:
                await endpoint.legacy.prepare(headers_of(headers), caller, envelope("tools/list", 4))
            refusals.append((refused.value.status, refused.value.code, refused.value.message, refused.value.request_id))
    assert refusals == [
        (400, -32600, "Bad Request: Mcp-Session-Id header is required", 4),
        (404, -32600, "Session not found", 4),
        (404, -32600, "Session not found", 4),
    ]


async def test_an_unknown_method_is_refused_with_200() -> None:
    async with in_memory_endpoint() as endpoint:
        session_id = await open_session(endpoint, "2025-11-25")
        with pytest.raises(Refused) as refused:
            headers = headers_of({"mcp-session-id": session_id})
            await endpoint.legacy.prepare(headers, await caller_of(endpoint), envelope("nope/nope"))
    assert (refused.value.status, refused.value.code) == (200, -32601)


async def test_a_call_runs_registered_in_flight_so_notifications_cancelled_ends_it_without_an_answer() -> None:
    async with in_memory_endpoint() as endpoint:
        session_id = await open_session(endpoint, "2025-11-25")
        headers = headers_of({"mcp-session-id": session_id})
        prepared = await endpoint.legacy.prepare(headers, await caller_of(endpoint), envelope("tools/list", "c1"))
        assert isinstance(prepared, PreparedCall)

        async def cancelled_by_its_client(
            caller: Caller, params: Mapping[str, Any], link: ClientLink
        ) -> dict[str, Any]:
            endpoint.legacy.calls.cancel(session_id, "c1")
            await anyio.sleep_forever()
            raise AssertionError("unreachable")

        with anyio.fail_after(30):
            answer = await run_call(dataclasses.replace(prepared, handler=cancelled_by_its_client), None)
        finished = await run_call(prepared, None)
    assert answer is None
    assert finished == {"jsonrpc": "2.0", "id": "c1", "result": {"tools": []}}
