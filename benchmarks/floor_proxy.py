"""A reference point, not a product: the thinnest proxy Python can be, to calibrate what a Python gateway could reach.

A raw ASGI app that reads the body, forwards it with the MCP routing headers to the upstream over one pooled aiohttp
client, and returns the answer. No authentication, no policy, no parsing, no audit. By default it runs on the gateway's
server stack (uvicorn on asyncio with h11); ``--fast`` uses uvloop + httptools instead.

    python benchmarks/floor_proxy.py --upstream http://127.0.0.1:9100/mcp --port 9400
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import aiohttp
import uvicorn

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_FORWARDED = (b"content-type", b"accept", b"authorization")


class FloorProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.session: aiohttp.ClientSession | None = None

    async def __call__(self, scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        assert self.session is not None
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        headers = {k.decode(): v.decode() for k, v in scope["headers"] if k.startswith(b"mcp-") or k in _FORWARDED}
        async with self.session.request(scope["method"], self.upstream, data=b"".join(chunks), headers=headers) as up:
            body = await up.read()
            out = [(b"content-type", up.headers.get("content-type", "application/json").encode())]
            if "mcp-session-id" in up.headers:
                out.append((b"mcp-session-id", up.headers["mcp-session-id"].encode()))
            status = up.status
        out.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": out})
        await send({"type": "http.response.body", "body": body})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100))
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.session is not None:
                    await self.session.close()
                await send({"type": "lifespan.shutdown.complete"})
                return


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9400)
    parser.add_argument("--fast", action="store_true", help="uvloop + httptools instead of asyncio + h11")
    args = parser.parse_args()
    uvicorn.run(
        FloorProxy(args.upstream),
        host=args.host,
        port=args.port,
        loop="uvloop" if args.fast else "asyncio",
        http="httptools" if args.fast else "h11",
        lifespan="on",
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=1,
    )


if __name__ == "__main__":
    main()
