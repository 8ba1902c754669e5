"""Task sessions over HTTP: the REST API and X-Task-Token on /mcp, on a real gateway backed by real Redis."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import yaml
from mcp.shared.exceptions import MCPError

from tests.conftest import free_port
from tests.support.harness import BASE_CONFIG, DEMO_KEY, OTHER_KEY, SUPPORT_KEY, make_config, mcp_client, serve_gateway

MODERN = "2026-07-28"
CONTEXT = {"ticket_id": "T-1", "customer_id": "cust-001"}


@pytest.fixture(scope="module")
async def gateway(redis_url: str) -> AsyncIterator[str]:
    prefix = f"test:{os.urandom(6).hex()}:"
    async with serve_gateway(make_config(store={"url": redis_url, "prefix": prefix})) as url:
        yield url


async def create(url: str, key: str, body: dict[str, Any]) -> httpx.Response:
    async with httpx.AsyncClient() as http:
        return await http.post(f"{url}/v1/tasks/sessions", json=body, headers={"Authorization": f"Bearer {key}"})


async def new_token(url: str, key: str = SUPPORT_KEY, ttl: int | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"taskId": "resolve-ticket", "context": CONTEXT}
    if ttl is not None:
        body["ttl"] = ttl
    response = await create(url, key, body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def auth(key: str, token: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {key}"}
    if token is not None:
        headers["X-Task-Token"] = token
    return headers


async def test_create_returns_token_once_with_contract_fields(gateway: str) -> None:
    created = await new_token(gateway, ttl=120)
    assert set(created) == {"taskToken", "tokenId", "taskId", "taskName", "expiresAt", "ttl"}
    assert created["taskId"] == "resolve-ticket" and created["ttl"] == 120
    async with httpx.AsyncClient() as http:
        info = await http.get(f"{gateway}/v1/tasks/sessions/{created['tokenId']}", headers=auth(SUPPORT_KEY))
        current = await http.get(
            f"{gateway}/v1/tasks/sessions/current", headers=auth(SUPPORT_KEY, created["taskToken"])
        )
    assert info.status_code == 200 and current.status_code == 200
    assert created["taskToken"] not in info.text + current.text
    assert info.json()["context"] == CONTEXT


async def test_context_violations_are_422_with_every_pointer(gateway: str) -> None:
    response = await create(
        gateway, SUPPORT_KEY, {"taskId": "resolve-ticket", "context": {"ticket_id": 7, "customer_id": []}}
    )
    assert response.status_code == 422
    pointers = {d["pointer"] for d in response.json()["details"]}
    assert pointers == {"/ticket_id", "/customer_id"}


@pytest.mark.parametrize("ttl", [0, -5, 86401, "60", 1.5])
async def test_ttl_out_of_range_is_422(gateway: str, ttl: Any) -> None:
    response = await create(gateway, SUPPORT_KEY, {"taskId": "resolve-ticket", "context": CONTEXT, "ttl": ttl})
    assert response.status_code == 422


async def test_ttl_defaults_to_an_hour_and_maximum_is_a_day(gateway: str) -> None:
    assert (await new_token(gateway))["ttl"] == 3600
    assert (await new_token(gateway, ttl=86400))["ttl"] == 86400


async def test_unknown_task_is_404_and_malformed_body_400(gateway: str) -> None:
    assert (await create(gateway, SUPPORT_KEY, {"taskId": "nope", "context": {}})).status_code == 404
    async with httpx.AsyncClient() as http:
        headers = {**auth(SUPPORT_KEY), "Content-Type": "application/json"}
        bad = await http.post(f"{gateway}/v1/tasks/sessions", content=b"{", headers=headers)
        no_auth = await http.post(f"{gateway}/v1/tasks/sessions", json={"taskId": "resolve-ticket"})
    assert bad.status_code == 400 and bad.json()["error"] == "bad_request"
    assert no_auth.status_code == 401


async def test_session_of_another_identity_is_403(gateway: str) -> None:
    created = await new_token(gateway)
    async with httpx.AsyncClient() as http:
        by_id = await http.get(f"{gateway}/v1/tasks/sessions/{created['tokenId']}", headers=auth(DEMO_KEY))
        delete = await http.delete(f"{gateway}/v1/tasks/sessions/{created['tokenId']}", headers=auth(DEMO_KEY))
        on_mcp = await http.post(
            f"{gateway}/mcp",
            json={"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25"}},
            headers=auth(DEMO_KEY, created["taskToken"]),
        )
    assert (by_id.status_code, delete.status_code, on_mcp.status_code) == (403, 403, 403)


@pytest.mark.parametrize("mode", ["legacy", MODERN])
async def test_task_allowed_tools_take_precedence_over_identity(gateway: str, mode: str) -> None:
    created = await new_token(gateway)
    async with mcp_client(gateway, SUPPORT_KEY, mode=mode, task_token=created["taskToken"]) as client:
        names = [t.name for t in (await client.list_tools()).tools]
    # The identity alone also allows echo; the task allows get_customer and update_ticket only.
    assert names == ["demo__get_customer", "demo__update_ticket"]


async def test_identity_allowed_tools_apply_without_task_and_all_tools_otherwise(gateway: str) -> None:
    async with mcp_client(gateway, OTHER_KEY, mode=MODERN) as client:
        assert [t.name for t in (await client.list_tools()).tools] == ["demo__echo"]
    async with mcp_client(gateway, DEMO_KEY, mode=MODERN) as client:
        assert len((await client.list_tools()).tools) > 3


async def test_tool_hidden_by_task_is_uncallable(gateway: str) -> None:
    created = await new_token(gateway, key=DEMO_KEY)
    async with mcp_client(gateway, DEMO_KEY, mode=MODERN, task_token=created["taskToken"]) as client:
        with pytest.raises(MCPError) as caught:
            await client.call_tool("demo__add", {"a": 1, "b": 2})
    assert caught.value.error.code == -32602


async def test_require_task_identity_without_token_is_401(gateway: str) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{gateway}/mcp",
            json={"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25"}},
            headers=auth(SUPPORT_KEY),
        )
    assert response.status_code == 401
    assert response.json()["error"] == "task_required"
    assert "www-authenticate" in response.headers


@pytest.mark.parametrize("token", ["mgt_" + "x" * 43, "garbage"])
async def test_unknown_task_token_on_mcp_is_401(gateway: str, token: str) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{gateway}/mcp",
            json={"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25"}},
            headers=auth(DEMO_KEY, token),
        )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_task_token"


async def test_expired_session_token_is_rejected(gateway: str) -> None:
    created = await new_token(gateway, ttl=1)
    await asyncio.sleep(1.3)
    async with httpx.AsyncClient() as http:
        response = await http.get(
            f"{gateway}/v1/tasks/sessions/current", headers=auth(SUPPORT_KEY, created["taskToken"])
        )
    assert response.status_code == 401


async def test_modern_tools_list_ttl_never_outlives_the_session(gateway: str) -> None:
    created = await new_token(gateway, ttl=5)
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/list",
        "params": {
            "_meta": {
                "io.modelcontextprotocol/protocolVersion": MODERN,
                "io.modelcontextprotocol/clientCapabilities": {},
            }
        },
    }
    headers = {**auth(SUPPORT_KEY, created["taskToken"]), "MCP-Protocol-Version": MODERN, "Mcp-Method": "tools/list"}
    async with httpx.AsyncClient() as http:
        result = (await http.post(f"{gateway}/mcp", json=body, headers=headers)).json()["result"]
    assert result["cacheScope"] == "private"
    assert 0 < result["ttlMs"] <= 5000


@pytest.mark.parametrize("how", ["by-id", "current"])
async def test_deleted_session_token_is_rejected_at_once(gateway: str, how: str) -> None:
    created = await new_token(gateway)
    token = created["taskToken"]
    async with mcp_client(gateway, SUPPORT_KEY, mode=MODERN, task_token=token) as client:
        await client.list_tools()
        async with httpx.AsyncClient() as http:
            path = created["tokenId"] if how == "by-id" else "current"
            deleted = await http.delete(f"{gateway}/v1/tasks/sessions/{path}", headers=auth(SUPPORT_KEY, token))
        assert deleted.status_code == 204
        with pytest.raises(MCPError):
            await client.call_tool("demo__get_customer", {"customer_id": "cust-001"})
    async with httpx.AsyncClient() as http:
        again = await http.get(f"{gateway}/v1/tasks/sessions/{created['tokenId']}", headers=auth(SUPPORT_KEY))
    assert again.status_code == 404


def _spawn_gateway(config: dict[str, Any], tmp_path: Path, name: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({**config, "server": {**config["server"], "port": port}}))
    process = subprocess.Popen(
        [sys.executable, "-m", "mcp_gateway", "serve", "--config", str(path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return process, f"http://127.0.0.1:{port}"


async def _wait_ready(url: str) -> None:
    async with httpx.AsyncClient() as http:
        for _ in range(300):
            try:
                if (await http.get(f"{url}/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError(f"{url} never became ready")


@pytest.fixture
def two_replicas(redis_url: str, tmp_path: Path) -> Iterator[tuple[str, str]]:
    config = {**BASE_CONFIG, "store": {"url": redis_url, "prefix": f"test:{os.urandom(6).hex()}:"}}
    first, url_a = _spawn_gateway(config, tmp_path, "a")
    second, url_b = _spawn_gateway(config, tmp_path, "b")
    try:
        yield url_a, url_b
    finally:
        for process in (first, second):
            process.terminate()
            process.wait(timeout=20)


async def test_deleted_session_token_is_rejected_on_second_replica(two_replicas: tuple[str, str]) -> None:
    url_a, url_b = two_replicas
    await _wait_ready(url_a)
    await _wait_ready(url_b)
    created = await new_token(url_a)
    token = created["taskToken"]
    async with httpx.AsyncClient() as http:
        seen = await http.get(f"{url_b}/v1/tasks/sessions/current", headers=auth(SUPPORT_KEY, token))
        assert seen.status_code == 200
        async with mcp_client(url_b, SUPPORT_KEY, mode=MODERN, task_token=token) as client:
            assert len((await client.list_tools()).tools) == 2
        deleted = await http.delete(f"{url_a}/v1/tasks/sessions/{created['tokenId']}", headers=auth(SUPPORT_KEY))
        assert deleted.status_code == 204
        after = await http.get(f"{url_b}/v1/tasks/sessions/current", headers=auth(SUPPORT_KEY, token))
    assert after.status_code == 401


async def open_legacy_session(http: httpx.AsyncClient, url: str) -> dict[str, str]:
    """``initialize`` on ``url`` as the demo identity; the headers that carry the new session."""
    headers = {**auth(DEMO_KEY), "Accept": "application/json, text/event-stream"}
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25"}}
    opened = await http.post(f"{url}/mcp", json=init, headers=headers)
    return {"Mcp-Session-Id": opened.headers["mcp-session-id"], **headers}


async def test_legacy_session_opened_on_one_replica_is_served_by_the_other(two_replicas: tuple[str, str]) -> None:
    url_a, url_b = two_replicas
    await _wait_ready(url_a)
    await _wait_ready(url_b)
    async with httpx.AsyncClient() as http:
        session = await open_legacy_session(http, url_a)
        listed = await http.post(
            f"{url_b}/mcp", json={"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, headers=session
        )
    assert listed.status_code == 200
    assert any(t["name"] == "demo__echo" for t in listed.json()["result"]["tools"])


async def test_legacy_session_ended_on_one_replica_is_gone_on_the_other(two_replicas: tuple[str, str]) -> None:
    """Replica B keeps a local copy of the session record it served; A's DELETE must evict it (client tracking)."""
    url_a, url_b = two_replicas
    await _wait_ready(url_a)
    await _wait_ready(url_b)
    ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
    async with httpx.AsyncClient() as http:
        session = await open_legacy_session(http, url_a)
        for _ in range(3):
            assert (await http.post(f"{url_b}/mcp", json=ping, headers=session)).status_code == 200
        assert (await http.delete(f"{url_a}/mcp", headers=session)).status_code == 204
        after = await http.post(f"{url_b}/mcp", json=ping, headers=session)
    assert after.status_code == 404


