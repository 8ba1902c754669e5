"""Starlette app factory: routes and lifespan, nothing else."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mcp_gateway.agents.api import AgentsApi
from mcp_gateway.agents.service import running_agents
from mcp_gateway.config import GatewayConfig
from mcp_gateway.gateway import CAPABILITIES, Gateway, running_gateway
from mcp_gateway.http.mcp_context import McpContext
from mcp_gateway.http.mcp_endpoint import McpEndpoint
from mcp_gateway.http.responses import json_response
from mcp_gateway.http.tasks_api import TasksApi


class _Routes:
    """Handlers bound to the gateway that the lifespan starts; requests only arrive after it is set."""

    def __init__(self) -> None:
        self._gateway: Gateway | None = None
        self._mcp: McpEndpoint | None = None
        self._tasks: TasksApi | None = None

    def bind(self, gateway: Gateway) -> None:
        self._gateway = gateway
        context = McpContext(
            server=gateway.config.server,
            authenticator=gateway.authenticator,
            sessions=gateway.sessions,
            tasks={task.id: task for task in gateway.config.tasks},
            proxy=gateway.proxy,
            store=gateway.store,
            metrics=gateway.metrics,
            notifier=gateway.notifier,
            subscriptions=gateway.subscriptions,
            capabilities=CAPABILITIES,
            server_info=gateway.server_info,
        )
        self._mcp = McpEndpoint(context)
        self._tasks = TasksApi(gateway.authenticator, gateway.sessions, gateway.config.server.max_body_bytes)

    @property
    def gateway(self) -> Gateway:
        assert self._gateway is not None, "the gateway lifespan has not started"
        return self._gateway

    async def mcp(self, request: Request) -> Response:
        assert self._mcp is not None
        return await self._mcp(request)

    async def create_session(self, request: Request) -> Response:
        assert self._tasks is not None
        return await self._tasks.create(request)

    async def current_session(self, request: Request) -> Response:
        assert self._tasks is not None
        return await self._tasks.current(request)

    async def session_by_id(self, request: Request) -> Response:
        assert self._tasks is not None
        return await self._tasks.by_id(request)

    async def healthz(self, request: Request) -> Response:
        return json_response({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        report = await self.gateway.readiness()
        return json_response(report, 200 if report["ready"] else 503)

    async def metrics(self, request: Request) -> Response:
        metrics = self.gateway.metrics
        return Response(metrics.render(), media_type=metrics.content_type)


def create_app(config: GatewayConfig) -> Starlette:
    routes = _Routes()
    agents = AgentsApi()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with running_gateway(config) as gateway, running_agents(gateway) as running:
            routes.bind(gateway)
            agents.bind(running)
            yield

    return Starlette(
        routes=[
            Route("/mcp", routes.mcp, methods=["GET", "POST", "DELETE"]),
            Route("/v1/tasks/sessions", routes.create_session, methods=["POST"]),
            Route("/v1/tasks/sessions/current", routes.current_session, methods=["GET", "DELETE"]),
            Route("/v1/tasks/sessions/{token_id}", routes.session_by_id, methods=["GET", "DELETE"]),
            *agents.routes(),
            Route("/healthz", routes.healthz, methods=["GET"]),
            Route("/readyz", routes.readyz, methods=["GET"]),
            Route("/metrics", routes.metrics, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
