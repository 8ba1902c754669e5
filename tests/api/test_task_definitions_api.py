"""Task definitions over /v1/tasks on real gateways backed by real Redis: versions, read-only config tasks, roles,
live session listing, and two gateway processes sharing one store."""

from __future__ import annotations

import copy
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mcp_gateway.config import GatewayConfig
from tests.api.test_task_sessions_api import _spawn_gateway, _wait_ready
from tests.support.harness import (
    BASE_CONFIG,
    DEMO_KEY,
    OTHER_KEY,
    SUPPORT_KEY,
    make_config,
    mcp_client,
    serve_gateway,
    sha,
)

ADMIN_KEY = "mgw_test_admin_key_33333333333333333333"
NOTE = {"type": "object", "required": ["topic"], "properties": {"topic": {"type": "string"}}}


def admin_config(store: dict[str, Any]) -> GatewayConfig:
    identities = copy.deepcopy(BASE_CONFIG["identities"])
    identities.append({"id": "ops", "roles": ["admin"], "credentials": [{"sha256": sha(ADMIN_KEY)}]})
    return make_config(store=store, identities=identities)


def redis_store(redis_url: str, prefix: str | None = None) -> dict[str, Any]:
    return {"url": redis_url, "prefix": prefix or f"test:{os.urandom(6).hex()}:"}


@pytest.fixture
async def gateway(redis_url: str) -> AsyncIterator[str]:
    async with serve_gateway(admin_config(redis_store(redis_url))) as url:
        yield url


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def echo_task(task_id: str = "echoer", **fields: Any) -> dict[str, Any]:
    return {"id": task_id, "name": "Echo things", "contextSchema": NOTE, "allowedTools": ["demo__echo"], **fields}


async def call(method: str, url: str, key: str = ADMIN_KEY, **kwargs: Any) -> httpx.Response:
    async with httpx.AsyncClient() as http:
        return await http.request(method, url, headers=auth(key), **kwargs)


async def start(url: str, task_id: str, key: str = DEMO_KEY) -> httpx.Response:
    return await call("POST", f"{url}/v1/tasks/sessions", key, json={"taskId": task_id, "context": {"topic": "x"}})


async def refused(url: str, token: str) -> bool:
    """Whether /mcp turns the task token away (401 invalid_task_token) before any method runs."""
    headers = {**auth(DEMO_KEY), "X-Task-Token": token, "Accept": "application/json, text/event-stream"}
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    async with httpx.AsyncClient() as http:
        answer = await http.post(f"{url}/mcp", json=body, headers=headers)
    return answer.status_code == 401 and answer.json()["error"] == "invalid_task_token"


async def visible_tools(url: str, token: str) -> list[str]:
    async with mcp_client(url, DEMO_KEY, task_token=token) as client:
        return [tool.name for tool in (await client.list_tools()).tools]


async def test_admin_creates_a_task_that_agents_can_start(gateway: str) -> None:
    created = await call("POST", f"{gateway}/v1/tasks", json=echo_task())
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["source"] == "api" and body["version"] == 1 and body["modified"].endswith("Z")
    assert body["warnings"] == [] and body["allowedTools"] == ["demo__echo"]
    session = await start(gateway, "echoer")
    assert session.status_code == 201, session.text
    assert await visible_tools(gateway, session.json()["taskToken"]) == ["demo__echo"]


async def test_context_schema_that_is_not_a_json_schema_is_422_with_pointers_into_it(gateway: str) -> None:
    bad = echo_task(contextSchema={"type": "object", "properties": {"topic": {"type": "text"}}, "required": "x"})
    answer = await call("POST", f"{gateway}/v1/tasks", json=bad)
    assert answer.status_code == 422
    assert answer.json()["error"] == "validation_failed"
    pointers = [d["pointer"] for d in answer.json()["details"]]
    assert pointers == ["/contextSchema/properties/topic/type", "/contextSchema/required"]
    assert (await call("GET", f"{gateway}/v1/tasks/echoer")).status_code == 404


