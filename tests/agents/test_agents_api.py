"""``/v1/agents``: definitions with immutable numbered revisions, admins write, every error in the JSON body."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.support.agents_harness import ADMIN_KEY, agent_body, agent_config, auth, create_agent
from tests.support.harness import DEMO_KEY, serve_gateway
from tests.support.llm_server import serve_models


@pytest.fixture
async def gateway() -> AsyncIterator[str]:
    async with serve_models() as (model_url, _), serve_gateway(agent_config(model_url)) as base_url:
        yield base_url


async def test_admin_creates_agent_with_revision_one_active(gateway: str) -> None:
    async with httpx.AsyncClient() as http:
        agent = await create_agent(http, gateway, maxTurns=5, skills=[{"name": "tone", "instruction": "Be brief."}])
    assert agent["id"].startswith("ag_")
    assert (agent["name"], agent["description"], agent["isDeleted"]) == ("echo-agent", "echoes things", False)
    assert agent["taskAgentRunVisibility"] == "owner_only"
    active = agent["activeRevision"]
    assert active["revision"] == 1
    assert active["instruction"] == "You help by echoing."
    assert active["mcpServers"] == [{"upstream": "demo", "allowedToolIds": ["echo", "get_customer"]}]
    assert active["skills"] == [{"name": "tone", "description": "", "instruction": "Be brief."}]
    assert (active["mode"], active["maxTurns"], active["memoryStrategy"]) == ("agentic", 5, None)
    assert [r["revision"] for r in agent["revisions"]] == [1]


async def test_agents_are_listed_and_read_by_any_identity(gateway: str) -> None:
    async with httpx.AsyncClient() as http:
        created = await create_agent(http, gateway)
        listed = await http.get(f"{gateway}/v1/agents", headers=auth(DEMO_KEY))
        read = await http.get(f"{gateway}/v1/agents/{created['id']}", headers=auth(DEMO_KEY))
    assert listed.status_code == 200
    assert [a["id"] for a in listed.json()["agents"]] == [created["id"]]
    assert read.status_code == 200 and read.json() == created


async def test_identity_without_admin_role_may_not_manage_agents(gateway: str) -> None:
    async with httpx.AsyncClient() as http:
        created = await http.post(f"{gateway}/v1/agents", json=agent_body(), headers=auth(DEMO_KEY))
        agent = await create_agent(http, gateway)
        revised = await http.post(
            f"{gateway}/v1/agents/{agent['id']}/revisions",
            json={"instruction": "x", "llmModelId": "primary"},
            headers=auth(DEMO_KEY),
        )
        deleted = await http.delete(f"{gateway}/v1/agents/{agent['id']}", headers=auth(DEMO_KEY))
    for response in (created, revised, deleted):
        assert response.status_code == 403
        assert response.json()["error"] == "forbidden"
        assert "admin" in response.json()["message"]


async def test_agents_api_needs_a_credential(gateway: str) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{gateway}/v1/agents")
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"


async def test_every_definition_problem_is_reported_with_its_pointer(gateway: str) -> None:
    body = agent_body(
        name="x" * 256,
        llmModelId="gpt-nope",
        taskTools=["no-such-task"],
        mcpServers=[{"upstream": "nowhere", "allowedToolIds": ["a"]}, {"upstream": "demo", "allowedToolIds": ["nope"]}],
        maxTurns=501,
        memoryStrategy="sliding_window",
        colour="red",
    )
    async with httpx.AsyncClient() as http:
        response = await http.post(f"{gateway}/v1/agents", json=body, headers=auth(ADMIN_KEY))
    assert response.status_code == 422
    assert response.json()["error"] == "validation_failed"
    pointers = {problem["pointer"]: problem["message"] for problem in response.json()["details"]}
    assert set(pointers) == {
        "/name",
        "/llmModelId",
        "/taskTools/0",
        "/mcpServers/0/upstream",
        "/mcpServers/1/allowedToolIds/0",
        "/maxTurns",
        "/memoryConfig",
        "/colour",
    }
    assert "unknown model 'gpt-nope'" in pointers["/llmModelId"]
    assert "does not expose a tool 'nope'" in pointers["/mcpServers/1/allowedToolIds/0"]


@pytest.mark.parametrize("strategy", [{"window": 3}, ["sliding_window"], 7])
async def test_a_memory_strategy_that_is_not_a_name_is_a_problem_not_a_500(gateway: str, strategy: object) -> None:
    body = agent_body(name="odd-memory", memoryStrategy=strategy, memoryConfig={"window": 3})
    async with httpx.AsyncClient() as http:
        response = await http.post(f"{gateway}/v1/agents", json=body, headers=auth(ADMIN_KEY))
    assert response.status_code == 422, response.text
    assert [p["pointer"] for p in response.json()["details"]] == ["/memoryStrategy"]


async def test_taken_name_is_a_conflict(gateway: str) -> None:
    async with httpx.AsyncClient() as http:
        await create_agent(http, gateway)
        again = await http.post(f"{gateway}/v1/agents", json=agent_body(), headers=auth(ADMIN_KEY))
    assert again.status_code == 409
    assert again.json()["error"] == "conflict"


async def test_malformed_body_is_a_bad_request(gateway: str) -> None:
    async with httpx.AsyncClient() as http:
        broken = await http.post(
            f"{gateway}/v1/agents",
            content=b"{not json",
            headers={**auth(ADMIN_KEY), "content-type": "application/json"},
        )
        listed = await http.post(f"{gateway}/v1/agents", json=[1], headers=auth(ADMIN_KEY))
    assert (broken.status_code, listed.status_code) == (400, 400)
    assert broken.json()["error"] == listed.json()["error"] == "bad_request"


async def test_new_revision_is_numbered_and_activated_only_when_asked(gateway: str) -> None:
    async with httpx.AsyncClient() as http:
        agent = await create_agent(http, gateway)
        url = f"{gateway}/v1/agents/{agent['id']}"
        second = await http.post(
            f"{url}/revisions",
            json={"instruction": "Second.", "llmModelId": "backup", "activate": False},
            headers=auth(ADMIN_KEY),
        )
        still_first = (await http.get(url, headers=auth(ADMIN_KEY))).json()
        activated = await http.post(f"{url}/revisions/2/activate", headers=auth(ADMIN_KEY))
        third = await http.post(
            f"{url}/revisions", json={"instruction": "Third.", "llmModelId": "primary"}, headers=auth(ADMIN_KEY)
        )
        revisions = await http.get(f"{url}/revisions", headers=auth(DEMO_KEY))
        missing = await http.post(f"{url}/revisions/9/activate", headers=auth(ADMIN_KEY))
    assert second.status_code == 201 and second.json()["revision"] == 2 and second.json()["active"] is False
    assert still_first["activeRevision"]["revision"] == 1
    assert activated.status_code == 200 and activated.json()["activeRevision"]["llmModelId"] == "backup"
    assert third.json()["revision"] == 3 and third.json()["active"] is True
    listed = revisions.json()["revisions"]
    assert [(r["revision"], r["instruction"]) for r in listed] == [
        (1, "You help by echoing."),
        (2, "Second."),
        (3, "Third."),
    ]
    assert missing.status_code == 404


async def test_deleted_agent_stays_readable_leaves_the_list_and_frees_its_name(gateway: str) -> None:
    async with httpx.AsyncClient() as http:
        agent = await create_agent(http, gateway)
        deleted = await http.delete(f"{gateway}/v1/agents/{agent['id']}", headers=auth(ADMIN_KEY))
        read = await http.get(f"{gateway}/v1/agents/{agent['id']}", headers=auth(ADMIN_KEY))
        listed = await http.get(f"{gateway}/v1/agents", headers=auth(ADMIN_KEY))
        with_deleted = await http.get(f"{gateway}/v1/agents?includeDeleted=true", headers=auth(ADMIN_KEY))
        revise = await http.post(
            f"{gateway}/v1/agents/{agent['id']}/revisions",
            json={"instruction": "x", "llmModelId": "primary"},
            headers=auth(ADMIN_KEY),
        )
        successor = await create_agent(http, gateway)
    assert deleted.status_code == 204
    assert read.status_code == 200 and read.json()["isDeleted"] is True
    assert listed.json()["agents"] == []
    assert agent["id"] in [a["id"] for a in with_deleted.json()["agents"]]
    assert revise.status_code == 404
    assert successor["name"] == agent["name"] and successor["id"] != agent["id"]


async def test_unknown_agent_is_not_found(gateway: str) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{gateway}/v1/agents/ag_0000", headers=auth(DEMO_KEY))
        odd = await http.get(f"{gateway}/v1/agents/whatever", headers=auth(DEMO_KEY))
    assert (response.status_code, odd.status_code) == (404, 404)
    assert response.json()["error"] == "not_found"


async def test_a_revision_number_that_is_a_digit_only_to_unicode_is_not_found(gateway: str) -> None:
    async with httpx.AsyncClient() as http:
        agent = await create_agent(http, gateway)
        answer = await http.post(f"{gateway}/v1/agents/{agent['id']}/revisions/²/activate", headers=auth(ADMIN_KEY))
    assert (answer.status_code, answer.json()["error"]) == (404, "not_found")
