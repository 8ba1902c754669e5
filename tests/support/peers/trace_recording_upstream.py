"""A streamable HTTP MCP upstream that tells what trace context each call reached it with, for the tracing tests.

Served in the test's own process (``tests.support.harness.serve_app``). Tool:
  whose_trace    JSON: the ``traceparent``/``tracestate`` HTTP headers of the call's POST and the same keys of its
                 ``params._meta``
"""

from __future__ import annotations

import json

from mcp.server.mcpserver import Context, MCPServer
from starlette.types import ASGIApp

TRACE_KEYS = ("traceparent", "tracestate")


def build() -> ASGIApp:
    server = MCPServer("trace-recorder")

    @server.tool()
    def whose_trace(ctx: Context) -> str:
        """The trace context this call arrived with, as headers and in _meta."""
        headers = ctx.headers or {}
        meta = ctx.request_context.meta or {}
        return json.dumps(
            {
                "headers": {key: headers.get(key) for key in TRACE_KEYS},
                "meta": {key: meta.get(key) for key in TRACE_KEYS},
            }
        )

    return server.streamable_http_app(host="127.0.0.1")
