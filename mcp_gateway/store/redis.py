"""The shared store: Redis (standalone or Cluster) through ``redis.asyncio``.

This is what lets replicas agree: a task session revoked on one is gone for all. Every operation is one round trip
(``set_many`` is one pipeline) and is bounded twice, by the socket timeouts and by an overall deadline that also
covers the client's own retries, so a dead or black-holed Redis turns into ``StoreUnavailable`` in seconds and
callers fail closed instead of hanging.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import anyio
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import RedisError
from redis.typing import EncodableT, FieldT

from mcp_gateway.errors import StoreUnavailable
from mcp_gateway.store.base import StreamEntry
from mcp_gateway.store.memory import parse_stream_id
from mcp_gateway.store.tracking import TrackedKeys

CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
STANDALONE_SCHEMES = frozenset({"redis", "rediss", "unix"})

DEFAULT_SOCKET_TIMEOUT = 2.0
DEFAULT_OPERATION_TIMEOUT = 5.0


def redacted_url(url: str) -> str:
    """The URL without user info or query string, either of which may carry a password."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return f"unix://{parts.path}"
    host = parts.hostname or "localhost"
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def _ttl_millis(ttl_seconds: float) -> int:
    """Redis takes whole milliseconds; round up so a key never disappears before its promised lifetime."""
    if not ttl_seconds > 0:
        raise ValueError(f"ttl_seconds must be positive, got {ttl_seconds!r}")
    return max(1, math.ceil(ttl_seconds * 1000))


def _text(value: bytes | str | None) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _entry(raw: tuple[bytes | str | None, Mapping[bytes | str, bytes | str] | None]) -> StreamEntry:
    entry_id, fields = raw
    return StreamEntry(id=_text(entry_id), fields={_text(k): _text(v) for k, v in (fields or {}).items()})


def _fields(fields: Mapping[str, str]) -> dict[FieldT, EncodableT]:
    return dict(fields.items())


