"""The running gateway: everything built once from config, started and stopped together.

Start-up order matters for failing early: policies compile first (a bad policy never reaches a socket), then the
store opens, then upstreams connect and the merged catalog is built (a name clash stops start-up) and reviewed
against the pinned tool definitions before the first request. Nothing here is rebuilt per request.

A config reload (``reload.py``) keeps every part and swaps what the new config decides inside them: the config and
policies in force (``Settings``, one reference), identities, config tasks, limits, and the upstream connections.

An unreachable store does not stop start-up: the gateway starts degraded, says so in one log line, reports not ready
on ``/readyz`` and refuses every ``/mcp`` and ``/v1`` request with 503 until the store answers (an orchestrator
starting Redis and the gateway together should not need an ordering).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import anyio

from mcp_gateway.agents.registry import CACHED_KEY_PREFIXES as AGENT_PREFIXES
from mcp_gateway.config import GatewayConfig
from mcp_gateway.core.audit import AuditLog
from mcp_gateway.core.input_bridge import InputBridge
from mcp_gateway.core.limits import Limiter
from mcp_gateway.core.notifications import Notifier
from mcp_gateway.core.pin_review import ToolPins
from mcp_gateway.core.pins import PinStore
from mcp_gateway.core.policy import PolicyEngine
from mcp_gateway.core.proxy import Proxy
from mcp_gateway.core.resource_subscriptions import ResourceSubscriptions
from mcp_gateway.eras.session_records import SESSION_KEY_PREFIX
from mcp_gateway.errors import GatewayError, StoreUnavailable
from mcp_gateway.identity.authenticator import Authenticator
from mcp_gateway.ops.metrics import Metrics
from mcp_gateway.store import RedisStore, open_store
from mcp_gateway.store.base import Store
from mcp_gateway.tasks.definitions import CACHED_KEY_PREFIXES as TASK_DEFINITION_PREFIXES
from mcp_gateway.tasks.definitions import TaskDefinitions
from mcp_gateway.tasks.sessions import CACHED_KEY_PREFIXES, TaskSessions
from mcp_gateway.upstreams.catalog import Catalog, LiveCatalog
from mcp_gateway.upstreams.connection import UpstreamConnection
from mcp_gateway.upstreams.list_cache import ListKind
from mcp_gateway.upstreams.running import RunningUpstreams

logger = logging.getLogger(__name__)

_LIST_CHANGED = {
    "tools": "notifications/tools/list_changed",
    "prompts": "notifications/prompts/list_changed",
    "resources": "notifications/resources/list_changed",
    "resource_templates": "notifications/resources/list_changed",
}


def gateway_version() -> str:
    try:
        return version("mcp-gateway")
    except PackageNotFoundError:
        return "0+unknown"


CAPABILITIES: dict[str, Any] = {
    "tools": {"listChanged": True},
    "resources": {"listChanged": True, "subscribe": True},
    "prompts": {"listChanged": True},
    "completions": {},
    "logging": {},
}


@dataclass(frozen=True)
class Settings:
    """The config in force and its compiled policies: replaced together, by one assignment, when a reload is applied."""

    config: GatewayConfig
    policies: PolicyEngine


class SettingsInForce:
    def __init__(self, settings: Settings) -> None:
        self.current = settings


@dataclass(frozen=True)
class Gateway:
    settings: SettingsInForce
    store: Store
    authenticator: Authenticator
    sessions: TaskSessions
    definitions: TaskDefinitions
    audit: AuditLog
    metrics: Metrics
    notifier: Notifier
    subscriptions: ResourceSubscriptions
    upstreams: RunningUpstreams
    catalog: LiveCatalog
    pins: PinStore
    tool_pins: ToolPins
    proxy: Proxy
    limiter: Limiter
    server_info: dict[str, Any]

    @property
    def config(self) -> GatewayConfig:
        return self.settings.current.config

    @property
    def policies(self) -> PolicyEngine:
        return self.settings.current.policies

    @property
    def connections(self) -> tuple[UpstreamConnection, ...]:
        """The upstreams in force, in config order (a reload replaces them with the namespace)."""
        return self.catalog.snapshot().connections()

    async def readiness(self) -> dict[str, Any]:
        """Ready when the store answers and every upstream has a live session."""
        try:
            with anyio.fail_after(2):
                await self.store.ping()
            store_ok = True
        except (GatewayError, TimeoutError):
            store_ok = False
        upstreams = {c.name: c.ready for c in self.connections}
        for name, up in upstreams.items():
            self.metrics.upstream_up.labels(name).set(1 if up else 0)
        return {"ready": store_ok and all(upstreams.values()), "store": store_ok, "upstreams": upstreams}


@asynccontextmanager
async def running_gateway(config: GatewayConfig) -> AsyncIterator[Gateway]:
    policies = PolicyEngine.compile(config.policies)
    # Read on every request: task-session records, task versions, legacy MCP sessions; by every tools/list: agents.
    cached = (*CACHED_KEY_PREFIXES, *TASK_DEFINITION_PREFIXES, SESSION_KEY_PREFIX, *AGENT_PREFIXES)
    store = open_store(config.store_url, config.store_prefix, cached_prefixes=cached)
    if config.store_url.startswith("memory://"):
        logger.warning(
            "store: memory:// (embedded, this process only): task sessions and legacy MCP sessions are lost on "
            "restart and not shared with other replicas; use redis:// in production"
        )
    else:
        logger.info("store: %s", store.description)
    metrics = Metrics()
    metrics.bind((upstream.name for upstream in config.upstreams), (policy.name for policy in config.policies))
    if isinstance(store, RedisStore):
        store.observe_operations(metrics.store_operation)
    notifier = Notifier()
    audit = AuditLog(config.audit, None if config.store_url.startswith("memory://") else store)
    metrics.observe_audit_spool(lambda: audit.spooled, lambda: audit.overflowed, lambda: audit.queue_full)
    connections = tuple(UpstreamConnection(upstream) for upstream in config.upstreams)
    try:
        try:
            await store.ping()
        except StoreUnavailable as exc:
            logger.error(
                "%s: starting anyway, degraded: /readyz answers 503, and so does every /mcp and /v1 request until "
                "the store answers",
                exc.message,
            )
        async with audit.running(), anyio.create_task_group() as tg:
            tg.start_soon(store.serve)
            upstreams = RunningUpstreams(tg)
            for connection in connections:
                await upstreams.open(connection)
            bridge = InputBridge()
            await tg.start(bridge.run)
            pins = PinStore(store)
            tool_pins = ToolPins(pins, {u.name: u.pinning for u in config.upstreams}, audit, metrics)
            catalog = LiveCatalog(connections, config.server.tool_separator, review=tool_pins.review)
            # Before anything is served: a changed definition must never be listed or called, not even once.
            await catalog.refresh()
            tg.start_soon(catalog.review_while_unsettled, config.server.pin_recheck)

            async def relay_list_changed(snapshot: Catalog, kinds: frozenset[ListKind]) -> None:
                for method in sorted({_LIST_CHANGED[kind] for kind in kinds if kind in _LIST_CHANGED}):
                    notifier.publish(method)

            catalog.add_listener(relay_list_changed)
            subscriptions = ResourceSubscriptions(catalog.snapshot, notifier)
            for connection in connections:
                connection.add_resource_listener(subscriptions.updated)
            authenticator = Authenticator(config.identities, config.jwt, config.oauth)
            definitions = TaskDefinitions(store, config.tasks)
            sessions = TaskSessions(store, definitions, metrics=metrics)
            tg.start_soon(sessions.prune_while_running)
            limiter = Limiter(
                config.limits,
                store,
                audit,
                metrics,
                count_sessions=policies.reads_session_anywhere,
            )
            proxy = Proxy(catalog.snapshot, policies, audit, metrics, bridge, limiter)
            for connection in connections:
                if not connection.ready:
                    logger.warning("upstream %r is not connected yet: %s", connection.name, connection.last_error)
            logger.info("gateway ready: %d upstreams, %d tools", len(connections), len(catalog.snapshot().tools()))
            yield Gateway(
                settings=SettingsInForce(Settings(config, policies)),
                store=store,
                authenticator=authenticator,
                sessions=sessions,
                definitions=definitions,
                audit=audit,
                metrics=metrics,
                notifier=notifier,
                subscriptions=subscriptions,
                upstreams=upstreams,
                catalog=catalog,
                pins=pins,
                tool_pins=tool_pins,
                proxy=proxy,
                limiter=limiter,
                server_info={"name": "mcp-gateway", "version": gateway_version()},
            )
            tg.cancel_scope.cancel()
    finally:
        await store.close()
