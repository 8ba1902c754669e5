"""Upstream MCP tools in a conversation, called the one way the gateway allows: ``Proxy.call_tool`` as the caller.

The set offered is the caller's visible tools (identity, or the task session it works under) ∩ what the grants
allow, computed once per conversation. Every call still goes through the proxy, which checks visibility again,
evaluates the CEL policies and writes the audit record, so a run can never do what its caller could not.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from mcp_gateway.agents.definitions import McpServerGrant
from mcp_gateway.agents.toolbox import Outcome, ToolBox, ToolHandler, failed
from mcp_gateway.core.proxy import Caller, Proxy
from mcp_gateway.errors import RpcError
from mcp_gateway.upstreams.catalog import Catalog

# How the proxy words a policy denial (``PolicyDecision.denial_text``).
_DENIAL_PREFIX = "Call denied"
_EMPTY_SCHEMA: Mapping[str, Any] = {"type": "object", "properties": {}}


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


def add_mcp_tools(
    box: ToolBox,
    proxy: Proxy,
    catalog: Callable[[], Catalog],
    caller: Caller,
    grants: tuple[McpServerGrant, ...] | None,
) -> None:
    """Offer the caller's visible tools; only those ``grants`` name, unless ``grants`` is None (a task's own)."""
    allowed = {(grant.upstream, tool_id) for grant in grants or () for tool_id in grant.allowed_tool_ids}
    snapshot = catalog()
    for definition in proxy.visible_tools(caller):
        entry = snapshot.tool(definition["name"])
        if entry is None or (grants is not None and (entry.upstream_name, entry.original_name) not in allowed):
            continue
        parameters = definition.get("inputSchema") or _EMPTY_SCHEMA
        box.add(entry.name, definition.get("description"), parameters, _caller_of(proxy, caller, entry.name))


def _caller_of(proxy: Proxy, caller: Caller, tool: str) -> ToolHandler:
    async def call(arguments: dict[str, Any]) -> Outcome:
        try:
            result = await proxy.call_tool(caller, {"name": tool, "arguments": arguments})
        except RpcError as exc:
            return failed(exc.message)
        text = result_text(result)
        if result.get("isError") is not True:
            return Outcome(text)
        if text.startswith(_DENIAL_PREFIX):
            return Outcome(text, "denied", "denied", text)
        return Outcome(f"Error: {text}", "allowed", "tool_error", text)

    return call
