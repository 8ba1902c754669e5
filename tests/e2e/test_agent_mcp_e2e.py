"""Task Agents as MCP tools on ``/mcp``, driven by real SDK clients of both eras against the scripted model server.

A client lists ``agents__{name}`` beside the upstreams' tools and calls it; the agent's inner calls (here a task
tool whose call the seed policy denies) go through the gateway's own path and are audited with the run; progress
reports each turn; cancelling the call cancels the run; an agent the caller may not see is an unknown tool.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import mcp_types as types
import pytest
from mcp.client.subscriptions import ToolsListChanged, listen
from mcp.shared.exceptions import MCPError

from tests.support.agents_harness import agent_config, auth, create_agent
from tests.support.harness import DEMO_KEY, OTHER_KEY, mcp_client, serve_gateway
from tests.support.llm_server import Hold, ScriptedModels, answer, serve_models, tool_call

MODERN = "2026-07-28"
ERAS = ["legacy", MODERN]


@pytest.fixture
async def setup() -> AsyncIterator[tuple[str, ScriptedModels]]:
    async with serve_models() as (model_url, models), serve_gateway(agent_config(model_url)) as base_url:
        yield base_url, models


def text_of(result: types.CallToolResult) -> str:
    content = result.content[0]
    assert isinstance(content, types.TextContent)
    return content.text


def audit_records(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == "mcp_gateway.audit"]


async def new_agent(base_url: str, **fields: Any) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=30) as http:
        return await create_agent(http, base_url, **fields)


@pytest.mark.parametrize("mode", ERAS)
async def test_agent_is_listed_and_called_as_a_tool(setup: tuple[str, ScriptedModels], mode: str) -> None:
    base_url, models = setup
    agent = await new_agent(base_url)
    models.script("primary-model", tool_call("demo__echo", text="hi"), answer("The upstream said hi."))
    async with mcp_client(base_url, DEMO_KEY, mode=mode, cache=None) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        assert {"agents__echo-agent", "demo__echo"} <= set(tools)
        assert tools["agents__echo-agent"].description == "echoes things"
        result = await client.call_tool("agents__echo-agent", {"input": "say hi"})
    assert not result.is_error
    assert text_of(result) == "The upstream said hi."
    assert result.structured_content is not None
    run_id = result.structured_content["runId"]
    async with httpx.AsyncClient() as http:
        record = (await http.get(f"{base_url}/v1/runs/{run_id}", headers=auth(DEMO_KEY))).json()
    assert (record["agentId"], record["status"], record["identity"]) == (agent["id"], "completed", "demo-agent")


@pytest.mark.parametrize("mode", ERAS)
async def test_denied_inner_call_goes_back_to_the_model_and_every_call_is_audited_with_the_run(
    setup: tuple[str, ScriptedModels], mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    base_url, models = setup
    agent = await new_agent(base_url, taskTools=["resolve-ticket"], mcpServers=[])
    models.script(
        "primary-model",
        tool_call("tasks__resolve-ticket", ticket_id="T-9", customer_id="cust-001"),
        tool_call("demo__get_customer", customer_id="cust-002"),
        tool_call("demo__get_customer", customer_id="cust-001"),
        answer("Ada Lovelace, gold"),
        answer("Ticket T-9 is for Ada Lovelace (gold)."),
    )
    with caplog.at_level(logging.INFO, logger="mcp_gateway.audit"):
        async with mcp_client(base_url, DEMO_KEY, mode=mode, cache=None) as client:
            await client.list_tools()
            result = await client.call_tool("agents__echo-agent", {"input": "Who is T-9 for?"})
    assert not result.is_error and text_of(result) == "Ticket T-9 is for Ada Lovelace (gold)."
    # The seed policy denied the first lookup inside the task tool; the model read why and asked again.
    after_denial = models.requests[2]
    denial = next(m["content"] for m in after_denial["messages"] if m["role"] == "tool")
    assert "this task may only touch its own customer" in denial
    assert result.structured_content is not None
    run_id = result.structured_content["runId"]
    denied, allowed, outer = audit_records(caplog)
    assert (denied["tool"], denied["decision"], denied["policy"]) == ("demo__get_customer", "deny", "same-customer")
    assert (allowed["tool"], allowed["decision"], allowed["outcome"]) == ("demo__get_customer", "allow", "ok")
    assert denied["task_name"] == allowed["task_name"] == "Resolve a support ticket"
    assert (outer["tool"], outer["upstream"], outer["outcome"], outer["task_session_id"]) == (
        "agents__echo-agent",
        "agents",
        "ok",
        None,
    )
    for record in (denied, allowed, outer):
        assert (record["run_id"], record["agent_id"], record["agent_revision"]) == (run_id, agent["id"], 1)


@pytest.mark.parametrize("mode", ERAS)
async def test_each_turn_is_reported_as_progress(setup: tuple[str, ScriptedModels], mode: str) -> None:
    base_url, models = setup
    await new_agent(base_url, maxTurns=5)
    models.script("primary-model", tool_call("demo__echo", text="a"), answer("done"))
    heard: list[tuple[float, float | None, str | None]] = []

    async def progress(progress: float, total: float | None, message: str | None) -> None:
        heard.append((progress, total, message))

    async with mcp_client(base_url, DEMO_KEY, mode=mode, cache=None) as client:
        await client.list_tools()
        result = await client.call_tool("agents__echo-agent", {"input": "x"}, progress_callback=progress)
    assert text_of(result) == "done"
    assert heard == [(1, 5, "turn 1: called demo__echo"), (2, 5, "turn 2: answered")]


@pytest.mark.parametrize("mode", ERAS)
async def test_cancelling_the_call_cancels_the_run(setup: tuple[str, ScriptedModels], mode: str) -> None:
    base_url, models = setup
    agent = await new_agent(base_url)
    hold = Hold(then=answer("too late"))
    models.script("primary-model", hold)

    async def progress(progress: float, total: float | None, message: str | None) -> None:
        pass

    async with mcp_client(base_url, DEMO_KEY, mode=mode, cache=None) as client:
        await client.list_tools()
        async with anyio.create_task_group() as tg:
            # A 2026-07-28 call is cancelled by closing its response stream, which a progress token opens.
            tg.start_soon(lambda: client.call_tool("agents__echo-agent", {"input": "x"}, progress_callback=progress))
            with anyio.fail_after(10):
                await hold.reached.wait()
            tg.cancel_scope.cancel()
    async with httpx.AsyncClient() as http:
        with anyio.fail_after(10):
            while True:
                runs = (await http.get(f"{base_url}/v1/agents/{agent['id']}/runs", headers=auth(DEMO_KEY))).json()
                if runs["runs"] and runs["runs"][0]["status"] != "running":
                    break
                await anyio.sleep(0.05)
    hold.release.set()
    (record,) = runs["runs"]
    assert record["status"] == "cancelled"


@pytest.mark.parametrize("mode", ERAS)
async def test_agent_the_caller_may_not_see_is_an_unknown_tool(setup: tuple[str, ScriptedModels], mode: str) -> None:
    base_url, models = setup
    await new_agent(base_url)
    async with mcp_client(base_url, OTHER_KEY, mode=mode, cache=None) as client:  # sees demo__e* only
        names = [tool.name for tool in (await client.list_tools()).tools]
        with pytest.raises(MCPError) as hidden:
            await client.call_tool("agents__echo-agent", {"input": "x"})
        with pytest.raises(MCPError) as missing:
            await client.call_tool("agents__no-such-agent", {"input": "x"})
    assert not any(name.startswith("agents__") for name in names)
    assert (hidden.value.error.code, hidden.value.error.message) == (-32602, "Unknown tool: agents__echo-agent")
    assert missing.value.error.message == "Unknown tool: agents__no-such-agent"
    assert models.requests == []


async def test_creating_an_agent_tells_listening_clients_the_tool_list_changed(
    setup: tuple[str, ScriptedModels],
) -> None:
    base_url, _ = setup
    legacy_changed = anyio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            legacy_changed.set()

    async with (
        mcp_client(base_url, DEMO_KEY, mode="legacy", message_handler=on_message) as legacy,
        mcp_client(base_url, DEMO_KEY, mode=MODERN, cache=None) as modern,
        listen(modern.session, tools_list_changed=True) as events,
    ):
        await anyio.sleep(0.2)  # the legacy GET stream opens after initialize, in the background
        await new_agent(base_url)
        with anyio.fail_after(10):
            event = await anext(events)
            await legacy_changed.wait()
        assert isinstance(event, ToolsListChanged)
        assert "agents__echo-agent" in [tool.name for tool in (await legacy.list_tools()).tools]
