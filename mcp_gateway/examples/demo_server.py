"""A tiny upstream MCP server to put behind the gateway in examples, docs and tests.

It is deliberately boring: fixed fake data and a handful of tools that each exercise one gateway path (a plain
call, arguments a policy can compare against the task context, progress, a tool error, a changing tool list, and
the tools that need the client's help mid-call: elicitation, sampling, roots and log messages).
Built on the SDK's ``MCPServer`` so it speaks both protocol eras on either transport:

    python -m mcp_gateway.examples.demo_server                   # stdio
    python -m mcp_gateway.examples.demo_server --http --port 9000  # streamable HTTP on /mcp
"""

from __future__ import annotations

import argparse
import warnings
from typing import Annotated, Any, Literal

import anyio
import mcp_types as types
from mcp.server import ServerRequestContext
from mcp.server.mcpserver import Context, Elicit, ElicitationResult, ListRoots, MCPServer, Resolve, Sample
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.session import ServerSession
from mcp.shared.exceptions import MCPDeprecationWarning
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import BaseModel, Field

TicketStatus = Literal["open", "pending", "resolved", "closed"]

_CUSTOMERS: dict[str, dict[str, Any]] = {
    "cust-001": {"id": "cust-001", "name": "Ada Lovelace", "tier": "gold", "email": "ada@example.com"},
    "cust-002": {"id": "cust-002", "name": "Alan Turing", "tier": "silver", "email": "alan@example.com"},
    "cust-003": {"id": "cust-003", "name": "Grace Hopper", "tier": "bronze", "email": "grace@example.com"},
}

NOTE = "demo://note"

README = """# Demo upstream

Tools: echo, add, get_customer, update_ticket, count_slowly, fail, toggle_extra_tool, and the ones that need the
client mid-call: confirm_action (elicitation), ask_model (sampling), client_roots (roots), log_steps (log messages),
and region_header (an argument mirrored into an Mcp-Param-Region header); write_note changes demo://note and tells
its subscribers (`resources/subscribe`, or a 2026-07-28 `subscriptions/listen` stream); note_link returns a link to it
and the note embedded; note_subscriptions lists the subscribe and unsubscribe requests received.
Customers: any id answers; cust-001, cust-002 and cust-003 have names. Also readable as demo://customers/{customer_id};
customer_reads lists the customer records read that way.
"""


def _customer(customer_id: str) -> dict[str, Any]:
    if not customer_id:
        raise ToolError("customer_id must not be empty")
    known = _CUSTOMERS.get(customer_id)
    return known or {"id": customer_id, "name": f"Customer {customer_id}", "tier": "standard", "email": None}


class Confirmation(BaseModel):
    confirm: bool


def _ask_confirmation(action: str) -> Elicit[Confirmation]:
    return Elicit(f"Really {action}?", Confirmation)


def _ask_model(question: str) -> Sample:
    message = types.SamplingMessage(role="user", content=types.TextContent(type="text", text=question))
    return Sample([message], max_tokens=100)


def _roots() -> ListRoots:
    return ListRoots()


