"""The agentic loop: ask the model, run the tools it asks for, repeat until it answers or the turns run out.

It yields each finished turn so the caller can record progress and stop the run between turns (cancellation
asked on another replica); it never touches the store itself. The instruction, with the revision's skills appended
in order, is the system message; the memory strategy decides what of the rest is sent.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

from mcp_gateway.agents.definitions import RuntimeSpec
from mcp_gateway.agents.memory import trimmed
from mcp_gateway.agents.models import Completion, ModelClients
from mcp_gateway.agents.records import RunStatus, TurnRecord
from mcp_gateway.agents.toolbox import ToolBox
from mcp_gateway.agents.validation import MAX_TURNS


@dataclass(frozen=True)
class Ending:
    status: RunStatus
    output: str | None = None
    error: str | None = None


def system_prompt(spec: RuntimeSpec) -> str:
    parts = [spec.instruction]
    for skill in spec.skills:
        heading = f"## Skill: {skill.name}"
        parts.append("\n".join(p for p in (heading, skill.description, skill.instruction) if p))
    return "\n\n".join(parts)


def turn_record(number: int, completion: Completion) -> TurnRecord:
    """A model call as the run records it (tool calls are added once they were made)."""
    return TurnRecord(
        number=number,
        model=completion.model_id,
        content=completion.content,
        finish_reason=completion.finish_reason,
        latency_ms=completion.latency_ms,
        prompt_tokens=completion.prompt_tokens,
        completion_tokens=completion.completion_tokens,
        fallback_from=completion.fallback_from,
        fallback_reason=completion.fallback_reason,
    )


class Conversation:
    def __init__(self, spec: RuntimeSpec, models: ModelClients, tools: ToolBox, user_input: str) -> None:
        self._spec = spec
        self._models = models
        self._tools = tools
        self._messages: list[Mapping[str, Any]] = [
            {"role": "system", "content": system_prompt(spec)},
            {"role": "user", "content": user_input},
        ]
        self.ending: Ending | None = None

    async def turns(self) -> AsyncIterator[TurnRecord]:
        """Each turn once it is complete; ``ending`` is set when the iteration stops by itself."""
        limit = self._spec.max_turns or MAX_TURNS
        for number in range(1, limit + 1):
            completion = await self._models.complete(
                self._spec.llm_model_id,
                self._spec.fallback_llm_model_id,
                trimmed(self._messages, self._spec.memory_strategy, self._spec.memory_config),
                self._tools.definitions,
            )
            self._messages.append(completion.message)
            turn = turn_record(number, completion)
            if not completion.tool_calls:
                self.ending = Ending("completed", output=completion.content or "")
                yield turn
                return
            if number == limit:
                # No turn is left to read the results: the calls are recorded as asked, not made.
                self.ending = Ending(
                    "max_turns_exceeded", error=f"the model still asked for tools after {limit} turns (maxTurns)"
                )
                yield turn
                return
            records = []
            for call_id, function, arguments in completion.tool_calls:
                answer = await self._tools.call(call_id, function, arguments)
                records.append(answer.record)
                self._messages.append({"role": "tool", "tool_call_id": call_id, "content": answer.text})
            yield replace(turn, tool_calls=tuple(records))
