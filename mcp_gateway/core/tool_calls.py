"""The steps of one ``tools/call``, in the order security needs: resolve → decide → record → charge → forward.

``Proxy.call_tool`` composes them in one short function; each step here takes what it needs as arguments, so each can
be tried on its own, without a server. The order is the contract: nothing is charged before the policies allowed the
call, nothing is forwarded before it is charged, and every call that got a verdict gets exactly one audit record.

The tool is resolved once per call. A 2026-07-28 request resolves it before the call runs (its ``Mcp-Param-*``
headers are checked against the resolved tool's input schema) and hands the same ``ResolvedTool`` down, so the catalog
lookup and the visibility check happen once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from mcp_types import INTERNAL_ERROR, INVALID_PARAMS

from mcp_gateway.core.audit import AuditLog, AuditRecord
from mcp_gateway.core.limits import Limiter
from mcp_gateway.core.policy import Decision, PolicyEngine, SessionUsage
from mcp_gateway.core.visibility import Visibility
from mcp_gateway.errors import TOOL_WITHHELD, RpcError, StoreUnavailable
from mcp_gateway.ops import tracing
from mcp_gateway.ops.metrics import Metrics
from mcp_gateway.upstreams.catalog import Catalog, Entry
from mcp_gateway.upstreams.connection import UpstreamConnection

if TYPE_CHECKING:
    from mcp_gateway.core.callers import Caller


@dataclass(frozen=True)
class ResolvedTool:
    """A tool the caller may see, found in the catalog snapshot the call started with: where the call goes."""

    entry: Entry

    @property
    def name(self) -> str:
        """As the client names it."""
        return self.entry.name

    @property
    def upstream(self) -> str:
        return self.entry.upstream_name

    @property
    def original_name(self) -> str:
        """As its upstream names it."""
        return self.entry.original_name

    @property
    def connection(self) -> UpstreamConnection:
        return self.entry.connection

    @property
    def param_header_schema(self) -> Any:
        """The input schema when it declares ``x-mcp-header`` arguments (``Mcp-Param-*`` headers), else None."""
        return self.entry.param_header_schema


def requested_tool(params: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The tool's name and arguments from ``tools/call`` params; a malformed request is the client's mistake."""
    name = params.get("name")
    if not isinstance(name, str) or not name:
        raise RpcError(INVALID_PARAMS, "params.name must be a non-empty string")
    arguments = params.get("arguments") or {}
    if not isinstance(arguments, dict):
        raise RpcError(INVALID_PARAMS, "params.arguments must be an object")
    return name, cast(dict[str, Any], arguments)


def find(catalog: Catalog, visibility: Visibility, patterns: tuple[str, ...] | None, name: str) -> ResolvedTool | None:
    """The tool ``name`` if it exists and the caller may see it, else None (``not_found`` says which answer)."""
    entry = catalog.tool(name)
    if entry is None or not visibility.allows(patterns, name):
        return None
    return ResolvedTool(entry)


def resolve(catalog: Catalog, visibility: Visibility, patterns: tuple[str, ...] | None, name: str) -> ResolvedTool:
    """Step 1: the tool ``name`` as the caller may see it; hidden, missing and withheld tools raise."""
    tool = find(catalog, visibility, patterns, name)
    if tool is None:
        raise not_found(catalog, name, visible=visibility.allows(patterns, name))
    return tool


def unknown_tool(name: str) -> RpcError:
    return RpcError(INVALID_PARAMS, f"Unknown tool: {name}")


def not_found(catalog: Catalog, name: str, *, visible: bool) -> RpcError:
    """The answer for a tool that did not resolve.

    What the caller could not see, even if its upstream were up, answers exactly like what does not exist. A visible
    name is withheld (-32004: its definition changed) or belongs to a configured upstream that has not connected yet
    (whose last error stays in the operator's log: it can name internal hosts, paths or commands), else unknown.
    """
    if not visible:
        return unknown_tool(name)
    withheld = catalog.withheld(name)
    if withheld is not None:
        message = f"Tool {name} is withheld: its definition changed upstream and awaits an admin's approval"
        return RpcError(TOOL_WITHHELD, message, {"tool": name, "upstream": withheld.upstream_name})
    connection = catalog.unconnected_upstream(name)
    if connection is None:
        return unknown_tool(name)
    message = f"upstream {connection.name!r} is not connected"
    return RpcError(INTERNAL_ERROR, message, {"upstream": connection.name})


async def judge(
    policies: PolicyEngine, limiter: Limiter | None, caller: Caller, name: str, upstream: str, args: dict[str, Any]
) -> Decision:
    """The policies' verdict on a tool call; their ``session`` (the session's call counts) is read from the store
    only when an applicable policy reads it, and a store that cannot answer denies."""
    usage: SessionUsage | None = None
    if caller.session is not None and limiter is not None and policies.reads_session(name):
        try:
            usage = await limiter.usage(caller.session)
        except StoreUnavailable:
            return Decision(allowed=False, reason="the task session's call counts could not be read from the store")
    return policies.evaluate(
        identity=caller.identity,
        task=caller.task_context(),
        tool_name=name,
        upstream=upstream,
        args=args,
        session=usage,
    )


async def decide(
    policies: PolicyEngine, limiter: Limiter | None, caller: Caller, tool: ResolvedTool, args: dict[str, Any]
) -> Decision:
    """Step 2: ``judge`` inside the ``policy`` span (when the request is traced), which names the policies."""
    with tracing.span("policy") as span:
        decision = await judge(policies, limiter, caller, tool.name, tool.upstream, args)
        if span.is_recording():
            names = (policy.name for policy in policies.applicable(tool.name))
            span.set_attributes(tracing.policy_attributes(names, decision.allowed, decision.policy))
    return decision


def record(caller: Caller, name: str, upstream: str, args: Mapping[str, Any], decision: Decision) -> AuditRecord:
    """Step 3: the call's audit record, stamped at decision time; every path below writes it exactly once."""
    return AuditRecord.begin(
        identity=caller.identity.id,
        task_session_id=caller.session.token_id if caller.session else None,
        task_name=caller.task.name if caller.task else None,
        tool=name,
        upstream=upstream,
        args=args,
        decision=decision,
        run=caller.run,
    )


def denied(audit: AuditLog, metrics: Metrics, upstream: str, record: AuditRecord, decision: Decision) -> dict[str, Any]:
    """A call the policies denied: counted, audited, and answered with an ``isError`` result the model can read."""
    metrics.tool_calls.labels(upstream, "deny", "denied").inc()
    metrics.policy_denied(decision.policy)
    audit.record(record.finish(outcome="denied", latency_ms=None))
    return {"content": [{"type": "text", "text": decision.denial_text()}], "isError": True}


async def charge(
    limiter: Limiter | None, audit: AuditLog, metrics: Metrics, caller: Caller, upstream: str, record: AuditRecord
) -> RpcError | None:
    """Step 4: charge the allowed call to the limits and budgets; the error to answer when they refuse (counted and
    audited here), else None. Charged last, so only a call about to be forwarded spends a rate limit's room or a
    budget's unit."""
    if limiter is None:
        return None
    refusal = await limiter.charge_call(caller.identity, caller.session, caller.task, record.tool, upstream)
    if refusal is None:
        return None
    metrics.tool_calls.labels(upstream, "deny", refusal.outcome).inc()
    refused = dataclasses.replace(record, decision="deny", reason=refusal.message)
    audit.record(refused.finish(outcome=refusal.outcome, latency_ms=None))
    return refusal.rpc_error()
