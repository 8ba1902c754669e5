"""A task's ``instruction`` and ``outputSchema`` when an agent runs it as a task tool (scripted model)."""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.support.agents_harness import ADMIN_KEY, agent_config, auth, create_agent
from tests.support.harness import BASE_CONFIG, DEMO_KEY, serve_gateway
from tests.support.llm_server import ScriptedModels, answer, serve_models, tool_call

TIER = {
    "type": "object",
    "required": ["name", "tier"],
    "properties": {"name": {"type": "string"}, "tier": {"enum": ["gold", "silver"]}},
}


@pytest.fixture
async def setup() -> AsyncIterator[tuple[str, ScriptedModels]]:
    task = copy.deepcopy(BASE_CONFIG["tasks"][0])
    task.update(instruction="Look the customer up; never change the ticket.", outputSchema=TIER)
    async with (
        serve_models() as (model_url, models),
        serve_gateway(agent_config(model_url, tasks=[task])) as base_url,
    ):
        yield base_url, models


async def run_ticket_agent(base_url: str, task_id: str = "resolve-ticket") -> Any:
    async with httpx.AsyncClient(timeout=30) as http:
        agent = await create_agent(http, base_url, taskTools=[task_id], mcpServers=[])
        response = await http.post(
            f"{base_url}/v1/agents/{agent['id']}/runs?wait=true", json={"input": "T-9?"}, headers=auth(DEMO_KEY)
        )
    assert response.status_code == 200, response.text
    return response.json()


def tool_messages(request: dict[str, Any]) -> list[str]:
    return [m["content"] for m in request["messages"] if m["role"] == "tool"]


async def test_task_instruction_and_output_schema_shape_the_sub_conversation(
    setup: tuple[str, ScriptedModels],
) -> None:
    base_url, models = setup
    models.script(
        "primary-model",
        tool_call("tasks__resolve-ticket", ticket_id="T-9", customer_id="cust-001"),
        answer('```json\n{"name": "Ada Lovelace", "tier": "gold"}\n```'),
        answer("Ada, gold."),
    )
    record = await run_ticket_agent(base_url)
    assert (record["status"], record["output"]) == ("completed", "Ada, gold.")
    _, child, parent_last = models.requests
    system = child["messages"][0]["content"]
    assert system.startswith("You help by echoing.")
    assert "Look the customer up; never change the ticket." in system
    assert json.dumps(TIER) in system
    # The fenced answer met the schema: the model reads it as plain JSON.
    assert tool_messages(parent_last) == ['{"name":"Ada Lovelace","tier":"gold"}']
    assert record["turns"][0]["toolCalls"][0]["outcome"] == "ok"


async def test_output_that_misses_the_schema_is_an_error_result_the_model_recovers_from(
    setup: tuple[str, ScriptedModels],
) -> None:
    base_url, models = setup
    models.script(
        "primary-model",
        tool_call("tasks__resolve-ticket", ticket_id="T-9", customer_id="cust-001"),
        answer('{"name": "Ada Lovelace", "tier": "platinum"}'),
        tool_call("tasks__resolve-ticket", ticket_id="T-9", customer_id="cust-001"),
        answer("Ada is gold"),
        answer("I could not get a valid answer."),
    )
    record = await run_ticket_agent(base_url)
    assert (record["status"], record["output"]) == ("completed", "I could not get a valid answer.")
    first, second = (turn["toolCalls"][0] for turn in record["turns"][:2])
    assert (first["outcome"], second["outcome"]) == ("error", "error")
    after_first, after_second = (models.requests[i] for i in (2, 4))
    (schema_miss,) = tool_messages(after_first)
    assert schema_miss.startswith("Error: the task's answer does not meet its outputSchema: /tier:")
    assert tool_messages(after_second)[1].startswith("Error: the task's answer is not the JSON its outputSchema")


async def test_a_task_created_over_the_api_runs_as_a_task_tool_with_its_instruction_and_schema(
    setup: tuple[str, ScriptedModels],
) -> None:
    base_url, models = setup
    task = {
        "id": "echo-back",
        "name": "Echo back",
        "allowedTools": ["demo__echo"],
        "contextSchema": {"type": "object", "required": ["text"], "properties": {"text": {"type": "string"}}},
        "instruction": "Echo the text once.",
        "outputSchema": {"type": "object", "required": ["echoed"]},
    }
    async with httpx.AsyncClient(timeout=30) as http:
        created = await http.post(f"{base_url}/v1/tasks", json=task, headers=auth(ADMIN_KEY))
    assert created.status_code == 201, created.text
    models.script(
        "primary-model",
        tool_call("tasks__echo-back", text="hi"),
        tool_call("demo__echo", text="hi"),
        answer('{"echoed": "hi"}'),
        answer("Echoed hi."),
    )
    record = await run_ticket_agent(base_url, "echo-back")
    assert (record["status"], record["output"]) == ("completed", "Echoed hi.")
    _, child_first, child_second, parent_last = models.requests
    assert "Echo the text once." in child_first["messages"][0]["content"]
    assert [t["function"]["name"] for t in child_first["tools"]] == ["demo__echo"]
    assert tool_messages(child_second) == ["hi"]
    assert tool_messages(parent_last) == ['{"echoed":"hi"}']
