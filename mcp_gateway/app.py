"""Starlette app factory: the front door, routes, error handlers and lifespan, nothing else.

One rule for a store outage lives here: while the store is unavailable (its last PING went unanswered, a bool read,
no round trip) every ``/mcp`` and ``/v1`` request is refused with 503 before anything else runs, whether or not it
would have touched the store; health and metrics still answer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mcp_gateway.config import GatewayConfig
from mcp_gateway.errors import StoreUnavailable
from mcp_gateway.gateway import CAPABILITIES, Gateway, running_gateway
from mcp_gateway.http.front_door import FrontDoor
from mcp_gateway.http.mcp_context import McpContext
from mcp_gateway.http.mcp_endpoint import McpEndpoint
from mcp_gateway.http.responses import error_response, http_error_response, internal_error_response, json_response
from mcp_gateway.http.tasks_api import TasksApi
from mcp_gateway.oauth import METADATA_PATH, protected_resource_metadata


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
        self._tasks = TasksApi(gateway.authenticator, gateway.sessions, gateway.config.server, gateway.limiter)

    @property
    def gateway(self) -> Gateway:
        assert self._gateway is not None, "the gateway lifespan has not started"
        return self._gateway

    def end_streams(self) -> None:
        if self._gateway is not None:
            self._gateway.notifier.close()

    def _store_down(self) -> Response | None:
        """The 503 to answer while the store is unavailable (fail closed), else None."""
        store = self.gateway.store
        if store.available:
            return None
        return error_response(StoreUnavailable(f"store {store.description} is unavailable (last PING unanswered)"))

    async def mcp(self, request: Request) -> Response:
        assert self._mcp is not None
        return self._store_down() or await self._mcp(request)

    async def create_session(self, request: Request) -> Response:
        assert self._tasks is not None
        return self._store_down() or await self._tasks.create(request)

    async def current_session(self, request: Request) -> Response:
        assert self._tasks is not None
        return self._store_down() or await self._tasks.current(request)

    async def session_by_id(self, request: Request) -> Response:
        assert self._tasks is not None
        return self._store_down() or await self._tasks.by_id(request)

    async def healthz(self, request: Request) -> Response:
        return json_response({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        report = await self.gateway.readiness()
        return json_response(report, 200 if report["ready"] else 503)

    async def metrics(self, request: Request) -> Response:
        metrics = self.gateway.metrics
        return Response(metrics.render(), media_type=metrics.content_type)


def end_streams(app: Starlette) -> None:
    """End every legacy GET stream and ``subscriptions/listen`` stream, and any opened from now on: the server is
    shutting down, and those streams would otherwise hold it open forever (calls in flight are left to finish)."""
    routes: _Routes = app.state.routes
    routes.end_streams()


def _metadata_routes(config: GatewayConfig) -> list[Route]:
    """RFC 9728 metadata, at the root and path-suffixed for /mcp; public, and readable by browser-based clients
    (which send ``MCP-Protocol-Version`` with it, so a CORS preflight comes first)."""
    if config.oauth is None:
        return []
    document = protected_resource_metadata(config.oauth)
    cors = {
        "access-control-allow-origin": "*",
        "access-control-allow-methods": "GET",
        "access-control-allow-headers": "mcp-protocol-version",
    }

    async def metadata(request: Request) -> Response:
        if request.method == "OPTIONS":
            return Response(status_code=204, headers=cors)
        return json_response(document, headers={**cors, "cache-control": "max-age=300"})

    return [Route(path, metadata, methods=["GET", "OPTIONS"]) for path in (METADATA_PATH, f"{METADATA_PATH}/mcp")]


def create_app(config: GatewayConfig) -> Starlette:
    routes = _Routes()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with running_gateway(config) as gateway:
            routes.bind(gateway)
            yield

    app = Starlette(
        routes=[
            Route("/mcp", routes.mcp, methods=["GET", "POST", "DELETE"]),
            Route("/v1/tasks/sessions", routes.create_session, methods=["POST"]),
            Route("/v1/tasks/sessions/current", routes.current_session, methods=["GET", "DELETE"]),
            Route("/v1/tasks/sessions/{token_id}", routes.session_by_id, methods=["GET", "DELETE"]),
            Route("/healthz", routes.healthz, methods=["GET"]),
            Route("/readyz", routes.readyz, methods=["GET"]),
            Route("/metrics", routes.metrics, methods=["GET"]),
            *_metadata_routes(config),
        ],
        middleware=[Middleware(FrontDoor, server=config.server)],
        exception_handlers={HTTPException: http_error_response, Exception: internal_error_response},
        lifespan=lifespan,
    )
    app.state.routes = routes
    # A path with a stray trailing slash is not found, like any other unknown path, rather than redirected: a
    # redirected POST loses its body in many clients, and every answer stays the same JSON error shape.
    app.router.redirect_slashes = False
    return app