def _add_note(server: MCPServer) -> None:
    """demo://note, which write_note changes, announced to its subscribers in both eras.

    2026-07-28 clients subscribe through ``subscriptions/listen`` (the SDK's bus); handshake-era ones send
    ``resources/subscribe``, which ``MCPServer`` has no decorator for, hence the low-level handlers. Every such
    request is logged, and ``note_subscriptions`` reads the log back: it shows what a proxy in between really asked.
    """
    note = {"text": "nothing noted yet"}
    subscribers: set[ServerSession] = set()
    requests: list[str] = []

    async def subscribe(ctx: ServerRequestContext[Any], params: types.SubscribeRequestParams) -> types.EmptyResult:
        requests.append(f"subscribe {params.uri}")
        if params.uri == NOTE:
            subscribers.add(ctx.session)
        return types.EmptyResult()

    async def unsubscribe(ctx: ServerRequestContext[Any], params: types.UnsubscribeRequestParams) -> types.EmptyResult:
        requests.append(f"unsubscribe {params.uri}")
        if params.uri == NOTE:
            subscribers.discard(ctx.session)
        return types.EmptyResult()

    lowlevel = server._lowlevel_server
    lowlevel.add_request_handler("resources/subscribe", types.SubscribeRequestParams, subscribe)
    lowlevel.add_request_handler("resources/unsubscribe", types.UnsubscribeRequestParams, unsubscribe)

    @server.tool()
    async def write_note(text: str, ctx: Context) -> str:
        """Replace the text of demo://note and tell the clients subscribed to it."""
        note["text"] = text
        await ctx.notify_resource_updated(NOTE)
        for session in list(subscribers):
            try:
                await session.send_resource_updated(NOTE)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                subscribers.discard(session)  # that client is gone
        return "noted"

    @server.tool()
    def note_link() -> list[types.ResourceLink | types.EmbeddedResource]:
        """demo://note twice: a link to it, and the note itself embedded (a gateway may rewrite both URIs)."""
        link = types.ResourceLink(type="resource_link", uri=NOTE, name="note", mime_type="text/plain")
        contents = types.TextResourceContents(uri=NOTE, mime_type="text/plain", text=note["text"])
        return [link, types.EmbeddedResource(type="resource", resource=contents)]

    @server.tool()
    def note_subscriptions() -> str:
        """The resources/subscribe and resources/unsubscribe requests this server received, oldest first."""
        return "; ".join(requests) or "none"

    @server.resource(NOTE, name="note", mime_type="text/plain")
    def read_note() -> str:
        """A note that write_note changes: subscribe to it to hear when."""
        return note["text"]


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

    # The next four need the client mid-call. The SDK picks the era's way of asking: a server→client request during
    # the call (2025-11-25 and older) or an `input_required` result the client answers on a retry (2026-07-28).
    @server.tool()
    def confirm_action(
        action: str, answer: Annotated[ElicitationResult[Confirmation], Resolve(_ask_confirmation)]
    ) -> str:
        """Ask the user to confirm `action` (elicitation); says what they answered."""
        if answer.action != "accept":
            return f"{action}: {answer.action}"
        return f"{action}: {'confirmed' if answer.data.confirm else 'not confirmed'}"

    @server.tool()
    def ask_model(question: str, reply: Annotated[types.CreateMessageResult, Resolve(_ask_model)]) -> str:
        """Ask the client's model a question (sampling); returns its text answer."""
        content = reply.content
        return content.text if isinstance(content, types.TextContent) else f"[{content.type}]"

    @server.tool()
    def client_roots(roots: Annotated[types.ListRootsResult, Resolve(_roots)]) -> list[str]:
        """The client's roots (roots/list), as URIs."""
        return [str(root.uri) for root in roots.roots]

    @server.tool()
    async def log_steps(n: int, ctx: Context) -> str:
        """Send n log messages (notifications/message) during the call."""
        for i in range(1, n + 1):
            await ctx.info(f"step {i} of {n}")
        return f"logged {n}"

    @server.tool()
    def region_header(region: Annotated[str, Field(json_schema_extra={"x-mcp-header": "Region"})], ctx: Context) -> str:
        """Echo the Mcp-Param-Region header the call arrived with (2026-07-28 HTTP mirrors `region` into it)."""
        return (ctx.headers or {}).get("mcp-param-region", "")

    _add_note(server)

    @server.resource("demo://readme", name="readme", mime_type="text/markdown")
    def readme() -> str:
        """What this server offers."""
        return README

    # What reached this server, so a test can tell a read the gateway refused from one it forwarded.
    customer_reads: list[str] = []

    @server.resource("demo://customers/{customer_id}", name="customer", mime_type="application/json")
    def customer(customer_id: str) -> dict[str, Any]:
        """One customer record."""
        customer_reads.append(customer_id)
        return _customer(customer_id)

    @server.tool(name="customer_reads")
    def list_customer_reads() -> str:
        """The ids of the customer records read as demo://customers/{customer_id}, oldest first."""
        return "; ".join(customer_reads) or "none"

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
    # log_steps uses the handshake era's logging on purpose; the 2026-07-28 deprecation is not news to this demo.
    warnings.filterwarnings("ignore", category=MCPDeprecationWarning)
    server = build_server()
    if args.http:
        server.run("streamable-http", host=args.host, port=args.port)
    else:
        server.run()


if __name__ == "__main__":
    main()