class RedisStore:
    """A ``Store`` on one Redis client; every key it touches is ``prefix + key``."""

    def __init__(
        self,
        client: Redis | RedisCluster,
        prefix: str,
        description: str,
        *,
        operation_timeout: float = DEFAULT_OPERATION_TIMEOUT,
        cached_prefixes: tuple[str, ...] = (),
    ) -> None:
        self._client = client
        # Cluster mode would need a listener per node; there every read goes to Redis.
        self._tracked = (
            TrackedKeys(client, tuple(prefix + p for p in cached_prefixes))
            if cached_prefixes and isinstance(client, Redis)
            else None
        )
        self._prefix = prefix
        self._description = description
        self._operation_timeout = operation_timeout
        # MULTI cannot span hash slots, so in Cluster mode a pipeline is only batching, never a transaction.
        self._transactional = not isinstance(client, RedisCluster)

    @classmethod
    def from_url(
        cls,
        url: str,
        prefix: str,
        *,
        socket_timeout: float = DEFAULT_SOCKET_TIMEOUT,
        operation_timeout: float = DEFAULT_OPERATION_TIMEOUT,
        cached_prefixes: tuple[str, ...] = (),
    ) -> RedisStore:
        """Open a client for ``redis://``, ``rediss://``, ``unix://`` or ``redis+cluster://`` (connects lazily).

        Query parameters understood by redis-py (``socket_timeout=…``, ``password=…``) override the defaults here.
        Keys under ``cached_prefixes`` are read through ``get_cached`` (see ``tracking.py``) while ``serve`` runs.
        """
        scheme, sep, rest = url.partition("://")
        options: dict[str, Any] = {
            "socket_timeout": socket_timeout,
            "socket_connect_timeout": socket_timeout,
            # A few quick retries ride out a dropped connection; more would only delay failing closed.
            "retry": Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), retries=2),
        }
        description = f"{redacted_url(url)} (key prefix {prefix!r})"
        client: Redis | RedisCluster
        if scheme in CLUSTER_SCHEMES and sep:
            client = RedisCluster.from_url(f"{CLUSTER_SCHEMES[scheme]}://{rest}", **options)
        elif scheme in STANDALONE_SCHEMES and sep:
            client = Redis.from_url(url, **options)
        else:
            raise ValueError(f"not a Redis URL: {redacted_url(url)!r}")
        return cls(client, prefix, description, operation_timeout=operation_timeout, cached_prefixes=cached_prefixes)

    @property
    def description(self) -> str:
        return self._description

    @asynccontextmanager
    async def _reaching(self, operation: str) -> AsyncIterator[None]:
        """Bound one operation in time and turn every way Redis can fail into ``StoreUnavailable``."""
        try:
            with anyio.fail_after(self._operation_timeout):
                yield
        except (RedisError, OSError) as exc:
            # OSError includes TimeoutError, raised by fail_after and by the socket layer alike.
            raise StoreUnavailable(
                f"store {self._description} is unavailable ({operation}: {exc or type(exc).__name__})"
            ) from exc

    def _key(self, key: str) -> str:
        return self._prefix + key

    async def get(self, key: str) -> bytes | None:
        async with self._reaching("GET"):
            value = await self._client.get(self._key(key))
        return value.encode() if isinstance(value, str) else value

    async def get_cached(self, key: str) -> bytes | None:
        full = self._key(key)
        if self._tracked is None or not self._tracked.covers(full):
            return await self.get(key)
        return await self._tracked.get(full, lambda: self.get(key))

    def _forget(self, *keys: str) -> None:
        if self._tracked is not None:
            self._tracked.forget([self._key(key) for key in keys])

    @property
    def tracking(self) -> bool:
        """Whether ``get_cached`` is serving local copies right now."""
        return self._tracked is not None and self._tracked.tracking

    async def serve(self) -> None:
        if self._tracked is not None:
            await self._tracked.run()

    async def set(self, key: str, value: bytes, ttl_seconds: float) -> None:
        millis = _ttl_millis(ttl_seconds)
        self._forget(key)
        async with self._reaching("SET"):
            await self._client.set(self._key(key), value, px=millis)

    async def set_if_absent(self, key: str, value: bytes, ttl_seconds: float) -> bool:
        millis = _ttl_millis(ttl_seconds)
        self._forget(key)
        async with self._reaching("SET NX"):
            stored = await self._client.set(self._key(key), value, px=millis, nx=True)
        return bool(stored)

    async def set_many(self, items: Mapping[str, bytes], ttl_seconds: float) -> None:
        millis = _ttl_millis(ttl_seconds)
        if not items:
            return
        self._forget(*items)
        async with self._reaching("SET (pipeline)"), self._client.pipeline(transaction=self._transactional) as pipe:
            for key, value in items.items():
                pipe.set(self._key(key), value, px=millis)
            await pipe.execute()

    async def delete(self, *keys: str) -> int:
        if not keys:
            return 0
        self._forget(*keys)
        async with self._reaching("DEL"):
            deleted = await self._client.delete(*(self._key(k) for k in dict.fromkeys(keys)))
        return int(deleted)

    async def get_touch(self, key: str, ttl_seconds: float) -> bytes | None:
        millis = _ttl_millis(ttl_seconds)
        async with self._reaching("GETEX"):
            value = await self._client.getex(self._key(key), px=millis)
        return value.encode() if isinstance(value, str) else value

    async def append_stream(self, stream: str, fields: Mapping[str, str], maxlen: int) -> str:
        if maxlen < 1:
            raise ValueError(f"maxlen must be at least 1, got {maxlen}")
        # Exact trimming: the cap is a promise about how much history is kept, not a hint.
        async with self._reaching("XADD"):
            entry_id = await self._client.xadd(self._key(stream), _fields(fields), maxlen=maxlen, approximate=False)
        return _text(entry_id)

    async def read_stream(self, stream: str, count: int, after: str | None = None) -> Sequence[StreamEntry]:
        if after is not None:
            parse_stream_id(after)
        if count < 1:
            return []
        key = self._key(stream)
        if after is None:
            async with self._reaching("XREVRANGE"):
                newest = await self._client.xrevrange(key, max="+", min="-", count=count)
            return [_entry(raw) for raw in reversed(newest or [])]
        async with self._reaching("XRANGE"):
            entries = await self._client.xrange(key, min=f"({after}", max="+", count=count)
        return [_entry(raw) for raw in entries or []]

    async def ping(self) -> None:
        async with self._reaching("PING"):
            await self._client.ping()

    async def close(self) -> None:
        try:
            with anyio.fail_after(self._operation_timeout):
                await self._client.aclose()
        except (RedisError, OSError):
            # Closing is best effort: the process is shutting down or the connection is already gone.
            pass
