"""Rate limits and task budgets on running gateways: refusals on /mcp in both eras and on REST, audited and counted;
a budget shared by two replicas over one Redis; policies reading ``session``; a store that fails closes the door."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest
import yaml
from mcp.shared.exceptions import MCPError

from mcp_gateway.config import AuditConfig, GatewayConfig, Identity, parse_config
from mcp_gateway.core.audit import AuditLog, AuditRecord, read_recent
from mcp_gateway.core.limits import Limiter
from mcp_gateway.errors import BUDGET_EXHAUSTED, RATE_LIMITED
from mcp_gateway.ops.metrics import Metrics
from mcp_gateway.store import RedisStore, open_store
from tests.conftest import free_port, start_redis, stop_redis
from tests.e2e.test_policies_e2e import run_cli
from tests.store.test_store_outage import echo_call
from tests.support.harness import BASE_CONFIG, DEMO_KEY, OTHER_KEY, SUPPORT_KEY, make_config, mcp_client, serve_gateway
from tests.test_config import REPO

MODERN = "2026-07-28"
ERAS = ["legacy", MODERN]
TWO_PER_MINUTE = {"rate": 2, "per": "60s"}

REFUND_TASK = {
    "id": "refund",
    "name": "Refund one order",
    "allowedTools": ["demo__echo", "demo__add"],
    "contextSchema": {"type": "object"},
    "budgets": {"tools": {"demo__echo": 3}, "totalCalls": 5},
}
SUPPORT_ECHO_AND_ADD = {
    "id": "support-agent",
    "requireTask": True,
    "allowedTools": ["demo__echo", "demo__add"],
    "credentials": BASE_CONFIG["identities"][1]["credentials"],
}
IDENTITIES = [BASE_CONFIG["identities"][0], SUPPORT_ECHO_AND_ADD]


def redis_config(redis_url: str, prefix: str, **sections: Any) -> GatewayConfig:
    return make_config(store={"url": redis_url, "prefix": prefix}, **sections)


async def start_session(base: str, task_id: str = "refund", key: str = SUPPORT_KEY) -> str:
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{base}/v1/tasks/sessions",
            json={"taskId": task_id, "context": {}},
            headers={"Authorization": f"Bearer {key}"},
        )
    assert response.status_code == 201, response.text
    return str(response.json()["taskToken"])


async def audit_records(redis_url: str, prefix: str, outcome: str) -> list[AuditRecord]:
    """The gateway's audit records with ``outcome``, once they reached the stream (written in the background)."""
    store = open_store(redis_url, prefix)
    try:
        for _ in range(50):
            found = [r for r in await read_recent(store, "audit", 100) if r.outcome == outcome]
            if found:
                return found
            await anyio.sleep(0.1)
        return []
    finally:
        await store.close()


async def metric(base: str, limit: str) -> float:
    async with httpx.AsyncClient() as http:
        text = (await http.get(f"{base}/metrics")).text
    line = f'mcp_gateway_limit_refusals_total{{limit="{limit}"}} '
    values = [float(row.removeprefix(line)) for row in text.splitlines() if row.startswith(line)]
    return values[0] if values else 0.0


# --- rate limits ---


@pytest.mark.parametrize("mode", ERAS)
async def test_call_over_the_identity_rate_limit_is_refused_with_retry_after_ms(
    mode: str, redis_url: str, key_prefix: str
) -> None:
    config = redis_config(redis_url, key_prefix, limits={"perIdentity": TWO_PER_MINUTE})
    async with serve_gateway(config) as base, mcp_client(base, DEMO_KEY, mode=mode) as client:
        for _ in range(2):
            assert not (await client.call_tool("demo__echo", {"text": "hi"})).is_error
        with pytest.raises(MCPError) as refused:
            await client.call_tool("demo__echo", {"text": "hi"})
        assert refused.value.error.code == RATE_LIMITED
        data = refused.value.error.data
        assert data["limit"] == "perIdentity"
        assert 29_000 < data["retryAfterMs"] <= 30_000
        assert await metric(base, "perIdentity") == 1
    [record] = await audit_records(redis_url, key_prefix, "rate_limited")
    assert (record.identity, record.tool, record.decision) == ("demo-agent", "demo__echo", "deny")
    assert "perIdentity" in record.reason


