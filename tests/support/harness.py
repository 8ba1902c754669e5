"""Running a real gateway for tests: a uvicorn server on a free loopback port, and real MCP SDK clients."""

from __future__ import annotations

import asyncio
import copy
import hashlib
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import httpx2
import uvicorn
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from starlette.types import ASGIApp

from mcp_gateway.app import create_app
from mcp_gateway.config import GatewayConfig, parse_config
from mcp_gateway.ops.tracing import Tracing

DEMO_KEY = "mgw_test_demo_key_0000000000000000000000"
SUPPORT_KEY = "mgw_test_support_key_11111111111111111111"
OTHER_KEY = "mgw_test_other_key_222222222222222222222"


def sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


DEMO_UPSTREAM: dict[str, Any] = {
    "name": "demo",
    "transport": "stdio",
    "command": sys.executable,
    "args": ["-m", "mcp_gateway.examples.demo_server"],
    "timeout": 20,
}

EVERYTHING = Path(__file__).resolve().parents[2] / "node_modules" / ".bin" / "mcp-server-everything"


def everything_upstream() -> dict[str, Any]:
    """The pinned npm ``server-everything`` over stdio, as an upstream config section."""
    assert EVERYTHING.exists(), "npm test peers are not installed: run `npm ci` (make test does)"
    return {"name": "everything", "transport": "stdio", "command": "node", "args": [str(EVERYTHING), "stdio"]}


BASE_CONFIG: dict[str, Any] = {
    "server": {"host": "127.0.0.1", "port": 0, "maxBodyBytes": 65536},
    "store": {"url": "memory://"},
    "upstreams": [DEMO_UPSTREAM],
    "identities": [
        {"id": "demo-agent", "labels": {"team": "demo"}, "credentials": [{"sha256": sha(DEMO_KEY)}]},
        {
            "id": "support-agent",
            "requireTask": True,
            "allowedTools": ["demo__get_customer", "demo__update_ticket", "demo__echo"],
            "credentials": [{"sha256": sha(SUPPORT_KEY)}],
        },
        {"id": "other-agent", "allowedTools": ["demo__e*"], "credentials": [{"sha256": sha(OTHER_KEY)}]},
    ],
    "tasks": [
        {
            "id": "resolve-ticket",
            "name": "Resolve a support ticket",
            "allowedTools": ["demo__get_customer", "demo__update_ticket"],
            "contextSchema": {
                "type": "object",
                "required": ["ticket_id", "customer_id"],
                "properties": {"ticket_id": {"type": "string"}, "customer_id": {"type": "string"}},
            },
        }
    ],
    "policies": [
        {
            "name": "same-customer",
            "effect": "allow",
            "tools": ["demo__get_customer", "demo__update_ticket"],
            "condition": "task.context.customer_id == request.tool.args.customer_id",
            "message": "this task may only touch its own customer",
        }
    ],
}


def make_config(**sections: Any) -> GatewayConfig:
    """The base test config with whole top-level sections replaced."""
    raw = copy.deepcopy(BASE_CONFIG)
    raw.update(copy.deepcopy(sections))
    return parse_config(raw)


@asynccontextmanager
async def serve_gateway(config: GatewayConfig, *, tracing: Tracing | None = None) -> AsyncIterator[str]:
    """Start the gateway app under uvicorn on the config's port (0, the base config's, is an ephemeral one); yield
    its base URL. ``tracing``: where its spans go (default: off, whatever the ``OTEL_*`` environment says)."""
    async with serve_app(create_app(config, tracing=tracing or Tracing.off()), config.server.port) as url:
        yield url


@asynccontextmanager
async def serve_app(app: ASGIApp, port: int = 0) -> AsyncIterator[str]:
    """Serve an ASGI app under uvicorn in this event loop (port 0: an ephemeral one); yield its base URL."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("server exited during start-up")
            await asyncio.sleep(0.02)
        bound = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{bound}"
    finally:
        server.should_exit = True
        await task


@asynccontextmanager
async def mcp_client(
    base_url: str,
    key: str,
    *,
    mode: str = "auto",
    task_token: str | None = None,
    headers: dict[str, str] | None = None,
    **kwargs: Any,
) -> AsyncIterator[Client]:
    """A real SDK client of either era ("legacy" handshake or modern "2026-07-28"/"auto") with our headers (and
    ``headers`` on every request)."""
    headers = {**(headers or {}), "Authorization": f"Bearer {key}"}
    if task_token:
        headers["X-Task-Token"] = task_token
    async with httpx2.AsyncClient(headers=headers, timeout=30) as http:
        transport = streamable_http_client(f"{base_url}/mcp", http_client=http)
        async with Client(transport, mode=mode, **kwargs) as client:
            yield client


async def create_task_session(
    base_url: str, key: str, task_id: str, context: Any, ttl: int | None = None
) -> httpx.Response:
    body: dict[str, Any] = {"taskId": task_id, "context": context}
    if ttl is not None:
        body["ttl"] = ttl
    async with httpx.AsyncClient() as http:
        return await http.post(f"{base_url}/v1/tasks/sessions", json=body, headers={"Authorization": f"Bearer {key}"})
