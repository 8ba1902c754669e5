"""Upstream connections against real upstream processes: the demo server over stdio (both eras) and streamable HTTP,
the pinned npm ``server-everything``, and two small wire-level servers written out below."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import Process

from mcp_gateway.config import HttpTransport, StdioTransport, UpstreamConfig
from mcp_gateway.errors import RpcError, UpstreamUnavailable
from mcp_gateway.upstreams.backoff import Backoff
from mcp_gateway.upstreams.connection import UpstreamConnection, UpstreamTimeout
from mcp_gateway.upstreams.list_cache import ListKind
from mcp_gateway.upstreams.transports.encoding import UnforwardableRequest

ROOT = Path(__file__).resolve().parents[2]
EVERYTHING = ROOT / "node_modules" / ".bin" / "mcp-server-everything"
MODERN = "2026-07-28"
LEGACY = "2025-11-25"
# protocol setting -> the version the demo server ends up speaking
STDIO_ERAS = {"legacy": LEGACY, "auto": MODERN, MODERN: MODERN}
FAST = Backoff(initial=0.1, factor=2.0, cap=0.5, jitter=0.1)
DEMO_TOOLS = {
    *("echo", "add", "get_customer", "update_ticket", "count_slowly", "fail", "toggle_extra_tool"),
    *("confirm_action", "ask_model", "client_roots", "log_steps", "region_header", "write_note", "note_subscriptions"),
    *("customer_reads", "note_link"),
}

# A hand-written legacy-era server speaking raw JSON-RPC lines: it can say things no SDK server would (vendor fields),
# answers server/discover with "method not found", and lists the tools named on its command line.
RAW_SERVER = r"""
import json, sys
names = sys.argv[1:] or ["echo"]
tools = [{"name": n, "inputSchema": {"type": "object"}, "x-vendor": {"rank": i}} for i, n in enumerate(names)]
for line in sys.stdin:
    msg = json.loads(line)
    if "id" not in msg:
        continue
    method, result = msg["method"], None
    if method == "initialize":
        info = {"name": "raw", "version": "0"}
        result = {"protocolVersion": "2025-06-18", "capabilities": {"tools": {}}, "serverInfo": info}
    elif method == "tools/list":
        result = {"tools": tools}
    elif method == "tools/call":
        result = {"content": [{"type": "text", "text": "ok"}], "x-vendor": {"cost": 3}}
    if result is None:
        reply = {"id": msg["id"], "error": {"code": -32601, "message": "Method not found", "data": {"method": method}}}
    else:
        reply = {"id": msg["id"], "result": result}
    print(json.dumps({"jsonrpc": "2.0", **reply}), flush=True)
"""

# An SDK low-level server that pages its tool list (10 per page) and answers every call with the _meta it received.
PROBE_SERVER = r"""
import json
import anyio
import mcp_types as types
from mcp.server import Server
from mcp.server.stdio import stdio_server

TOOLS = [types.Tool(name=f"tool{i:02d}", input_schema={"type": "object"}) for i in range(25)]

async def list_tools(ctx, params):
    start = int(params.cursor) if params is not None and params.cursor else 0
    more = start + 10 < len(TOOLS)
    return types.ListToolsResult(tools=TOOLS[start : start + 10], next_cursor=str(start + 10) if more else None)

async def call_tool(ctx, params):
    return types.CallToolResult(content=[types.TextContent(type="text", text=json.dumps(dict(params.meta or {})))])

async def main():
    server = Server("probe", on_list_tools=list_tools, on_call_tool=call_tool)
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())

