"""A real Redis Cluster (three masters, one replica each) under a gateway: task sessions, legacy MCP sessions, budgets
and revocations spread over the slots; a master killed mid-run and replaced by its replica; the whole cluster hung.

What must hold throughout: no call is ever allowed that should be refused (a revoked token, a spent budget), every
answer is a clean one (a result, a JSON-RPC error, 401 or 503; never a 500), and the gateway serves again by itself
once the cluster does. ``tests/support/redis_cluster.py`` runs the six ``redis-server`` processes.
"""

from __future__ import annotations

import functools
import logging
import signal
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

import anyio
import httpx
import pytest

from mcp_gateway.config import GatewayConfig
from tests.eras.test_mcp_endpoint import modern_body, modern_headers
from tests.support.harness import BASE_CONFIG, DEMO_KEY, make_config, mcp_client, serve_gateway
from tests.support.redis_cluster import LocalCluster, local_cluster

ECHO_TASK = {
    "id": "echo",
    "name": "Echo twice",
    "allowedTools": ["demo__echo"],
    "contextSchema": {"type": "object"},
    "budgets": {"tools": {"demo__echo": 2}},
}
T = TypeVar("T")
SESSIONS = 9
"""Enough sessions that every master holds some (a session's keys hash to a random slot)."""


@pytest.fixture(scope="module")
def running_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with local_cluster(tmp_path_factory.mktemp("cluster")) as running:
        yield running


@pytest.fixture
def cluster(running_cluster: LocalCluster) -> Iterator[LocalCluster]:
    """The module's cluster, whole again after each test (killed nodes back as replicas, stopped ones woken)."""
    yield running_cluster
    running_cluster.heal()


def cluster_config(cluster: LocalCluster) -> GatewayConfig:
    return make_config(
        store={"url": cluster.url(), "prefix": f"test:{uuid.uuid4().hex}:"},
        tasks=[*BASE_CONFIG["tasks"], ECHO_TASK],
        limits={"perIdentity": {"rate": 100_000, "per": "1s"}},
    )


@pytest.fixture
async def gateway(cluster: LocalCluster) -> AsyncIterator[str]:
    async with serve_gateway(cluster_config(cluster)) as base:
        yield base


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {DEMO_KEY}"}


async def open_session(http: httpx.AsyncClient, base: str) -> tuple[str, str]:
    """A new session of the echo task: (token, tokenId)."""
    response = await http.post(f"{base}/v1/tasks/sessions", json={"taskId": "echo", "context": {}}, headers=auth())
    assert response.status_code == 201, response.text
    return response.json()["taskToken"], response.json()["tokenId"]


async def echo(http: httpx.AsyncClient, base: str, token: str) -> str:
    """One modern-era ``demo__echo`` call in a task session: "allowed", or how it was refused (a clean refusal)."""
    body = modern_body("tools/call", {"name": "demo__echo", "arguments": {"text": "hi"}})
    headers = {**modern_headers("tools/call", "demo__echo"), "X-Task-Token": token}
    response = await http.post(f"{base}/mcp", json=body, headers=headers)
    if response.status_code in (401, 503):
        assert response.json()["error"] in ("invalid_task_token", "store_unavailable"), response.text
        return str(response.status_code)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    if "error" in answer:
        return f"rpc {answer['error']['code']}"
    assert answer["result"]["isError"] is False, answer
    return "allowed"


async def revoke(http: httpx.AsyncClient, base: str, token_id: str) -> int:
    response = await http.delete(f"{base}/v1/tasks/sessions/{token_id}", headers=auth())
    assert response.status_code in (204, 404, 503), response.text
    if response.status_code == 503:
        assert response.json()["error"] == "store_unavailable"
    return response.status_code


async def until_served(http: httpx.AsyncClient, base: str, seconds: float = 30) -> None:
    """Until a new session can be opened and used: the gateway serves again by itself."""
    with anyio.fail_after(seconds):
        while True:
            response = await http.post(
                f"{base}/v1/tasks/sessions", json={"taskId": "echo", "context": {}}, headers=auth()
            )
            if response.status_code == 201 and await echo(http, base, response.json()["taskToken"]) == "allowed":
                return
            assert response.status_code in (201, 503), response.text
            await anyio.sleep(0.2)


async def retried(attempt: Callable[[], Awaitable[T]], while_: T, seconds: float = 30) -> T:
    """What ``attempt`` answers once it stops answering ``while_`` (a 503: callers retry those)."""
    with anyio.fail_after(seconds):
        while (answer := await attempt()) == while_:  # noqa: ASYNC110 - polling over HTTP is the test
            await anyio.sleep(0.2)
    return answer


def master_of_session(cluster: LocalCluster, token_id: str, prefix: str) -> Any:
    """The node holding a session's keys: they share the hash tag its tokenId carries."""
    return cluster.master_of(f"{prefix}tasksession-id:{{{token_id[3:7]}}}{token_id}")


