"""What a run did: its status, every model turn and every tool call, as frozen values and camelCase JSON.

A record is rewritten after each turn, so ``GET /v1/runs/{id}`` on any replica shows a run's progress. Tool
arguments are redacted with the audit's ``redactKeys`` before they enter a record: a run record is readable by more
people than the audit stream.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from mcp_gateway.agents.definitions import parse_timestamp, timestamp

RunStatus = Literal["running", "completed", "failed", "cancelled", "max_turns_exceeded"]
Decision = Literal["allowed", "denied", "unknown_tool"]
FINISHED: frozenset[str] = frozenset({"completed", "failed", "cancelled", "max_turns_exceeded"})


@dataclass(frozen=True)
class ToolCallRecord:
    call_id: str
    tool: str
    arguments: Mapping[str, Any]
    decision: Decision
    # "ok", "tool_error" (the tool answered isError), "denied", "error" (the call itself failed)
    outcome: str
    latency_ms: float
    error: str | None = None
    # A task tool: the child task session it ran under, and the turns of its sub-conversation.
    task_session_id: str | None = None
    turns: tuple[TurnRecord, ...] = ()

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {
            "id": self.call_id,
            "tool": self.tool,
            "arguments": dict(self.arguments),
            "decision": self.decision,
            "outcome": self.outcome,
            "latencyMs": self.latency_ms,
            "error": self.error,
        }
        if self.task_session_id is not None:
            wire["taskSessionId"] = self.task_session_id
            wire["turns"] = [turn.to_wire() for turn in self.turns]
        return wire

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> ToolCallRecord:
        return cls(
            call_id=data["id"],
            tool=data["tool"],
            arguments=data["arguments"],
            decision=data["decision"],
            outcome=data["outcome"],
            latency_ms=data["latencyMs"],
            error=data.get("error"),
            task_session_id=data.get("taskSessionId"),
            turns=tuple(TurnRecord.from_wire(turn) for turn in data.get("turns", ())),
        )


@dataclass(frozen=True)
class TurnRecord:
    """One model call and the tool calls it asked for."""

    number: int
    model: str
    content: str | None
    finish_reason: str | None
    latency_ms: float
    prompt_tokens: int = 0
    completion_tokens: int = 0
    tool_calls: tuple[ToolCallRecord, ...] = ()
    # Set when the primary model failed and ``model`` is the fallback.
    fallback_from: str | None = None
    fallback_reason: str | None = None

    def to_wire(self) -> dict[str, Any]:
        return {
            "turn": self.number,
            "model": self.model,
            "content": self.content,
            "finishReason": self.finish_reason,
            "latencyMs": self.latency_ms,
            "usage": {"promptTokens": self.prompt_tokens, "completionTokens": self.completion_tokens},
            "toolCalls": [call.to_wire() for call in self.tool_calls],
            "fallbackFrom": self.fallback_from,
            "fallbackReason": self.fallback_reason,
        }

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> TurnRecord:
        return cls(
            number=data["turn"],
            model=data["model"],
            content=data.get("content"),
            finish_reason=data.get("finishReason"),
            latency_ms=data["latencyMs"],
            prompt_tokens=data["usage"]["promptTokens"],
            completion_tokens=data["usage"]["completionTokens"],
            tool_calls=tuple(ToolCallRecord.from_wire(call) for call in data.get("toolCalls", ())),
            fallback_from=data.get("fallbackFrom"),
            fallback_reason=data.get("fallbackReason"),
        )


@dataclass(frozen=True)
class Usage:
    """Tokens one model spent in a run, as the endpoint reported them."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def add(self, prompt_tokens: int, completion_tokens: int) -> Usage:
        return Usage(self.calls + 1, self.prompt_tokens + prompt_tokens, self.completion_tokens + completion_tokens)

    def plus(self, turn: TurnRecord) -> Usage:
        return self.add(turn.prompt_tokens, turn.completion_tokens)

    def to_wire(self) -> dict[str, int]:
        return {
            "calls": self.calls,
            "promptTokens": self.prompt_tokens,
            "completionTokens": self.completion_tokens,
            "totalTokens": self.prompt_tokens + self.completion_tokens,
        }


def model_calls(turn: TurnRecord) -> list[TurnRecord]:
    """The turn and every turn of the task tools it ran, each one model call."""
    calls = [turn]
    for call in turn.tool_calls:
        for inner in call.turns:
            calls.extend(model_calls(inner))
    return calls


@dataclass(frozen=True)
class RunRecord:
    id: str
    agent_id: str
    agent_name: str
    revision: int
    identity: str
    # Copied from the agent when the run starts: who may read the run never depends on a later edit.
    visibility: str
    status: RunStatus
    input: str
    started_at: datetime
    task_id: str | None = None
    task_session_id: str | None = None
    output: str | None = None
    turns: tuple[TurnRecord, ...] = ()
    usage: Mapping[str, Usage] = field(default_factory=dict)
    ended_at: datetime | None = None
    error: str | None = None

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    def readable_by(self, identity_id: str, is_admin: bool) -> bool:
        return self.visibility == "all" or is_admin or identity_id == self.identity

    def to_wire(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "agentId": self.agent_id,
            "agentName": self.agent_name,
            "revision": self.revision,
            "identity": self.identity,
            "visibility": self.visibility,
            "status": self.status,
            "input": self.input,
            "taskId": self.task_id,
            "taskSessionId": self.task_session_id,
            "output": self.output,
            "turns": [turn.to_wire() for turn in self.turns],
            "usage": {model: usage.to_wire() for model, usage in self.usage.items()},
            "startedAt": timestamp(self.started_at),
            "endedAt": timestamp(self.ended_at) if self.ended_at else None,
            "error": self.error,
        }

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> RunRecord:
        return cls(
            id=data["id"],
            agent_id=data["agentId"],
            agent_name=data["agentName"],
            revision=data["revision"],
            identity=data["identity"],
            visibility=data["visibility"],
            status=data["status"],
            input=data["input"],
            task_id=data.get("taskId"),
            task_session_id=data.get("taskSessionId"),
            output=data.get("output"),
            turns=tuple(TurnRecord.from_wire(turn) for turn in data.get("turns", ())),
            usage={
                model: Usage(u["calls"], u["promptTokens"], u["completionTokens"])
                for model, u in data.get("usage", {}).items()
            },
            started_at=parse_timestamp(data["startedAt"]),
            ended_at=parse_timestamp(data["endedAt"]) if data.get("endedAt") else None,
            error=data.get("error"),
        )
