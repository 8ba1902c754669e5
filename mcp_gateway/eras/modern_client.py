"""A 2026-07-28 client during one of its calls, as the upstream serving the call sees it.

The upstream may tell the client things about the call while it runs: log messages, which at 2026-07-28 the client
opts in to per request (``io.modelcontextprotocol/logLevel``) and gets on that request's response stream, never
elsewhere. The gateway relays them from an upstream of either era: a 2026-07-28 upstream is told the client's level
and sends only what it asked for; a handshake-era one logs for the gateway's shared session at any level, so the
gateway filters. Nothing is asked of the client live: a 2026-07-28 upstream asks with ``input_required`` results, and a
handshake-era upstream's questions become such results in ``core/input_bridge.py``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import anyio
from mcp_types import INTERNAL_ERROR

from mcp_gateway.eras.calls import Emit
from mcp_gateway.eras.log_levels import relayed
from mcp_gateway.errors import RpcError

logger = logging.getLogger(__name__)


class ModernDownstream:
    """The client of one 2026-07-28 call: its declared capabilities, and its response stream (``emit``; None when it
    takes no SSE) for the log messages at or above ``log_level`` (None: it opted in to none)."""

    def __init__(self, capabilities: Mapping[str, Any], emit: Emit | None, log_level: str | None) -> None:
        self._capabilities = capabilities
        self._emit = emit
        self._log_level = log_level

    @property
    def capabilities(self) -> Mapping[str, Any]:
        return self._capabilities

    async def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        raise RpcError(INTERNAL_ERROR, f"{method}: a 2026-07-28 client is asked with an input_required result")

    async def notify(self, method: str, params: dict[str, Any]) -> None:
        if self._emit is None or not relayed(method, params, self._log_level):
            return
        try:
            await self._emit({"jsonrpc": "2.0", "method": method, "params": params})
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            logger.debug("%s dropped: the call has ended", method)
