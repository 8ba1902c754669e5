"""The MCP methods the gateway answers, independent of protocol era and HTTP: the facade the method table calls.

Each handler takes the authenticated caller and the request params and returns the raw result dict; the edge adapts
it to the era (``resultType``, cache hints) and frames it. This is where visibility, policy and audit meet the
upstream catalog: a hidden tool, resource or prompt is reported exactly like a missing one (the answer never depends
on whether it exists), and a call, read or get is forwarded only after every applicable policy allowed it.

The work lives in one module per concern, and this class only holds what they share and composes them:
``core/tool_calls.py`` (the ``tools/call`` steps), ``core/agent_calls.py`` (Task Agents as tools),
``core/resources_prompts.py`` (``resources/read``, ``prompts/get``, ``completion/complete``),
``core/forwarding.py`` (the forward step all of them share), ``core/visible_lists.py`` (the filtered lists) and
``core/callers.py`` (``Caller``, ``ClientLink``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from mcp_types import INVALID_PARAMS

from mcp_gateway.core import agent_calls, resources_prompts, tool_calls
from mcp_gateway.core.agent_calls import AgentCall, AgentToolset
from mcp_gateway.core.audit import AuditLog
from mcp_gateway.core.callers import NO_LINK, Caller, ClientLink, ProgressSink
from mcp_gateway.core.forwarding import Forwarder
from mcp_gateway.core.input_bridge import InputBridge
from mcp_gateway.core.limits import Limiter
from mcp_gateway.core.policy import PolicyEngine
from mcp_gateway.core.resources_prompts import unknown_resource
from mcp_gateway.core.tool_calls import ResolvedTool
from mcp_gateway.core.visibility import Visibility
from mcp_gateway.core.visible_lists import VisibleLists
from mcp_gateway.errors import RpcError
from mcp_gateway.ops.metrics import Metrics
from mcp_gateway.upstreams.catalog import Catalog
from mcp_gateway.upstreams.jsonrpc import forwarded_params
from mcp_gateway.upstreams.resource_uris import exposed_result

__all__ = [
    "NO_LINK",
    "AgentCall",
    "AgentToolset",
    "Caller",
    "ClientLink",
    "ProgressSink",
    "Proxy",
    "unknown_resource",
]


class Proxy:
    def __init__(
        self,
        catalog: Callable[[], Catalog],
        policies: PolicyEngine,
        audit: AuditLog,
        metrics: Metrics,
        bridge: InputBridge | None = None,
        limiter: Limiter | None = None,
    ) -> None:
        self._catalog = catalog
        self._limiter = limiter
        self._policies = policies
        self._audit = audit
        self._metrics = metrics
        self._visibility = Visibility()
        self._lists = VisibleLists(catalog, self._visibility)
        self._forwarder = Forwarder(audit, metrics, bridge)
        self._agents: AgentToolset | None = None

    @property
    def visibility(self) -> Visibility:
        return self._visibility

    def serve_agents(self, agents: AgentToolset | None) -> None:
        """List and call the Task Agents' tools from now on (they start after the proxy); None: stop."""
        self._agents = agents

    def set_policies(self, policies: PolicyEngine) -> None:
        """A config reload: every decision from now on is the new engine's (compiled and checked beforehand)."""
        self._policies = policies

    def visible_tools(self, caller: Caller) -> list[dict[str, Any]]:
        """The caller's filtered tool list (``VisibleLists.tools``): the same object until the catalog changes."""
        return self._lists.tools(caller)

    def find_tool(self, caller: Caller, params: Mapping[str, Any]) -> ResolvedTool | None:
        """The upstream tool a ``tools/call`` with ``params`` names, resolved once for the whole call (see
        ``tool_calls``); None when it does not resolve (``call_tool`` then gives the answer) or names an agent."""
        name = params.get("name")
        if not isinstance(name, str) or (self._agents is not None and name.startswith(self._agents.prefix)):
            return None
        return tool_calls.find(self._catalog(), self._visibility, caller.patterns, name)

    def resource_visible(self, caller: Caller, uri: str) -> bool:
        """Whether ``uri`` (or the ``uriTemplate`` text of a template) matches the caller's ``allowedResources``."""
        return resources_prompts.resource_visible(self._visibility, caller, uri)

    async def list_tools(self, caller: Caller, params: Mapping[str, Any]) -> dict[str, Any]:
        self._reject_cursor(params)
        tools = self.visible_tools(caller)
        if self._agents is not None:
            tools = self._lists.with_agent_tools(caller, tools, await self._agents.definitions())
        return {"tools": tools}

    async def call_tool(
        self,
        caller: Caller,
        params: Mapping[str, Any],
        link: ClientLink = NO_LINK,
        tool: ResolvedTool | None = None,
    ) -> dict[str, Any]:
        """One tool call, in the security order (``tool_calls``): resolve → decide → record → charge → forward.

        ``tool``: the tool ``find_tool`` resolved from these ``params`` earlier in the same request.
        """
        name, args = tool_calls.requested_tool(params)
        if self._agents is not None and name.startswith(self._agents.prefix):
            return await agent_calls.call_agent(
                self._agents,
                caller,
                name,
                args,
                link,
                visibility=self._visibility,
                policies=self._policies,
                limiter=self._limiter,
                audit=self._audit,
                metrics=self._metrics,
            )
        tool = tool or tool_calls.resolve(self._catalog(), self._visibility, caller.patterns, name)
        decision = await tool_calls.decide(self._policies, self._limiter, caller, tool, args)
        record = tool_calls.record(caller, name, tool.upstream, args, decision)
        if not decision.allowed:
            self._forwarder.abandon(caller, params)
            return tool_calls.denied(self._audit, self._metrics, tool.upstream, record, decision)
        refusal = await tool_calls.charge(self._limiter, self._audit, self._metrics, caller, tool.upstream, record)
        if refusal is not None:
            self._forwarder.abandon(caller, params)
            raise refusal
        forwarded = forwarded_params(params, name=tool.original_name)
        result = await self._forwarder.forward_recorded(caller, tool.connection, forwarded, link, record)
        return exposed_result(tool.connection, "tools/call", result)

    async def list_resources(self, caller: Caller, params: Mapping[str, Any]) -> dict[str, Any]:
        self._reject_cursor(params)
        resources = self._lists.listed(
            "resources", caller.resource_patterns, Catalog.resource_entries, lambda item: item.get("uri")
        )
        return {"resources": resources}

    async def list_resource_templates(self, caller: Caller, params: Mapping[str, Any]) -> dict[str, Any]:
        self._reject_cursor(params)
        templates = self._lists.listed(
            "templates", caller.resource_patterns, Catalog.resource_template_entries, lambda t: t.get("uriTemplate")
        )
        return {"resourceTemplates": templates}

    async def read_resource(
        self, caller: Caller, params: Mapping[str, Any], link: ClientLink = NO_LINK
    ) -> dict[str, Any]:
        return await resources_prompts.read_resource(
            self._catalog(), self._visibility, self._policies, self._forwarder, caller, params, link
        )

    async def list_prompts(self, caller: Caller, params: Mapping[str, Any]) -> dict[str, Any]:
        self._reject_cursor(params)
        prompts = self._lists.listed(
            "prompts", caller.prompt_patterns, Catalog.prompt_entries, lambda item: item.get("name")
        )
        return {"prompts": prompts}

    async def get_prompt(self, caller: Caller, params: Mapping[str, Any], link: ClientLink = NO_LINK) -> dict[str, Any]:
        return await resources_prompts.get_prompt(
            self._catalog(), self._visibility, self._policies, self._forwarder, caller, params, link
        )

    async def complete(self, caller: Caller, params: Mapping[str, Any]) -> dict[str, Any]:
        """A completion is judged like a use of what it completes (``resources_prompts.complete``)."""
        return await resources_prompts.complete(
            self._catalog(), self._visibility, self._policies, self._forwarder, caller, params
        )

    @staticmethod
    def _reject_cursor(params: Mapping[str, Any]) -> None:
        """The gateway returns merged lists whole, so it never hands out a cursor; any cursor is not ours."""
        if params.get("cursor") is not None:
            raise RpcError(INVALID_PARAMS, "Invalid cursor: the gateway returns complete lists")