async def test_output_schema_that_is_not_a_json_schema_is_422_with_pointers_into_it(gateway: str) -> None:
    bad = echo_task(instruction="Answer in JSON.", outputSchema={"type": "object", "required": "topic"})
    answer = await call("POST", f"{gateway}/v1/tasks", json=bad)
    assert answer.status_code == 422
    assert [d["pointer"] for d in answer.json()["details"]] == ["/outputSchema/required"]


async def test_instruction_and_output_schema_are_kept_with_the_version(gateway: str) -> None:
    task = echo_task(instruction="Answer in JSON.", outputSchema=NOTE)
    assert (await call("POST", f"{gateway}/v1/tasks", json=task)).status_code == 201
    read = (await call("GET", f"{gateway}/v1/tasks/echoer")).json()
    assert (read["instruction"], read["outputSchema"]) == ("Answer in JSON.", NOTE)


async def test_every_field_problem_is_listed_with_its_pointer(gateway: str) -> None:
    bad = echo_task(
        task_id="bad id", allowedTools=["demo__echo", 7], labels="x", startableBy={"identities": ["nobody"]}
    )
    answer = await call("POST", f"{gateway}/v1/tasks", json=bad)
    assert answer.status_code == 422
    pointers = {d["pointer"] for d in answer.json()["details"]}
    assert {"/allowedTools/1", "/labels", "/startableBy/identities/0"} <= pointers


async def test_tool_patterns_naming_nothing_upstream_come_back_as_warnings(gateway: str) -> None:
    answer = await call("POST", f"{gateway}/v1/tasks", json=echo_task(allowedTools=["demo__echo", "demo__ecco*"]))
    assert answer.status_code == 201
    assert answer.json()["warnings"] == [
        {"pointer": "/allowedTools/1", "message": "'demo__ecco*' names no tool any upstream exposes now"}
    ]


async def test_config_tasks_are_listed_as_config_and_are_read_only(gateway: str) -> None:
    listed = (await call("GET", f"{gateway}/v1/tasks")).json()["tasks"]
    assert [(t["id"], t["source"], t["version"]) for t in listed] == [("resolve-ticket", "config", 1)]
    body = {**echo_task(), "id": "resolve-ticket"}
    for method, path in (("POST", "/v1/tasks"), ("PUT", "/v1/tasks/resolve-ticket")):
        answer = await call(method, f"{gateway}{path}", json=body)
        assert answer.status_code == 409, (method, answer.text)
        assert answer.json()["error"] == "conflict"
    assert (await call("DELETE", f"{gateway}/v1/tasks/resolve-ticket")).status_code == 409


async def test_only_admins_write_tasks(gateway: str) -> None:
    assert (await call("POST", f"{gateway}/v1/tasks", json=echo_task())).status_code == 201
    for method, path in (("POST", "/v1/tasks"), ("PUT", "/v1/tasks/echoer"), ("DELETE", "/v1/tasks/echoer")):
        answer = await call(method, f"{gateway}{path}", DEMO_KEY, json=echo_task())
        assert answer.status_code == 403, (method, answer.text)
        assert answer.json()["error"] == "forbidden"


async def test_non_admins_read_only_the_tasks_they_may_start(gateway: str) -> None:
    await call("POST", f"{gateway}/v1/tasks", json=echo_task())
    await call("POST", f"{gateway}/v1/tasks", json=echo_task("adder", allowedTools=["demo__add"]))
    # other-agent may use demo__e* only: it may start echoer, not adder.
    listed = (await call("GET", f"{gateway}/v1/tasks", OTHER_KEY)).json()["tasks"]
    assert [t["id"] for t in listed] == ["echoer"]
    assert (await call("GET", f"{gateway}/v1/tasks/adder", OTHER_KEY)).status_code == 404
    assert (await call("GET", f"{gateway}/v1/tasks/adder")).status_code == 200
    everything = (await call("GET", f"{gateway}/v1/tasks")).json()["tasks"]
    assert [t["id"] for t in everything] == ["resolve-ticket", "adder", "echoer"]


