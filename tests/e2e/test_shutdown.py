"""``mcp-gateway serve`` on SIGTERM, as a rolling deploy sends it: a real process, real streams, a real slow call.

Idle streams (the legacy GET stream, a ``subscriptions/listen`` stream) end at once; a call in flight finishes with its
result; the process exits 0 within ``server.shutdownGrace``, cancelling whatever outlives it.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx

from tests.conftest import free_port
from tests.eras.test_mcp_endpoint import modern_body, modern_headers
from tests.support.harness import BASE_CONFIG, DEMO_KEY
from tests.test_config import REPO

LEGACY = "2025-06-18"
AUTH = {"Authorization": f"Bearer {DEMO_KEY}", "Accept": "application/json, text/event-stream"}


@contextmanager
def gateway_process(tmp_path: Path, grace: int) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """``python -m mcp_gateway serve`` on a free port with the demo upstream; killed if the test leaves it running."""
    port = free_port()
    config: dict[str, Any] = copy.deepcopy(BASE_CONFIG)
    config["server"] = {"host": "127.0.0.1", "port": port, "shutdownGrace": grace}
    with serving_process(config, tmp_path / "gateway.yaml", tmp_path / "gateway.log") as process:
        yield process, f"http://127.0.0.1:{port}"


@contextmanager
def serving_process(config: dict[str, Any], config_path: Path, log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``python -m mcp_gateway serve`` with ``config`` written to ``config_path``, its output in ``log_path``."""
    config_path.write_text(json.dumps(config))  # JSON is YAML
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "mcp_gateway", "serve", "--config", str(config_path)],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            yield process
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


async def until_serving(process: subprocess.Popen[bytes], base: str) -> None:
    async with httpx.AsyncClient() as http:
        with anyio.fail_after(30):
            while True:
                assert process.poll() is None, "the gateway exited during start-up"
                try:
                    if (await http.get(f"{base}/healthz")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await anyio.sleep(0.1)


async def exit_status_within(process: subprocess.Popen[bytes], seconds: float) -> int:
    with anyio.fail_after(seconds):
        while (status := process.poll()) is None:  # noqa: ASYNC110 - a child process has no event to await
            await anyio.sleep(0.05)
    return status


async def initialize(http: httpx.AsyncClient, base: str) -> str:
    body = {
        "jsonrpc": "2.0",
        "id": 0,
        "method": "initialize",
        "params": {
            "protocolVersion": LEGACY,
            "capabilities": {},
            "clientInfo": {"name": "deploy-test", "version": "1"},
        },
    }
    response = await http.post(f"{base}/mcp", json=body, headers=AUTH)
    assert response.status_code == 200, response.text
    return response.headers["mcp-session-id"]


@asynccontextmanager
async def sse(http: httpx.AsyncClient, method: str, url: str, **kwargs: Any) -> AsyncIterator[AsyncIterator[str]]:
    """An open event stream's ``data:`` payloads; the iterator ends when the server ends the stream."""
    async with http.stream(method, url, **kwargs) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")

        async def data() -> AsyncIterator[str]:
            async for line in response.aiter_lines():
                if line.startswith("data: "):
                    yield line[len("data: ") :]

        yield data()


def count_slowly(n: int, delay: float) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": 7,
        "method": "tools/call",
        "params": {"name": "demo__count_slowly", "arguments": {"n": n, "delay": delay}, "_meta": {"progressToken": 1}},
    }


async def test_sigterm_ends_idle_streams_lets_the_call_in_flight_finish_and_exits_0(tmp_path: Path) -> None:
    with gateway_process(tmp_path, grace=20) as (process, base):
        await until_serving(process, base)
        async with httpx.AsyncClient(timeout=30) as http:
            session = await initialize(http, base)
            legacy = {**AUTH, "mcp-session-id": session}
            listen_body = modern_body("subscriptions/listen", {"notifications": {"toolsListChanged": True}})
            async with (
                sse(http, "GET", f"{base}/mcp", headers=legacy) as get_stream,
                sse(
                    http, "POST", f"{base}/mcp", json=listen_body, headers=modern_headers("subscriptions/listen")
                ) as listen_stream,
                sse(http, "POST", f"{base}/mcp", json=count_slowly(4, 0.75), headers=legacy) as call,
            ):
                ack = json.loads(await anext(listen_stream))
                assert ack["method"] == "notifications/subscriptions/acknowledged"
                first = json.loads(await anext(call))
                assert first["method"] == "notifications/progress"  # the call is running upstream

                process.send_signal(signal.SIGTERM)
                signalled = time.monotonic()
                with anyio.fail_after(5):
                    assert [message async for message in get_stream] == []
                    assert [message async for message in listen_stream] == []
                streams_ended = time.monotonic() - signalled
                rest = [json.loads(message) async for message in call]
        status = await exit_status_within(process, 20)
        exited = time.monotonic() - signalled
    assert rest[-1]["id"] == 7
    assert rest[-1]["result"]["content"] == [{"type": "text", "text": "counted to 4"}]
    assert status == 0
    assert streams_ended < 2  # well before the call ends (about 2.25 s after the signal)
    assert exited < 20


async def test_sigterm_cancels_calls_that_outlive_the_grace_period(tmp_path: Path) -> None:
    with gateway_process(tmp_path, grace=1) as (process, base):
        await until_serving(process, base)
        async with httpx.AsyncClient(timeout=30) as http:
            session = await initialize(http, base)
            legacy = {**AUTH, "mcp-session-id": session}
            async with sse(http, "POST", f"{base}/mcp", json=count_slowly(60, 1), headers=legacy) as call:
                await anext(call)
                process.send_signal(signal.SIGTERM)
                signalled = time.monotonic()
                status = await exit_status_within(process, 10)
    assert status == 0
    assert time.monotonic() - signalled < 10
