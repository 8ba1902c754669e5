"""Agents as MCP tools through ``Proxy``: listed, called, judged and audited like any tool, without HTTP in between.

The gateway's real parts (store, demo upstream, policies, audit) and the scripted model server; the wire, with real
MCP clients of both eras, is ``test_agent_mcp_e2e.py``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

from mcp_gateway.agents.definitions import McpServerGrant, RuntimeSpec
from mcp_gateway.agents.mcp_tool import agent_tools_served
from mcp_gateway.agents.service import Agents, running_agents
from mcp_gateway.agents.validation import AgentFields
from mcp_gateway.core.proxy import Caller, ClientLink
from mcp_gateway.errors import RpcError
from mcp_gateway.gateway import running_gateway
from tests.support.agents_harness import agent_config
from tests.support.harness import BASE_CONFIG
from tests.support.llm_server import Hold, ScriptedModels, answer, serve_models, tool_call

NO_REFUNDS = {
    "name": "no-agent-refunds",
    "effect": "deny",
    "tools": ["agents__*"],
    "condition": "request.tool.upstream == 'agents' && request.tool.args.input.contains('refund')",
    "message": "agents do not refund",
}


@asynccontextmanager
async def agents_running(**sections: Any) -> AsyncIterator[tuple[Agents, ScriptedModels]]:
    """Not a fixture: the gateway's task groups must be entered and left in the test's own task."""
    async with (
        serve_models() as (model_url, models),
        running_gateway(agent_config(model_url, **sections)) as gateway,
        running_agents(gateway) as running,
        agent_tools_served(running),
    ):
        grants = (McpServerGrant("demo", ("echo",)),)
        spec = RuntimeSpec(instruction="Help.", llm_model_id="primary", mcp_servers=grants)
        await running.registry.create(AgentFields("helper", "helps", "owner_only"), spec)
        yield running, models


def caller(agents: Agents, identity_id: str) -> Caller:
    identity = next(i for i in agents.gateway.config.identities if i.id == identity_id)
    return Caller(identity=identity)


async def call(agents: Agents, who: str, arguments: dict[str, Any], link: ClientLink | None = None) -> dict[str, Any]:
    params = {"name": "agents__helper", "arguments": arguments}
    return await agents.gateway.proxy.call_tool(caller(agents, who), params, link or ClientLink())


def audit_records(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == "mcp_gateway.audit"]


async def test_agent_tool_call_returns_the_runs_output() -> None:
    async with agents_running() as (running, models):
        models.script("primary-model", answer("all done"))
        result = await call(running, "demo-agent", {"input": "do it"})
        assert result["isError"] is False
        assert result["content"] == [{"type": "text", "text": "all done"}]
        assert result["structuredContent"]["status"] == "completed"
        record = await running.runs.get(caller(running, "demo-agent").identity, result["structuredContent"]["runId"])
        assert record.output == "all done"


async def test_agent_tools_are_listed_among_the_upstream_tools_for_those_who_may_see_them() -> None:
    async with agents_running() as (running, _):
        proxy = running.gateway.proxy
        tools = (await proxy.list_tools(caller(running, "demo-agent"), {}))["tools"]
        names = [tool["name"] for tool in tools]
        assert "agents__helper" in names and names == sorted(names)
        helper = next(tool for tool in tools if tool["name"] == "agents__helper")
        assert (helper["description"], helper["inputSchema"]["required"]) == ("helps", ["input"])
        hidden = (await proxy.list_tools(caller(running, "other-agent"), {}))["tools"]
        assert "agents__helper" not in [tool["name"] for tool in hidden]


async def test_a_new_agent_is_listed_at_once_and_a_deleted_one_goes() -> None:
    async with agents_running() as (running, _):
        proxy, who = running.gateway.proxy, caller(running, "demo-agent")
        spec = RuntimeSpec(instruction="Help more.", llm_model_id="primary")
        agent, _ = await running.registry.create(AgentFields("second", "", "owner_only"), spec)
        assert "agents__second" in [tool["name"] for tool in (await proxy.list_tools(who, {}))["tools"]]
        await running.registry.delete(agent.id)
        assert "agents__second" not in [tool["name"] for tool in (await proxy.list_tools(who, {}))["tools"]]
        with pytest.raises(RpcError, match="Unknown tool: agents__second"):
            await proxy.call_tool(who, {"name": "agents__second", "arguments": {"input": "x"}})


async def test_bad_agent_tool_input_is_an_error_result() -> None:
    async with agents_running() as (running, models):
        result = await call(running, "demo-agent", {"input": ""})
        assert result["isError"] is True and "input" in result["content"][0]["text"]
        assert models.requests == []


async def test_unknown_or_invisible_agent_answers_as_an_unknown_tool() -> None:
    async with agents_running() as (running, _):
        proxy = running.gateway.proxy
        for identity, name in (("demo-agent", "agents__nobody"), ("other-agent", "agents__helper")):
            with pytest.raises(RpcError) as caught:
                await proxy.call_tool(caller(running, identity), {"name": name, "arguments": {"input": "x"}})
            assert (caught.value.code, caught.value.message) == (-32602, f"Unknown tool: {name}")


async def test_policy_denying_the_agent_tool_stops_the_run_before_it_starts(caplog: pytest.LogCaptureFixture) -> None:
    async with agents_running(policies=[*BASE_CONFIG["policies"], NO_REFUNDS]) as (running, models):
        with caplog.at_level(logging.INFO, logger="mcp_gateway.audit"):
            result = await call(running, "demo-agent", {"input": "refund order 7"})
            await running.gateway.audit.flushed()
        assert result == {
            "content": [{"type": "text", "text": "Call denied by policy 'no-agent-refunds': agents do not refund"}],
            "isError": True,
        }
        assert models.requests == []
        (audited,) = audit_records(caplog)
        assert (audited["tool"], audited["decision"], audited["policy"], audited["outcome"]) == (
            "agents__helper",
            "deny",
            "no-agent-refunds",
            "denied",
        )
        assert audited["run_id"] is None
        denials = {"policy": "no-agent-refunds"}
        metrics = running.gateway.metrics
        assert metrics.registry.get_sample_value("mcp_gateway_policy_denials_total", denials) == 1


async def test_cancelling_the_tool_call_cancels_the_run(caplog: pytest.LogCaptureFixture) -> None:
    async with agents_running() as (running, models):
        hold = Hold(then=tool_call("demo__echo", text="late"))
        models.script("primary-model", hold)
        with caplog.at_level(logging.INFO, logger="mcp_gateway.audit"):
            async with anyio.create_task_group() as tg:
                tg.start_soon(call, running, "demo-agent", {"input": "x"})
                with anyio.fail_after(10):
                    await hold.reached.wait()
                tg.cancel_scope.cancel()
            await running.gateway.audit.flushed()
        hold.release.set()
        agent_id = await running.registry.id_for_name("helper")
        assert agent_id is not None
        (record,) = await running.runs.list(caller(running, "demo-agent").identity, agent_id)
        assert record.status == "cancelled"
        (audited,) = audit_records(caplog)
        assert (audited["tool"], audited["outcome"], audited["run_id"]) == ("agents__helper", "cancelled", record.id)


async def test_agent_tool_reports_each_turn_as_progress() -> None:
    async with agents_running() as (running, models):
        models.script("primary-model", tool_call("demo__echo", text="a"), answer("done"))
        heard: list[tuple[float, float | None, str | None]] = []

        async def progress(progress: float, total: float | None, message: str | None) -> None:
            heard.append((progress, total, message))

        result = await call(running, "demo-agent", {"input": "x"}, ClientLink(progress=progress))
        assert result["isError"] is False
        assert heard == [(1, None, "turn 1: called demo__echo"), (2, None, "turn 2: answered")]


async def test_the_agent_call_and_every_inner_call_are_audited_with_the_run_and_revision(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with agents_running() as (running, models):
        models.script("primary-model", tool_call("demo__echo", text="a"), answer("done"))
        with caplog.at_level(logging.INFO, logger="mcp_gateway.audit"):
            result = await call(running, "demo-agent", {"input": "x"})
            await running.gateway.audit.flushed()
        run_id = result["structuredContent"]["runId"]
        agent_id = await running.registry.id_for_name("helper")
        inner, outer = audit_records(caplog)
        assert (inner["tool"], inner["outcome"]) == ("demo__echo", "ok")
        assert (outer["tool"], outer["upstream"], outer["decision"], outer["outcome"]) == (
            "agents__helper",
            "agents",
            "allow",
            "ok",
        )
        for record in (inner, outer):
            assert (record["run_id"], record["agent_id"], record["agent_revision"]) == (run_id, agent_id, 1)
