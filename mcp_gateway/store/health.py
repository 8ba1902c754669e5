"""Whether the store answers, known without asking it on every request.

While the store is unavailable every request at ``/mcp`` and ``/v1`` is refused (fail closed), and that check must
not cost a round trip per request. So the store PINGs its backend once a second in the background and each request
reads the last answer, a bool. An operation that fails marks the store unavailable at once, so the requests that
follow are refused before they wait for a timeout of their own; only a PING that answers marks it available again.
Meanwhile the store's operations themselves fail at once (``known_down``, a circuit breaker), so work that passed the
request gate or runs in the background (the audit writer) does not wait on a hung Redis either.

How fast: an outage that refuses connections is noticed by the next PING (within a second), a silent one within a
second plus the PING's own bound, and any failed operation is noticed at once; recovery is noticed by the first PING
that answers (within a second). While ``run`` watches, each transition is logged once, never per request.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import anyio

from mcp_gateway.errors import StoreUnavailable

logger = logging.getLogger(__name__)

HEALTH_INTERVAL = 1.0


class StoreHealth:
    """The store's last known state: unknown until the first PING, then whatever the latest answer said."""

    def __init__(
        self, ping: Callable[[], Awaitable[None]], description: str, *, interval: float = HEALTH_INTERVAL
    ) -> None:
        self._ping = ping
        self._description = description
        self._interval = interval
        self._watching = False
        self.available = False
        """Read on every request: True only while the latest PING (or operation) got an answer."""

    @property
    def known_down(self) -> bool:
        """Whether operations should fail at once, unasked (a circuit breaker): the store is watched, and its
        latest PING or operation failed. Before ``run`` starts nobody watches, and every operation asks."""
        return self._watching and not self.available

    def answered(self) -> None:
        if self._watching and not self.available:
            logger.warning("store %s answers again: serving requests", self._description)
        self.available = True

    def failed(self, reason: str) -> None:
        if self._watching and self.available:
            logger.error("%s: every /mcp and /v1 request answers 503 until it is back", reason)
        self.available = False

    async def run(self) -> None:
        """PING every ``interval`` for the store's lifetime; failures are recorded by ``failed``, never raised."""
        self._watching = True
        while True:
            try:
                await self._ping()
            except StoreUnavailable:
                pass  # already recorded by the failing operation
            else:
                self.answered()
            await anyio.sleep(self._interval)
