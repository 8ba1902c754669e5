"""Task Agents as tools beside the upstreams': what the proxy needs of them, and one call of an agent's tool.

The proxy keeps the rules for an agent's tool exactly as for an upstream's: visibility, CEL policies (with
``request.tool.upstream`` the agents' namespace), limits and one audit record (naming the run the call started). The
toolset (``agents/mcp_tool.py``) knows only agents: which exist, and how to run one as its caller.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from mcp_gateway.core import tool_calls
from mcp_gateway.core.audit import AuditLog, RunTag
from mcp_gateway.core.callers import Caller, ClientLink, ProgressSink
from mcp_gateway.core.limits import Limiter
from mcp_gateway.core.policy import PolicyEngine
from mcp_gateway.core.visibility import Visibility
from mcp_gateway.ops.metrics import Metrics


@dataclass(frozen=True)
class AgentCall:
    """A call of an agent's tool whose run is ready (recorded, its task session open) but not yet started."""

    run: RunTag | None
    """The run it starts, for its audit record; None when the input was refused (``answer`` says why)."""
    answer: Callable[[ProgressSink | None], Awaitable[dict[str, Any]]]
    """Runs the agent to the end, telling ``progress`` of each turn; cancelling it cancels the run."""


class AgentToolset(Protocol):
    """The Task Agents as MCP tools ``agents{separator}{name}`` (``agents/mcp_tool.py``), served beside the upstreams'.

    The proxy keeps the rules: it filters their definitions by visibility, and judges (CEL policies, with
    ``request.tool.upstream`` the namespace), charges (limits) and audits a call to one exactly like a call to an
    upstream's tool. The toolset knows only agents: which exist, and how to run one as its caller.
    """

    @property
    def namespace(self) -> str: ...

    @property
    def prefix(self) -> str: ...

    async def definitions(self) -> Sequence[dict[str, Any]]:
        """Every live agent's tool, sorted by name, before visibility; the same sequence until the agents change."""
        ...

    async def runnable(self, caller: Caller, name: str) -> bool:
        """Whether the tool ``name`` names a live agent this caller may run."""
        ...

    async def prepare(self, caller: Caller, name: str, arguments: dict[str, Any]) -> AgentCall: ...


async def call_agent(
    agents: AgentToolset,
    caller: Caller,
    name: str,
    args: dict[str, Any],
    link: ClientLink,
    *,
    visibility: Visibility,
    policies: PolicyEngine,
    limiter: Limiter | None,
    audit: AuditLog,
    metrics: Metrics,
) -> dict[str, Any]:
    """Run an agent as the caller: visibility, policies, limits and audit as for any tool, then the run itself.

    The audit record names the run the call started; its latency is the whole run's.
    """
    if not visibility.allows(caller.patterns, name) or not await agents.runnable(caller, name):
        raise tool_calls.unknown_tool(name)
    upstream = agents.namespace
    decision = await tool_calls.judge(policies, limiter, caller, name, upstream, args)
    record = tool_calls.record(caller, name, upstream, args, decision)
    if not decision.allowed:
        return tool_calls.denied(audit, metrics, upstream, record, decision)
    refusal = await tool_calls.charge(limiter, audit, metrics, caller, upstream, record)
    if refusal is not None:
        raise refusal
    started = time.perf_counter()
    outcome = "ok"
    call: AgentCall | None = None
    try:
        call = await agents.prepare(caller, name, args)
        result = await call.answer(link.progress)
        if result.get("isError") is True:
            outcome = "tool_error"
        return result
    except Exception:
        outcome = "error"
        raise
    except BaseException:
        outcome = "cancelled"
        raise
    finally:
        latency_ms = round((time.perf_counter() - started) * 1000, 3)
        audit.record(record.finish(outcome=outcome, latency_ms=latency_ms, run=call.run if call else None))
        metrics.tool_calls.labels(upstream, "allow", outcome).inc()