anyio.run(main)
"""


def demo_stdio(name: str = "demo", protocol: str = "auto", *, prefix: bool = True, **kw: Any) -> UpstreamConfig:
    transport = StdioTransport(command=sys.executable, args=("-m", "mcp_gateway.examples.demo_server"))
    return UpstreamConfig(name=name, transport=transport, protocol=protocol, prefix=prefix, **kw)


def script_stdio(name: str, script: str, *args: str, prefix: bool = True, protocol: str = "auto") -> UpstreamConfig:
    transport = StdioTransport(command=sys.executable, args=("-c", script, *args))
    return UpstreamConfig(name=name, transport=transport, prefix=prefix, protocol=protocol)


def http_config(url: str, protocol: str = "auto", **kw: Any) -> UpstreamConfig:
    return UpstreamConfig(name="demo", transport=HttpTransport(url=url), protocol=protocol, **kw)


@asynccontextmanager
async def running(*connections: UpstreamConnection) -> AsyncIterator[None]:
    """Run connections as the gateway does: each started in a task group, first connect attempt finished."""
    async with anyio.create_task_group() as tg:
        with anyio.fail_after(30):
            for connection in connections:
                await tg.start(connection.run)
        yield
        tg.cancel_scope.cancel()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@asynccontextmanager
async def demo_http_server(port: int) -> AsyncIterator[str]:
    """The demo server as a separate process serving streamable HTTP (both eras) on ``port``."""
    command = [sys.executable, "-m", "mcp_gateway.examples.demo_server", "--http", "--port", str(port)]
    process: Process = await anyio.open_process(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with anyio.fail_after(20):
            while True:
                try:
                    stream = await anyio.connect_tcp("127.0.0.1", port)
                except OSError:
                    await anyio.sleep(0.05)
                    continue
                await stream.aclose()
                break
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.kill()
        with anyio.move_on_after(5):
            await process.wait()


async def until(predicate: Callable[[], bool], within: float = 10.0) -> None:
    """Poll a condition that has no event to wait on (a process death, a log line)."""
    with anyio.fail_after(within):
        while not predicate():  # noqa: ASYNC110 - arbitrary predicates have no event
            await anyio.sleep(0.01)


def echo(text: str = "hi") -> dict[str, Any]:
    return {"name": "echo", "arguments": {"text": text}}


@pytest.mark.parametrize("protocol", list(STDIO_ERAS))
async def test_connects_and_lists_every_kind_over_stdio(protocol: str) -> None:
    connection = UpstreamConnection(demo_stdio(protocol=protocol))
    async with running(connection):
        assert connection.ready
        assert connection.protocol_version == STDIO_ERAS[protocol]
        lists = connection.lists
        assert {tool["name"] for tool in lists.tools} == DEMO_TOOLS
        assert [resource["uri"] for resource in lists.resources] == ["demo://note", "demo://readme"]
        assert [template["uriTemplate"] for template in lists.resource_templates] == ["demo://customers/{customer_id}"]
        assert [prompt["name"] for prompt in lists.prompts] == ["summarize"]


async def test_pinned_modern_protocol_asks_the_server_for_its_capabilities() -> None:
    connection = UpstreamConnection(demo_stdio(protocol=MODERN))
    async with running(connection):
        capabilities = connection.server_capabilities
        assert capabilities is not None and capabilities.tools is not None
        assert capabilities.tools.list_changed is True
        assert connection.server_info is not None and connection.server_info.name == "demo"


@pytest.mark.parametrize("protocol", ["legacy", "auto"])
async def test_call_returns_the_result_dict_as_the_upstream_sent_it(protocol: str) -> None:
    connection = UpstreamConnection(demo_stdio(protocol=protocol))
    async with running(connection):
        result = await connection.request("tools/call", echo("hello"))
    assert result["content"] == [{"type": "text", "text": "hello"}]
    assert result["structuredContent"] == {"result": "hello"}
    if protocol == "auto":
        # 2026-07-28 results carry their own fields; nothing between the wire and us drops them.
        assert result["resultType"] == "complete"
        assert result["_meta"]["io.modelcontextprotocol/serverInfo"]["name"] == "demo"
    else:
        assert "resultType" not in result


@pytest.mark.parametrize("protocol", ["legacy", "auto"])
async def test_unknown_fields_in_lists_and_results_are_kept(protocol: str) -> None:
    connection = UpstreamConnection(script_stdio("raw", RAW_SERVER, protocol=protocol))
    async with running(connection):
        # "auto" probed server/discover, got "method not found", and fell back to the handshake.
        assert connection.protocol_version == "2025-06-18"
        assert connection.lists.tools == ({"name": "echo", "inputSchema": {"type": "object"}, "x-vendor": {"rank": 0}},)
        result = await connection.request("tools/call", {"name": "echo", "arguments": {}})
    assert result == {"content": [{"type": "text", "text": "ok"}], "x-vendor": {"cost": 3}}


async def test_upstream_json_rpc_error_is_raised_with_code_message_and_data() -> None:
    connection = UpstreamConnection(script_stdio("raw", RAW_SERVER))
    async with running(connection):
        with pytest.raises(RpcError) as caught:
            await connection.request("vendor/unknown", {"x": 1})
    assert (caught.value.code, caught.value.message, caught.value.data) == (
        -32601,
        "Method not found",
        {"method": "vendor/unknown"},
    )


async def test_tool_error_is_a_result_not_an_exception() -> None:
    connection = UpstreamConnection(demo_stdio())
    async with running(connection):
        result = await connection.request("tools/call", {"name": "fail", "arguments": {"message": "nope"}})
    assert result["isError"] is True
    assert "nope" in result["content"][0]["text"]


@pytest.mark.parametrize("protocol", ["legacy", "auto"])
async def test_previous_hops_envelope_and_progress_token_are_not_forwarded(protocol: str) -> None:
    connection = UpstreamConnection(script_stdio("probe", PROBE_SERVER, protocol=protocol))
    meta = {
        "progressToken": "client-token",
        "io.modelcontextprotocol/protocolVersion": "1999-01-01",
        "io.modelcontextprotocol/clientInfo": {"name": "downstream", "version": "1"},
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "vendor/key": "kept",
    }
    async with running(connection):
        result = await connection.request("tools/call", {"name": "tool00", "arguments": {}, "_meta": meta})
    received = json.loads(result["content"][0]["text"])
    assert received["vendor/key"] == "kept"
    assert received["traceparent"] == meta["traceparent"]
    assert "progressToken" not in received
    assert received.get("io.modelcontextprotocol/clientInfo", {}).get("name") != "downstream"
    if protocol == "auto":
        assert received["io.modelcontextprotocol/protocolVersion"] == MODERN
        assert received["io.modelcontextprotocol/clientInfo"]["name"] == "mcp-gateway"
    else:
        assert not any(key.startswith("io.modelcontextprotocol/") for key in received)


@pytest.mark.parametrize("protocol", ["legacy", "auto"])
async def test_every_page_of_a_paginated_list_is_fetched(protocol: str) -> None:
    connection = UpstreamConnection(script_stdio("probe", PROBE_SERVER, protocol=protocol))
    async with running(connection):
        names = [tool["name"] for tool in connection.lists.tools]
    assert names == [f"tool{i:02d}" for i in range(25)]


@pytest.mark.parametrize("protocol", ["legacy", "auto"])
async def test_progress_notifications_reach_on_progress_over_stdio(protocol: str) -> None:
    connection = UpstreamConnection(demo_stdio(protocol=protocol))
    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))

    async with running(connection):
        arguments = {"n": 3, "delay": 0.01}
        result = await connection.request(
            "tools/call", {"name": "count_slowly", "arguments": arguments}, on_progress=on_progress
        )
    assert result["content"][0]["text"] == "counted to 3"
    assert seen == [(float(i), 3.0, f"counted {i} of 3") for i in (1, 2, 3)]


async def test_call_timeout_raises_and_the_connection_stays_usable() -> None:
    connection = UpstreamConnection(demo_stdio(call_timeout=0.3))
    async with running(connection):
        started = time.monotonic()
        with pytest.raises(UpstreamTimeout, match=r"within 0\.3s"):
            await connection.request("tools/call", {"name": "count_slowly", "arguments": {"n": 50, "delay": 0.1}})
        assert time.monotonic() - started < 2
        with pytest.raises(TimeoutError):
            await connection.request(
                "tools/call", {"name": "count_slowly", "arguments": {"n": 50, "delay": 0.1}}, timeout=0.1
            )
        assert (await connection.request("tools/call", echo("still here")))["content"][0]["text"] == "still here"


@pytest.mark.parametrize("protocol", ["legacy", "auto"])
async def test_killed_stdio_process_is_detected_and_restarted(protocol: str, tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    command = f"echo $$ > {pidfile}; exec {sys.executable} -m mcp_gateway.examples.demo_server"
    config = UpstreamConfig(
        name="demo", transport=StdioTransport(command="sh", args=("-c", command)), protocol=protocol
    )
    connection = UpstreamConnection(config, backoff=FAST)
    failures: list[BaseException] = []

    async def long_call() -> None:
        try:
            await connection.request("tools/call", {"name": "count_slowly", "arguments": {"n": 100, "delay": 0.1}})
        except UpstreamUnavailable as exc:
            failures.append(exc)

    async with running(connection), anyio.create_task_group() as calls:
        first_pid = int(pidfile.read_text())
        calls.start_soon(long_call)
        await anyio.sleep(0.2)
        killed_at = time.monotonic()
        os.kill(first_pid, signal.SIGKILL)
        await until(lambda: not connection.ready, within=2)
        await until(lambda: bool(failures), within=2)  # the call in flight fails instead of hanging
        assert time.monotonic() - killed_at < 2
        with pytest.raises(UpstreamUnavailable):  # and a new one fails at once
            await connection.request("tools/call", echo())
        with anyio.fail_after(15):
            await connection.wait_ready()
        assert connection.generation == 2
        assert int(pidfile.read_text()) != first_pid
        assert (await connection.request("tools/call", echo("back")))["content"][0]["text"] == "back"


async def test_upstream_that_cannot_start_is_retried_with_growing_backoff(caplog: pytest.LogCaptureFixture) -> None:
    config = script_stdio("broken", "import sys; sys.exit(3)")
    connection = UpstreamConnection(config, backoff=Backoff(initial=0.05, factor=2.0, cap=0.4, jitter=0.0))
    with caplog.at_level(logging.WARNING, logger="mcp_gateway.upstreams.connection"):
        async with running(connection):
            assert not connection.ready
            started = time.monotonic()
            with pytest.raises(UpstreamUnavailable, match="'broken' is not connected: "):
                await connection.request("tools/call", echo())
            assert time.monotonic() - started < 0.1
            await until(lambda: len(re.findall(r"reconnecting in", caplog.text)) >= 5, within=15)
    delays = [float(d) for d in re.findall(r"reconnecting in ([0-9.]+)s", caplog.text)][:5]
    assert delays == [0.05, 0.1, 0.2, 0.4, 0.4]


def test_backoff_doubles_up_to_the_cap_with_bounded_jitter() -> None:
    backoff = Backoff(initial=0.5, factor=2.0, cap=30.0, jitter=0.2)
    for attempt, base in enumerate([0.5, 1, 2, 4, 8, 16, 30, 30]):
        for _ in range(50):
            assert base * 0.8 <= backoff.delay(attempt) <= base * 1.2
    assert backoff.delay(10_000) <= 36.0


async def test_unreachable_http_upstream_fails_fast() -> None:
    connection = UpstreamConnection(
        http_config(f"http://127.0.0.1:{free_port()}/mcp", connect_timeout=5), backoff=Backoff(initial=5)
    )
    started = time.monotonic()
    async with running(connection):
        assert time.monotonic() - started < 5
        assert not connection.ready
        started = time.monotonic()
        with pytest.raises(UpstreamUnavailable, match="ConnectError"):
            await connection.request("tools/call", echo())
        assert time.monotonic() - started < 0.1


@pytest.mark.parametrize("protocol", ["legacy", "auto"])
async def test_demo_over_http_lists_calls_and_reports_progress(protocol: str) -> None:
    seen: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(progress)

    async with demo_http_server(free_port()) as url:
        connection = UpstreamConnection(http_config(url, protocol))
        async with running(connection):
            assert connection.protocol_version == (MODERN if protocol == "auto" else LEGACY)
            assert {tool["name"] for tool in connection.lists.tools} == DEMO_TOOLS
            assert (await connection.request("tools/call", echo("over http")))["content"][0]["text"] == "over http"
            arguments = {"n": 3, "delay": 0.01}
            await connection.request(
                "tools/call", {"name": "count_slowly", "arguments": arguments}, on_progress=on_progress
            )
    assert seen == [1.0, 2.0, 3.0]


@pytest.mark.parametrize("protocol", ["legacy", "auto"])
@pytest.mark.parametrize("streamed", [False, True])
async def test_big_answers_over_http_arrive_whole(protocol: str, streamed: bool) -> None:
    """Far bigger than any read buffer, as one JSON body or one SSE event (progress asked for: a stream)."""
    text = "".join(chr(0x41 + i % 26) for i in range(300_000)) + " é ✓"

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        pass  # only asking for progress matters: it makes the answer an SSE stream

    async with demo_http_server(free_port()) as url:
        connection = UpstreamConnection(http_config(url, protocol))
        async with running(connection):
            result = await connection.request("tools/call", echo(text), on_progress=on_progress if streamed else None)
    assert result["content"][0]["text"] == text


@pytest.mark.parametrize("protocol", ["legacy", "auto"])
async def test_http_call_timeout_raises_and_the_connection_stays_usable(protocol: str) -> None:
    async with demo_http_server(free_port()) as url:
        connection = UpstreamConnection(http_config(url, protocol, call_timeout=0.3))
        async with running(connection):
            started = time.monotonic()
            with pytest.raises(UpstreamTimeout, match=r"within 0\.3s"):
                await connection.request("tools/call", {"name": "count_slowly", "arguments": {"n": 50, "delay": 0.1}})
            assert time.monotonic() - started < 2
            assert connection.ready
            assert (await connection.request("tools/call", echo("still here")))["content"][0]["text"] == "still here"


@pytest.mark.parametrize("protocol", ["legacy", "auto"])
async def test_http_upstream_that_goes_away_is_detected_and_reconnected(protocol: str) -> None:
    port = free_port()
    connection = UpstreamConnection(http_config(f"http://127.0.0.1:{port}/mcp", protocol), backoff=FAST)
    async with running(connection):
        async with demo_http_server(port):
            with anyio.fail_after(15):
                await connection.wait_ready()
        # Nothing is in flight: the connection notices on its own (through the listen stream at 2026-07-28, the
        # standalone GET stream in the legacy era) rather than at the next call.
        await until(lambda: not connection.ready, within=10)
        async with demo_http_server(port):
            with anyio.fail_after(15):
                await connection.wait_ready()
            assert connection.generation >= 2
            assert (await connection.request("tools/call", echo("again")))["content"][0]["text"] == "again"


@asynccontextmanager
async def list_changes(connection: UpstreamConnection) -> AsyncIterator[list[frozenset[ListKind]]]:
    changes: list[frozenset[ListKind]] = []

    async def record(changed: UpstreamConnection, kinds: frozenset[ListKind]) -> None:
        assert changed is connection
        changes.append(kinds)

    connection.add_change_listener(record)
    yield changes


async def assert_toggle_refreshes(connection: UpstreamConnection) -> None:
    async with list_changes(connection) as changes:
        await connection.request("tools/call", {"name": "toggle_extra_tool", "arguments": {}})
        await until(lambda: bool(changes), within=5)
    assert changes == [frozenset({"tools"})]
    assert {tool["name"] for tool in connection.lists.tools} == DEMO_TOOLS | {"extra"}


@pytest.mark.parametrize("protocol", ["legacy", "auto"])
async def test_list_changed_over_stdio_refreshes_the_cache_and_tells_listeners(protocol: str) -> None:
    connection = UpstreamConnection(demo_stdio(protocol=protocol))
    async with running(connection):
        await assert_toggle_refreshes(connection)


@pytest.mark.parametrize("protocol", ["legacy", "auto"])
async def test_list_changed_over_http_refreshes_the_cache_and_tells_listeners(protocol: str) -> None:
    async with demo_http_server(free_port()) as url:
        connection = UpstreamConnection(http_config(url, protocol))
        async with running(connection):
            await assert_toggle_refreshes(connection)


@pytest.fixture
def everything() -> UpstreamConfig:
    if not EVERYTHING.exists():
        pytest.skip("npm test peers are not installed: run `npm ci` in the repository root")
    transport = StdioTransport(command="node", args=(str(EVERYTHING), "stdio"))
    return UpstreamConfig(name="everything", transport=transport, call_timeout=20)


async def test_everything_server_lists_calls_and_reports_progress(everything: UpstreamConfig) -> None:
    connection = UpstreamConnection(everything)
    seen: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(progress)

    async with running(connection):
        assert connection.ready, connection.last_error
        names = {tool["name"] for tool in connection.lists.tools}
        assert {"echo", "get-sum", "trigger-long-running-operation"} <= names
        assert connection.lists.resources and connection.lists.prompts
        result = await connection.request("tools/call", {"name": "echo", "arguments": {"message": "hi"}})
        assert result["content"][0]["text"] == "Echo: hi"
        arguments = {"duration": 0.3, "steps": 3}
        await connection.request(
            "tools/call", {"name": "trigger-long-running-operation", "arguments": arguments}, on_progress=on_progress
        )
    assert seen == [1.0, 2.0, 3.0]


def nested(depth: int) -> Any:
    """An object ``depth`` levels deep, built without recursion."""
    value: Any = "bottom"
    for _ in range(depth):
        value = {"a": value}
    return value


async def slow_count(connection: UpstreamConnection, results: list[str]) -> None:
    """Another caller's call, in flight while the bad one fails."""
    result = await connection.request("tools/call", {"name": "count_slowly", "arguments": {"n": 5, "delay": 0.1}})
    results.append(result["content"][0]["text"])


