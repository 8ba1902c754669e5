"""Prometheus metrics, exposed at ``/metrics`` through prometheus_client's own text exposition.

A private registry keeps several gateway apps in one process (tests) from colliding on global metric names.

Under ``serve --workers N`` each worker counts in its own process, and a scrape reaches whichever worker the kernel
hands the connection to. So there prometheus_client's multiprocess mode is on (``PROMETHEUS_MULTIPROC_DIR``, set by
``workers.py`` before any worker starts): every worker's values live in files in that directory, and ``render`` sums
them for all workers, live or gone, as one server's. A gauge says how workers combine: ``upstream_up`` is the lowest
of the live workers' (down as soon as one worker's connection is), ``tools_withheld`` the highest.

The hot path never looks a label up: ``labels()`` takes a lock and builds a tuple, which a call pays for every
metric it touches. The children a call touches are bound once: per upstream (``UpstreamMetrics``), per policy, per
store operation and per known MCP method, the first time each is seen (upstreams and policies at start-up). Labels
whose values a client chooses (the JSON-RPC method) are folded into a fixed set, so no client can grow the registry.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

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


_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_STORE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
FORWARDED_METHODS = ("tools/call", "resources/read", "prompts/get", "completion/complete")
"""The requests the gateway forwards on a caller's behalf (the upstream latency and error metrics' ``method``)."""
_HEALTHY_OUTCOMES = frozenset({"ok", "input_required"})
KNOWN_METHODS = frozenset(
    {
        *FORWARDED_METHODS,
        "initialize",
        "ping",
        "server/discover",
        "tools/list",
        "resources/list",
        "resources/templates/list",
        "resources/subscribe",
        "resources/unsubscribe",
        "prompts/list",
        "logging/setLevel",
        "subscriptions/listen",
        "notifications/initialized",
        "notifications/cancelled",
        "notifications/roots/list_changed",
        "response",
    }
)
"""Methods counted under their own name in ``mcp_gateway_requests_total``; anything else counts as ``other``."""
SESSION_EVENTS = ("created", "revoked", "expired")


class UpstreamMetrics:
    """One upstream's latency, error and call-outcome children, bound once."""

    def __init__(self, metrics: Metrics, upstream: str) -> None:
        self._metrics = metrics
        self._upstream = upstream
        self._latency = {method: metrics.upstream_latency.labels(upstream, method) for method in FORWARDED_METHODS}
        self._calls = {("allow", "ok"): metrics.tool_calls.labels(upstream, "allow", "ok")}
        self._errors: dict[tuple[str, str], Counter] = {}

    def forwarded(self, method: str, outcome: str, seconds: float) -> None:
        """A forwarded request ended with ``outcome`` after ``seconds``."""
        latency = self._latency.get(method)
        if latency is None:
            latency = self._latency[method] = self._metrics.upstream_latency.labels(self._upstream, method)
        latency.observe(seconds)
        if method == "tools/call":
            self.call("allow", outcome)
        if outcome not in _HEALTHY_OUTCOMES:
            key = (method, outcome)
            errors = self._errors.get(key)
            if errors is None:
                errors = self._errors[key] = self._metrics.upstream_errors.labels(self._upstream, method, outcome)
            errors.inc()

    def call(self, decision: str, outcome: str) -> None:
        """Count one ``tools/call`` decision and outcome."""
        key = (decision, outcome)
        counter = self._calls.get(key)
        if counter is None:
            counter = self._calls[key] = self._metrics.tool_calls.labels(self._upstream, decision, outcome)
        counter.inc()


