"""Each agent as an MCP tool ``agents{separator}{name}``: the ``AgentToolset`` the proxy serves beside upstream tools.

The tool's input is the run request ``{input, taskId?, context?}``. Without ``taskId`` the run works under the
caller's own task session, if the call is bound to one. A problem with the input or the run becomes an ``isError``
result the calling agent can read; an agent that does not exist (or that the caller may not see) answers exactly
as an unknown tool does. Visibility, policies, limits and the call's audit record are the proxy's business, as for
any tool; this module only knows agents.

Listing costs no store round trip per ``tools/list``: the list is rebuilt only when the registry's generation token
(read through the store's coherent local copy) changed, and ``watch_list`` tells clients ``list_changed`` then.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from functools import partial
from typing import Any

import anyio
from mcp_types import INVALID_PARAMS

from mcp_gateway.agents.definitions import Agent
from mcp_gateway.agents.records import RunRecord
from mcp_gateway.agents.runs import AGENT_TOOL_NAMESPACE, PreparedRun, RunRequest
from mcp_gateway.agents.service import Agents
from mcp_gateway.core.proxy import AgentCall, Caller, ProgressSink
from mcp_gateway.errors import GatewayError, NotFound, RpcError

LIST_CHECK_SECONDS = 1.0
"""How often each replica looks whether the agents changed, to send ``notifications/tools/list_changed``."""

INPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["input"],
    "properties": {
        "input": {"type": "string", "description": "What the agent should do."},
        "taskId": {"type": "string", "description": "Run inside a new task session of this task."},
        "context": {"type": "object", "description": "The task session's context (with taskId)."},
    },
    "additionalProperties": False,
}


def agent_tool_definition(agent: Agent, tool_name: str) -> dict[str, Any]:
    return {
        "name": tool_name,
        "description": agent.description or f"Task Agent {agent.name}",
        "inputSchema": INPUT_SCHEMA,
    }


def _error_result(message: str) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": message}], "isError": True}


def run_result(record: RunRecord) -> dict[str, Any]:
    """A finished run as the MCP tool result: its output, or why it has none."""
    text = record.output if record.status == "completed" else f"Agent run {record.status}: {record.error}"
    return {
        "content": [{"type": "text", "text": text or ""}],
        "structuredContent": {
            "runId": record.id,
            "status": record.status,
            "output": record.output,
            "error": record.error,
        },
        "isError": record.status != "completed",
    }


class AgentTools:
    """The running agents as the proxy's ``AgentToolset``."""

    def __init__(self, agents: Agents, separator: str) -> None:
        self._agents = agents
        self.namespace = AGENT_TOOL_NAMESPACE
        self.prefix = f"{AGENT_TOOL_NAMESPACE}{separator}"
        self._listed: tuple[bytes, tuple[dict[str, Any], ...]] | None = None

    async def definitions(self) -> Sequence[dict[str, Any]]:
        registry = self._agents.registry
        generation = await registry.generation()
        if self._listed is None or self._listed[0] != generation:
            tool_name = self._agents.runs.tool_name
            listed = (agent_tool_definition(agent, tool_name(agent)) for agent in await registry.list())
            self._listed = (generation, tuple(sorted(listed, key=lambda tool: str(tool["name"]))))
        return self._listed[1]

    async def runnable(self, caller: Caller, name: str) -> bool:
        agent_id = await self._agents.registry.id_for_name(name.removeprefix(self.prefix))
        if agent_id is None:
            return False
        try:
            await self._agents.runs.runnable(caller, agent_id)
        except NotFound:
            return False
        return True

    async def prepare(self, caller: Caller, name: str, arguments: dict[str, Any]) -> AgentCall:
        runs = self._agents.runs
        unknown = RpcError(INVALID_PARAMS, f"Unknown tool: {name}")
        agent_id = await self._agents.registry.id_for_name(name.removeprefix(self.prefix))
        if agent_id is None:
            raise unknown
        try:
            prepared = await runs.prepare(caller, agent_id, RunRequest.parse(arguments))
        except GatewayError as exc:
            refusal = _error_result(exc.message)

            async def refused(progress: ProgressSink | None) -> dict[str, Any]:
                return refusal

            return AgentCall(run=None, answer=refused)
        return AgentCall(run=prepared.caller.run, answer=_runner(self._agents, prepared))


def _runner(agents: Agents, prepared: PreparedRun) -> Callable[[ProgressSink | None], Awaitable[dict[str, Any]]]:
    async def answer(progress: ProgressSink | None) -> dict[str, Any]:
        return run_result(await agents.runs.execute(prepared, progress))

    return answer


async def watch_list(tools: AgentTools, changed: Callable[[], None]) -> None:
    """Call ``changed`` whenever the agents' tool list changes, on whichever replica it was changed (until cancelled).

    A store that cannot answer is skipped: the list is checked again at the next tick.
    """
    seen: tuple[dict[str, Any], ...] | None = None
    while True:
        current = seen
        with suppress(GatewayError):
            current = tuple(await tools.definitions())
        if seen is not None and current != seen:
            changed()
        seen = current
        await anyio.sleep(LIST_CHECK_SECONDS)


@asynccontextmanager
async def agent_tools_served(agents: Agents) -> AsyncIterator[AgentTools]:
    """Serve every agent as an MCP tool on ``/mcp`` while the block runs, telling clients when the list changes."""
    gateway = agents.gateway
    tools = AgentTools(agents, gateway.config.server.tool_separator)
    gateway.proxy.serve_agents(tools)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(watch_list, tools, partial(gateway.notifier.publish, "notifications/tools/list_changed"))
            yield tools
            tg.cancel_scope.cancel()
    finally:
        gateway.proxy.serve_agents(None)
