"""Agent runs over REST against a scripted OpenAI-compatible server and the real demo upstream.

Every inner tool call goes through the gateway's own ``tools/call`` path, so these tests check what the upstream
answered, what the policy decided and what the model was shown, not what a stand-in returned.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest

from tests.support.agents_harness import ADMIN_KEY, TICKET_BOT_KEY, agent_config, auth, create_agent
from tests.support.harness import DEMO_KEY, OTHER_KEY, serve_gateway
from tests.support.llm_server import Failure, Hold, ScriptedModels, answer, serve_models, tool_call


@pytest.fixture
async def setup() -> AsyncIterator[tuple[str, ScriptedModels]]:
    async with serve_models() as (model_url, models), serve_gateway(agent_config(model_url)) as base_url:
        yield base_url, models


async def run(http: httpx.AsyncClient, base_url: str, agent_id: str, key: str = DEMO_KEY, **body: Any) -> Any:
    response = await http.post(
        f"{base_url}/v1/agents/{agent_id}/runs?wait=true", json={"input": "go", **body}, headers=auth(key)
    )
    assert response.status_code == 200, response.text
    return response.json()


async def finished(http: httpx.AsyncClient, base_url: str, run_id: str, key: str = DEMO_KEY) -> Any:
    """The run's record once it is no longer running (polled: the run lives in another task)."""
    with anyio.fail_after(10):
        for _ in itertools.count():
            record = (await http.get(f"{base_url}/v1/runs/{run_id}", headers=auth(key))).json()
            if record["status"] != "running":
                return record
            await anyio.sleep(0.05)


def tool_messages(request: dict[str, Any]) -> list[str]:
    return [m["content"] for m in request["messages"] if m["role"] == "tool"]


async def test_run_calls_an_upstream_tool_and_returns_the_models_final_answer(
    setup: tuple[str, ScriptedModels],
) -> None:
    base_url, models = setup
    models.script("primary-model", tool_call("demo__echo", text="hello"), answer("The upstream said hello."))
    async with httpx.AsyncClient(timeout=30) as http:
        agent = await create_agent(http, base_url)
        record = await run(http, base_url, agent["id"], input="say hello")
    assert record["status"] == "completed"
    assert record["output"] == "The upstream said hello."
    assert (record["agentId"], record["revision"], record["identity"]) == (agent["id"], 1, "demo-agent")
    first, second = models.requests_for("primary-model")
    assert first["messages"][:2] == [
        {"role": "system", "content": "You help by echoing."},
        {"role": "user", "content": "say hello"},
    ]
    # Only what the revision grants, of what the caller sees: echo and get_customer, not add or fail.
    assert sorted(t["function"]["name"] for t in first["tools"]) == ["demo__echo", "demo__get_customer"]
    assert tool_messages(second) == ["hello"]
    call = record["turns"][0]["toolCalls"][0]
    assert (call["tool"], call["arguments"], call["decision"], call["outcome"]) == (
        "demo__echo",
        {"text": "hello"},
        "allowed",
        "ok",
    )
    assert record["usage"] == {"primary": {"calls": 2, "promptTokens": 22, "completionTokens": 14, "totalTokens": 36}}
    assert record["endedAt"] is not None and record["error"] is None


async def test_run_starts_in_the_background_and_is_read_by_id(setup: tuple[str, ScriptedModels]) -> None:
    base_url, models = setup
    models.script("primary-model", answer("done"))
    async with httpx.AsyncClient(timeout=30) as http:
        agent = await create_agent(http, base_url)
        started = await http.post(
            f"{base_url}/v1/agents/{agent['id']}/runs", json={"input": "x"}, headers=auth(DEMO_KEY)
        )
        assert started.status_code == 202
        run_id = started.json()["id"]
        assert started.headers["location"] == f"/v1/runs/{run_id}"
        record = await finished(http, base_url, run_id)
        listed = await http.get(f"{base_url}/v1/agents/{agent['id']}/runs", headers=auth(DEMO_KEY))
    assert (record["status"], record["output"]) == ("completed", "done")
    assert [r["id"] for r in listed.json()["runs"]] == [run_id]