async def test_identity_tool_limit_counts_each_matching_tool_apart(redis_url: str, key_prefix: str) -> None:
    limits = {"perIdentityTool": [{"tools": ["demo__e*", "demo__add"], "rate": 1, "per": 60}]}
    async with (
        serve_gateway(redis_config(redis_url, key_prefix, limits=limits)) as base,
        mcp_client(base, DEMO_KEY, mode=MODERN) as client,
    ):
        await client.call_tool("demo__echo", {"text": "hi"})
        await client.call_tool("demo__add", {"a": 1, "b": 2})
        with pytest.raises(MCPError) as refused:
            await client.call_tool("demo__echo", {"text": "again"})
        assert refused.value.error.data["limit"] == "perIdentityTool"
        # Outside every rule's globs: not limited.
        for _ in range(3):
            await client.call_tool("demo__get_customer", {"customer_id": "cust-001"})


async def test_upstream_limit_is_shared_by_every_identity(redis_url: str, key_prefix: str) -> None:
    config = redis_config(redis_url, key_prefix, limits={"perUpstream": {"demo": {"rate": 1, "per": 60}}})
    async with serve_gateway(config) as base, mcp_client(base, DEMO_KEY, mode=MODERN) as client:
        await client.call_tool("demo__echo", {"text": "hi"})
        async with mcp_client(base, OTHER_KEY, mode=MODERN) as client:
            with pytest.raises(MCPError) as refused:
                await client.call_tool("demo__echo", {"text": "hi"})
    assert refused.value.error.data["limit"] == "perUpstream"


async def test_session_creation_over_the_identity_limit_answers_429_with_retry_after(
    redis_url: str, key_prefix: str
) -> None:
    config = redis_config(
        redis_url, key_prefix, limits={"perIdentity": TWO_PER_MINUTE}, identities=IDENTITIES, tasks=[REFUND_TASK]
    )
    async with serve_gateway(config) as base:
        await start_session(base)
        await start_session(base)
        async with httpx.AsyncClient() as http:
            response = await http.post(
                f"{base}/v1/tasks/sessions",
                json={"taskId": "refund", "context": {}},
                headers={"Authorization": f"Bearer {SUPPORT_KEY}"},
            )
        assert response.status_code == 429
        assert response.headers["retry-after"] == "30"
        body = response.json()
        assert body["error"] == "rate_limited"
        assert 29_000 < body["details"]["retryAfterMs"] <= 30_000
        assert await metric(base, "perIdentity") == 1
    [record] = await audit_records(redis_url, key_prefix, "rate_limited")
    assert (record.identity, record.method) == ("support-agent", "tasks/sessions/create")


async def test_task_session_limit_applies_per_session(redis_url: str, key_prefix: str) -> None:
    limits = {"perTaskSession": {"rate": 1, "per": 60}}
    config = redis_config(redis_url, key_prefix, limits=limits, identities=IDENTITIES, tasks=[REFUND_TASK])
    async with serve_gateway(config) as base:
        for _ in range(2):
            async with mcp_client(base, SUPPORT_KEY, mode=MODERN, task_token=await start_session(base)) as client:
                await client.call_tool("demo__add", {"a": 1, "b": 1})
                with pytest.raises(MCPError) as refused:
                    await client.call_tool("demo__add", {"a": 1, "b": 1})
                assert refused.value.error.data["limit"] == "perTaskSession"


# --- budgets ---


@pytest.mark.parametrize("mode", ERAS)
async def test_exhausted_tool_budget_names_the_budget(mode: str, redis_url: str, key_prefix: str) -> None:
    config = redis_config(redis_url, key_prefix, identities=IDENTITIES, tasks=[REFUND_TASK])
    async with (
        serve_gateway(config) as base,
        mcp_client(base, SUPPORT_KEY, mode=mode, task_token=await start_session(base)) as client,
    ):
        for _ in range(3):
            assert not (await client.call_tool("demo__echo", {"text": "refund"})).is_error
        with pytest.raises(MCPError) as refused:
            await client.call_tool("demo__echo", {"text": "refund"})
        assert refused.value.error.code == BUDGET_EXHAUSTED
        assert refused.value.error.data == {"budget": "tools.demo__echo", "limit": 3}
        # The total still has room for other tools, up to totalCalls.
        await client.call_tool("demo__add", {"a": 1, "b": 2})
        await client.call_tool("demo__add", {"a": 1, "b": 2})
        with pytest.raises(MCPError) as refused:
            await client.call_tool("demo__add", {"a": 1, "b": 2})
        assert refused.value.error.data == {"budget": "totalCalls", "limit": 5}
        assert await metric(base, "tools") == 1
        assert await metric(base, "totalCalls") == 1
    records = await audit_records(redis_url, key_prefix, "budget_exhausted")
    assert records and "tools.demo__echo" in records[0].reason


