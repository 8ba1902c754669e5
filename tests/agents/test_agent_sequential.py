"""Sequential mode: the task tools run once each, in order, the model writing each context from what came before."""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.support.agents_harness import ADMIN_KEY, agent_body, agent_config, auth, create_agent
from tests.support.harness import BASE_CONFIG, DEMO_KEY, serve_gateway
from tests.support.llm_server import ScriptedModels, answer, serve_models, tool_call

NOTIFY = {
    "id": "notify",
    "name": "Notify the customer",
    "allowedTools": ["demo__echo"],
    "contextSchema": {"type": "object", "required": ["message"], "properties": {"message": {"type": "string"}}},
}


@pytest.fixture
async def setup() -> AsyncIterator[tuple[str, ScriptedModels]]:
    tasks = [*copy.deepcopy(BASE_CONFIG["tasks"]), NOTIFY]
    async with serve_models() as (model_url, models), serve_gateway(agent_config(model_url, tasks=tasks)) as base_url:
        yield base_url, models


async def test_sequential_run_chains_the_task_tools_in_order(setup: tuple[str, ScriptedModels]) -> None:
    base_url, models = setup
    models.script(
        "primary-model",
        tool_call("tasks__resolve-ticket", ticket_id="T-1", customer_id="cust-001"),
        tool_call("demo__get_customer", customer_id="cust-001"),
        answer("Ada Lovelace, gold"),
        tool_call("tasks__notify", message="Dear Ada"),
        tool_call("demo__echo", text="Dear Ada"),
        answer("sent: Dear Ada"),
    )
    async with httpx.AsyncClient(timeout=30) as http:
        agent = await create_agent(http, base_url, mode="sequential", taskTools=["resolve-ticket", "notify"])
        response = await http.post(
            f"{base_url}/v1/agents/{agent['id']}/runs?wait=true",
            json={"input": "tell the customer of T-1"},
            headers=auth(DEMO_KEY),
        )
    record = response.json()
    assert (record["status"], record["output"]) == ("completed", "sent: Dear Ada")
    first_step, _, _, second_step, child_of_second, _ = models.requests
    assert first_step["tool_choice"] == {"type": "function", "function": {"name": "tasks__resolve-ticket"}}
    assert [t["function"]["name"] for t in first_step["tools"]] == ["tasks__resolve-ticket"]
    assert second_step["tool_choice"]["function"]["name"] == "tasks__notify"
    # The second context is written with the first task's output in view.
    assert [m["content"] for m in second_step["messages"] if m["role"] == "tool"] == ["Ada Lovelace, gold"]
    assert json.loads(child_of_second["messages"][1]["content"]) == {"message": "Dear Ada"}
    assert [t["function"]["name"] for t in child_of_second["tools"]] == ["demo__echo"]
    assert [turn["toolCalls"][0]["tool"] for turn in record["turns"]] == ["tasks__resolve-ticket", "tasks__notify"]


async def test_sequential_mode_needs_a_task_tool(setup: tuple[str, ScriptedModels]) -> None:
    base_url, _ = setup
    async with httpx.AsyncClient(timeout=30) as http:
        response = await http.post(f"{base_url}/v1/agents", json=agent_body(mode="sequential"), headers=auth(ADMIN_KEY))
    assert response.status_code == 422
    assert [d["pointer"] for d in response.json()["details"]] == ["/taskTools"]