async def test_each_change_is_a_new_version_kept_in_the_history(gateway: str) -> None:
    await call("POST", f"{gateway}/v1/tasks", json=echo_task())
    changed = await call("PUT", f"{gateway}/v1/tasks/echoer", json=echo_task(name="Echo, renamed"))
    assert changed.status_code == 200, changed.text
    assert changed.json()["version"] == 2
    current = (await call("GET", f"{gateway}/v1/tasks/echoer")).json()
    assert (current["name"], current["version"]) == ("Echo, renamed", 2)
    history = (await call("GET", f"{gateway}/v1/tasks/echoer/versions")).json()["versions"]
    assert [(v["version"], v["name"]) for v in history] == [(1, "Echo things"), (2, "Echo, renamed")]


async def test_creating_an_existing_task_is_409_and_changing_an_unknown_one_is_404(gateway: str) -> None:
    await call("POST", f"{gateway}/v1/tasks", json=echo_task())
    assert (await call("POST", f"{gateway}/v1/tasks", json=echo_task())).status_code == 409
    assert (await call("PUT", f"{gateway}/v1/tasks/nope", json=echo_task("nope"))).status_code == 404
    mismatch = await call("PUT", f"{gateway}/v1/tasks/echoer", json=echo_task("other"))
    assert mismatch.status_code == 422 and mismatch.json()["details"][0]["pointer"] == "/id"


async def test_a_session_keeps_the_version_it_was_created_with(gateway: str) -> None:
    await call("POST", f"{gateway}/v1/tasks", json=echo_task())
    old = (await start(gateway, "echoer")).json()
    await call("PUT", f"{gateway}/v1/tasks/echoer", json=echo_task(allowedTools=["demo__add"]))
    new = (await start(gateway, "echoer")).json()
    assert await visible_tools(gateway, old["taskToken"]) == ["demo__echo"]
    assert await visible_tools(gateway, new["taskToken"]) == ["demo__add"]
    info = await call("GET", f"{gateway}/v1/tasks/sessions/{old['tokenId']}", DEMO_KEY)
    assert info.json()["taskVersion"] == 1


async def test_deleting_a_task_ends_no_session_unless_asked(gateway: str) -> None:
    await call("POST", f"{gateway}/v1/tasks", json=echo_task())
    kept = (await start(gateway, "echoer")).json()
    assert (await call("DELETE", f"{gateway}/v1/tasks/echoer")).status_code == 204
    assert (await start(gateway, "echoer")).status_code == 404
    assert await visible_tools(gateway, kept["taskToken"]) == ["demo__echo"]

    await call("POST", f"{gateway}/v1/tasks", json=echo_task())
    recreated = (await call("GET", f"{gateway}/v1/tasks/echoer")).json()
    assert recreated["version"] == 2, "numbering continues, so an old session's version never names new rules"
    ended = (await start(gateway, "echoer")).json()
    assert (await call("DELETE", f"{gateway}/v1/tasks/echoer?revokeSessions=true")).status_code == 204
    assert await refused(gateway, ended["taskToken"])
    assert await refused(gateway, kept["taskToken"])


