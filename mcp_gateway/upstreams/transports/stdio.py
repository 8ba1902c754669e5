"""The stdio transport: the gateway spawns the upstream server and speaks to it over its stdin/stdout."""

from __future__ import annotations

from mcp.client import Transport
from mcp.client.stdio import StdioServerParameters, stdio_client

from mcp_gateway.config import StdioTransport


def stdio_transport(config: StdioTransport) -> Transport:
    """A transport that starts the configured command; its stderr goes to the gateway's stderr.

    The SDK passes only a safe subset of the gateway's environment (PATH, HOME, ...) plus the configured ``env``,
    so gateway secrets such as store passwords never reach an upstream process by accident.
    """
    params = StdioServerParameters(
        command=config.command,
        args=list(config.args),
        env=dict(config.env) or None,
        cwd=config.cwd,
    )
    return stdio_client(params)