async def test_redis_down_is_503_and_nothing_is_forwarded(tmp_path: Path) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    async with serve_gateway(make_config(store={"url": dead})) as url, httpx.AsyncClient() as http:
        created = await http.post(
            f"{url}/v1/tasks/sessions",
            json={"taskId": "resolve-ticket", "context": CONTEXT},
            headers=auth(SUPPORT_KEY),
        )
        call = await http.post(
            f"{url}/mcp",
            json={"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25"}},
            headers=auth(SUPPORT_KEY, "mgt_" + "y" * 43),
        )
        ready = await http.get(f"{url}/readyz")
        metrics = (await http.get(f"{url}/metrics")).text
    assert created.status_code == 503 and created.json()["error"] == "store_unavailable"
    assert call.status_code == 503
    assert ready.status_code == 503 and ready.json()["store"] is False
    forwarded = [line for line in metrics.splitlines() if line.startswith("mcp_gateway_tool_calls_total{")]
    assert all(line.endswith(" 0.0") for line in forwarded if 'decision="allow"' in line)


async def test_require_task_identity_cannot_open_the_legacy_stream_without_token(gateway: str) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.get(
            f"{gateway}/mcp", headers={**auth(SUPPORT_KEY), "Accept": "text/event-stream", "Mcp-Session-Id": "x"}
        )
    assert response.status_code == 401
    assert response.json()["error"] == "task_required"


