"""The Task Agents of one running gateway: definitions, runs and model clients, started and stopped together.

Built from the gateway's own parts (store, proxy, task sessions, catalog), never beside them: a run reaches
upstreams only through the proxy. Runs started over REST live in this service's task group; when the gateway
stops, they are cancelled and their records say so.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio

from mcp_gateway.agents.models import ModelClients
from mcp_gateway.agents.registry import AgentRegistry
from mcp_gateway.agents.run_store import RunStore
from mcp_gateway.agents.runs import AgentRuns
from mcp_gateway.agents.task_tools import ConversationParts
from mcp_gateway.agents.validation import DefinitionRules
from mcp_gateway.gateway import Gateway


@dataclass(frozen=True)
class Agents:
    gateway: Gateway
    registry: AgentRegistry
    runs: AgentRuns

    def rules(self) -> DefinitionRules:
        """What a definition may name right now: configured models and tasks, attached upstreams and their tools."""
        snapshot = self.gateway.catalog.snapshot()
        listed: dict[str, set[str]] = {}
        for entry in snapshot.tools():
            listed.setdefault(entry.upstream_name, set()).add(entry.original_name)
        return DefinitionRules(
            models=frozenset(model.id for model in self.gateway.config.models),
            tasks=frozenset(task.id for task in self.gateway.config.tasks),
            upstream_tools={
                connection.name: frozenset(listed.get(connection.name, ())) if connection.ready else None
                for connection in self.gateway.connections
            },
        )


@asynccontextmanager
async def running_agents(gateway: Gateway) -> AsyncIterator[Agents]:
    config = gateway.config
    models = ModelClients(config.models)
    registry = AgentRegistry(gateway.store, config.agents)
    try:
        async with anyio.create_task_group() as background:
            parts = ConversationParts(
                proxy=gateway.proxy,
                catalog=gateway.catalog.snapshot,
                sessions=gateway.sessions,
                tasks=gateway.definitions.configured_tasks(),
                models=models,
                redact_keys=config.audit.redact_keys,
                separator=config.server.tool_separator,
            )
            runs = AgentRuns(
                registry, RunStore(gateway.store), parts, separator=config.server.tool_separator, background=background
            )
            yield Agents(gateway=gateway, registry=registry, runs=runs)
            background.cancel_scope.cancel()
    finally:
        await models.close()