async def test_a_new_session_has_a_fresh_budget(redis_url: str, key_prefix: str) -> None:
    config = redis_config(redis_url, key_prefix, identities=IDENTITIES, tasks=[REFUND_TASK])
    async with serve_gateway(config) as base:
        for _ in range(2):
            async with mcp_client(base, SUPPORT_KEY, mode=MODERN, task_token=await start_session(base)) as client:
                for _ in range(3):
                    await client.call_tool("demo__echo", {"text": "refund"})


async def test_a_denied_call_spends_no_budget(redis_url: str, key_prefix: str) -> None:
    deny_shouting = {
        "name": "quiet",
        "effect": "deny",
        "tools": ["demo__echo"],
        "condition": "request.tool.args.text == 'NO'",
    }
    config = redis_config(redis_url, key_prefix, identities=IDENTITIES, tasks=[REFUND_TASK], policies=[deny_shouting])
    async with (
        serve_gateway(config) as base,
        mcp_client(base, SUPPORT_KEY, mode=MODERN, task_token=await start_session(base)) as client,
    ):
        for _ in range(4):
            assert (await client.call_tool("demo__echo", {"text": "NO"})).is_error
        for _ in range(3):
            assert not (await client.call_tool("demo__echo", {"text": "yes"})).is_error


@asynccontextmanager
async def two_replicas(redis_url: str, prefix: str, **sections: Any) -> AsyncIterator[tuple[str, str]]:
    async with (
        serve_gateway(redis_config(redis_url, prefix, **sections)) as one,
        serve_gateway(redis_config(redis_url, prefix, **sections)) as two,
    ):
        yield one, two


async def test_two_replicas_spending_one_budget_concurrently_allow_exactly_its_units(
    redis_url: str, key_prefix: str
) -> None:
    async with two_replicas(redis_url, key_prefix, identities=IDENTITIES, tasks=[REFUND_TASK]) as (one, two):
        token = await start_session(one)
        outcomes: list[str] = []

        async def call(client: Any) -> None:
            try:
                result = await client.call_tool("demo__echo", {"text": "refund"})
                outcomes.append("error" if result.is_error else "ok")
            except MCPError as exc:
                outcomes.append("exhausted" if exc.error.code == BUDGET_EXHAUSTED else f"code {exc.error.code}")

        async with (
            mcp_client(one, SUPPORT_KEY, mode=MODERN, task_token=token) as first,
            mcp_client(two, SUPPORT_KEY, mode=MODERN, task_token=token) as second,
            anyio.create_task_group() as tg,
        ):
            for i in range(12):
                tg.start_soon(call, first if i % 2 else second)
    assert sorted(outcomes) == ["exhausted"] * 9 + ["ok"] * 3


# --- policies reading `session` ---

ONE_REFUND = {
    "name": "one-refund-per-ticket",
    "effect": "deny",
    "tools": ["demo__echo"],
    "condition": 'session.calls["demo__echo"] >= 1',
    "message": "one refund per ticket",
}
TASK_WITHOUT_BUDGETS = {key: value for key, value in REFUND_TASK.items() if key != "budgets"}


@pytest.mark.parametrize("mode", ERAS)
async def test_policy_reading_session_calls_allows_one_refund_per_session(
    mode: str, redis_url: str, key_prefix: str
) -> None:
    config = redis_config(
        redis_url, key_prefix, identities=IDENTITIES, tasks=[TASK_WITHOUT_BUDGETS], policies=[ONE_REFUND]
    )
    async with (
        serve_gateway(config) as base,
        mcp_client(base, SUPPORT_KEY, mode=mode, task_token=await start_session(base)) as client,
    ):
        await client.call_tool("demo__add", {"a": 1, "b": 2})
        assert not (await client.call_tool("demo__echo", {"text": "refund"})).is_error
        second = await client.call_tool("demo__echo", {"text": "refund"})
    assert second.is_error
    assert "one-refund-per-ticket" in second.content[0].text  # type: ignore[union-attr]


async def test_policy_reading_total_calls_sees_every_forwarded_call(redis_url: str, key_prefix: str) -> None:
    at_most_two = {"name": "two-calls", "effect": "allow", "condition": "session.totalCalls < 2"}
    config = redis_config(
        redis_url, key_prefix, identities=IDENTITIES, tasks=[TASK_WITHOUT_BUDGETS], policies=[at_most_two]
    )
    async with (
        serve_gateway(config) as base,
        mcp_client(base, SUPPORT_KEY, mode=MODERN, task_token=await start_session(base)) as client,
    ):
        assert not (await client.call_tool("demo__add", {"a": 1, "b": 2})).is_error
        assert not (await client.call_tool("demo__echo", {"text": "x"})).is_error
        assert (await client.call_tool("demo__add", {"a": 1, "b": 2})).is_error