# --- who may start a task: startableBy, or lists that already cover the task's ---

START_TASKS = [
    *BASE_CONFIG["tasks"],
    {"id": "add-numbers", "name": "Add numbers", "allowedTools": ["demo__add"]},
    {
        "id": "add-for-support",
        "name": "Add numbers, for support",
        "allowedTools": ["demo__add"],
        "startableBy": {"identities": ["support-agent"]},
    },
    {
        "id": "add-for-billing",
        "name": "Add numbers, for billing",
        "allowedTools": ["demo__add"],
        "startableBy": {"labels": {"team": "billing"}},
    },
    {"id": "echo-only", "name": "Echo", "allowedTools": ["demo__echo"]},
    {"id": "open-ended", "name": "Anything the caller may do"},
]


@pytest.fixture(scope="module")
async def start_gateway(redis_url: str) -> AsyncIterator[tuple[str, str]]:
    """Gateway with tasks of every start rule; other-agent (``demo__e*``) carries the label team=billing."""
    prefix = f"test:{os.urandom(6).hex()}:"
    identities = [dict(i) for i in BASE_CONFIG["identities"]]
    identities[2]["labels"] = {"team": "billing"}
    config = make_config(store={"url": redis_url, "prefix": prefix}, identities=identities, tasks=START_TASKS)
    async with serve_gateway(config) as url:
        yield url, prefix


