"""Prometheus metrics, exposed at ``/metrics`` through prometheus_client's own text exposition.

A private registry keeps several gateway apps in one process (tests) from colliding on global metric names.

Under ``serve --workers N`` each worker counts in its own process, and a scrape reaches whichever worker the kernel
hands the connection to. So there prometheus_client's multiprocess mode is on (``PROMETHEUS_MULTIPROC_DIR``, set by
``workers.py`` before any worker starts): every worker's values live in files in that directory, and ``render`` sums
them for all workers, live or gone, as one server's. A gauge says how workers combine: ``upstream_up`` is the lowest
of the live workers' (down as soon as one worker's connection is), ``tools_withheld`` the highest.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector

MULTIPROCESS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
"""prometheus_client reads it when first imported: set, every metric value is kept in a file there."""


def _exposition_registry(own: CollectorRegistry) -> CollectorRegistry:
    """What ``/metrics`` shows: this process's registry, or, in multiprocess mode, the sum over all processes."""
    directory = os.environ.get(MULTIPROCESS_DIR_ENV)
    if not directory:
        return own
    combined = CollectorRegistry()
    MultiProcessCollector(combined, path=directory)  # type: ignore[no-untyped-call]
    return combined


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._exposed = _exposition_registry(self.registry)
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
            "mcp_gateway_upstream_up",
            "1 when the upstream connection is ready",
            ["upstream"],
            registry=self.registry,
            multiprocess_mode="livemin",
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
            multiprocess_mode="livemax",
        )

    def render(self) -> bytes:
        return generate_latest(self._exposed)
