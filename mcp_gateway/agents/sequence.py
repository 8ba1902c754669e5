"""Sequential mode: the revision's task tools run once each, in order, the model writing each one's context.

For each task the model is asked, with the run's input and the previous tasks' outputs in the conversation, to call
that task's tool (``tool_choice`` forces the function); the task then runs exactly as a task tool does in agentic
mode. A context the task refuses goes back to the model as the tool's error result, and it may try again while
turns remain. The last task's output is the run's output. Direct MCP tools are not offered in this mode.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import replace
from typing import Any

from mcp_gateway.agents.conversation import Ending, system_prompt, turn_record
from mcp_gateway.agents.definitions import RuntimeSpec
from mcp_gateway.agents.memory import trimmed
from mcp_gateway.agents.records import ToolCallRecord, TurnRecord
from mcp_gateway.agents.task_tools import ConversationParts, add_task_tool
from mcp_gateway.agents.toolbox import ToolBox
from mcp_gateway.agents.validation import MAX_TURNS
from mcp_gateway.core.proxy import Caller


class Sequence:
    def __init__(self, spec: RuntimeSpec, parts: ConversationParts, caller: Caller, user_input: str) -> None:
        self._spec = spec
        self._parts = parts
        self._caller = caller
        self._messages: list[Mapping[str, Any]] = [
            {"role": "system", "content": system_prompt(spec)},
            {"role": "user", "content": user_input},
        ]
        self._turn = 0
        self.ending: Ending | None = None

    async def turns(self) -> AsyncIterator[TurnRecord]:
        output: str | None = None
        for task_id in self._spec.task_tools:
            task = await self._parts.task(task_id)
            if task is None:
                self.ending = Ending("failed", error=f"task {task_id!r} no longer exists")
                return
            box = ToolBox(self._parts.redact_keys)
            function = add_task_tool(box, self._parts, self._caller, self._spec, task)
            output = None
            while output is None:
                if self._turn == (self._spec.max_turns or MAX_TURNS):
                    problem = f"task {task_id!r} had no output after {self._turn} turns (maxTurns)"
                    self.ending = Ending("max_turns_exceeded", error=problem)
                    return
                turn, output = await self._step(box, function)
                yield turn
                if self.ending is not None:
                    return
        self.ending = Ending("completed", output=output or "")

    async def _step(self, box: ToolBox, function: str) -> tuple[TurnRecord, str | None]:
        """One model call that should call ``function``; the task's output if it ran to completion."""
        self._turn += 1
        spec = self._spec
        completion = await self._parts.models.complete(
            spec.llm_model_id,
            spec.fallback_llm_model_id,
            trimmed(self._messages, spec.memory_strategy, spec.memory_config),
            box.definitions,
            force=function,
        )
        self._messages.append(completion.message)
        turn = turn_record(self._turn, completion)
        if not completion.tool_calls:
            self.ending = Ending("failed", error=f"the model did not call {function!r} in sequential mode")
            return turn, None
        output: str | None = None
        records: list[ToolCallRecord] = []
        for call_id, name, arguments in completion.tool_calls:
            if output is None and name == function:
                answer = await box.call(call_id, name, arguments)
                records.append(answer.record)
                text = answer.text
                if answer.record.outcome == "ok":
                    output = answer.text
            else:
                # Every call needs an answer for the conversation to stay valid; only one task runs per step.
                text = f"Error: only {function!r}, once, may be called now"
            self._messages.append({"role": "tool", "tool_call_id": call_id, "content": text})
        return replace(turn, tool_calls=tuple(records)), output
