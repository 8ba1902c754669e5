"""A running gateway without upstreams, its ``/mcp`` endpoint driven in memory (no server, no socket)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from mcp_gateway.core.proxy import Caller
from mcp_gateway.eras.context import McpContext
from mcp_gateway.eras.endpoint import McpEndpoint
from mcp_gateway.eras.request_headers import McpHeaders
from mcp_gateway.gateway import running_gateway
from tests.support.asgi_driver import AsgiClient
from tests.support.harness import DEMO_KEY, make_config

MODERN = "2026-07-28"
META = {"io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {}}


@asynccontextmanager
async def in_memory_endpoint() -> AsyncIterator[McpEndpoint]:
    """Entered in the test itself: the gateway's task group must be left in the task that entered it."""
    async with running_gateway(make_config(upstreams=[])) as gateway:
        yield McpEndpoint(McpContext.of(gateway))


def request(
    body: dict[str, Any] | bytes, headers: dict[str, str] | None = None, *, method: str = "POST", key: str = DEMO_KEY
) -> AsgiClient:
    """One request to ``/mcp`` with a credential and (for a body) ``Content-Type: application/json``."""
    encoded = body if isinstance(body, bytes) else json.dumps(body).encode()
    client = AsgiClient(encoded, method=method)
    raw = {"authorization": f"Bearer {key}"}
    if method == "POST":
        raw |= {"content-type": "application/json", "content-length": str(len(encoded))}
    client.scope["headers"] = [(k.encode(), v.encode()) for k, v in {**raw, **(headers or {})}.items()]
    return client


async def post(
    endpoint: McpEndpoint, body: dict[str, Any] | bytes, headers: dict[str, str] | None = None, **kwargs: Any
) -> AsgiClient:
    client = request(body, headers, **kwargs)
    await client.call(endpoint)
    return client


def modern_headers(method: str, **extra: str) -> dict[str, str]:
    return {"mcp-protocol-version": MODERN, "mcp-method": method, **extra}


async def caller_of(endpoint: McpEndpoint, key: str = DEMO_KEY) -> Caller:
    context = endpoint.context
    return await context.bind_token(await context.authenticate_bearer(f"Bearer {key}"), None)


def headers_of(headers: dict[str, str]) -> McpHeaders:
    return McpHeaders.read([(k.encode(), v.encode()) for k, v in headers.items()])


async def open_session(endpoint: McpEndpoint, version: str, key: str = DEMO_KEY) -> str:
    """A handshake-era session opened with ``initialize``; its ``Mcp-Session-Id``."""
    params = {"protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}
    client = await post(endpoint, {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": params}, key=key)
    return dict(client.headers)[b"mcp-session-id"].decode()
