"""Policies on a running gateway: the seed example end to end, fail-closed denials, audit records, explain, check."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx
import pytest
import yaml

from mcp_gateway.core.audit import read_recent
from mcp_gateway.store import open_store
from tests.support.harness import BASE_CONFIG, DEMO_KEY, SUPPORT_KEY, make_config, mcp_client, serve_gateway

MODERN = "2026-07-28"
REPO = Path(__file__).resolve().parents[2]
CONTEXT = {"ticket_id": "T-1", "customer_id": "cust-001"}

POLICIES = [
    *BASE_CONFIG["policies"],
    {
        "name": "no-shouting",
        "effect": "deny",
        "tools": ["demo__echo"],
        "condition": "request.tool.args.text.matches('^[A-Z !]+$')",
        "message": "please do not shout",
    },
]


@pytest.fixture(scope="module")
async def gateway(redis_url: str) -> AsyncIterator[tuple[str, str]]:
    prefix = f"test:{os.urandom(6).hex()}:"
    config = make_config(store={"url": redis_url, "prefix": prefix}, policies=POLICIES)
    async with serve_gateway(config) as url:
        yield url, prefix


async def task_token(url: str, key: str = SUPPORT_KEY) -> str:
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{url}/v1/tasks/sessions",
            json={"taskId": "resolve-ticket", "context": CONTEXT},
            headers={"Authorization": f"Bearer {key}"},
        )
    assert response.status_code == 201, response.text
    return str(response.json()["taskToken"])


def text_of(result: Any) -> str:
    return " ".join(getattr(block, "text", "") for block in result.content)


@pytest.mark.parametrize("mode", ["legacy", MODERN])
async def test_seed_policy_allows_the_tasks_own_customer(gateway: tuple[str, str], mode: str) -> None:
    url, _ = gateway
    async with mcp_client(url, SUPPORT_KEY, mode=mode, task_token=await task_token(url)) as client:
        result = await client.call_tool("demo__get_customer", {"customer_id": "cust-001"})
    assert not result.is_error
    assert "Ada Lovelace" in json.dumps(result.model_dump(mode="json"))


@pytest.mark.parametrize("mode", ["legacy", MODERN])
async def test_seed_policy_denies_another_customer_without_forwarding(gateway: tuple[str, str], mode: str) -> None:
    url, _ = gateway
    async with mcp_client(url, SUPPORT_KEY, mode=mode, task_token=await task_token(url)) as client:
        result = await client.call_tool("demo__get_customer", {"customer_id": "cust-002"})
    assert result.is_error
    assert "same-customer" in text_of(result)
    assert "this task may only touch its own customer" in text_of(result)
    assert "Alan Turing" not in json.dumps(result.model_dump(mode="json"))


async def test_seed_policy_denies_without_a_task(gateway: tuple[str, str]) -> None:
    url, _ = gateway
    async with mcp_client(url, DEMO_KEY, mode=MODERN) as client:
        result = await client.call_tool("demo__get_customer", {"customer_id": "cust-001"})
    assert result.is_error
    assert "same-customer" in text_of(result)


async def test_evaluation_error_is_a_deny(gateway: tuple[str, str]) -> None:
    url, _ = gateway
    async with mcp_client(url, SUPPORT_KEY, mode=MODERN, task_token=await task_token(url)) as client:
        # No customer_id argument: the condition cannot be evaluated, so the call is blocked.
        result = await client.call_tool("demo__update_ticket", {"ticket_id": "T-1", "status": "open"})
    assert result.is_error
    assert "same-customer" in text_of(result)


async def test_deny_policy_blocks_only_when_true(gateway: tuple[str, str]) -> None:
    url, _ = gateway
    async with mcp_client(url, DEMO_KEY, mode=MODERN) as client:
        quiet = await client.call_tool("demo__echo", {"text": "hello"})
        loud = await client.call_tool("demo__echo", {"text": "HELLO"})
        other_tool = await client.call_tool("demo__add", {"a": 1, "b": 1})
    assert not quiet.is_error and not other_tool.is_error
    assert loud.is_error and "no-shouting" in text_of(loud) and "please do not shout" in text_of(loud)


async def test_every_decision_is_audited_to_the_redis_stream(gateway: tuple[str, str], redis_url: str) -> None:
    url, prefix = gateway
    token = await task_token(url)
    async with mcp_client(url, SUPPORT_KEY, mode=MODERN, task_token=token) as client:
        await client.call_tool("demo__get_customer", {"customer_id": "cust-001"})
        await client.call_tool("demo__get_customer", {"customer_id": "cust-003", "api_token": "s3cret"})
    store = open_store(redis_url, prefix)
    try:
        for _ in range(50):
            records = await read_recent(store, "audit", 50)
            mine = [r for r in records if r.identity == "support-agent" and r.tool == "demo__get_customer"]
            if len(mine) >= 2:
                break
            await anyio.sleep(0.1)
    finally:
        await store.close()
    allowed, denied = mine[-2], mine[-1]
    assert (allowed.decision, allowed.outcome) == ("allow", "ok")
    assert allowed.latency_ms is not None and allowed.task_name == "Resolve a support ticket"
    assert allowed.task_session_id and allowed.task_session_id.startswith("ts_")
    assert (denied.decision, denied.policy, denied.outcome) == ("deny", "same-customer", "denied")
    assert denied.args["api_token"] == "[REDACTED]"
    assert denied.args["customer_id"] == "cust-003"


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mcp_gateway", *args], capture_output=True, text=True, cwd=REPO, timeout=120
    )


def test_explain_shows_decision_without_calling_anything() -> None:
    common = ["explain", "--config", "configs/example.yaml", "--identity", "support-agent", "--tool"]
    context = ["--task", "resolve-ticket", "--context", json.dumps({"ticket_id": "T-9", "customer_id": "c-1"})]
    allowed = run_cli(*common, "demo__get_customer", *context, "--args", '{"customer_id": "c-1"}')
    denied = run_cli(*common, "demo__get_customer", *context, "--args", '{"customer_id": "c-2"}')
    hidden = run_cli(*common, "demo__add", *context, "--args", "{}")
    no_task = run_cli(*common, "demo__get_customer", "--args", "{}")
    assert allowed.returncode == 0 and "decision: ALLOW" in allowed.stdout
    assert denied.returncode == 1 and "same-customer" in denied.stdout and "DENY" in denied.stdout
    assert hidden.returncode == 1 and "HIDDEN" in hidden.stdout
    assert no_task.returncode == 1 and "requires a task" in no_task.stdout


def test_explain_rejects_a_task_the_identity_may_not_start(tmp_path: Path) -> None:
    raw = {
        "identities": [{"id": "narrow", "allowedTools": ["demo__echo"]}],
        "tasks": [{"name": "broad", "allowedTools": ["demo__echo", "demo__add"]}],
    }
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw))
    result = run_cli(
        "explain", "--config", str(path), "--identity", "narrow", "--task", "broad", "--tool", "demo__echo"
    )
    assert result.returncode == 1
    assert "REJECTED — this identity may not start task 'broad' (403 task_not_permitted)" in result.stdout


def test_check_warns_about_arguments_no_tool_declares(tmp_path: Path) -> None:
    raw = yaml.safe_load((REPO / "configs" / "example.yaml").read_text().replace("${MCP_GATEWAY_PORT:-8080}", "0"))
    raw["store"] = {"url": "memory://"}
    raw["upstreams"][0]["command"] = sys.executable
    raw["policies"].append(
        {
            "name": "typo",
            "effect": "deny",
            "tools": ["demo__get_customer"],
            "condition": "request.tool.args.custmer == 'x'",
        }
    )
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw))
    result = run_cli("check", "--config", str(path))
    assert result.returncode == 0, result.stderr
    assert "warning: policy 'typo' reads request.tool.args.custmer" in result.stdout


def test_policy_type_error_stops_serve_and_fails_check(tmp_path: Path) -> None:
    raw = {
        "upstreams": [],
        "policies": [{"name": "broken", "effect": "allow", "condition": "identity.id + 1 == 'x' &&"}],
    }
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw))
    check = run_cli("check", "--config", str(path))
    serve = run_cli("serve", "--config", str(path), "--port", "0")
    for result in (check, serve):
        assert result.returncode == 2
        assert "broken" in result.stderr and "line 1, column" in result.stderr


async def test_audit_tail_prints_recent_records(gateway: tuple[str, str], redis_url: str, tmp_path: Path) -> None:
    url, prefix = gateway
    async with mcp_client(url, DEMO_KEY, mode=MODERN) as client:
        await client.call_tool("demo__echo", {"text": "TAIL ME"})
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"store": {"url": redis_url, "prefix": prefix}}))
    for _ in range(50):
        # In a thread: the gateway under test shares this event loop and must keep draining its audit queue.
        result = await anyio.to_thread.run_sync(run_cli, "audit", "tail", "--config", str(path), "-n", "3")
        records = [json.loads(line) for line in result.stdout.splitlines()]
        if any(r["tool"] == "demo__echo" and r["policy"] == "no-shouting" for r in records):
            break
    assert result.returncode == 0, result.stderr
    assert len(records) <= 3
    assert any(r["decision"] == "deny" and r["identity"] == "demo-agent" for r in records)


def test_audit_tail_refuses_the_memory_store() -> None:
    result = run_cli("audit", "tail", "--config", "configs/example.yaml")
    assert result.returncode == 2
    assert "redis" in result.stdout
