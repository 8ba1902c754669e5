"""Agents declared under ``agents:`` in config: listed, read and run like stored ones, never changed over the API."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.support.agents_harness import ADMIN_KEY, agent_body, agent_config, auth
from tests.support.harness import DEMO_KEY, serve_gateway
from tests.support.llm_server import ScriptedModels, answer, serve_models

DECLARED = {
    "id": "greeter",
    "name": "greeter",
    "description": "says hello",
    "instruction": "Greet.",
    "llmModelId": "primary",
}


@pytest.fixture
async def setup() -> AsyncIterator[tuple[str, ScriptedModels]]:
    async with (
        serve_models() as (model_url, models),
        serve_gateway(agent_config(model_url, agents=[DECLARED])) as base_url,
    ):
        yield base_url, models


async def test_declared_agent_is_listed_read_and_run(setup: tuple[str, ScriptedModels]) -> None:
    base_url, models = setup
    models.script("primary-model", answer("hello"))
    async with httpx.AsyncClient(timeout=30) as http:
        listed = await http.get(f"{base_url}/v1/agents", headers=auth(DEMO_KEY))
        read = await http.get(f"{base_url}/v1/agents/greeter", headers=auth(DEMO_KEY))
        ran = await http.post(
            f"{base_url}/v1/agents/greeter/runs?wait=true", json={"input": "hi"}, headers=auth(DEMO_KEY)
        )
    assert [a["id"] for a in listed.json()["agents"]] == ["greeter"]
    agent = read.json()
    assert (agent["name"], agent["readOnly"], agent["activeRevision"]["instruction"]) == ("greeter", True, "Greet.")
    assert (ran.json()["status"], ran.json()["output"], ran.json()["revision"]) == ("completed", "hello", 1)


async def test_declared_agent_cannot_be_changed_or_its_name_taken(setup: tuple[str, ScriptedModels]) -> None:
    base_url, _ = setup
    url = f"{base_url}/v1/agents/greeter"
    async with httpx.AsyncClient(timeout=30) as http:
        answers = [
            await http.delete(url, headers=auth(ADMIN_KEY)),
            await http.post(
                f"{url}/revisions", json={"instruction": "x", "llmModelId": "primary"}, headers=auth(ADMIN_KEY)
            ),
            await http.post(f"{url}/revisions/1/activate", headers=auth(ADMIN_KEY)),
            await http.post(f"{base_url}/v1/agents", json=agent_body(name="greeter"), headers=auth(ADMIN_KEY)),
        ]
    assert [response.status_code for response in answers] == [409, 409, 409, 409]
    assert all(response.json()["error"] == "conflict" for response in answers)
