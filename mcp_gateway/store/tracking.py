"""A local copy of hot Redis keys that Redis itself keeps coherent (RESP3 client-side caching, ``CLIENT TRACKING``).

Every request bound to a task session reads the session record; a round trip to Redis for each is the largest
per-request cost a shared store adds. So this process keeps the records it has read, and one dedicated RESP3
connection asks Redis to push an invalidation for every key under the cached prefixes that anyone changes, deletes
or lets expire (``CLIENT TRACKING ON BCAST PREFIX ...``): a revocation on any replica evicts the copy here as soon as
Redis tells us, without polling and without a TTL guess.

Safety rules, because a stale copy would be a revoked session still working:

- Copies are only served and only kept while the listener connection is up with tracking on. When it drops, every
  copy is discarded and reads go to Redis until a new listener is tracking again (invalidations sent meanwhile are
  lost, so nothing older than the new listener may be served).
- A read that overlaps any invalidation (or a listener restart) is not kept: its value may predate the change the
  invalidation announced, since the read and the push travel on different connections.
- Only present values are kept (a miss is not), and the number of copies is bounded (least recently used go first).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from redis.asyncio import Redis
from redis.exceptions import RedisError

from mcp_gateway.errors import describe
from mcp_gateway.upstreams.backoff import Backoff

logger = logging.getLogger(__name__)

DEFAULT_MAX_ENTRIES = 10_000
HEARTBEAT_SECONDS = 1.0
HEARTBEATS_MISSED = 3


class TrackedKeys:
    """Copies of keys under ``prefixes`` (full Redis keys, store prefix included) for one Redis client."""

    def __init__(self, client: Redis, prefixes: tuple[str, ...], *, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        self._client = client
        self._prefixes = prefixes
        self._max_entries = max_entries
        self._copies: OrderedDict[str, bytes] = OrderedDict()
        self._epoch = 0
        """Bumped by every invalidation and listener change; a read that saw it move is not kept."""
        self._tracking = False
        self._backoff = Backoff(initial=0.1, factor=2.0, cap=5.0, jitter=0.2)

    @property
    def tracking(self) -> bool:
        """Whether copies are being served: the listener is connected with tracking on."""
        return self._tracking

    def covers(self, key: str) -> bool:
        return key.startswith(self._prefixes)

    async def get(self, key: str, read: Callable[[], Awaitable[bytes | None]]) -> bytes | None:
        """The copy of ``key`` if one is held, else ``read()`` from Redis (kept when that is safe)."""
        if self._tracking:
            copy = self._copies.get(key)
            if copy is not None:
                self._copies.move_to_end(key)
                return copy
        epoch = self._epoch
        value = await read()
        if value is not None and self._tracking and epoch == self._epoch:
            self._copies[key] = value
            if len(self._copies) > self._max_entries:
                self._copies.popitem(last=False)
        return value

    def forget(self, keys: list[str]) -> None:
        """Drop copies this process is changing itself, so its own revocations never wait for the push."""
        self._invalidate(keys)

    def _invalidate(self, keys: list[Any] | None) -> None:
        self._epoch += 1
        if keys is None:  # FLUSHDB / FLUSHALL, or the listener's state changed
            self._copies.clear()
            return
        for key in keys:
            self._copies.pop(key.decode() if isinstance(key, bytes) else str(key), None)

    def _set_tracking(self, on: bool) -> None:
        self._tracking = on
        self._invalidate(None)

    async def run(self) -> None:
        """Hold the invalidation listener for the store's lifetime, reconnecting with backoff; never raises."""
        attempt = 0

        def tracking_on() -> None:
            nonlocal attempt
            attempt = 0

        while True:
            try:
                await self._listen(tracking_on)
            # Whatever went wrong (dropped connection, no PING answer, tracking refused), copies stop being served.
            except Exception as exc:
                if self._tracking or attempt == 0:
                    logger.warning(
                        "store: invalidation listener down (%s); reading task sessions from Redis", describe(exc)
                    )
            finally:
                self._set_tracking(False)
            await anyio.sleep(self._backoff.delay(attempt))
            attempt += 1

    async def _listen(self, on_tracking: Callable[[], None]) -> None:
        pool = self._client.connection_pool
        # A connection of our own, outside the pool: it stays in RESP3 push mode for good.
        # Typed Any: redis-py's connection and parser classes are only partly annotated.
        connection: Any = pool.connection_class(**{**pool.connection_kwargs, "protocol": 3, "socket_timeout": None})

        async def on_invalidation(message: list[Any]) -> None:
            self._invalidate(message[1] if len(message) > 1 else None)

        try:
            await connection.connect()
            # The one private touch: redis-py only hands RESP3 invalidation pushes to a parser-level handler.
            connection._parser.set_invalidation_push_handler(on_invalidation)
            prefixes = [part for prefix in self._prefixes for part in ("PREFIX", prefix)]
            await connection.send_command("CLIENT", "TRACKING", "ON", "BCAST", *prefixes)
            reply = await connection.read_response()
            if reply not in (b"OK", "OK"):
                raise RedisError(f"CLIENT TRACKING answered {reply!r}")
            self._set_tracking(True)
            logger.info("store: caching task sessions locally, invalidated by Redis (RESP3 client tracking)")
            on_tracking()
            last_reply = anyio.current_time()

            async def heartbeat() -> None:
                # A silently dead connection (a partition, no RST) would otherwise keep copies served forever.
                while True:
                    await anyio.sleep(HEARTBEAT_SECONDS)
                    if anyio.current_time() - last_reply > HEARTBEAT_SECONDS * HEARTBEATS_MISSED:
                        raise RedisError(f"no answer to PING for {HEARTBEAT_SECONDS * HEARTBEATS_MISSED:g}s")
                    await connection.send_command("PING", check_health=False)

            async with anyio.create_task_group() as tg:
                tg.start_soon(heartbeat)
                while True:
                    # Pushes run the handler and return None; anything else is a PONG.
                    if await connection.read_response(push_request=True) is not None:
                        last_reply = anyio.current_time()
        finally:
            with anyio.CancelScope(shield=True):
                await connection.disconnect()
