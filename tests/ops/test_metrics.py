"""``/metrics`` for operators, scraped from a real gateway (Redis store, demo upstream over stdio) after real calls."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.harness import DEMO_KEY, SUPPORT_KEY, create_task_session, make_config, mcp_client, serve_gateway

METRICS_TOKEN = "metrics-token-0123456789abcdef"
MODERN = "2026-07-28"


@pytest.fixture
async def gateway(redis_url: str, key_prefix: str) -> AsyncIterator[str]:
    config = make_config(
        store={"url": redis_url, "prefix": key_prefix},
        limits={"perIdentityTool": [{"tools": ["demo__add"], "rate": 1, "per": 60}]},
        metrics={"bearerToken": METRICS_TOKEN},
    )
    async with serve_gateway(config) as url:
        yield url


async def scrape(base: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample, by name and labels."""
    async with httpx.AsyncClient() as http:
        answer = await http.get(f"{base}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert answer.status_code == 200, answer.text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


def value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def test_metrics_answer_401_without_the_configured_bearer_token(gateway: str) -> None:
    async with httpx.AsyncClient() as http:
        missing = await http.get(f"{gateway}/metrics")
        wrong = await http.get(f"{gateway}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}x"})
        basic = await http.get(f"{gateway}/metrics", headers={"Authorization": f"Basic {METRICS_TOKEN}"})
    for answer in (missing, wrong, basic):
        assert answer.status_code == 401
        assert answer.json()["error"] == "unauthorized"
        assert answer.headers["www-authenticate"].startswith("Bearer ")
        assert "mcp_gateway" not in answer.text
    assert 'error="invalid_token"' not in missing.headers["www-authenticate"]
    assert 'error="invalid_token"' in wrong.headers["www-authenticate"]


async def test_metrics_count_upstream_latency_and_errors_policy_denials_limits_and_requests(gateway: str) -> None:
    created = await create_task_session(
        gateway, SUPPORT_KEY, "resolve-ticket", {"ticket_id": "t-1", "customer_id": "c-1"}
    )
    token = created.json()["taskToken"]
    async with mcp_client(gateway, DEMO_KEY, mode=MODERN) as client:
        await client.call_tool("demo__echo", {"text": "hi"})
        await client.call_tool("demo__fail", {})
        await client.call_tool("demo__add", {"a": 1, "b": 2})
        with pytest.raises(Exception, match="perIdentityTool"):
            await client.call_tool("demo__add", {"a": 1, "b": 2})
    async with mcp_client(gateway, SUPPORT_KEY, mode="legacy", task_token=token) as client:
        denied = await client.call_tool("demo__get_customer", {"customer_id": "c-2"})
        assert denied.is_error
    async with httpx.AsyncClient() as http:
        await http.post(
            f"{gateway}/mcp",
            json={"jsonrpc": "2.0", "id": 1, "method": "made/up"},
            headers={"Authorization": f"Bearer {DEMO_KEY}", "Accept": "application/json, text/event-stream"},
        )

    samples = await scrape(gateway)
    latency = "mcp_gateway_upstream_latency_seconds_count"
    assert value(samples, latency, upstream="demo", method="tools/call") == 3
    errors = "mcp_gateway_upstream_errors_total"
    assert value(samples, errors, upstream="demo", method="tools/call", outcome="tool_error") == 1
    assert value(samples, "mcp_gateway_policy_denials_total", policy="same-customer") == 1
    assert value(samples, "mcp_gateway_limit_refusals_total", limit="perIdentityTool") == 1
    calls = "mcp_gateway_tool_calls_total"
    assert value(samples, calls, upstream="demo", decision="allow", outcome="ok") == 2
    assert value(samples, calls, upstream="demo", decision="deny", outcome="denied") == 1
    assert value(samples, "mcp_gateway_requests_total", method="other", era="legacy") == 1
    assert not [key for key in samples if ("method", "made/up") in key[1]]


async def test_metrics_count_task_sessions_created_revoked_and_expired_and_time_the_store(gateway: str) -> None:
    revoked = await create_task_session(gateway, SUPPORT_KEY, "resolve-ticket", {"ticket_id": "t", "customer_id": "c"})
    await create_task_session(gateway, SUPPORT_KEY, "resolve-ticket", {"ticket_id": "t", "customer_id": "c"}, ttl=1)
    auth = {"Authorization": f"Bearer {SUPPORT_KEY}"}
    async with httpx.AsyncClient() as http:
        gone = await http.delete(f"{gateway}/v1/tasks/sessions/{revoked.json()['tokenId']}", headers=auth)
        assert gone.status_code == 204
        await anyio.sleep(1.2)
        # Listing prunes the expired session from the live index, and counts it.
        assert (await http.get(f"{gateway}/v1/tasks/sessions", headers=auth)).status_code == 200

    samples = await scrape(gateway)
    assert value(samples, "mcp_gateway_task_sessions_total", event="created") == 2
    assert value(samples, "mcp_gateway_task_sessions_total", event="revoked") == 1
    assert value(samples, "mcp_gateway_task_sessions_total", event="expired") == 1
    store = "mcp_gateway_store_latency_seconds_count"
    assert value(samples, store, operation="SET (pipeline)") == 2
    assert value(samples, store, operation="DEL + WAIT") == 1  # the durable revocation (store/replicated_delete.py)
    assert value(samples, store, operation="ZRANGEBYSCORE") >= 1
