"""Log messages (``notifications/message``) cross the gateway in both eras, to and from upstreams of both eras.

A 2026-07-28 client opts in per request (``io.modelcontextprotocol/logLevel``): the opt-in reaches a 2026-07-28
upstream (which sends nothing without it), and a handshake-era upstream's messages, filtered by that level, reach the
client on the call's response stream. A handshake-era client's ``logging/setLevel`` becomes the level a 2026-07-28
upstream call carries. Real gateway, real demo upstream over stdio and streamable HTTP in each era, real SDK clients.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import mcp_types as types
import pytest

from tests.e2e.test_fidelity_legacy import text_of
from tests.eras.test_mcp_endpoint import modern_body, modern_headers
from tests.support.harness import DEMO_KEY, DEMO_UPSTREAM, make_config, mcp_client, serve_gateway
from tests.upstreams.test_upstreams import demo_http_server, free_port

MODERN = "2026-07-28"
pytestmark = pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")


@pytest.fixture(
    scope="module",
    params=[("stdio", "legacy"), ("stdio", MODERN), ("http", "legacy"), ("http", MODERN)],
    ids=lambda p: f"{p[0]}-{p[1]}-upstream",
)
async def gateway(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """The gateway in front of the demo upstream, over stdio or streamable HTTP, in either era."""
    transport, protocol = request.param
    if transport == "stdio":
        async with serve_gateway(make_config(upstreams=[{**DEMO_UPSTREAM, "protocol": protocol}])) as url:
            yield url
        return
    async with demo_http_server(free_port()) as upstream_url:
        upstream = {"name": "demo", "transport": "streamable-http", "url": upstream_url, "protocol": protocol}
        async with serve_gateway(make_config(upstreams=[upstream])) as url:
            yield url


class Logged:
    def __init__(self) -> None:
        self.messages: list[tuple[str, Any]] = []

    async def __call__(self, params: types.LoggingMessageNotificationParams) -> None:
        self.messages.append((params.level, params.data))


async def test_modern_clients_opt_in_brings_the_calls_log_messages(gateway: str) -> None:
    logged = Logged()
    async with mcp_client(gateway, DEMO_KEY, mode=MODERN, log_level="info", logging_callback=logged) as client:
        assert text_of(await client.call_tool("demo__log_steps", {"n": 2})) == "logged 2"
    assert logged.messages == [("info", "step 1 of 2"), ("info", "step 2 of 2")]


@pytest.mark.parametrize("log_level", [None, "warning"])
async def test_modern_client_gets_no_log_messages_below_its_level_or_without_opting_in(
    gateway: str, log_level: str | None
) -> None:
    """The demo logs at info: nothing for a client that asked for warning and above, or for no log messages."""
    logged = Logged()
    async with mcp_client(gateway, DEMO_KEY, mode=MODERN, log_level=log_level, logging_callback=logged) as client:
        assert text_of(await client.call_tool("demo__log_steps", {"n": 2})) == "logged 2"
    assert logged.messages == []


async def test_modern_call_opted_in_to_logs_streams_its_answer_only_once_something_is_logged(gateway: str) -> None:
    """The opt-in alone keeps a quiet call's answer JSON; a call that logs switches to SSE with its messages."""
    bodies = {}
    async with httpx.AsyncClient(timeout=30) as http:
        for tool, arguments in (("demo__add", {"a": 1, "b": 2}), ("demo__log_steps", {"n": 1})):
            body = modern_body("tools/call", {"name": tool, "arguments": arguments})
            body["params"]["_meta"]["io.modelcontextprotocol/logLevel"] = "debug"
            bodies[tool] = await http.post(f"{gateway}/mcp", json=body, headers=modern_headers("tools/call", tool))
    assert bodies["demo__add"].headers["content-type"].startswith("application/json")
    logged = bodies["demo__log_steps"]
    assert logged.headers["content-type"].startswith("text/event-stream")
    assert '"method":"notifications/message"' in logged.text.replace(" ", "")


async def test_unknown_log_level_is_invalid_params_and_nothing_is_forwarded(gateway: str) -> None:
    body = modern_body("tools/call", {"name": "demo__log_steps", "arguments": {"n": 1}})
    body["params"]["_meta"]["io.modelcontextprotocol/logLevel"] = "loud"
    async with httpx.AsyncClient(timeout=30) as http:
        response = await http.post(f"{gateway}/mcp", json=body, headers=modern_headers("tools/call", "demo__log_steps"))
    error = response.json()["error"]
    assert error["code"] == -32602
    assert "logLevel must be one of debug, info" in error["message"]


async def test_legacy_sessions_level_governs_its_log_messages(gateway: str) -> None:
    """Every level until the session sets one (stamped on a 2026-07-28 upstream call, filtered from a legacy one)."""
    logged = Logged()
    async with mcp_client(gateway, DEMO_KEY, mode="legacy", logging_callback=logged) as client:
        assert text_of(await client.call_tool("demo__log_steps", {"n": 2})) == "logged 2"
        assert logged.messages == [("info", "step 1 of 2"), ("info", "step 2 of 2")]
        await client.set_logging_level("warning")
        await client.call_tool("demo__log_steps", {"n": 1})
        assert len(logged.messages) == 2
        await client.set_logging_level("debug")
        await client.call_tool("demo__log_steps", {"n": 1})
    assert logged.messages[2:] == [("info", "step 1 of 1")]
