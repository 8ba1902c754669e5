"""Each agent as an MCP tool ``agents{separator}{name}``: its definition, and a call that runs it to the end.

The tool's input is the run request ``{input, taskId?, context?}``. Without ``taskId`` the run works under the
caller's own task session, if the call is bound to one. A problem with the input or the run becomes an ``isError``
result the calling agent can read; an agent that does not exist (or that the caller may not see) answers exactly
as an unknown tool does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mcp_types import INVALID_PARAMS

from mcp_gateway.agents.definitions import Agent
from mcp_gateway.agents.runs import RunRequest
from mcp_gateway.agents.service import Agents
from mcp_gateway.errors import GatewayError, NotFound, RpcError
from mcp_gateway.proxy import Caller, ProgressSink

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


async def agent_tools(agents: Agents) -> list[dict[str, Any]]:
    """The tool definition of every live agent, sorted by name (before visibility filtering)."""
    listed = await agents.registry.list()
    return sorted(
        (agent_tool_definition(agent, agents.runs.tool_name(agent)) for agent in listed), key=lambda t: t["name"]
    )


def _error_result(message: str) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": message}], "isError": True}


async def call_agent_tool(
    agents: Agents,
    caller: Caller,
    agent_name: str,
    arguments: Mapping[str, Any],
    progress: ProgressSink | None = None,
) -> dict[str, Any]:
    """Run the agent named ``agent_name`` as ``caller`` and answer with an MCP tool result.

    ``progress`` (the call's progress relay, when the client sent a progressToken) hears of every turn.
    """
    unknown = RpcError(INVALID_PARAMS, f"Unknown tool: {agent_name}")
    agent_id = await agents.registry.id_for_name(agent_name)
    if agent_id is None:
        raise unknown
    try:
        await agents.runs.runnable(caller.identity, agent_id)
    except NotFound as exc:
        raise unknown from exc
    try:
        record = await agents.runs.run(caller, agent_id, RunRequest.parse(arguments), progress)
    except GatewayError as exc:
        return _error_result(exc.message)
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