async def test_policy_reading_session_denies_a_call_without_a_task_session(redis_url: str, key_prefix: str) -> None:
    config = redis_config(redis_url, key_prefix, policies=[ONE_REFUND])
    async with serve_gateway(config) as base, mcp_client(base, DEMO_KEY, mode=MODERN) as client:
        result = await client.call_tool("demo__echo", {"text": "refund"})
    assert result.is_error
    [record] = await audit_records(redis_url, key_prefix, "denied")
    assert "it reads `session`, but the call is not bound to a task session" in record.reason


# --- the store failing, and no limits at all ---


def refused_for_the_store(response: httpx.Response) -> bool:
    """Either refusal a store outage may cause: the front door's 503 once the outage is noticed, or, before that,
    the limits check's own JSON-RPC error."""
    if response.status_code == 503:
        return bool(response.json()["error"] == "store_unavailable")
    error = response.json().get("error") or {}
    return bool(error.get("data") == {"limit": "store"})


async def test_limits_fail_closed_when_redis_goes_away(tmp_path: Any) -> None:
    process, url = start_redis(tmp_path, free_port())
    config = make_config(store={"url": url}, limits={"perIdentity": {"rate": 100, "per": 1}})
    try:
        async with serve_gateway(config) as base, httpx.AsyncClient(timeout=30) as http:
            assert (await echo_call(http, base)).json()["result"]["isError"] is False
            stop_redis(process)
            answers = [await echo_call(http, base) for _ in range(3)]
    finally:
        stop_redis(process)
    assert all(refused_for_the_store(answer) for answer in answers), [a.text for a in answers]


def limiter_on(store: RedisStore, raw_limits: dict[str, Any]) -> Limiter:
    config = parse_config({"limits": raw_limits, "upstreams": [BASE_CONFIG["upstreams"][0]]})
    return Limiter(config.limits, store, AuditLog(AuditConfig()), Metrics())


DEMO = Identity(id="demo-agent", name="demo-agent")


async def test_a_store_failure_while_charging_refuses_the_call() -> None:
    store = RedisStore.from_url(f"redis://127.0.0.1:{free_port()}/0", "x:", operation_timeout=1)
    try:
        refusal = await limiter_on(store, {"perIdentity": TWO_PER_MINUTE}).charge_call(
            DEMO, None, None, "demo__echo", "demo"
        )
    finally:
        await store.close()
    assert refusal is not None
    assert (refusal.outcome, refusal.limit) == ("store_unavailable", "store")


async def test_without_limits_a_call_is_never_charged_to_the_store() -> None:
    # An unreachable store: any round trip would answer a refusal.
    store = RedisStore.from_url(f"redis://127.0.0.1:{free_port()}/0", "x:", operation_timeout=1)
    try:
        limiter = limiter_on(store, {})
        assert not limiter.active
        assert await limiter.charge_call(DEMO, None, None, "demo__echo", "demo") is None
    finally:
        await store.close()


def test_check_warns_about_budgets_and_tool_limits_that_match_no_tool(tmp_path: Any) -> None:
    raw = yaml.safe_load((REPO / "configs" / "example.yaml").read_text().replace("${MCP_GATEWAY_PORT:-8080}", "0"))
    raw["store"] = {"url": "memory://"}
    raw["upstreams"][0]["command"] = sys.executable
    raw["tasks"][0]["budgets"] = {"tools": {"demo__update_tiket": 1, "demo__update_ticket": 1}}
    raw["limits"] = {"perIdentityTool": [{"tools": ["demo__refund*", "demo__get_*"], "rate": 1}]}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw))
    result = run_cli("check", "--config", str(path))
    assert result.returncode == 0, result.stderr
    warnings = [
        line
        for line in result.stdout.splitlines()
        if line.startswith("warning:") and ("budgets" in line or "perIdentityTool" in line)
    ]
    assert warnings == [
        "warning: tasks[0] (resolve-ticket).budgets.tools: 'demo__update_tiket' is not a tool, so its budget caps "
        "nothing",
        "warning: limits.perIdentityTool[0].tools: 'demo__refund*' matches no tool",
    ]
