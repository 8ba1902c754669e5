"""Starlette app factory: the front door, routes, error handlers and lifespan, nothing else.

One rule for a store outage lives here: while the store is unavailable (its last PING went unanswered, a bool read,
no round trip) every ``/mcp`` and ``/v1`` request is refused with 503 before anything else runs, whether or not it
would have touched the store; health and metrics still answer.
"""

from __future__ import annotations

import gc
import hmac
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from mcp_gateway.agents.api import AgentsApi
from mcp_gateway.agents.mcp_tool import agent_tools_served
from mcp_gateway.agents.service import running_agents
from mcp_gateway.api.openapi import openapi_document
from mcp_gateway.api.task_definitions import TaskDefinitionsApi
from mcp_gateway.api.task_sessions import TasksApi, guarded
from mcp_gateway.api.tool_pins import ToolsApi
from mcp_gateway.config import GatewayConfig
from mcp_gateway.console.pages import Console
from mcp_gateway.eras.context import McpContext
from mcp_gateway.eras.endpoint import McpEndpoint
from mcp_gateway.errors import BearerChallenge, Conflict, Forbidden, NotFound, StoreUnavailable, Unauthorized
from mcp_gateway.gateway import Gateway, running_gateway
from mcp_gateway.http.front_door import FrontDoor, guarded_path
from mcp_gateway.http.request_tracing import TraceRequests
from mcp_gateway.http.responses import error_response, http_error_response, internal_error_response, json_response
from mcp_gateway.identity.oauth_metadata import METADATA_PATH, protected_resource_metadata
from mcp_gateway.ops.tracing import Tracing
from mcp_gateway.reload import Reloader

logger = logging.getLogger(__name__)


