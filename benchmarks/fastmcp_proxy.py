"""Scenario (d): FastMCP's proxy in front of the same echo upstream, served the way the gateway is served.

``fastmcp.server.create_proxy(url)`` is FastMCP 4's spelling of ``FastMCP.as_proxy(url)`` (the 3.x classmethod, built
on the mcp 1.x SDK and so handshake-era only): a ``FastMCPProxy`` whose backend client mirrors each front request's
protocol era. It is used as documented, with defaults: a fresh backend session per front request, FastMCP's own
streamable HTTP app. That default creates a new HTTP client (with a new TLS context, even for http://) and a new
backend session for every call; ``--reuse-session`` instead hands ``create_proxy`` one connected ``Client``, which
FastMCP then shares across all calls (it warns this can mix request context between callers). uvicorn runs it on
uvloop with httptools, the same server stack ``mcp-gateway serve`` runs on, so the two proxies differ only in their
own code.

    python benchmarks/fastmcp_proxy.py --upstream http://127.0.0.1:9100/mcp --port 9300
"""

from __future__ import annotations

import argparse

import uvicorn
import uvloop
from fastmcp import Client
from fastmcp.server import create_proxy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--upstream", required=True, help="the echo server's /mcp URL")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9300)
    parser.add_argument("--reuse-session", action="store_true", help="share one connected backend session")
    args = parser.parse_args()
    uvloop.run(serve(args.upstream, args.host, args.port, reuse_session=args.reuse_session))


async def serve(upstream: str, host: str, port: int, *, reuse_session: bool) -> None:
    config = uvicorn.Config(
        None,  # set below, once the proxy exists
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=1,
    )
    if not reuse_session:
        config.app = create_proxy(upstream, name="bench-fastmcp-proxy").http_app(path="/mcp")
        await uvicorn.Server(config).serve()
        return
    async with Client(upstream) as backend:
        config.app = create_proxy(backend, name="bench-fastmcp-proxy").http_app(path="/mcp")
        await uvicorn.Server(config).serve()


if __name__ == "__main__":
    main()