class _AuditSpool(Collector):
    """The audit writer's spool, read when scraped: the writer keeps the counts, so it needs no metrics of its own."""

    def __init__(
        self, spooled: Callable[[], int], overflowed: Callable[[], int], queue_full: Callable[[], int]
    ) -> None:
        self._spooled = spooled
        self._overflowed = overflowed
        self._queue_full = queue_full

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "mcp_gateway_audit_spooled", "Audit records waiting for the store stream", value=self._spooled()
        )
        yield CounterMetricFamily(
            "mcp_gateway_audit_spool_overflow",
            "Audit records dropped from the store stream because the spool was full (still in the log)",
            value=self._overflowed(),
        )
        yield CounterMetricFamily(
            "mcp_gateway_audit_queue_full",
            "Audit records written on the request path because the audit writer's queue was full (none lost)",
            value=self._queue_full(),
        )


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._exposed = _exposition_registry(self.registry)
        self.requests = Counter(
            "mcp_gateway_requests_total",
            "MCP requests by method (other: a method the gateway does not know) and era",
            ["method", "era"],
            registry=self.registry,
        )
        self.tool_calls = Counter(
            "mcp_gateway_tool_calls_total",
            "tools/call decisions and outcomes",
            ["upstream", "decision", "outcome"],
            registry=self.registry,
        )
        self.upstream_latency = Histogram(
            "mcp_gateway_upstream_latency_seconds",
            "Latency of requests forwarded upstream, whatever their outcome",
            ["upstream", "method"],
            registry=self.registry,
            buckets=_LATENCY_BUCKETS,
        )
        self.upstream_errors = Counter(
            "mcp_gateway_upstream_errors_total",
            "Forwarded requests that did not end well (outcome: tool_error, upstream_error, upstream_unavailable, "
            "timeout, invalid_params, cancelled)",
            ["upstream", "method", "outcome"],
            registry=self.registry,
        )
        self.policy_denials = Counter(
            "mcp_gateway_policy_denials_total",
            "Requests denied by policies, by deciding policy (empty: no policy decided, e.g. an unreadable session)",
            ["policy"],
            registry=self.registry,
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
        self.task_sessions = Counter(
            "mcp_gateway_task_sessions_total",
            "Task sessions created and revoked by this replica, and expired ones it pruned from the live index",
            ["event"],
            registry=self.registry,
        )
        self.store_latency = Histogram(
            "mcp_gateway_store_latency_seconds",
            "Round trips to the shared store (Redis), by operation",
            ["operation"],
            registry=self.registry,
            buckets=_STORE_BUCKETS,
        )
        self.store_errors = Counter(
            "mcp_gateway_store_errors_total",
            "Store operations that failed (timeout, connection, cluster errors), by operation",
            ["operation"],
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
        self._requests = {
            (method, modern): self.requests.labels(method, "modern" if modern else "legacy")
            for method in (*KNOWN_METHODS, "other")
            for modern in (True, False)
        }
        self._upstreams: dict[str, UpstreamMetrics] = {}
        self._denials: dict[str, Counter] = {}
        self._store_latency: dict[str, Histogram] = {}
        self.sessions = {event: self.task_sessions.labels(event) for event in SESSION_EVENTS}
        """``created``, ``revoked``, ``expired``: bound children to ``inc``."""

    def bind(self, upstreams: Iterable[str], policies: Iterable[str]) -> None:
        """Bind the children of the configured upstreams and policies at start-up (they also show as 0 at once)."""
        for upstream in upstreams:
            self.upstream(upstream)
        for policy in policies:
            self._denials[policy] = self.policy_denials.labels(policy)

    def request(self, method: str, modern: bool) -> None:
        counter = self._requests.get((method, modern)) or self._requests[("other", modern)]
        counter.inc()

    def upstream(self, name: str) -> UpstreamMetrics:
        found = self._upstreams.get(name)
        if found is None:
            found = self._upstreams[name] = UpstreamMetrics(self, name)
        return found

    def policy_denied(self, policy: str | None) -> None:
        name = policy or ""
        counter = self._denials.get(name)
        if counter is None:
            counter = self._denials[name] = self.policy_denials.labels(name)
        counter.inc()

    def store_operation(self, operation: str, seconds: float, failed: bool) -> None:
        """One store round trip (``operation``: the Redis command, e.g. ``GET``, ``EVALSHA (take)``)."""
        histogram = self._store_latency.get(operation)
        if histogram is None:
            histogram = self._store_latency[operation] = self.store_latency.labels(operation)
        histogram.observe(seconds)
        if failed:
            self.store_errors.labels(operation).inc()

    def observe_audit_spool(
        self, spooled: Callable[[], int], overflowed: Callable[[], int], queue_full: Callable[[], int]
    ) -> None:
        self.registry.register(_AuditSpool(spooled, overflowed, queue_full))

    def render(self) -> bytes:
        return generate_latest(self._exposed)