class _Routes:
    """Handlers bound to the gateway that the lifespan starts; requests only arrive after it is set."""

    def __init__(self) -> None:
        self._gateway: Gateway | None = None
        self._mcp: McpEndpoint | None = None
        self._tasks: TasksApi | None = None
        self._definitions: TaskDefinitionsApi | None = None
        self._tools: ToolsApi | None = None
        self.reloader: Reloader | None = None

    def bind(self, gateway: Gateway) -> None:
        self._gateway = gateway
        context = McpContext.of(gateway)
        self._mcp = McpEndpoint(context)
        self._tasks = TasksApi(gateway.authenticator, gateway.sessions, gateway.config.server, gateway.limiter)
        self._definitions = TaskDefinitionsApi(
            gateway.authenticator,
            gateway.definitions,
            gateway.sessions,
            lambda: [entry.name for entry in gateway.catalog.snapshot().tools()],
            gateway.config.server,
        )
        self._tools = ToolsApi(gateway.authenticator, gateway.config, gateway.pins, gateway.catalog, gateway.audit)

    @property
    def gateway(self) -> Gateway:
        assert self._gateway is not None, "the gateway lifespan has not started"
        return self._gateway

    def end_streams(self) -> None:
        if self._gateway is not None:
            self._gateway.notifier.close()

    def store_down(self) -> Response | None:
        """The 503 to answer while the store is unavailable (fail closed), else None."""
        store = self.gateway.store
        if store.available:
            return None
        return error_response(StoreUnavailable(f"store {store.description} is unavailable (last PING unanswered)"))

    async def mcp(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``/mcp``, every method: the endpoint runs the front door and the store gate itself, in its one pass."""
        assert self._mcp is not None
        await self._mcp(scope, receive, send)

    async def sessions(self, request: Request) -> Response:
        assert self._tasks is not None
        return await self._tasks.sessions(request)

    async def tasks(self, request: Request) -> Response:
        api = self._definitions
        assert api is not None
        return await guarded(api.create if request.method == "POST" else api.listing, request)

    async def task(self, request: Request) -> Response:
        api = self._definitions
        assert api is not None
        handler = {"GET": api.get, "PUT": api.replace, "DELETE": api.delete}[request.method]
        return await guarded(handler, request)

    async def task_versions(self, request: Request) -> Response:
        assert self._definitions is not None
        return await guarded(self._definitions.versions, request)

    async def current_session(self, request: Request) -> Response:
        assert self._tasks is not None
        return await self._tasks.current(request)

    async def session_by_id(self, request: Request) -> Response:
        assert self._tasks is not None
        return await self._tasks.by_id(request)

    async def openapi(self, request: Request) -> Response:
        return json_response(openapi_document(self.gateway.server_info["version"]))

    async def tool_pins(self, request: Request) -> Response:
        assert self._tools is not None
        return await self._tools.pins(request)

    async def approve_tool(self, request: Request) -> Response:
        assert self._tools is not None
        return await self._tools.approve(request)

    async def reload_config(self, request: Request) -> Response:
        return await guarded(self._reload_config, request)

    async def _reload_config(self, request: Request) -> Response:
        """``POST /v1/config/reload`` (admins): what SIGHUP does, answered with the outcome."""
        identity = await self.gateway.authenticator.authenticate(request.headers.get("authorization"))
        if not identity.is_admin:
            raise Forbidden("only an admin may reload the config")
        if self.reloader is None:
            raise Conflict("this gateway was not started from a config file, so there is nothing to reload")
        outcome = await self.reloader.reload()
        if outcome.applied:
            return json_response(outcome.to_json())
        return json_response({"error": "config_refused", "message": outcome.summary, **outcome.to_json()}, 422)

    async def healthz(self, request: Request) -> Response:
        return json_response({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        report = await self.gateway.readiness()
        return json_response(report, 200 if report["ready"] else 503)

    async def metrics(self, request: Request) -> Response:
        gateway = self.gateway
        token = gateway.config.metrics.bearer_token
        if token is not None and not _bearer_matches(request.headers.get("authorization"), token):
            error = None if request.headers.get("authorization") is None else "invalid_token"
            challenge = BearerChallenge(error=error, description="/metrics needs the metrics bearer token")
            return error_response(Unauthorized("/metrics needs the metrics bearer token", challenge=challenge))
        return Response(gateway.metrics.render(), media_type=gateway.metrics.content_type)


def _bearer_matches(authorization: str | None, token: str) -> bool:
    """Constant-time: how much of a wrong token matched must not show in the answer's timing."""
    scheme, _, presented = (authorization or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(presented.strip().encode(), token.encode())


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


def _settle_startup_objects() -> None:
    """Take what start-up built (modules, config, compiled policies, the catalog) out of the cyclic collector's sight.

    Those objects live as long as the process, yet every full collection walks them all again: under load that was
    14 % of the gateway's CPU, with single pauses of 125 ms (``benchmarks/README.md``). Frozen, they are skipped.
    Everything made later is collected as before; of the frozen objects, one a config reload replaces is still freed
    by reference counting, and only one caught in a reference cycle stays until exit (a reload is rare, and small).
    """
    gc.collect()
    gc.freeze()


async def _console_off(request: Request) -> Response:
    return error_response(NotFound("the console is off: set console.secret in the config to turn it on"))


class _StoreGate:
    """The outage rule, applied once to every route the front door guards but ``/mcp`` (whose endpoint applies it in its
    own pass, ``McpContext.check_store``) and to the console.

    A bool read per request: the store's health is kept by its own background PING.
    """

    def __init__(self, app: ASGIApp, routes: _Routes) -> None:
        self._app = app
        self._routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (guarded_path(scope["path"]) or scope["path"].startswith("/console")):
            refusal = self._routes.store_down()
            if refusal is not None:
                await refusal(scope, receive, send)
                return
        await self._app(scope, receive, send)


class _GatewayApp(Starlette):
    """Starlette, with ``/mcp`` taken before its middleware stack and router.

    Every MCP request goes to the one endpoint, so routing it through Starlette's error and exception middleware and
    its router (three ASGI layers, a ``send`` wrapper each) buys nothing; the endpoint is one ASGI app that runs the
    same front door and store gate as every other guarded route, and answers a bug of ours with the same JSON 500.
    """

    def __init__(self, *, mcp: ASGIApp, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._mcp_path = mcp

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/mcp":
            scope["app"] = self
            await self._mcp_path(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def create_app(
    config: GatewayConfig, config_path: str | Path | None = None, *, tracing: Tracing | None = None
) -> Starlette:
    """The app. With ``config_path`` (the file ``config`` was read from) SIGHUP, ``server.watchConfig`` and
    ``POST /v1/config/reload`` apply that file again (``reload.py``); ``tracing`` defaults to what the ``OTEL_*``
    environment asks for (off when it asks for nothing)."""
    routes = _Routes()
    agents = AgentsApi()
    tracing = tracing or Tracing.from_environment()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            async with (
                running_gateway(config) as gateway,
                running_agents(gateway) as running,
                agent_tools_served(running),
                anyio.create_task_group() as reloads,
            ):
                routes.bind(gateway)
                agents.bind(running)
                if config_path is not None:
                    routes.reloader = Reloader(gateway, config_path)
                    await reloads.start(partial(routes.reloader.watch, poll=config.server.watch_config))
                _settle_startup_objects()
                yield
                reloads.cancel_scope.cancel()
        finally:
            tracing.shutdown()

    console = (
        Console(config, config.console.secret, lambda: routes.gateway, lambda: agents.agents).routes()
        if config.console.secret
        else [Route("/console{rest:path}", _console_off)]
    )
    app = _GatewayApp(
        # The same checks as the middleware below, for /mcp alone, made by the endpoint in one pass.
        mcp=TraceRequests(routes.mcp, tracing=tracing),
        routes=[
            *console,
            Route("/v1/tasks", routes.tasks, methods=["GET", "POST"]),
            Route("/v1/tasks/sessions", routes.sessions, methods=["GET", "POST"]),
            Route("/v1/tasks/sessions/current", routes.current_session, methods=["GET", "DELETE"]),
            Route("/v1/tasks/sessions/{token_id}", routes.session_by_id, methods=["GET", "DELETE"]),
            Route("/v1/tasks/{task_id}", routes.task, methods=["GET", "PUT", "DELETE"]),
            Route("/v1/tasks/{task_id}/versions", routes.task_versions, methods=["GET"]),
            Route("/openapi.json", routes.openapi, methods=["GET"]),
            Route("/v1/tools/pins", routes.tool_pins, methods=["GET"]),
            Route("/v1/tools/{name}/approve", routes.approve_tool, methods=["POST"]),
            Route("/v1/config/reload", routes.reload_config, methods=["POST"]),
            *agents.routes(),
            Route("/healthz", routes.healthz, methods=["GET"]),
            Route("/readyz", routes.readyz, methods=["GET"]),
            Route("/metrics", routes.metrics, methods=["GET"]),
            *_metadata_routes(config),
        ],
        middleware=[
            Middleware(TraceRequests, tracing=tracing),
            Middleware(FrontDoor, server=config.server),
            Middleware(_StoreGate, routes=routes),
        ],
        exception_handlers={HTTPException: http_error_response, Exception: internal_error_response},
        lifespan=lifespan,
    )
    app.state.routes = routes
    # A path with a stray trailing slash is not found, like any other unknown path, rather than redirected: a
    # redirected POST loses its body in many clients, and every answer stays the same JSON error shape.
    app.router.redirect_slashes = False
    return app