def stored_keys(redis_url: str, prefix: str) -> set[bytes]:
    client = redis.Redis.from_url(redis_url)
    try:
        return set(client.scan_iter(match=f"{prefix}*"))
    finally:
        client.close()


async def start(url: str, key: str, task_id: str, context: Any = None) -> httpx.Response:
    return await create(url, key, {"taskId": task_id, "context": CONTEXT if context is None else context})


async def test_restricted_identity_cannot_start_a_broader_task(start_gateway: tuple[str, str], redis_url: str) -> None:
    url, prefix = start_gateway
    before = stored_keys(redis_url, prefix)
    refused = await start(url, SUPPORT_KEY, "add-numbers")
    assert refused.status_code == 403
    assert refused.json() == {
        "error": "task_not_permitted",
        "message": "this identity may not start task 'add-numbers'",
    }
    assert stored_keys(redis_url, prefix) == before


async def test_refused_start_is_403_before_the_context_is_read(start_gateway: tuple[str, str]) -> None:
    url, _ = start_gateway
    refused = await start(url, OTHER_KEY, "add-numbers", context={"not": "what the schema wants"})
    assert refused.status_code == 403 and refused.json()["error"] == "task_not_permitted"


async def test_startable_by_id_admits_a_listed_identity_to_a_broader_task_and_no_one_else(
    start_gateway: tuple[str, str],
) -> None:
    url, _ = start_gateway
    created = await start(url, SUPPORT_KEY, "add-for-support")
    assert created.status_code == 201, created.text
    async with mcp_client(url, SUPPORT_KEY, mode=MODERN, task_token=created.json()["taskToken"]) as client:
        assert [t.name for t in (await client.list_tools()).tools] == ["demo__add"]
        assert (await client.call_tool("demo__add", {"a": 2, "b": 3})).structured_content == {"result": 5}
    assert (await start(url, DEMO_KEY, "add-for-support")).status_code == 403
    assert (await start(url, OTHER_KEY, "add-for-support")).status_code == 403


async def test_startable_by_labels_admits_identities_carrying_every_label(start_gateway: tuple[str, str]) -> None:
    url, _ = start_gateway
    created = await start(url, OTHER_KEY, "add-for-billing")
    assert created.status_code == 201, created.text
    async with mcp_client(url, OTHER_KEY, mode=MODERN, task_token=created.json()["taskToken"]) as client:
        assert [t.name for t in (await client.list_tools()).tools] == ["demo__add"]
    assert (await start(url, SUPPORT_KEY, "add-for-billing")).status_code == 403
    assert (await start(url, DEMO_KEY, "add-for-billing")).status_code == 403


async def test_identity_whose_list_covers_the_tasks_may_start_it_without_startable_by(
    start_gateway: tuple[str, str],
) -> None:
    url, _ = start_gateway
    # other-agent's demo__e* covers demo__echo; support-agent lists demo__echo by name.
    for key in (OTHER_KEY, SUPPORT_KEY):
        created = await start(url, key, "echo-only")
        assert created.status_code == 201, created.text
    assert (await start(url, OTHER_KEY, "resolve-ticket")).status_code == 403


async def test_unrestricted_identity_may_start_any_task_without_startable_by(start_gateway: tuple[str, str]) -> None:
    url, _ = start_gateway
    for task_id in ("resolve-ticket", "add-numbers", "echo-only", "open-ended"):
        created = await start(url, DEMO_KEY, task_id)
        assert created.status_code == 201, (task_id, created.text)


async def test_task_without_allowed_tools_shows_a_restricted_identity_only_its_own_tools(
    start_gateway: tuple[str, str],
) -> None:
    url, _ = start_gateway
    created = await start(url, OTHER_KEY, "open-ended")
    assert created.status_code == 201, created.text
    async with mcp_client(url, OTHER_KEY, mode=MODERN, task_token=created.json()["taskToken"]) as client:
        assert [t.name for t in (await client.list_tools()).tools] == ["demo__echo"]
        with pytest.raises(MCPError) as caught:
            await client.call_tool("demo__add", {"a": 1, "b": 2})
    assert caught.value.error.code == -32602