async def test_policy_denial_goes_back_to_the_model_which_recovers(setup: tuple[str, ScriptedModels]) -> None:
    base_url, models = setup
    models.script(
        "primary-model",
        tool_call("demo__get_customer", customer_id="cust-002"),
        tool_call("demo__get_customer", customer_id="cust-001"),
        answer("Ada is a gold customer."),
    )
    context = {"ticket_id": "T-1", "customer_id": "cust-001"}
    async with httpx.AsyncClient(timeout=30) as http:
        agent = await create_agent(http, base_url)
        record = await run(http, base_url, agent["id"], key=TICKET_BOT_KEY, taskId="resolve-ticket", context=context)
        session_url = f"{base_url}/v1/tasks/sessions/{record['taskSessionId']}"
        session = await http.get(session_url, headers=auth(TICKET_BOT_KEY))
    assert record["status"] == "completed" and record["output"] == "Ada is a gold customer."
    assert record["taskId"] == "resolve-ticket"
    denied, allowed = (turn["toolCalls"][0] for turn in record["turns"][:2])
    assert (denied["decision"], denied["outcome"]) == ("denied", "denied")
    assert "same-customer" in denied["error"]
    assert (allowed["decision"], allowed["outcome"]) == ("allowed", "ok")
    _, after_denial, after_success = models.requests_for("primary-model")
    assert "this task may only touch its own customer" in tool_messages(after_denial)[0]
    assert json.loads(tool_messages(after_success)[1])["name"] == "Ada Lovelace"
    # The run's task session ends with the run.
    assert session.status_code == 404


async def test_task_context_is_validated_before_the_run_starts(setup: tuple[str, ScriptedModels]) -> None:
    base_url, models = setup
    async with httpx.AsyncClient(timeout=30) as http:
        agent = await create_agent(http, base_url)
        url = f"{base_url}/v1/agents/{agent['id']}/runs"
        bad_context = await http.post(
            url, json={"input": "x", "taskId": "resolve-ticket", "context": {}}, headers=auth(TICKET_BOT_KEY)
        )
        no_task = await http.post(url, json={"input": "x"}, headers=auth(TICKET_BOT_KEY))
        unknown_task = await http.post(url, json={"input": "x", "taskId": "nope"}, headers=auth(DEMO_KEY))
        no_input = await http.post(url, json={"taskId": "nope"}, headers=auth(DEMO_KEY))
    assert bad_context.status_code == 422
    assert {d["pointer"] for d in bad_context.json()["details"]} == {"/ticket_id", "/customer_id"}
    assert no_task.status_code == 401 and no_task.json()["error"] == "task_required"
    assert unknown_task.status_code == 404
    assert no_input.status_code == 400
    assert models.requests == []


async def test_max_turns_ends_the_run(setup: tuple[str, ScriptedModels]) -> None:
    base_url, models = setup
    models.script("primary-model", *(tool_call("demo__echo", text=str(n)) for n in range(3)))
    async with httpx.AsyncClient(timeout=30) as http:
        agent = await create_agent(http, base_url, maxTurns=2)
        record = await run(http, base_url, agent["id"])
    assert record["status"] == "max_turns_exceeded"
    assert "2 turns" in record["error"]
    assert len(record["turns"]) == 2 and len(models.requests) == 2
    # The last turn's calls were not made: no model turn was left to read their results.
    assert record["turns"][1]["toolCalls"] == []


@pytest.mark.parametrize("status", [500, 429])
async def test_fallback_model_answers_when_the_primary_fails(setup: tuple[str, ScriptedModels], status: int) -> None:
    base_url, models = setup
    models.script("primary-model", Failure(status))
    models.script("backup-model", answer("from the backup"))
    async with httpx.AsyncClient(timeout=30) as http:
        agent = await create_agent(http, base_url, fallbackLlmModelId="backup")
        record = await run(http, base_url, agent["id"])
    assert (record["status"], record["output"]) == ("completed", "from the backup")
    turn = record["turns"][0]
    assert (turn["model"], turn["fallbackFrom"], turn["fallbackReason"]) == ("backup", "primary", f"HTTP {status}")
    assert set(record["usage"]) == {"backup"}


async def test_client_error_of_the_primary_fails_the_run_without_asking_the_fallback(
    setup: tuple[str, ScriptedModels],
) -> None:
    base_url, models = setup
    models.script("primary-model", Failure(400))
    async with httpx.AsyncClient(timeout=30) as http:
        agent = await create_agent(http, base_url, fallbackLlmModelId="backup")
        record = await run(http, base_url, agent["id"])
    assert record["status"] == "failed" and "HTTP 400" in record["error"]
    assert models.requests_for("backup-model") == []


