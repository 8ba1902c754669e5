"""Tasks as tools: the model fills in a task's context, and the task runs as a sub-conversation in its own session.

Calling a task tool opens a child task session exactly as ``POST /v1/tasks/sessions`` would (the context is
validated against the task's ``contextSchema``, the identity must be allowed to start the task), then runs a
conversation whose tools are what that session may see, under it: the task's ``allowedTools`` and the CEL policies
reading ``task.context`` apply to every inner call. The task's own ``instruction`` joins the sub-conversation's
system prompt; its final answer is the tool result, held to the task's ``outputSchema`` when it has one
(``task_output.py``). The child session is revoked when the sub-conversation ends. Listing a task in ``taskTools``
is what grants its tools to the agent, so they are not intersected with the revision's ``mcpServers``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import anyio

from mcp_gateway.agents.conversation import Conversation
from mcp_gateway.agents.definitions import RuntimeSpec
from mcp_gateway.agents.mcp_tools import add_mcp_tools
from mcp_gateway.agents.models import ModelClients, ModelFailure
from mcp_gateway.agents.records import TurnRecord
from mcp_gateway.agents.task_output import check_output, output_prompt
from mcp_gateway.agents.toolbox import Outcome, ToolBox, ToolHandler, failed
from mcp_gateway.config import TaskDefinition
from mcp_gateway.core.proxy import Caller, Proxy
from mcp_gateway.errors import GatewayError
from mcp_gateway.tasks.definitions import TaskDefinitions
from mcp_gateway.tasks.sessions import TaskSessions
from mcp_gateway.upstreams.catalog import Catalog

logger = logging.getLogger(__name__)

TASK_TOOL_NAMESPACE = "tasks"
_REVOKE_SECONDS = 5.0


@dataclass(frozen=True)
class ConversationParts:
    """The gateway's parts every conversation of every run uses."""

    proxy: Proxy
    catalog: Callable[[], Catalog]
    sessions: TaskSessions
    definitions: TaskDefinitions
    models: ModelClients
    redact_keys: tuple[str, ...]
    separator: str

    async def task(self, task_id: str) -> TaskDefinition | None:
        """The task as it is now, from config or ``/v1/tasks``; None once it was deleted."""
        compiled = await self.definitions.current(task_id)
        return compiled.definition if compiled is not None else None


def _parameters(schema: Mapping[str, Any] | bool) -> dict[str, Any]:
    """Function parameters must be an object schema; a task's contextSchema describes an object already."""
    if not isinstance(schema, Mapping):
        return {"type": "object", "properties": {}}
    return {"type": "object", **schema}


def task_instruction(parent: RuntimeSpec, task: TaskDefinition) -> str:
    """The sub-conversation's system prompt: the agent's instruction, then the task's own, then its output's form."""
    parts = [
        parent.instruction,
        f"You are now performing the task {task.name!r} (id {task.id!r}). The user message is the task's context as "
        "JSON. Use the tools you have; your final answer is the task's result.",
    ]
    if task.instruction:
        parts.append(task.instruction)
    if task.output_schema is not None:
        parts.append(output_prompt(task.output_schema))
    return "\n\n".join(parts)


async def add_task_tools(box: ToolBox, parts: ConversationParts, caller: Caller, spec: RuntimeSpec) -> None:
    """Every task of ``taskTools`` that still exists; one deleted since the revision was written may not run."""
    for task_id in spec.task_tools:
        task = await parts.task(task_id)
        if task is not None:
            add_task_tool(box, parts, caller, spec, task)


def add_task_tool(
    box: ToolBox, parts: ConversationParts, caller: Caller, spec: RuntimeSpec, task: TaskDefinition
) -> str:
    """Offer one task as a tool; return its function name."""
    description = f"Run the task {task.name!r} in its own task session; the arguments are its context."
    tool = f"{TASK_TOOL_NAMESPACE}{parts.separator}{task.id}"
    return box.add(tool, description, _parameters(task.context_schema), _runner(parts, caller, spec, task))


def _runner(parts: ConversationParts, caller: Caller, spec: RuntimeSpec, task: TaskDefinition) -> ToolHandler:
    """The run's identity opens the child session; the run's tag goes with it into every inner call's audit record."""
    identity = caller.identity

    async def run_task(context: dict[str, Any]) -> Outcome:
        try:
            _, session = await parts.sessions.create(identity, task.id, context)
        except GatewayError as exc:
            details = f": {json.dumps(exc.details)}" if exc.details else ""
            return failed(f"{exc.message}{details}")
        child = Caller(identity=identity, session=session, task=task, run=caller.run)
        box = ToolBox(parts.redact_keys)
        add_mcp_tools(box, parts.proxy, parts.catalog, child, None)
        child_spec = replace(spec, instruction=task_instruction(spec, task), task_tools=(), mcp_servers=(), skills=())
        conversation = Conversation(child_spec, parts.models, box, json.dumps(context, ensure_ascii=False))
        turns: list[TurnRecord] = []
        try:
            async for turn in conversation.turns():
                turns.append(turn)
        except ModelFailure as exc:
            return replace(failed(str(exc)), task_session_id=session.token_id, turns=tuple(turns))
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(_REVOKE_SECONDS):
                try:
                    await parts.sessions.revoke(session.token_id, identity.id)
                except GatewayError as exc:
                    # The session still expires by its TTL; the sub-conversation's answer is not lost for this.
                    logger.warning("task session %s of a task tool not revoked: %s", session.token_id, exc.message)
        ending = conversation.ending
        if ending is None or ending.status != "completed":
            status = ending.status if ending else "ended"
            outcome = failed(f"task {task.id!r} {status}: {ending.error if ending else ''}")
        elif task.output_schema is not None:
            checked = check_output(ending.output or "", task.output_schema)
            outcome = failed(checked.problem) if checked.problem is not None else Outcome(checked.text or "")
        else:
            outcome = Outcome(ending.output or "")
        return replace(outcome, task_session_id=session.token_id, turns=tuple(turns))

    return run_task
