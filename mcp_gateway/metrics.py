"""Prometheus metrics, exposed at ``/metrics`` through prometheus_client's own text exposition.

A private registry keeps several gateway apps in one process (tests) from colliding on global metric names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector


class _AuditSpool(Collector):
    """The audit writer's spool, read when scraped: the writer keeps the counts, so it needs no metrics of its own."""

    def __init__(self, spooled: Callable[[], int], overflowed: Callable[[], int]) -> None:
        self._spooled = spooled
        self._overflowed = overflowed

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "mcp_gateway_audit_spooled", "Audit records waiting for the store stream", value=self._spooled()
        )
        yield CounterMetricFamily(
            "mcp_gateway_audit_spool_overflow",
            "Audit records dropped from the store stream because the spool was full (still in the log)",
            value=self._overflowed(),
        )


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "mcp_gateway_requests_total", "MCP requests by method and era", ["method", "era"], registry=self.registry
        )
        self.tool_calls = Counter(
            "mcp_gateway_tool_calls_total",
            "tools/call decisions and outcomes",
            ["upstream", "decision", "outcome"],
            registry=self.registry,
        )
        self.upstream_latency = Histogram(
            "mcp_gateway_upstream_latency_seconds",
            "Latency of forwarded upstream calls",
            ["upstream"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )
        self.auth_failures = Counter(
            "mcp_gateway_auth_failures_total",
            "Rejected credentials and task tokens",
            ["reason"],
            registry=self.registry,
        )
        self.limit_refusals = Counter(
            "mcp_gateway_limit_refusals_total",
            "Requests refused by a rate limit or a task budget (limit: perIdentity, perIdentityTool, perTaskSession, "
            "perUpstream, totalCalls, tools), or because the store could not be asked (store)",
            ["limit"],
            registry=self.registry,
        )
        self.upstream_up = Gauge(
            "mcp_gateway_upstream_up", "1 when the upstream connection is ready", ["upstream"], registry=self.registry
        )
        self.tool_definition_changes = Counter(
            "mcp_gateway_tool_definition_changes_total",
            "Tool definitions seen to differ from their pinned ones, once per definition and process",
            ["upstream", "mode"],
            registry=self.registry,
        )
        self.tools_withheld = Gauge(
            "mcp_gateway_tools_withheld",
            "Tools withheld because their definition changed and awaits approval (pinning: enforce)",
            ["upstream"],
            registry=self.registry,
        )

    def observe_audit_spool(self, spooled: Callable[[], int], overflowed: Callable[[], int]) -> None:
        self.registry.register(_AuditSpool(spooled, overflowed))

    def render(self) -> bytes:
        return generate_latest(self.registry)