async def test_run_fails_when_the_primary_fails_and_there_is_no_fallback(setup: tuple[str, ScriptedModels]) -> None:
    base_url, models = setup
    models.script("primary-model", Failure(503))
    async with httpx.AsyncClient(timeout=30) as http:
        agent = await create_agent(http, base_url)
        record = await run(http, base_url, agent["id"])
    assert record["status"] == "failed"
    assert "model 'primary' failed: HTTP 503" in record["error"]


async def test_owner_only_run_is_not_found_for_another_identity(setup: tuple[str, ScriptedModels]) -> None:
    base_url, models = setup
    models.script("primary-model", answer("secret result"))
    async with httpx.AsyncClient(timeout=30) as http:
        agent = await create_agent(http, base_url)
        record = await run(http, base_url, agent["id"])
        url = f"{base_url}/v1/runs/{record['id']}"
        other = await http.get(url, headers=auth(OTHER_KEY))
        admin = await http.get(url, headers=auth(ADMIN_KEY))
        others_list = await http.get(f"{base_url}/v1/agents/{agent['id']}/runs", headers=auth(OTHER_KEY))
    assert other.status_code == 404 and other.json()["error"] == "not_found"
    assert admin.status_code == 200 and admin.json()["output"] == "secret result"
    assert others_list.json()["runs"] == []


async def test_identity_that_cannot_see_the_agent_tool_cannot_run_it(setup: tuple[str, ScriptedModels]) -> None:
    base_url, models = setup
    async with httpx.AsyncClient(timeout=30) as http:
        agent = await create_agent(http, base_url)
        response = await http.post(
            f"{base_url}/v1/agents/{agent['id']}/runs", json={"input": "x"}, headers=auth(OTHER_KEY)
        )
    assert response.status_code == 404
    assert models.requests == []


async def test_cancelled_run_stops_and_says_so(setup: tuple[str, ScriptedModels]) -> None:
    base_url, models = setup
    hold = Hold(then=tool_call("demo__echo", text="too late"))
    models.script("primary-model", hold)
    async with httpx.AsyncClient(timeout=30) as http:
        agent = await create_agent(http, base_url)
        started = await http.post(
            f"{base_url}/v1/agents/{agent['id']}/runs", json={"input": "x"}, headers=auth(DEMO_KEY)
        )
        run_id = started.json()["id"]
        with anyio.fail_after(10):
            await hold.reached.wait()
        other = await http.delete(f"{base_url}/v1/runs/{run_id}", headers=auth(OTHER_KEY))
        cancelled = await http.delete(f"{base_url}/v1/runs/{run_id}", headers=auth(DEMO_KEY))
        record = await finished(http, base_url, run_id)
        again = await http.delete(f"{base_url}/v1/runs/{run_id}", headers=auth(DEMO_KEY))
        hold.release.set()
    assert other.status_code == 404
    assert cancelled.status_code == 202
    assert record["status"] == "cancelled" and record["endedAt"] is not None
    assert record["turns"] == []
    assert again.status_code == 409


async def test_task_tool_runs_a_sub_conversation_whose_denied_call_the_model_recovers_from(
    setup: tuple[str, ScriptedModels],
) -> None:
    base_url, models = setup
    models.script(
        "primary-model",
        tool_call("tasks__resolve-ticket", ticket_id="T-9", customer_id="cust-001"),
        tool_call("demo__get_customer", customer_id="cust-002"),
        tool_call("demo__get_customer", customer_id="cust-001"),
        answer("Ada Lovelace, gold"),
        answer("Ticket T-9 is for Ada Lovelace (gold)."),
    )
    async with httpx.AsyncClient(timeout=30) as http:
        agent = await create_agent(http, base_url, taskTools=["resolve-ticket"], mcpServers=[])
        record = await run(http, base_url, agent["id"])
        child_session = record["turns"][0]["toolCalls"][0]["taskSessionId"]
        session = await http.get(f"{base_url}/v1/tasks/sessions/{child_session}", headers=auth(DEMO_KEY))
    assert record["status"] == "completed"
    assert record["output"] == "Ticket T-9 is for Ada Lovelace (gold)."
    parent_first, child_first, child_second, child_third, parent_last = models.requests
    assert [t["function"]["name"] for t in parent_first["tools"]] == ["tasks__resolve-ticket"]
    assert parent_first["tools"][0]["function"]["parameters"]["required"] == ["ticket_id", "customer_id"]
    # The sub-conversation sees the task's tools (which narrow the caller's), under the child session the policy reads.
    assert sorted(t["function"]["name"] for t in child_first["tools"]) == ["demo__get_customer", "demo__update_ticket"]
    assert json.loads(child_first["messages"][1]["content"]) == {"ticket_id": "T-9", "customer_id": "cust-001"}
    assert "this task may only touch its own customer" in tool_messages(child_second)[0]
    assert json.loads(tool_messages(child_third)[1])["tier"] == "gold"
    assert tool_messages(parent_last) == ["Ada Lovelace, gold"]
    task_call = record["turns"][0]["toolCalls"][0]
    assert (task_call["tool"], task_call["outcome"]) == ("tasks__resolve-ticket", "ok")
    inner = [turn["toolCalls"][0]["decision"] for turn in task_call["turns"][:2]]
    assert inner == ["denied", "allowed"]
    assert record["usage"]["primary"]["calls"] == 5
    assert session.status_code == 404


