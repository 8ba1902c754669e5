"""The tools one run may offer its model, and the one way it calls them: ``Proxy.call_tool`` as the caller.

The set is the caller's visible tools (identity, or the run's task session) ∩ the revision's ``mcpServers`` grants,
computed once when the run starts. Every call still goes through the proxy, which checks visibility again,
evaluates the CEL policies and writes the audit record, so a run can never do what its caller could not. A
denial or a failure becomes the tool's error result for the model, which may recover from it.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from mcp_gateway.agents.definitions import McpServerGrant
from mcp_gateway.agents.records import ToolCallRecord
from mcp_gateway.audit import redact
from mcp_gateway.errors import RpcError
from mcp_gateway.proxy import Caller, Proxy
from mcp_gateway.upstreams.catalog import Catalog

# OpenAI function names: ^[a-zA-Z0-9_-]{1,64}$.
_FUNCTION_NAME_CHARS = re.compile(r"[^a-zA-Z0-9_-]")
_MAX_FUNCTION_NAME = 64
# How the proxy words a policy denial (``PolicyDecision.denial_text``).
_DENIAL_PREFIX = "Call denied"


@dataclass(frozen=True)
class ToolAnswer:
    """What goes back to the model for one tool call, and what the run record keeps of it."""

    text: str
    record: ToolCallRecord


def function_name(tool: str, taken: set[str]) -> str:
    """A name the chat-completions API accepts, unique within one run."""
    base = _FUNCTION_NAME_CHARS.sub("_", tool)[:_MAX_FUNCTION_NAME]
    name, n = base, 1
    while name in taken:
        n += 1
        suffix = f"_{n}"
        name = base[: _MAX_FUNCTION_NAME - len(suffix)] + suffix
    taken.add(name)
    return name


def result_text(result: Mapping[str, Any]) -> str:
    """An MCP tool result as the text a chat model reads."""
    parts: list[str] = []
    for block in result.get("content") or ():
        if isinstance(block, dict) and block.get("type") == "text":
            parts.append(str(block.get("text", "")))
        elif isinstance(block, dict):
            parts.append(f"[{block.get('type', 'content')} omitted]")
    if not parts and result.get("structuredContent") is not None:
        parts.append(json.dumps(result["structuredContent"], ensure_ascii=False))
    return "\n".join(parts)


class ToolBox:
    def __init__(
        self,
        proxy: Proxy,
        catalog: Callable[[], Catalog],
        caller: Caller,
        grants: tuple[McpServerGrant, ...],
        redact_keys: tuple[str, ...],
    ) -> None:
        self._proxy = proxy
        self._caller = caller
        self._redact_keys = redact_keys
        allowed = {(grant.upstream, tool_id) for grant in grants for tool_id in grant.allowed_tool_ids}
        snapshot = catalog()
        taken: set[str] = set()
        self._tools: dict[str, str] = {}
        self.definitions: list[dict[str, Any]] = []
        for definition in proxy.visible_tools(caller):
            entry = snapshot.tool(definition["name"])
            if entry is None or (entry.upstream_name, entry.original_name) not in allowed:
                continue
            name = function_name(entry.name, taken)
            self._tools[name] = entry.name
            function: dict[str, Any] = {
                "name": name,
                "parameters": definition.get("inputSchema") or {"type": "object", "properties": {}},
            }
            if definition.get("description"):
                function["description"] = definition["description"]
            self.definitions.append({"type": "function", "function": function})

    async def call(self, call_id: str, function: str, raw_arguments: str) -> ToolAnswer:
        started = time.perf_counter()
        tool = self._tools.get(function)
        arguments, problem = _parse_arguments(raw_arguments)
        recorded = redact(arguments, self._redact_keys)

        def answer(text: str, decision: Any, outcome: str, error: str | None = None) -> ToolAnswer:
            latency = round((time.perf_counter() - started) * 1000, 3)
            record = ToolCallRecord(call_id, tool or function, recorded, decision, outcome, latency, error)
            return ToolAnswer(text, record)

        if tool is None:
            message = f"Unknown tool: {function}"
            return answer(f"Error: {message}", "unknown_tool", "error", message)
        if problem is not None:
            return answer(f"Error: {problem}", "allowed", "error", problem)
        try:
            result = await self._proxy.call_tool(self._caller, {"name": tool, "arguments": arguments})
        except RpcError as exc:
            return answer(f"Error: {exc.message}", "allowed", "error", exc.message)
        text = result_text(result)
        if result.get("isError") is True:
            if text.startswith(_DENIAL_PREFIX):
                return answer(text, "denied", "denied", text)
            return answer(f"Error: {text}", "allowed", "tool_error", text)
        return answer(text, "allowed", "ok")


def _parse_arguments(raw: str) -> tuple[dict[str, Any], str | None]:
    try:
        value = json.loads(raw or "{}")
    except ValueError as exc:
        return {}, f"the tool arguments are not valid JSON: {exc}"
    if not isinstance(value, dict):
        return {}, "the tool arguments must be a JSON object"
    return cast(dict[str, Any], value), None
