"""``call_agent_tool``: an agent run as an MCP tool call, with the gateway's real parts and no HTTP in between."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest

from mcp_gateway.agents.definitions import RuntimeSpec
from mcp_gateway.agents.mcp_tool import agent_tools, call_agent_tool
from mcp_gateway.agents.service import Agents, running_agents
from mcp_gateway.agents.validation import AgentFields
from mcp_gateway.errors import RpcError
from mcp_gateway.gateway import running_gateway
from mcp_gateway.proxy import Caller
from tests.agents_harness import agent_config
from tests.llm_server import Hold, ScriptedModels, answer, serve_models, tool_call


@asynccontextmanager
async def agents_running() -> AsyncIterator[tuple[Agents, ScriptedModels]]:
    """Not a fixture: the gateway's task groups must be entered and left in the test's own task."""
    async with (
        serve_models() as (model_url, models),
        running_gateway(agent_config(model_url)) as gateway,
        running_agents(gateway) as running,
    ):
        spec = RuntimeSpec(instruction="Help.", llm_model_id="primary")
        await running.registry.create(AgentFields("helper", "helps", "owner_only"), spec)
        yield running, models


def caller(agents: Agents, identity_id: str) -> Caller:
    identity = next(i for i in agents.gateway.config.identities if i.id == identity_id)
    return Caller(identity=identity)


async def test_agent_tool_call_returns_the_runs_output() -> None:
    async with agents_running() as (running, models):
        models.script("primary-model", answer("all done"))
        result = await call_agent_tool(running, caller(running, "demo-agent"), "helper", {"input": "do it"})
        assert result["isError"] is False
        assert result["content"] == [{"type": "text", "text": "all done"}]
        assert result["structuredContent"]["status"] == "completed"
        record = await running.runs.get(caller(running, "demo-agent").identity, result["structuredContent"]["runId"])
        assert record.output == "all done"


async def test_agent_tools_are_listed_under_the_agents_namespace() -> None:
    async with agents_running() as (running, _):
        tools = await agent_tools(running)
        assert [tool["name"] for tool in tools] == ["agents__helper"]
        assert tools[0]["inputSchema"]["required"] == ["input"]


async def test_bad_agent_tool_input_is_an_error_result() -> None:
    async with agents_running() as (running, models):
        result = await call_agent_tool(running, caller(running, "demo-agent"), "helper", {"input": ""})
        assert result["isError"] is True and "input" in result["content"][0]["text"]
        assert models.requests == []


async def test_unknown_or_invisible_agent_answers_as_an_unknown_tool() -> None:
    async with agents_running() as (running, _):
        for identity, name in (("demo-agent", "nobody"), ("other-agent", "helper")):
            with pytest.raises(RpcError, match=f"Unknown tool: {name}"):
                await call_agent_tool(running, caller(running, identity), name, {"input": "x"})


async def test_cancelling_the_tool_call_cancels_the_run() -> None:
    async with agents_running() as (running, models):
        hold = Hold(then=tool_call("demo__echo", text="late"))
        models.script("primary-model", hold)
        who = caller(running, "demo-agent")
        async with anyio.create_task_group() as tg:
            tg.start_soon(call_agent_tool, running, who, "helper", {"input": "x"})
            with anyio.fail_after(10):
                await hold.reached.wait()
            tg.cancel_scope.cancel()
        hold.release.set()
        agent_id = await running.registry.id_for_name("helper")
        assert agent_id is not None
        (record,) = await running.runs.list(who.identity, agent_id)
        assert record.status == "cancelled"


async def test_agent_tool_reports_each_turn_as_progress() -> None:
    async with agents_running() as (running, models):
        models.script("primary-model", tool_call("demo__echo", text="a"), answer("done"))
        heard: list[tuple[float, float | None, str | None]] = []

        async def progress(done: float, total: float | None, message: str | None) -> None:
            heard.append((done, total, message))

        result = await call_agent_tool(running, caller(running, "demo-agent"), "helper", {"input": "x"}, progress)
        assert result["isError"] is False
        assert heard == [(1, None, "turn 1: called demo__echo"), (2, None, "turn 2: answered")]
