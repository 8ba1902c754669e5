"""CPU per ``POST /mcp`` of the gateway's own HTTP path (front door → era → method table → answer), in memory.

Run from the repository root: ``PYTHONPATH=$PWD .venv/bin/python benchmarks/mcp_dispatch.py``. The app of
``create_app`` is called as ASGI with the in-memory driver of the tests (no socket, no uvicorn), for three requests:
a handshake-era ``ping`` (the front half and the era's own answer: the least the path costs), a 2026-07-28
``tools/list``, a handshake-era ``tools/list`` in an open session, and a 2026-07-28 ``tools/call`` of
the demo upstream's ``echo`` (a stdio process: its own CPU is not counted, the gateway's side of the hop is). Prints
this process's CPU time (``time.process_time``) per request, best of 5 repeats, so a change of the dispatch can be
compared before/after on a busy machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import time
from typing import Any

from starlette.types import ASGIApp

from mcp_gateway.app import create_app
from mcp_gateway.ops.tracing import Tracing
from tests.support.asgi_driver import AsgiClient
from tests.support.harness import DEMO_KEY, make_config

MODERN = "2026-07-28"
META = {"io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {}}


def request(body: dict[str, Any], headers: dict[str, str]) -> AsgiClient:
    client = AsgiClient(json.dumps(body).encode())
    raw = {"authorization": f"Bearer {DEMO_KEY}", "content-type": "application/json", **headers}
    client.scope["headers"] = [(k.encode(), v.encode()) for k, v in raw.items()]
    return client


async def send(app: ASGIApp, body: dict[str, Any], headers: dict[str, str]) -> AsgiClient:
    client = request(body, headers)
    await client.call(app)
    return client


async def per_request_us(app: ASGIApp, body: dict[str, Any], headers: dict[str, str], count: int) -> float:
    best = float("inf")
    for _ in range(5):
        started = time.process_time()
        for _ in range(count):
            client = await send(app, body, headers)
        best = min(best, time.process_time() - started)
        assert client.status == 200, client.sent
    return best / count * 1e6


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    app = create_app(make_config(), tracing=Tracing.off())
    async with app.router.lifespan_context(app):
        modern = {"mcp-protocol-version": MODERN, "mcp-method": "tools/list"}
        listing = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": META}}
        init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25"}}
        opened = await send(app, init, {})
        session = dict(opened.headers)[b"mcp-session-id"].decode()
        legacy = {"mcp-session-id": session, "mcp-protocol-version": "2025-11-25"}
        legacy_listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
        call = {
            "jsonrpc": "2.0",
            "id": 3,
            "method": "tools/call",
            "params": {"name": "demo__echo", "arguments": {"text": "hi"}, "_meta": META},
        }
        call_headers = {"mcp-protocol-version": MODERN, "mcp-method": "tools/call", "mcp-name": "demo__echo"}
        await send(app, call, call_headers)  # the upstream's first call warms its session
        ping = {"jsonrpc": "2.0", "id": 4, "method": "ping"}
        for name, body, headers in (
            ("legacy ping", ping, legacy),
            ("modern tools/list", listing, modern),
            ("legacy tools/list", legacy_listing, legacy),
            ("modern tools/call", call, call_headers),
        ):
            count = args.requests if name != "modern tools/call" else args.requests // 4
            print(f"{name:20} {await per_request_us(app, body, headers, count):8.1f} µs CPU per request")


if __name__ == "__main__":
    asyncio.run(main())
