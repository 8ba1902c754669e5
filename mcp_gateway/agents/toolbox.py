"""The tools one conversation offers its model, by function name, and the record each call leaves.

Two kinds fill it: the upstream MCP tools a run may call directly (``mcp_tools.py``) and the tasks it may run as
tools (``task_tools.py``). Whatever the kind, a failure becomes the tool's error result for the model, which may
recover from it, and every call is recorded with its arguments redacted.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from mcp_gateway.agents.records import Decision, ToolCallRecord, TurnRecord
from mcp_gateway.config import AuditConfig
from mcp_gateway.core.audit_args import ArgumentFilter

# OpenAI function names: ^[a-zA-Z0-9_-]{1,64}$.
_FUNCTION_NAME_CHARS = re.compile(r"[^a-zA-Z0-9_-]")
_MAX_FUNCTION_NAME = 64


@dataclass(frozen=True)
class Outcome:
    """What a tool did: the text the model reads, and what the run record keeps."""

    text: str
    decision: Decision = "allowed"
    # "ok", "tool_error" (the tool answered isError), "denied", "error" (the call itself failed)
    outcome: str = "ok"
    error: str | None = None
    task_session_id: str | None = None
    turns: tuple[TurnRecord, ...] = ()


def failed(message: str, decision: Decision = "allowed") -> Outcome:
    return Outcome(f"Error: {message}", decision, "error", message)


ToolHandler = Callable[[dict[str, Any]], Awaitable[Outcome]]


@dataclass(frozen=True)
class ToolAnswer:
    text: str
    record: ToolCallRecord


class ToolBox:
    def __init__(self, redact_keys: tuple[str, ...]) -> None:
        # Run records hold tool arguments as audit records do: redacted and bounded the same way.
        bounds = AuditConfig()
        self._arguments = ArgumentFilter(redact_keys, bounds.max_arg_bytes, bounds.max_record_bytes)
        self._taken: set[str] = set()
        self._tools: dict[str, tuple[str, ToolHandler]] = {}
        self.definitions: list[dict[str, Any]] = []

    def add(self, tool: str, description: str | None, parameters: Mapping[str, Any], handler: ToolHandler) -> str:
        """Offer ``tool`` (its gateway name) to the model under a function name the API accepts; return that name."""
        name = _function_name(tool, self._taken)
        self._tools[name] = (tool, handler)
        function: dict[str, Any] = {"name": name, "parameters": dict(parameters)}
        if description:
            function["description"] = description
        self.definitions.append({"type": "function", "function": function})
        return name

    async def call(self, call_id: str, function: str, raw_arguments: str) -> ToolAnswer:
        started = time.perf_counter()
        tool, handler = self._tools.get(function, (function, None))
        arguments, problem = _parse_arguments(raw_arguments)
        if handler is None:
            outcome = failed(f"Unknown tool: {function}", "unknown_tool")
        elif problem is not None:
            outcome = failed(problem)
        else:
            outcome = await handler(arguments)
        record = ToolCallRecord(
            call_id=call_id,
            tool=tool,
            arguments=self._arguments(arguments),
            decision=outcome.decision,
            outcome=outcome.outcome,
            latency_ms=round((time.perf_counter() - started) * 1000, 3),
            error=outcome.error,
            task_session_id=outcome.task_session_id,
            turns=outcome.turns,
        )
        return ToolAnswer(outcome.text, record)


def _function_name(tool: str, taken: set[str]) -> str:
    """A name the chat-completions API accepts, unique within one conversation."""
    base = _FUNCTION_NAME_CHARS.sub("_", tool)[:_MAX_FUNCTION_NAME]
    name, n = base, 1
    while name in taken:
        n += 1
        suffix = f"_{n}"
        name = base[: _MAX_FUNCTION_NAME - len(suffix)] + suffix
    taken.add(name)
    return name


def _parse_arguments(raw: str) -> tuple[dict[str, Any], str | None]:
    try:
        value = json.loads(raw or "{}")
    except ValueError as exc:
        return {}, f"the tool arguments are not valid JSON: {exc}"
    if not isinstance(value, dict):
        return {}, "the tool arguments must be a JSON object"
    return cast(dict[str, Any], value), None
