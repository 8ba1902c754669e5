"""``/v1/agents`` and ``/v1/runs``: agent definitions (admins write, everyone authenticated reads) and runs.

Every answer is JSON; every error is the gateway's ``{"error", "message"}`` body through ``error_response``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mcp_gateway.agents.definitions import Agent
from mcp_gateway.agents.runs import RunRequest
from mcp_gateway.agents.service import Agents
from mcp_gateway.agents.validation import parse_agent, parse_revision
from mcp_gateway.config import ADMIN_ROLE, Identity
from mcp_gateway.errors import Forbidden, GatewayError, NotFound
from mcp_gateway.http.responses import error_response, json_response, read_json_object

MAX_BODY_BYTES = 256 * 1024

Handler = Callable[[Request], Awaitable[Response]]


class AgentsApi:
    """Handlers for the agent routes; usable once ``bind`` gave them the running agents."""

    def __init__(self) -> None:
        self._agents: Agents | None = None

    def bind(self, agents: Agents) -> None:
        self._agents = agents

    def routes(self) -> list[Route]:
        return [
            Route("/v1/agents", self._guard(self._collection), methods=["GET", "POST"]),
            Route("/v1/agents/{agent_id}", self._guard(self._agent), methods=["GET", "DELETE"]),
            Route("/v1/agents/{agent_id}/revisions", self._guard(self._revisions), methods=["GET", "POST"]),
            Route("/v1/agents/{agent_id}/revisions/{number}/activate", self._guard(self._activate), methods=["POST"]),
            Route("/v1/agents/{agent_id}/runs", self._guard(self._agent_runs), methods=["GET", "POST"]),
            Route("/v1/runs/{run_id}", self._guard(self._run), methods=["GET", "DELETE"]),
        ]

    @property
    def agents(self) -> Agents:
        assert self._agents is not None, "the gateway lifespan has not started"
        return self._agents

    def _guard(self, handler: Handler) -> Handler:
        async def guarded(request: Request) -> Response:
            try:
                return await handler(request)
            except GatewayError as exc:
                return error_response(exc)

        return guarded

    async def _identity(self, request: Request, *, manage: bool = False) -> Identity:
        identity = await self.agents.gateway.authenticator.authenticate(request.headers.get("authorization"))
        if manage and not identity.is_admin:
            raise Forbidden(f"identity {identity.id!r} may not manage agents (needs the {ADMIN_ROLE!r} role)")
        return identity

    async def _body(self, request: Request) -> dict[str, Any]:
        server = self.agents.gateway.config.server
        limit = min(server.max_body_bytes, MAX_BODY_BYTES)
        return await read_json_object(request, limit, server.max_json_depth, "an agent definition")

    async def _view(self, agent: Agent) -> dict[str, Any]:
        registry = self.agents.registry
        revisions = await registry.revisions(agent)
        active = next(r for r in revisions if r.number == agent.active_revision)
        return agent.to_wire(active, revisions)

    async def _collection(self, request: Request) -> Response:
        if request.method == "GET":
            await self._identity(request)
            include_deleted = request.query_params.get("includeDeleted") == "true"
            agents = await self.agents.registry.list(include_deleted=include_deleted)
            return json_response({"agents": [await self._view(agent) for agent in agents]})
        await self._identity(request, manage=True)
        fields, spec = parse_agent(await self._body(request), await self.agents.rules())
        agent, _ = await self.agents.registry.create(fields, spec)
        return json_response(await self._view(agent), 201, {"location": f"/v1/agents/{agent.id}"})

    async def _agent(self, request: Request) -> Response:
        agent_id = request.path_params["agent_id"]
        if request.method == "GET":
            await self._identity(request)
            return json_response(await self._view(await self.agents.registry.get(agent_id)))
        await self._identity(request, manage=True)
        await self.agents.registry.delete(agent_id)
        return Response(status_code=204)

    async def _revisions(self, request: Request) -> Response:
        registry = self.agents.registry
        agent_id = request.path_params["agent_id"]
        if request.method == "GET":
            await self._identity(request)
            revisions = await registry.revisions(await registry.get(agent_id))
            return json_response({"revisions": [revision.to_wire() for revision in revisions]})
        await self._identity(request, manage=True)
        await registry.get_live(agent_id)
        spec, activate = parse_revision(await self._body(request), await self.agents.rules())
        revision = await registry.add_revision(agent_id, spec, activate=activate)
        return json_response({**revision.to_wire(), "active": activate}, 201)

    async def _activate(self, request: Request) -> Response:
        await self._identity(request, manage=True)
        number = request.path_params["number"]
        if not (number.isascii() and number.isdigit()):  # "²" is a digit to isdigit, not to int
            raise NotFound(f"revision {number!r} not found")
        agent = await self.agents.registry.activate(request.path_params["agent_id"], int(number))
        return json_response(await self._view(agent))

    async def _agent_runs(self, request: Request) -> Response:
        identity = await self._identity(request)
        agent_id = request.path_params["agent_id"]
        runs = self.agents.runs
        if request.method == "GET":
            return json_response({"runs": [record.to_wire() for record in await runs.list(identity, agent_id)]})
        record = await runs.start(identity, agent_id, RunRequest.parse(await self._body(request)))
        if request.query_params.get("wait") == "true":
            await runs.wait(record.id)
            return json_response((await runs.get(identity, record.id)).to_wire())
        return json_response(record.to_wire(), 202, {"location": f"/v1/runs/{record.id}"})

    async def _run(self, request: Request) -> Response:
        identity = await self._identity(request)
        run_id = request.path_params["run_id"]
        if request.method == "DELETE":
            return json_response((await self.agents.runs.cancel(identity, run_id)).to_wire(), 202)
        return json_response((await self.agents.runs.get(identity, run_id)).to_wire())
