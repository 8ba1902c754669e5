"""The real SDK upstream: the ``mcp`` SDK's own ``MCPServer`` serving one echo tool, stateless, answering in JSON.

``echo_server.py`` is as thin as an MCP server can be, so the gateway in front of it looks as expensive as it can.
Real upstreams are built on an SDK and cost far more per call; against one, what share of its throughput does the
gateway keep? This is that upstream, used as the SDK documents it: ``MCPServer`` with a decorated tool, served over
streamable HTTP with ``stateless_http=True`` (no ``Mcp-Session-Id``, no session state) and ``json_response=True``
(plain JSON answers, no SSE), on uvicorn with uvloop and httptools (the stack the gateway and the echo server run on).
Stateless, it has no handshake to offer a 2025-11-25 client's session, so the benchmark drives it in the 2026-07-28
era only.

    python benchmarks/sdk_server.py --port 9200
"""

from __future__ import annotations

import argparse

import uvicorn
from mcp.server.mcpserver import MCPServer


def build() -> MCPServer:
    server = MCPServer("bench-sdk-echo", log_level="WARNING")

    @server.tool()
    def echo(text: str, customer_id: str = "") -> str:
        """Return the text unchanged."""
        return text

    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9200)
    args = parser.parse_args()
    app = build().streamable_http_app(stateless_http=True, json_response=True, host=args.host)
    uvicorn.run(
        app, host=args.host, port=args.port, loop="uvloop", http="httptools", log_level="warning", access_log=False
    )


if __name__ == "__main__":
    main()