async def test_admins_list_every_live_session_and_others_their_own(gateway: str) -> None:
    await call("POST", f"{gateway}/v1/tasks", json=echo_task(startableBy={"identities": ["demo-agent", "other-agent"]}))
    mine = (await start(gateway, "echoer")).json()
    theirs = (await start(gateway, "echoer", OTHER_KEY)).json()
    support = await call(
        "POST",
        f"{gateway}/v1/tasks/sessions",
        SUPPORT_KEY,
        json={"taskId": "resolve-ticket", "context": {"ticket_id": "T-1", "customer_id": "c"}},
    )
    listed = (await call("GET", f"{gateway}/v1/tasks/sessions")).json()["sessions"]
    assert {s["tokenId"] for s in listed} == {mine["tokenId"], theirs["tokenId"], support.json()["tokenId"]}
    by_task = (await call("GET", f"{gateway}/v1/tasks/sessions?taskId=echoer&identityId=other-agent")).json()
    assert [s["tokenId"] for s in by_task["sessions"]] == [theirs["tokenId"]]
    own = (await call("GET", f"{gateway}/v1/tasks/sessions", DEMO_KEY)).json()["sessions"]
    assert [s["tokenId"] for s in own] == [mine["tokenId"]]
    assert (await call("GET", f"{gateway}/v1/tasks/sessions?identityId=other-agent", DEMO_KEY)).status_code == 403


async def test_admin_revokes_another_identitys_session_and_mcp_refuses_its_token(gateway: str) -> None:
    await call("POST", f"{gateway}/v1/tasks", json=echo_task())
    session = (await start(gateway, "echoer")).json()
    assert (await call("DELETE", f"{gateway}/v1/tasks/sessions/{session['tokenId']}")).status_code == 204
    assert await refused(gateway, session["taskToken"])
    listed = (await call("GET", f"{gateway}/v1/tasks/sessions")).json()["sessions"]
    assert session["tokenId"] not in {s["tokenId"] for s in listed}


@pytest.fixture
def two_processes(redis_url: str, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """Two `mcp-gateway serve` processes over one Redis: they share nothing else."""
    identities = copy.deepcopy(BASE_CONFIG["identities"])
    identities.append({"id": "ops", "roles": ["admin"], "credentials": [{"sha256": sha(ADMIN_KEY)}]})
    raw = {**copy.deepcopy(BASE_CONFIG), "identities": identities, "store": redis_store(redis_url)}
    first, url_a = _spawn_gateway(raw, tmp_path, "a")
    second, url_b = _spawn_gateway(raw, tmp_path, "b")
    try:
        yield url_a, url_b
    finally:
        for process in (first, second):
            process.terminate()
            process.wait(timeout=20)


async def test_task_changed_in_one_process_is_served_by_the_other(two_processes: tuple[str, str]) -> None:
    first, second = two_processes
    await _wait_ready(first)
    await _wait_ready(second)
    assert (await start(second, "echoer")).status_code == 404
    created = await call("POST", f"{first}/v1/tasks", json=echo_task(allowedTools=["demo__echo", "demo__nope*"]))
    assert created.status_code == 201, created.text
    assert [w["pointer"] for w in created.json()["warnings"]] == ["/allowedTools/1"]
    session = await start(second, "echoer")
    assert session.status_code == 201, session.text
    assert await visible_tools(second, session.json()["taskToken"]) == ["demo__echo"]
    await call("PUT", f"{first}/v1/tasks/echoer", json=echo_task(allowedTools=["demo__add"]))
    newer = (await start(second, "echoer")).json()
    assert await visible_tools(second, newer["taskToken"]) == ["demo__add"]
    assert await visible_tools(second, session.json()["taskToken"]) == ["demo__echo"], "a session keeps its version"
    listed = (await call("GET", f"{second}/v1/tasks/sessions?taskId=echoer")).json()["sessions"]
    assert {s["taskVersion"] for s in listed} == {1, 2}
    assert (await call("DELETE", f"{first}/v1/tasks/echoer?revokeSessions=true")).status_code == 204
    assert (await start(second, "echoer")).status_code == 404
    assert await refused(second, newer["taskToken"]) and await refused(second, session.json()["taskToken"])
    listed_tasks = (await call("GET", f"{second}/v1/tasks")).json()["tasks"]
    assert [t["id"] for t in listed_tasks] == ["resolve-ticket"]