async def test_sessions_budgets_legacy_sessions_and_revocations_work_across_slots(
    cluster: LocalCluster, gateway: str
) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        sessions = [await open_session(http, gateway) for _ in range(SESSIONS)]
        for token, _ in sessions:
            assert [await echo(http, gateway, token) for _ in range(3)] == ["allowed", "allowed", "rpc -32006"]
        for token, token_id in sessions:
            assert await revoke(http, gateway, token_id) == 204
            assert await echo(http, gateway, token) == "401"
    masters = {cluster.master_of(f"{{{token_id[3:7]}}}").port for _, token_id in sessions}
    assert len(masters) > 1, "every session landed on one master: the test proves nothing about slots"
    async with mcp_client(gateway, DEMO_KEY, mode="legacy") as client:
        for _ in range(3):
            result = await client.call_tool("demo__echo", {"text": "legacy"})
            assert not result.is_error


async def test_a_revocation_answered_204_survives_the_death_of_its_master(cluster: LocalCluster) -> None:
    """The replica is paused, so it cannot have the deletion: the revocation must not answer 204 then (it answers
    503). A retry once the replica has taken over answers 204, and from then on the token stays refused."""
    config = cluster_config(cluster)
    async with serve_gateway(config) as base, httpx.AsyncClient(timeout=30) as http:
        token, token_id = await open_session(http, base)
        assert await echo(http, base, token) == "allowed"
        master = master_of_session(cluster, token_id, config.store_prefix)
        replica = cluster.replica_of(master)
        replica.signal(signal.SIGSTOP)
        try:
            status = await revoke(http, base, token_id)
        finally:
            master.kill()
            replica.signal(signal.SIGCONT)
        assert status == 503, "a revocation no replica confirmed was reported done"
        await until_served(http, base)
        # The caller was told the revocation is not known to be durable, and retries: done now, or done already (the
        # replica may have found the deletion in its socket buffer when it woke). Either way the token is dead.
        assert await retried(lambda: revoke(http, base, token_id), 503) in (204, 404)
        assert await echo(http, base, token) == "401"


async def test_a_master_killed_mid_run_never_lets_a_refused_call_through(cluster: LocalCluster, gateway: str) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        live = [await open_session(http, gateway) for _ in range(SESSIONS)]
        revoked = [await open_session(http, gateway) for _ in range(SESSIONS)]
        for _, token_id in revoked:
            assert await revoke(http, gateway, token_id) == 204
        victim = cluster.master_of(f"{{{live[0][1][3:7]}}}")
        answers: dict[str, int] = {}
        revoked_during: list[tuple[str, str]] = []
        unconfirmed: list[tuple[str, str]] = []
        spent: dict[str, int] = {}
        started = time.monotonic()
        victim.kill()
        while time.monotonic() - started < 6:
            for token, _ in live:
                answer = await echo(http, gateway, token)
                answers[answer] = answers.get(answer, 0) + 1
                spent[token] = spent.get(token, 0) + (answer == "allowed")
            for token, _ in revoked:
                assert await echo(http, gateway, token) in ("401", "503")
            if live:
                token, token_id = live.pop()
                status = await revoke(http, gateway, token_id)
                (revoked_during if status == 204 else unconfirmed).append((token, token_id))
        await until_served(http, gateway)
        # A revocation that answered 503 is retried, as a caller would: done now, or done already.
        for _, token_id in unconfirmed:
            assert await retried(functools.partial(revoke, http, gateway, token_id), 503) in (204, 404)
        # Every slot is served again, the failed-over ones included, with nothing revoked coming back.
        for token, _ in [*revoked, *revoked_during, *unconfirmed]:
            assert await retried(functools.partial(echo, http, gateway, token), "503") == "401"
        for token, _ in live:
            answer = await retried(functools.partial(echo, http, gateway, token), "503")
            assert answer in ("allowed", "rpc -32006")
            spent[token] = spent.get(token, 0) + (answer == "allowed")
    assert max(spent.values()) <= 2, "a budget of two calls was overspent"
    assert answers.get("503", 0) + answers.get("rpc -32603", 0) > 0, f"the failover went unnoticed: {answers}"


async def test_a_hung_cluster_is_refused_at_once_and_served_again_when_it_wakes(
    cluster: LocalCluster, gateway: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="mcp_gateway.http.responses")
    async with httpx.AsyncClient(timeout=30) as http:
        token, _ = await open_session(http, gateway)
        for node in cluster.nodes:
            node.signal(signal.SIGSTOP)
        try:
            # The background PING notices within its own bound; from then on nobody waits for the store.
            with anyio.fail_after(10):
                while await echo(http, gateway, token) != "503":  # noqa: ASYNC110 - polling over HTTP is the test
                    await anyio.sleep(0.1)
            caplog.clear()
            for _ in range(20):
                response = await http.post(
                    f"{gateway}/v1/tasks/sessions", json={"taskId": "echo", "context": {}}, headers=auth()
                )
                assert response.status_code == 503
            # Each refused at the door, by the breaker, not by an operation that waited for its timeout.
            refusals = [r.getMessage() for r in caplog.records if "refusing a request" in r.getMessage()]
            assert len(refusals) == 20
            assert all("last PING unanswered" in refusal for refusal in refusals), refusals
        finally:
            for node in cluster.nodes:
                node.signal(signal.SIGCONT)
        await until_served(http, gateway)
        assert await echo(http, gateway, token) == "allowed"
