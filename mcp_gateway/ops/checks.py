"""``mcp-gateway check``: everything that can be wrong with a config, found in one run.

Parsing already collected every structural problem (``load_config`` raised them). This adds what needs more than
the file: policies compiled (syntax and type errors with position), the store reached (named by host and port, never
with its password), upstreams connected and their tools merged (unreachable upstreams and name clashes), warnings
for resource URIs and templates that more than one upstream could serve (where they go, and ``resourcePrefix``), for
patterns, policy arguments, budgets and tool rate limits that match nothing, and for every identity a task's
``startableBy`` lets widen itself through that task's lists (found without upstreams).
"""

from __future__ import annotations

from typing import Any

import anyio

from mcp_gateway.config import GatewayConfig
from mcp_gateway.core.policy import PolicyEngine
from mcp_gateway.core.visibility import Visibility
from mcp_gateway.errors import ConfigError, StoreUnavailable
from mcp_gateway.store import open_store
from mcp_gateway.tasks.who_may_start import may_start, widened_lists
from mcp_gateway.upstreams.catalog import Catalog, build_catalog
from mcp_gateway.upstreams.connection import UpstreamConnection


async def check_config(config: GatewayConfig, connect_upstreams: bool = True) -> tuple[list[str], list[str]]:
    """(problems, warnings); any problem makes ``check`` exit non-zero."""
    problems: list[str] = []
    warnings: list[str] = []
    try:
        policies: PolicyEngine | None = PolicyEngine.compile(config.policies)
    except ConfigError as exc:
        problems.extend(exc.problems)
        policies = None
    warnings.extend(_widening_starts(config))
    await _reach_store(config, problems)
    if not connect_upstreams or not config.upstreams:
        return problems, warnings

    catalog = await _merged_catalog(config, problems)
    if catalog is None:
        return problems, warnings
    warnings.extend(catalog.resource_clashes)
    schemas = {entry.name: entry.definition.get("inputSchema") for entry in catalog.tools()}
    if policies is not None:
        warnings.extend(policies.check_argument_references(schemas))
    visibility = Visibility()
    owners: list[tuple[str, tuple[str, ...] | None]] = [
        *((f"identities[{i}] ({x.id})", x.allowed_tools) for i, x in enumerate(config.identities)),
        *((f"tasks[{i}] ({t.id})", t.allowed_tools) for i, t in enumerate(config.tasks)),
    ]
    for where, patterns in owners:
        for pattern in patterns or ():
            if not visibility.filter((pattern,), schemas):
                warnings.append(f"{where}.allowedTools: {pattern!r} matches no tool")
    warnings.extend(_limits_matching_nothing(config, schemas, visibility))
    return problems, warnings


def _limits_matching_nothing(config: GatewayConfig, schemas: dict[str, Any], visibility: Visibility) -> list[str]:
    """A misspelt tool name in a budget or a tool rate limit would silently cap nothing."""
    found: list[str] = []
    for i, task in enumerate(config.tasks):
        for tool in task.budgets.tools if task.budgets is not None else ():
            if tool not in schemas:
                found.append(
                    f"tasks[{i}] ({task.id}).budgets.tools: {tool!r} is not a tool, so its budget caps nothing"
                )
    for i, rule in enumerate(config.limits.per_identity_tool):
        for pattern in rule.tools:
            if not visibility.filter((pattern,), schemas):
                found.append(f"limits.perIdentityTool[{i}].tools: {pattern!r} matches no tool")
    return found


def _widening_starts(config: GatewayConfig) -> list[str]:
    """Every (task, identity) where a session would grant more than the identity has: only ``startableBy`` allows it."""
    found: list[str] = []
    for i, task in enumerate(config.tasks):
        for identity in config.identities:
            if not may_start(identity, task):
                continue
            for kind in widened_lists(identity, task):
                found.append(
                    f"tasks[{i}] ({task.id}): startableBy lets identity {identity.id!r} start it, and its {kind} "
                    f"widen what {identity.id!r} may use on its own"
                )
    return found


async def _reach_store(config: GatewayConfig, problems: list[str]) -> None:
    """PING the configured store once; the problem names it as ``description`` does (no user info, no query)."""
    store = open_store(config.store_url, config.store_prefix)
    try:
        await store.ping()
    except StoreUnavailable as exc:
        problems.append(f"store.url: {exc.message}")
    finally:
        await store.close()


async def _merged_catalog(config: GatewayConfig, problems: list[str]) -> Catalog | None:
    """Connect every upstream once and merge their lists; None when the merge itself failed."""
    connections = [UpstreamConnection(upstream) for upstream in config.upstreams]
    async with anyio.create_task_group() as tg:
        for connection in connections:
            await tg.start(connection.run)
        for i, connection in enumerate(connections):
            if not connection.ready:
                problems.append(f"upstreams[{i}] ({connection.name}): cannot connect: {connection.last_error}")
        catalog: Catalog | None = None
        try:
            catalog = build_catalog(connections, config.server.tool_separator, version=1)
        except ConfigError as exc:
            problems.extend(exc.problems)
        finally:
            tg.cancel_scope.cancel()
    return catalog
