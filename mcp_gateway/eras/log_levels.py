"""Which of an upstream's log messages (``notifications/message``) a client takes, in either era.

A handshake-era client sets one level for its session (``logging/setLevel``); a 2026-07-28 client opts in per request
(``io.modelcontextprotocol/logLevel`` in ``_meta``) and gets none without it. Either way the gateway filters what it
relays by that level: a handshake-era upstream logs at whatever level it likes, for every client of the gateway's one
session with it, so the upstream's own filtering cannot be relied on.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

LOG_LEVELS = ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")
"""RFC 5424 severities, least severe first, as MCP names them."""

LOG_MESSAGE = "notifications/message"


def _rank(level: object) -> int:
    """A message of an unknown level ranks above every level: better an odd log line than a lost error."""
    return LOG_LEVELS.index(level) if isinstance(level, str) and level in LOG_LEVELS else len(LOG_LEVELS)


def relayed(method: str, params: Mapping[str, Any], least: str | None) -> bool:
    """Whether a notification reaches a client whose least severe wanted level is ``least`` (None: no log messages).

    Only log messages are filtered; anything else an upstream tells a client about its call passes.
    """
    if method != LOG_MESSAGE:
        return True
    return least is not None and _rank(params.get("level")) >= _rank(least)