async def assert_fails_alone(connection: UpstreamConnection, arguments: dict[str, Any], message: str) -> None:
    """The request fails with -32602 while a call in flight and the next call succeed, on the same session."""
    generation = connection.generation
    results: list[str] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(slow_count, connection, results)
        await anyio.sleep(0.1)
        with pytest.raises(UnforwardableRequest, match=message) as caught:
            await connection.request("tools/call", {"name": "echo", "arguments": arguments})
    assert caught.value.code == -32602
    assert results == ["counted to 5"]
    assert (await connection.request("tools/call", echo("next")))["content"][0]["text"] == "next"
    assert connection.ready
    assert connection.generation == generation


@pytest.mark.parametrize("protocol", ["legacy", "auto"])
@pytest.mark.parametrize("depth", [300, 1000])
async def test_params_too_deep_to_encode_fail_alone_over_stdio(protocol: str, depth: int) -> None:
    connection = UpstreamConnection(demo_stdio(protocol=protocol), backoff=FAST)
    async with running(connection):
        await assert_fails_alone(connection, {"text": "t", "deep": nested(depth)}, "nest too deeply")


async def test_lone_surrogate_in_params_fails_alone_over_stdio() -> None:
    connection = UpstreamConnection(demo_stdio(), backoff=FAST)
    async with running(connection):
        await assert_fails_alone(connection, {"text": "\ud800"}, "cannot be encoded")


@pytest.mark.parametrize("protocol", ["legacy", "auto"])
@pytest.mark.parametrize("depth", [1000, 3000])
async def test_params_too_deep_to_encode_fail_alone_over_http(protocol: str, depth: int) -> None:
    async with demo_http_server(free_port()) as url:
        connection = UpstreamConnection(http_config(url, protocol), backoff=FAST)
        async with running(connection):
            await assert_fails_alone(connection, {"text": "t", "deep": nested(depth)}, "nest too deeply")
