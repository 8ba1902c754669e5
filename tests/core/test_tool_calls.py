"""The steps of one ``tools/call`` (``tool_calls.py``) on their own, and their order in ``Proxy.call_tool``.

No upstream runs here but in the last test: the catalog snapshot is built from connections that were never started,
the policies, audit log, metrics and limiter are the real ones over small configs and a memory store. A forwarded call
therefore meets an upstream that is not there, which is exactly what shows that it was forwarded.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from mcp_types import INTERNAL_ERROR, INVALID_PARAMS

from mcp_gateway.config import AuditConfig, Identity, PolicyConfig, parse_config
from mcp_gateway.core import tool_calls
from mcp_gateway.core.audit import AuditLog
from mcp_gateway.core.limits import Limiter
from mcp_gateway.core.policy import Decision, PolicyEngine
from mcp_gateway.core.proxy import Caller, Proxy
from mcp_gateway.core.visibility import Visibility
from mcp_gateway.errors import TOOL_WITHHELD, RpcError
from mcp_gateway.ops.metrics import Metrics
from mcp_gateway.store import MemoryStore
from mcp_gateway.upstreams.catalog import Catalog, Entry, build_catalog
from mcp_gateway.upstreams.connection import UpstreamConnection
from tests.upstreams.test_upstreams import demo_stdio, running

DEMO = UpstreamConnection(demo_stdio("demo"))
OFFLINE = UpstreamConnection(demo_stdio("offline"))
REGION_SCHEMA = {
    "type": "object",
    "properties": {"region": {"type": "string", "x-mcp-header": "Region"}},
    "required": ["region"],
}


def entry(name: str, input_schema: dict[str, Any] | None = None) -> Entry:
    definition = {"name": f"demo__{name}", "inputSchema": input_schema or {"type": "object"}}
    return Entry(name=f"demo__{name}", original_name=name, connection=DEMO, definition=definition)


CATALOG = Catalog(
    version=7,
    _tools={e.name: e for e in (entry("echo"), entry("region_header", REGION_SCHEMA))},
    _withheld={"demo__changed": entry("changed")},
    _unlisted=(("offline__", OFFLINE),),
)
EVERYONE = Caller(identity=Identity(id="alice", name="alice"))
ONLY_ECHO = Caller(identity=Identity(id="bob", name="bob", allowed_tools=("demo__echo",)))
VISIBILITY = Visibility()


def resolve(caller: Caller, name: str) -> tool_calls.ResolvedTool:
    return tool_calls.resolve(CATALOG, VISIBILITY, caller.patterns, name)


def error_of(caller: Caller, name: str) -> RpcError:
    with pytest.raises(RpcError) as caught:
        resolve(caller, name)
    return caught.value


def audit_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == "mcp_gateway.audit"]


def calls_counted(metrics: Metrics, upstream: str, decision: str, outcome: str) -> float:
    labels = {"upstream": upstream, "decision": decision, "outcome": outcome}
    return metrics.registry.get_sample_value("mcp_gateway_tool_calls_total", labels) or 0.0


def limiter(raw_limits: dict[str, Any]) -> Limiter:
    limits = parse_config({"limits": raw_limits}).limits
    return Limiter(limits, MemoryStore(), AuditLog(AuditConfig()), Metrics())


# --- resolve ---------------------------------------------------------------------------------------------------------


def test_resolve_finds_where_a_visible_tool_goes() -> None:
    tool = resolve(ONLY_ECHO, "demo__echo")
    assert (tool.name, tool.upstream, tool.original_name, tool.connection) == ("demo__echo", "demo", "echo", DEMO)
    assert tool.entry is CATALOG.tool("demo__echo")


def test_resolve_answers_a_hidden_tool_exactly_like_a_missing_one() -> None:
    hidden, missing = error_of(ONLY_ECHO, "demo__region_header"), error_of(ONLY_ECHO, "demo__missing")
    assert (hidden.code, hidden.message) == (INVALID_PARAMS, "Unknown tool: demo__region_header")
    assert (missing.code, missing.message) == (INVALID_PARAMS, "Unknown tool: demo__missing")
    # Hidden withheld and hidden unconnected tools give nothing away either.
    assert error_of(ONLY_ECHO, "demo__changed").message == "Unknown tool: demo__changed"
    assert error_of(ONLY_ECHO, "offline__search").message == "Unknown tool: offline__search"


def test_resolve_names_a_visible_withheld_tool_and_its_upstream() -> None:
    withheld = error_of(EVERYONE, "demo__changed")
    assert withheld.code == TOOL_WITHHELD
    assert withheld.data == {"tool": "demo__changed", "upstream": "demo"}


def test_resolve_says_a_visible_tool_of_an_unconnected_upstream_is_not_connected() -> None:
    offline = error_of(EVERYONE, "offline__search")
    assert (offline.code, offline.message, offline.data) == (
        INTERNAL_ERROR,
        "upstream 'offline' is not connected",
        {"upstream": "offline"},
    )


def test_resolved_tool_carries_its_param_header_schema_only_when_it_declares_headers() -> None:
    assert resolve(EVERYONE, "demo__region_header").param_header_schema == REGION_SCHEMA
    assert resolve(EVERYONE, "demo__echo").param_header_schema is None


def test_requested_tool_refuses_malformed_params() -> None:
    assert tool_calls.requested_tool({"name": "demo__echo"}) == ("demo__echo", {})
    for params in ({}, {"name": ""}, {"name": 3}, {"name": "demo__echo", "arguments": [1]}):
        with pytest.raises(RpcError) as caught:
            tool_calls.requested_tool(params)
        assert caught.value.code == INVALID_PARAMS


# --- decide ----------------------------------------------------------------------------------------------------------


async def test_decide_is_the_policies_verdict_on_the_resolved_tool() -> None:
    policies = PolicyEngine.compile(
        [PolicyConfig(name="no-secrets", effect="deny", condition="request.tool.args.text == 'secret'")]
    )
    tool = resolve(EVERYONE, "demo__echo")
    assert (await tool_calls.decide(policies, None, EVERYONE, tool, {"text": "hello"})).allowed
    denied = await tool_calls.decide(policies, None, EVERYONE, tool, {"text": "secret"})
    assert (denied.allowed, denied.policy) == (False, "no-secrets")


async def test_decide_shows_policies_the_upstream_of_the_tool() -> None:
    policies = PolicyEngine.compile(
        [PolicyConfig(name="demo-only", effect="allow", condition="request.tool.upstream == 'demo'")]
    )
    decision = await tool_calls.decide(policies, None, EVERYONE, resolve(EVERYONE, "demo__echo"), {})
    assert decision.allowed


# --- record, and the denied answer -----------------------------------------------------------------------------------


def test_record_names_caller_tool_upstream_and_verdict() -> None:
    decision = Decision(allowed=False, reason="deny policy 'x' holds", policy="x")
    record = tool_calls.record(EVERYONE, "demo__echo", "demo", {"text": "hi"}, decision)
    assert (record.identity, record.tool, record.upstream, record.method) == (
        "alice",
        "demo__echo",
        "demo",
        "tools/call",
    )
    assert (record.decision, record.policy, record.args, record.outcome) == ("deny", "x", {"text": "hi"}, "pending")


def test_a_denied_call_is_counted_audited_and_answered_with_an_error_result(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="mcp_gateway.audit")
    audit, metrics = AuditLog(AuditConfig()), Metrics()
    decision = Decision(allowed=False, reason="deny policy 'x' holds", policy="x")
    record = tool_calls.record(EVERYONE, "demo__echo", "demo", {}, decision)
    result = tool_calls.denied(audit, metrics, "demo", record, decision)
    assert result == {"content": [{"type": "text", "text": decision.denial_text()}], "isError": True}
    [line] = audit_lines(caplog)
    assert (line["outcome"], line["decision"], line["latency_ms"]) == ("denied", "deny", None)
    assert calls_counted(metrics, "demo", "deny", "denied") == 1


# --- charge ----------------------------------------------------------------------------------------------------------


async def test_charge_lets_calls_through_until_a_limit_refuses_then_audits_the_refusal(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("INFO", logger="mcp_gateway.audit")
    audit, metrics = AuditLog(AuditConfig()), Metrics()
    one_per_minute = limiter({"perIdentity": {"rate": 1, "per": "60s"}})
    allowed = Decision(allowed=True, reason="no policy applies")
    record = tool_calls.record(EVERYONE, "demo__echo", "demo", {}, allowed)
    assert await tool_calls.charge(None, audit, metrics, EVERYONE, "demo", record) is None
    assert await tool_calls.charge(one_per_minute, audit, metrics, EVERYONE, "demo", record) is None
    assert audit_lines(caplog) == []
    refusal = await tool_calls.charge(one_per_minute, audit, metrics, EVERYONE, "demo", record)
    assert refusal is not None and refusal.data is not None and refusal.data["limit"] == "perIdentity"
    [line] = audit_lines(caplog)
    assert (line["decision"], line["outcome"], line["reason"]) == ("deny", "rate_limited", refusal.message)
    assert calls_counted(metrics, "demo", "deny", "rate_limited") == 1


# --- the order, composed in Proxy.call_tool --------------------------------------------------------------------------


def proxy(policies: list[PolicyConfig], limits: Limiter | None, catalog: Catalog = CATALOG) -> tuple[Proxy, Metrics]:
    metrics = Metrics()
    engine = PolicyEngine.compile(policies)
    return Proxy(lambda: catalog, engine, AuditLog(AuditConfig()), metrics, None, limits), metrics


DENY_ALL = PolicyConfig(name="closed", effect="deny", condition="true")
CALL = {"name": "demo__echo", "arguments": {"text": "hi"}}


async def test_a_denied_call_spends_no_limit_and_is_never_forwarded(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="mcp_gateway.audit")
    one_per_minute = limiter({"perIdentity": {"rate": 1, "per": "60s"}})
    gateway, metrics = proxy([DENY_ALL], one_per_minute)
    result = await gateway.call_tool(EVERYONE, CALL)
    assert result["isError"] is True
    assert [line["outcome"] for line in audit_lines(caplog)] == ["denied"]
    assert metrics.registry.get_sample_value("mcp_gateway_policy_denials_total", {"policy": "closed"}) == 1
    # The minute's one call is still there to spend.
    assert await one_per_minute.charge_call(EVERYONE.identity, None, None, "demo__echo", "demo") is None


async def test_a_refused_call_is_never_forwarded(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="mcp_gateway.audit")
    one_per_minute = limiter({"perIdentity": {"rate": 1, "per": "60s"}})
    assert await one_per_minute.charge_call(EVERYONE.identity, None, None, "demo__echo", "demo") is None
    gateway, _ = proxy([], one_per_minute)
    with pytest.raises(RpcError) as caught:
        await gateway.call_tool(EVERYONE, CALL)
    assert caught.value.data is not None and caught.value.data["limit"] == "perIdentity"
    assert [line["outcome"] for line in audit_lines(caplog)] == ["rate_limited"]


async def test_an_allowed_call_is_forwarded_and_its_outcome_audited(caplog: pytest.LogCaptureFixture) -> None:
    """The upstream was never started, so forwarding fails; the record written in ``finally`` says so."""
    caplog.set_level("INFO", logger="mcp_gateway.audit")
    gateway, metrics = proxy([], limiter({}))
    with pytest.raises(RpcError) as caught:
        await gateway.call_tool(EVERYONE, CALL)
    assert caught.value.code == INTERNAL_ERROR
    [line] = audit_lines(caplog)
    assert (line["decision"], line["outcome"], line["tool"]) == ("allow", "upstream_unavailable", "demo__echo")
    assert calls_counted(metrics, "demo", "allow", "upstream_unavailable") == 1


async def test_a_call_goes_to_the_tool_resolved_for_it() -> None:
    """``find_tool`` resolves what a request names once; ``call_tool`` takes it instead of looking again."""
    gateway, _ = proxy([DENY_ALL], None)
    tool = gateway.find_tool(EVERYONE, CALL)
    assert tool is not None and tool.entry is CATALOG.tool("demo__echo")
    assert gateway.find_tool(ONLY_ECHO, {"name": "demo__region_header"}) is None
    assert gateway.find_tool(EVERYONE, {"name": 3}) is None
    # A gateway whose catalog no longer has the tool still judges the call the request resolved, not "unknown".
    emptied, _ = proxy([DENY_ALL], None, Catalog(version=8))
    assert (await emptied.call_tool(EVERYONE, CALL, tool=tool))["isError"] is True
    with pytest.raises(RpcError, match="Unknown tool"):
        await emptied.call_tool(EVERYONE, CALL)


# --- forward, with a real upstream -----------------------------------------------------------------------------------


async def test_an_allowed_call_reaches_the_upstream_under_its_own_name_and_is_audited_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("INFO", logger="mcp_gateway.audit")
    connection = UpstreamConnection(demo_stdio("demo"))
    async with running(connection):
        catalog = build_catalog([connection])
        gateway, _ = proxy([], None, catalog)
        tool = gateway.find_tool(EVERYONE, {"name": "demo__add"})
        assert tool is not None and tool.original_name == "add"
        result = await gateway.call_tool(EVERYONE, {"name": "demo__add", "arguments": {"a": 2, "b": 40}}, tool=tool)
    assert result["isError"] is False and result["content"][0]["text"] == "42"
    [line] = audit_lines(caplog)
    assert (line["tool"], line["decision"], line["outcome"]) == ("demo__add", "allow", "ok")
    assert line["latency_ms"] is not None
