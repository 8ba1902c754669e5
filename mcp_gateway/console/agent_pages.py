"""The console's Agents pages: definitions, an agent's revisions and runs, and one run's turns and tool calls.

Read-only: agents are written over ``/v1/agents``. The pages read through the same registry and run store the API
uses, as the signed-in admin (who may read every run), and show what ``/v1/runs/{id}`` shows, laid out for people:
the turns in order, each tool call with its decision, the policy that denied it, and its outcome.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import Response

from mcp_gateway.agents.service import Agents
from mcp_gateway.config import Identity
from mcp_gateway.console.signin import ConsoleSession

# How the proxy words a policy denial (``PolicyDecision.denial_text``); a run record keeps only that text.
_DENYING_POLICY = re.compile(r"^Call denied by policy '([^']+)'")


class Render(Protocol):
    def __call__(
        self, request: Request, template: str, session: ConsoleSession, status: int = 200, **values: Any
    ) -> Response: ...


class AgentPages:
    def __init__(self, agents: Callable[[], Agents], render: Render) -> None:
        self._running = agents
        self._render = render

    @property
    def _agents(self) -> Agents:
        """The running agents: pages are only served after the lifespan started them."""
        return self._running()

    async def listing(self, request: Request, identity: Identity, session: ConsoleSession) -> Response:
        registry = self._agents.registry
        rows = []
        for agent in await registry.list(include_deleted=True):
            revisions = await registry.revisions(agent)
            active = next(r for r in revisions if r.number == agent.active_revision)
            rows.append(agent.to_wire(active, revisions))
        return self._render(request, "agents.html", session, page="agents", agents=rows)

    async def agent(self, request: Request, identity: Identity, session: ConsoleSession) -> Response:
        registry = self._agents.registry
        agent = await registry.get(request.path_params["agent_id"])
        revisions = await registry.revisions(agent)
        active = next(r for r in revisions if r.number == agent.active_revision)
        runs = await self._agents.runs.list(identity, agent.id)
        return self._render(
            request,
            "agent.html",
            session,
            page="agents",
            agent=agent.to_wire(active, revisions),
            revisions=[revision.to_wire() for revision in reversed(revisions)],
            runs=[run.to_wire() for run in runs],
        )

    async def run(self, request: Request, identity: Identity, session: ConsoleSession) -> Response:
        record = (await self._agents.runs.get(identity, request.path_params["run_id"])).to_wire()
        record["turns"] = [_with_policies(turn) for turn in record["turns"]]
        return self._render(request, "run.html", session, page="agents", run=record)


def _with_policies(turn: dict[str, Any]) -> dict[str, Any]:
    """A turn whose tool calls (and those of the task tools' sub-conversations) name the policy that denied them."""
    calls = []
    for call in turn["toolCalls"]:
        match = _DENYING_POLICY.match(call.get("error") or "")
        calls.append(
            {
                **call,
                "policy": match.group(1) if match else None,
                "turns": [_with_policies(inner) for inner in call.get("turns", [])],
            }
        )
    return {**turn, "toolCalls": calls}
