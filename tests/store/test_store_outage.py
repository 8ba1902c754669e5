"""A store outage, end to end: one rule (every /mcp and /v1 request answers 503, health and metrics still answer),
for standalone Redis and Redis Cluster alike, noticed and recovered from without a round trip per request."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import redis

from mcp_gateway.errors import StoreUnavailable
from mcp_gateway.store import RedisStore
from tests.conftest import free_port, start_redis, stop_redis
from tests.eras.test_mcp_endpoint import modern_body, modern_headers
from tests.support.harness import DEMO_KEY, SUPPORT_KEY, make_config, serve_gateway
from tests.test_config import REPO

UNREACHABLE = {
    "redis": lambda port: f"redis://127.0.0.1:{port}/0",
    "redis-cluster": lambda port: f"redis+cluster://127.0.0.1:{port}",
}


@pytest.fixture(params=sorted(UNREACHABLE), scope="module")
async def degraded_gateway(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """A gateway whose store (standalone or Cluster) is unreachable from the start."""
    url = UNREACHABLE[request.param](free_port())
    async with serve_gateway(make_config(store={"url": url})) as base:
        yield base


async def echo_call(http: httpx.AsyncClient, base: str, key: str = DEMO_KEY, **headers: str) -> httpx.Response:
    """A modern-era tools/call that needs no store of its own (no task token, no session)."""
    body = modern_body("tools/call", {"name": "demo__echo", "arguments": {"text": "hi"}})
    return await http.post(
        f"{base}/mcp", json=body, headers={**modern_headers("tools/call", "demo__echo", key), **headers}
    )


def assert_store_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"] == "store_unavailable"


async def test_unreachable_store_makes_readyz_a_503_json_report(degraded_gateway: str) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{degraded_gateway}/readyz")
    assert response.status_code == 503
    assert response.json() == {"ready": False, "store": False, "upstreams": {"demo": True}}


async def test_unreachable_store_makes_task_session_creation_a_503(degraded_gateway: str) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{degraded_gateway}/v1/tasks/sessions",
            json={"taskId": "resolve-ticket", "context": {"ticket_id": "T-1", "customer_id": "cust-001"}},
            headers={"Authorization": f"Bearer {SUPPORT_KEY}"},
        )
    assert_store_unavailable(response)


async def test_unreachable_store_makes_a_task_bound_mcp_request_a_503(degraded_gateway: str) -> None:
    async with httpx.AsyncClient() as http:
        response = await echo_call(http, degraded_gateway, SUPPORT_KEY, **{"X-Task-Token": "mgt_" + "A" * 43})
    assert_store_unavailable(response)


async def test_unreachable_store_refuses_calls_that_need_no_store(degraded_gateway: str) -> None:
    async with httpx.AsyncClient() as http:
        assert_store_unavailable(await echo_call(http, degraded_gateway))
        assert_store_unavailable(await http.get(f"{degraded_gateway}/v1/tasks/sessions/current", headers=auth()))


async def test_unreachable_store_leaves_health_and_metrics_answering(degraded_gateway: str) -> None:
    async with httpx.AsyncClient() as http:
        assert (await http.get(f"{degraded_gateway}/healthz")).status_code == 200
        assert (await http.get(f"{degraded_gateway}/metrics")).status_code == 200


async def test_serve_says_in_one_line_that_it_starts_degraded(caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    with caplog.at_level(logging.INFO, logger="mcp_gateway"):
        async with serve_gateway(make_config(store={"url": f"redis://:secret@127.0.0.1:{port}/0"})):
            pass
    lines = [r.getMessage() for r in caplog.records if "degraded" in r.getMessage()]
    assert len(lines) == 1
    assert f"127.0.0.1:{port}" in lines[0]
    assert "secret" not in caplog.text


@pytest.mark.parametrize("flags", [[], ["--no-upstreams"]], ids=["upstreams", "no-upstreams"])
def test_check_names_an_unreachable_store_by_host_and_port_never_its_password(flags: list[str]) -> None:
    port = free_port()
    env = {**os.environ, "MCP_GATEWAY_STORE": f"redis://:secret@127.0.0.1:{port}/0"}
    result = subprocess.run(
        [sys.executable, "-m", "mcp_gateway", "check", "--config", "configs/example.yaml", *flags],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=120,
    )
    assert result.returncode == 2
    assert f"store.url: store redis://127.0.0.1:{port}/0" in result.stderr
    assert "secret" not in result.stdout + result.stderr


def auth(key: str = DEMO_KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def status_within(http: httpx.AsyncClient, base: str, status: int, seconds: float) -> float:
    """How long until a store-free call answers ``status``; fails after ``seconds``."""
    started = time.monotonic()
    with anyio.fail_after(seconds):
        while (await echo_call(http, base)).status_code != status:  # noqa: ASYNC110 - polling over HTTP is the test
            await anyio.sleep(0.05)
    return time.monotonic() - started


async def test_an_outage_is_noticed_within_seconds_and_so_is_the_recovery(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    process, url = start_redis(tmp_path)
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    try:
        async with serve_gateway(make_config(store={"url": url})) as base, httpx.AsyncClient() as http:
            assert (await echo_call(http, base)).status_code == 200
            stop_redis(process)
            await status_within(http, base, 503, 3)
            assert (await http.get(f"{base}/readyz")).status_code == 503
            for _ in range(20):
                assert_store_unavailable(await echo_call(http, base))
            process, _ = start_redis(tmp_path, port)
            await status_within(http, base, 200, 3)
            assert (await http.get(f"{base}/readyz")).status_code == 200
    finally:
        stop_redis(process)
    # One line when the outage is noticed, one when it ends: never a line per refused request.
    outage = [r for r in caplog.records if r.name == "mcp_gateway.store.health"]
    assert [r.levelno for r in outage] == [logging.ERROR, logging.WARNING]
    assert "until it is back" in outage[0].getMessage()
    assert "answers again" in outage[1].getMessage()
    assert not [r for r in caplog.records if "refusing a request" in r.getMessage() and r.levelno >= logging.WARNING]


async def test_a_healthy_store_costs_no_round_trip_per_call(tmp_path: Path) -> None:
    """Counted on a Redis of its own: the session's shared one also serves what earlier tests left running.

    What is counted is what grows with the calls. Start-up and amortised work (a connection's HELLO, the audit
    stream's size check every 1/16th of its cap, a script's first load) may land inside the window on a slow machine,
    so a handful of commands is fine; one command per call, for 100 calls, is not.
    """
    process, redis_url = start_redis(tmp_path)
    raw = redis.Redis.from_url(redis_url)

    def commands() -> dict[str, int]:
        """Commands this gateway sends on behalf of requests: not the audit stream's XADD, PING, or our INFO."""
        stats: dict[str, Any] = raw.info("commandstats")
        ignored = ("cmdstat_xadd", "cmdstat_ping", "cmdstat_info")
        return {k: int(v["calls"]) for k, v in stats.items() if k not in ignored}

    try:
        config = make_config(store={"url": redis_url, "prefix": "gw:"})
        async with serve_gateway(config) as base, httpx.AsyncClient() as http:
            # A first call, and its audit record in the stream: the stream's first append also checks its size (a
            # script and MEMORY USAGE), and the audit writer makes it moments after the call, not within it.
            assert (await echo_call(http, base)).status_code == 200
            with anyio.fail_after(10):
                while not raw.xlen("gw:audit"):  # noqa: ASYNC110 - the audit writer runs in the gateway
                    await anyio.sleep(0.02)
            before = commands()
            started = time.monotonic()
            for _ in range(100):
                assert (await echo_call(http, base)).status_code == 200
            elapsed = time.monotonic() - started
            after = commands()
    finally:
        raw.close()
        stop_redis(process)
    sent = {k: n - before.get(k, 0) for k, n in after.items() if n != before.get(k, 0)}
    assert sum(sent.values()) < 20, f"{sent} store commands for 100 calls in {elapsed:.2f}s"


async def test_a_key_redis_cannot_encode_fails_that_operation_only_and_is_no_outage(redis_store: RedisStore) -> None:
    await redis_store.ping()
    with pytest.raises(StoreUnavailable, match="cannot encode"):
        await redis_store.get("session:\ud800")
    assert redis_store.available
    assert await redis_store.get("session:fine") is None


async def test_a_lone_surrogate_in_a_rest_body_is_a_400_and_the_store_stays_available(
    redis_url: str, key_prefix: str
) -> None:
    bodies = [
        '{"taskId": "resolve-ticket", "context": {"ticket_id": "\\ud800", "customer_id": "c"}}',
        '{"taskId": "\\udfff"}',
    ]
    headers = {"Authorization": f"Bearer {DEMO_KEY}", "content-type": "application/json"}
    async with (
        serve_gateway(make_config(store={"url": redis_url, "prefix": key_prefix})) as base,
        httpx.AsyncClient(base_url=base, headers=headers) as http,
    ):
        answers = [await http.post("/v1/tasks/sessions", content=body) for body in bodies]
        after = await http.get("/v1/tasks/sessions")
    for answer in answers:
        assert answer.status_code == 400, answer.text
        assert "lone surrogate" in answer.json()["message"]
    assert after.status_code == 200
