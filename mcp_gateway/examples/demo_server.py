"""A tiny upstream MCP server to put behind the gateway in examples, docs and tests.

It is deliberately boring: fixed fake data and a handful of tools that each exercise one gateway path (a plain
call, arguments a policy can compare against the task context, progress, a tool error, a changing tool list).
Built on the SDK's ``MCPServer`` so it speaks both protocol eras on either transport:

    python -m mcp_gateway.examples.demo_server                   # stdio
    python -m mcp_gateway.examples.demo_server --http --port 9000  # streamable HTTP on /mcp
"""

from __future__ import annotations

import argparse
from typing import Any, Literal

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

TicketStatus = Literal["open", "pending", "resolved", "closed"]

_CUSTOMERS: dict[str, dict[str, Any]] = {
    "cust-001": {"id": "cust-001", "name": "Ada Lovelace", "tier": "gold", "email": "ada@example.com"},
    "cust-002": {"id": "cust-002", "name": "Alan Turing", "tier": "silver", "email": "alan@example.com"},
    "cust-003": {"id": "cust-003", "name": "Grace Hopper", "tier": "bronze", "email": "grace@example.com"},
}

README = """# Demo upstream

Tools: echo, add, get_customer, update_ticket, count_slowly, fail, toggle_extra_tool.
Customers: any id answers; cust-001, cust-002 and cust-003 have names. Also readable as demo://customers/{customer_id}.
"""


def _customer(customer_id: str) -> dict[str, Any]:
    if not customer_id:
        raise ToolError("customer_id must not be empty")
    known = _CUSTOMERS.get(customer_id)
    return known or {"id": customer_id, "name": f"Customer {customer_id}", "tier": "standard", "email": None}


def build_server() -> MCPServer:
    """Build a fresh server; tests and the CLI each get their own so tool toggling never leaks between them."""
    server = MCPServer("demo", version="1.0.0", instructions="A demo upstream for mcp-gateway.")

    @server.tool()
    def echo(text: str) -> str:
        """Return the text unchanged."""
        return text

    @server.tool()
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    @server.tool()
    def get_customer(customer_id: str) -> dict[str, Any]:
        """Look up a customer record by id (fake data: any id answers, three have real-looking names)."""
        return _customer(customer_id)

    @server.tool()
    def update_ticket(ticket_id: str, customer_id: str, status: TicketStatus) -> dict[str, Any]:
        """Set a support ticket's status; echoes the change (nothing is stored)."""
        return {"ticket_id": ticket_id, "customer_id": customer_id, "status": status, "updated": True}

    @server.tool()
    async def count_slowly(n: int, delay: float, ctx: Context) -> str:
        """Count to n, sleeping `delay` seconds per step and reporting progress after each one."""
        for i in range(1, n + 1):
            await anyio.sleep(delay)
            await ctx.report_progress(i, n, f"counted {i} of {n}")
        return f"counted to {n}"

    @server.tool()
    def fail(message: str = "this tool always fails") -> str:
        """Always return a tool error (isError: true), never a protocol error."""
        raise ToolError(message)

    async def extra() -> str:
        """Only listed after toggle_extra_tool; shows a changing tool list."""
        return "extra"

    @server.tool()
    async def toggle_extra_tool(ctx: Context) -> bool:
        """Add or remove the `extra` tool and announce the list change; returns whether it is now listed."""
        listed = any(tool.name == "extra" for tool in await server.list_tools())
        if listed:
            server.remove_tool("extra")
        else:
            server.add_tool(extra)
        # 2026-07-28 delivers list changes on subscriptions/listen streams; older eras get a notification.
        if ctx.protocol_version in MODERN_PROTOCOL_VERSIONS:
            await ctx.notify_tools_changed()
        else:
            await ctx.session.send_tool_list_changed()
        return not listed

    @server.resource("demo://readme", name="readme", mime_type="text/markdown")
    def readme() -> str:
        """What this server offers."""
        return README

    @server.resource("demo://customers/{customer_id}", name="customer", mime_type="application/json")
    def customer(customer_id: str) -> dict[str, Any]:
        """One customer record."""
        return _customer(customer_id)

    @server.prompt()
    def summarize(text: str) -> str:
        """Ask the model for a one-paragraph summary."""
        return f"Summarize the following text in one paragraph:\n\n{text}"

    return server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--http", action="store_true", help="serve streamable HTTP instead of stdio")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    server = build_server()
    if args.http:
        server.run("streamable-http", host=args.host, port=args.port)
    else:
        server.run()


if __name__ == "__main__":
    main()
