"""``ModernEra.prepare``: the 2026-07-28 header ladder and ``_meta`` checks, and how a call's answer will travel."""

from __future__ import annotations

import json
from typing import Any

import pytest
from starlette.responses import Response

from mcp_gateway.eras.calls import PreparedCall
from mcp_gateway.eras.jsonrpc import Envelope, Refused, parse_envelope
from mcp_gateway.eras.request_headers import McpHeaders
from tests.eras.conftest import META, caller_of, headers_of, in_memory_endpoint, modern_headers

SSE = "application/json, text/event-stream"


def envelope(method: str, request_id: Any = 1, **meta: Any) -> Envelope:
    body = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": {"_meta": {**META, **meta}}}
    return parse_envelope(json.dumps(body).encode(), 64)


@pytest.mark.parametrize(
    ("meta", "accept", "stream", "lazy"),
    [
        ({"progressToken": "p"}, SSE, True, False),
        ({"io.modelcontextprotocol/logLevel": "info"}, SSE, True, True),
        ({"progressToken": "p"}, "application/json", False, False),
        ({}, SSE, False, True),
    ],
    ids=["progress-sse", "logs-lazy-sse", "progress-no-sse", "neither"],
)
async def test_prepare_decides_whether_the_answer_may_stream(
    meta: dict[str, Any], accept: str, stream: bool, lazy: bool
) -> None:
    async with in_memory_endpoint() as endpoint:
        caller = await caller_of(endpoint)
        headers = headers_of({**modern_headers("tools/list"), "accept": accept})
        prepared = await endpoint.modern.prepare(headers, caller, envelope("tools/list", **meta))
    assert isinstance(prepared, PreparedCall)
    assert (prepared.stream, prepared.lazy, prepared.event_ids) == (stream, lazy, None)
    assert (prepared.request_id, prepared.method, prepared.caller, prepared.era) == (
        1,
        "tools/list",
        caller,
        endpoint.modern,
    )
    assert prepared.progress == meta.get("progressToken")
    assert prepared.log_level == meta.get("io.modelcontextprotocol/logLevel")
    assert prepared.handler is endpoint.context.methods["tools/list"]


@pytest.mark.parametrize(
    ("headers", "meta", "code", "status", "request_id"),
    [
        (modern_headers("tools/call"), {}, -32020, 400, 1),
        (modern_headers("tools/list"), {"io.modelcontextprotocol/logLevel": "loud"}, -32602, 400, 1),
    ],
    ids=["method-mismatch", "bad-log-level"],
)
async def test_prepare_refuses_what_disagrees_with_the_body(
    headers: dict[str, str], meta: dict[str, Any], code: int, status: int, request_id: int
) -> None:
    async with in_memory_endpoint() as endpoint:
        caller = await caller_of(endpoint)
        with pytest.raises(Refused) as refused:
            await endpoint.modern.prepare(headers_of(headers), caller, envelope("tools/list", **meta))
    assert (refused.value.code, refused.value.status, refused.value.request_id) == (code, status, request_id)


async def test_prepare_refuses_a_routing_header_sent_twice() -> None:
    async with in_memory_endpoint() as endpoint:
        caller = await caller_of(endpoint)
        raw = [(b"mcp-protocol-version", b"2026-07-28"), (b"mcp-method", b"tools/list"), (b"mcp-method", b"tools/list")]
        with pytest.raises(Refused) as refused:
            await endpoint.modern.prepare(McpHeaders.read(raw), caller, envelope("tools/list"))
    assert (refused.value.code, refused.value.message) == (-32020, "mcp-method header appears more than once")


async def test_prepare_answers_server_discover_itself_and_refuses_an_unknown_method_with_404() -> None:
    async with in_memory_endpoint() as endpoint:
        caller = await caller_of(endpoint)
        discover = await endpoint.modern.prepare(
            headers_of(modern_headers("server/discover")), caller, envelope("server/discover", 5)
        )
        with pytest.raises(Refused) as refused:
            await endpoint.modern.prepare(headers_of(modern_headers("nope/nope")), caller, envelope("nope/nope"))
    assert isinstance(discover, Response)
    assert bytes(discover.body).startswith(b'{"jsonrpc":"2.0","id":5,"result":{"supportedVersions":["2026-07-28"]')
    assert (refused.value.code, refused.value.status) == (-32601, 404)
