"""The handshake era's ``Mcp-Session-Id`` records in the store: load (renewing the expiry), save, delete.

A session's state (owner identity, negotiated version, client capabilities, log level) lives in the store, not in
this process, so any replica behind a load balancer can serve the session's next request. The expiry slides with
use, but a replica renews it at most once a minute (and at most every quarter of the TTL): in between, requests read
the record through the store's coherent local copy, with no round trip. So a session expires between
``ttl - window`` and ``ttl`` after its last request. Nothing here knows HTTP: who may use a session, and what a
missing one answers, is the era's (``handshake.py``).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from typing import Any

from mcp_gateway.store.base import Store

SESSION_KEY_PREFIX = "mcpsession:"
_RENEW_EVERY_SECONDS = 60.0
_RENEWALS_KEPT = 100_000


@dataclass(frozen=True)
class LegacySession:
    id: str
    identity_id: str
    protocol_version: str
    client_capabilities: dict[str, Any]
    client_info: dict[str, Any]
    log_level: str | None = None
    """Set by ``logging/setLevel``: log messages below it are not relayed to this session."""


class SessionRecords:
    """The records of every handshake-era session, as this replica reads and writes them."""

    def __init__(self, store: Store, ttl: float) -> None:
        self._store = store
        self.ttl = ttl
        self._renew_every = min(_RENEW_EVERY_SECONDS, ttl / 4)
        self._renewed: dict[str, float] = {}

    async def load(self, session_id: str) -> LegacySession | None:
        """The session's record; its expiry slides (GETEX on Redis) when this replica has not renewed it lately."""
        key = SESSION_KEY_PREFIX + session_id
        now = time.monotonic()
        if now - self._renewed.get(session_id, -math.inf) < self._renew_every:
            raw = await self._store.get_cached(key)
        else:
            raw = await self._store.get_touch(key, self.ttl)
            if raw is not None:
                if len(self._renewed) >= _RENEWALS_KEPT:
                    self._renewed.clear()  # forgetting only costs one early renewal each
                self._renewed[session_id] = now
        return None if raw is None else LegacySession(**json.loads(raw))

    async def save(self, session: LegacySession) -> None:
        await self._store.set(SESSION_KEY_PREFIX + session.id, json.dumps(asdict(session)).encode(), self.ttl)

    async def delete(self, session_id: str) -> None:
        await self._store.delete(SESSION_KEY_PREFIX + session_id)
        self._renewed.pop(session_id, None)
