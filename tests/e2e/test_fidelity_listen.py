"""``subscriptions/listen`` at the gateway: a 2026-07-28 client's long-lived stream of merged list changes.

Real gateway, real demo upstream (whose ``toggle_extra_tool`` changes its tool list), the SDK's own listen driver and
raw HTTP for the wire.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest
from mcp.client.subscriptions import ToolsListChanged, listen

from tests.eras.test_mcp_endpoint import modern_body, modern_headers
from tests.support.harness import DEMO_KEY, make_config, mcp_client, serve_gateway

MODERN = "2026-07-28"
SUBSCRIPTION_ID = "io.modelcontextprotocol/subscriptionId"


@pytest.fixture(scope="module")
async def gateway() -> AsyncIterator[str]:
    async with serve_gateway(make_config()) as url:
        yield url


async def toggle(url: str) -> None:
    async with mcp_client(url, DEMO_KEY, mode=MODERN) as client:
        await client.call_tool("demo__toggle_extra_tool", {})


async def test_sdk_listener_hears_an_upstreams_tool_list_change(gateway: str) -> None:
    async with mcp_client(gateway, DEMO_KEY, mode=MODERN) as client:
        async with listen(client.session, tools_list_changed=True, resource_subscriptions=["demo://readme"]) as events:
            assert events.honored.tools_list_changed is True
            assert events.honored.resource_subscriptions == ["demo://readme"]
            await toggle(gateway)
            try:
                with anyio.fail_after(10):
                    event = await anext(events)
            finally:
                await toggle(gateway)
        assert isinstance(event, ToolsListChanged)


async def read_events(lines: AsyncIterator[str], count: int, within: float) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    with anyio.move_on_after(within):
        async for line in lines:
            if line.startswith("data: "):
                events.append(json.loads(line[len("data: ") :]))
                if len(events) == count:
                    break
    return events


async def test_stream_opens_with_the_ack_and_stamps_every_frame_with_the_request_id(gateway: str) -> None:
    body = modern_body("subscriptions/listen", {"notifications": {"toolsListChanged": True}}, request_id="sub-1")
    async with (
        httpx.AsyncClient(timeout=30) as http,
        http.stream("POST", f"{gateway}/mcp", json=body, headers=modern_headers("subscriptions/listen")) as response,
    ):
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = response.aiter_lines()
        [ack] = await read_events(lines, 1, 5)
        await toggle(gateway)
        try:
            [changed] = await read_events(lines, 1, 10)
        finally:
            await toggle(gateway)
    assert ack["method"] == "notifications/subscriptions/acknowledged"
    assert ack["params"] == {"notifications": {"toolsListChanged": True}, "_meta": {SUBSCRIPTION_ID: "sub-1"}}
    assert changed == {
        "jsonrpc": "2.0",
        "method": "notifications/tools/list_changed",
        "params": {"_meta": {SUBSCRIPTION_ID: "sub-1"}},
    }


async def test_kinds_not_requested_are_not_delivered(gateway: str) -> None:
    body = modern_body("subscriptions/listen", {"notifications": {"promptsListChanged": True}}, request_id=9)
    async with (
        httpx.AsyncClient(timeout=30) as http,
        http.stream("POST", f"{gateway}/mcp", json=body, headers=modern_headers("subscriptions/listen")) as response,
    ):
        lines = response.aiter_lines()
        [ack] = await read_events(lines, 1, 5)
        await toggle(gateway)
        try:
            later = await read_events(lines, 1, 1.5)
        finally:
            await toggle(gateway)
    assert ack["params"]["notifications"] == {"promptsListChanged": True}
    assert later == []


async def test_listen_without_accepting_a_stream_is_refused(gateway: str) -> None:
    body = modern_body("subscriptions/listen", {"notifications": {"toolsListChanged": True}})
    headers = {**modern_headers("subscriptions/listen"), "Accept": "application/json"}
    async with httpx.AsyncClient(timeout=30) as http:
        response = await http.post(f"{gateway}/mcp", json=body, headers=headers)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == -32600