async def test_task_tool_with_an_invalid_context_is_an_error_result_for_the_model(
    setup: tuple[str, ScriptedModels],
) -> None:
    base_url, models = setup
    models.script(
        "primary-model", tool_call("tasks__resolve-ticket", ticket_id="T-9"), answer("I need the customer id.")
    )
    async with httpx.AsyncClient(timeout=30) as http:
        agent = await create_agent(http, base_url, taskTools=["resolve-ticket"])
        record = await run(http, base_url, agent["id"])
    assert (record["status"], record["output"]) == ("completed", "I need the customer id.")
    call = record["turns"][0]["toolCalls"][0]
    assert (call["outcome"], call.get("taskSessionId")) == ("error", None)
    (message,) = tool_messages(models.requests[1])
    assert message.startswith("Error: context does not match") and "/customer_id" in message


async def test_sliding_window_sends_the_instruction_the_first_message_and_the_latest_messages(
    setup: tuple[str, ScriptedModels],
) -> None:
    base_url, models = setup
    models.script(
        "primary-model",
        tool_call("demo__echo", text="one"),
        tool_call("demo__echo", text="two"),
        answer("done"),
    )
    skills = [{"name": "brevity", "description": "short answers", "instruction": "Answer in one line."}]
    async with httpx.AsyncClient(timeout=30) as http:
        agent = await create_agent(
            http, base_url, memoryStrategy="sliding_window", memoryConfig={"maxMessages": 2}, skills=skills
        )
        record = await run(http, base_url, agent["id"], input="first")
    assert record["status"] == "completed"
    third = models.requests[2]["messages"]
    assert [m["role"] for m in third] == ["system", "user", "assistant", "tool"]
    assert third[1]["content"] == "first" and third[3]["content"] == "two"
    # Skills follow the instruction, in order.
    assert third[0]["content"] == ("You help by echoing.\n\n## Skill: brevity\nshort answers\nAnswer in one line.")


async def test_new_revision_changes_new_runs_while_a_run_on_the_old_one_finishes(
    setup: tuple[str, ScriptedModels],
) -> None:
    base_url, models = setup
    hold = Hold(then=tool_call("demo__echo", text="x"))
    models.script("primary-model", hold, answer("old finished"), answer("new answer"))
    async with httpx.AsyncClient(timeout=30) as http:
        agent = await create_agent(http, base_url)
        started = await http.post(
            f"{base_url}/v1/agents/{agent['id']}/runs", json={"input": "x"}, headers=auth(DEMO_KEY)
        )
        with anyio.fail_after(10):
            await hold.reached.wait()
        revised = await http.post(
            f"{base_url}/v1/agents/{agent['id']}/revisions",
            json={"instruction": "You are revision two.", "llmModelId": "primary"},
            headers=auth(ADMIN_KEY),
        )
        assert revised.status_code == 201
        hold.release.set()
        old = await finished(http, base_url, started.json()["id"])
        new = await run(http, base_url, agent["id"])
    assert (old["revision"], old["output"]) == (1, "old finished")
    assert models.requests[1]["messages"][0]["content"] == "You help by echoing."
    assert (new["revision"], new["output"]) == (2, "new answer")
    assert models.requests[2]["messages"][0]["content"] == "You are revision two."
