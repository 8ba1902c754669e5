"""The shared store: Redis (standalone or Cluster) through ``redis.asyncio``.

This is what lets replicas agree: a task session revoked on one is gone for all. Every operation is one round trip
(``set_many`` is one pipeline) and is bounded twice, by the socket timeouts and by an overall deadline that also
covers the client's own retries, so a dead or black-holed Redis turns into ``StoreUnavailable`` in seconds and
callers fail closed instead of hanging. Whatever the client raises (redis-py's Cluster client has errors outside
``RedisError``, and ``RuntimeError``/``AttributeError`` while it rebuilds its slot map) is ``StoreUnavailable``: a
store failure is a 503, never a 500.

While ``serve`` runs, the store PINGs Redis every second, so ``available`` (read on every request, no round trip)
says whether the last answer came; see ``health.py``.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, cast

import anyio
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import DataError
from redis.typing import EncodableT, FieldT

from mcp_gateway.errors import StoreUnavailable, describe
from mcp_gateway.store.base import Charge, RateCharge, Refusal, StreamEntry, entry_size
from mcp_gateway.store.health import StoreHealth
from mcp_gateway.store.memory import parse_stream_id
from mcp_gateway.store.redis_urls import CLUSTER_SCHEMES, STANDALONE_SCHEMES, open_client, redacted_url
from mcp_gateway.store.replicated_delete import NotReplicated, delete_replicated
from mcp_gateway.store.tracking import TrackedKeys

__all__ = ["CLUSTER_SCHEMES", "STANDALONE_SCHEMES", "RedisStore", "redacted_url"]

DEFAULT_SOCKET_TIMEOUT = 2.0
DEFAULT_OPERATION_TIMEOUT = 5.0
HEALTH_PING_TIMEOUT = 1.0
"""The background PING's own bound: a silent Redis is noticed within interval + this."""

# XADD, then, with the stream's memory usage over its byte cap (ARGV[2]), trim it to three quarters of the cap,
# assuming entries of the average size; the newest entry always stays. One round trip, atomic, one key (so it runs
# in Cluster mode too).
_APPEND_AND_TRIM = """
local id = redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[1], '*', unpack(ARGV, 3))
local cap = tonumber(ARGV[2])
local used = redis.call('MEMORY', 'USAGE', KEYS[1])
if used and used > cap then
  local length = redis.call('XLEN', KEYS[1])
  redis.call('XTRIM', KEYS[1], 'MAXLEN', math.max(1, math.floor(length * cap * 3 / 4 / used)))
end
return id
"""
# Store.take: every charge checked first, then all applied, or none; one key per charge, four ARGV each:
# 'r', interval_us, tolerance_us, '' (a GCRA rate limit: the key holds the theoretical arrival time in microseconds
# of the server's clock) or 'c', field, limit (-1: none), ttl_ms (a counter in a hash). Answers nil when applied,
# else {0-based index of the refusing charge, milliseconds until a rate limit has room (-1 for a counter)}.
_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local arrivals = {}
for i = 1, #KEYS do
  local a = (i - 1) * 4
  if ARGV[a + 1] == 'r' then
    local tolerance = tonumber(ARGV[a + 3])
    local arrival = math.max(tonumber(redis.call('GET', KEYS[i]) or now), now)
    if arrival - tolerance > now then
      return {i - 1, math.ceil((arrival - tolerance - now) / 1000)}
    end
    arrivals[i] = arrival + tonumber(ARGV[a + 2])
  else
    local limit = tonumber(ARGV[a + 3])
    if limit >= 0 and tonumber(redis.call('HGET', KEYS[i], ARGV[a + 2]) or 0) >= limit then
      return {i - 1, -1}
    end
  end
end
for i = 1, #KEYS do
  local a = (i - 1) * 4
  if ARGV[a + 1] == 'r' then
    redis.call('SET', KEYS[i], string.format('%d', arrivals[i]), 'PX', math.ceil((arrivals[i] - now) / 1000) + 1)
  else
    redis.call('HINCRBY', KEYS[i], ARGV[a + 2], 1)
    redis.call('PEXPIRE', KEYS[i], ARGV[a + 4])
  end
end
return nil
"""
# The byte cap is checked after every 1/16th of it appended by this client: the check costs no extra round trip but
# a MEMORY USAGE, which samples the stream.
_CHECKS_PER_CAP = 16


OperationObserver = Callable[[str, float, bool], None]
"""Told of every round trip: the operation (``GET``, ``EVALSHA (take)``...), its seconds, and whether it failed."""


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
        self._health = StoreHealth(self._ping_briefly, description)
        self._append_and_trim = client.register_script(_APPEND_AND_TRIM)
        self._take = client.register_script(_TAKE)
        # Per stream, the bytes this client appended since it last checked the stream's size; a stream not seen
        # yet is checked at its first append (it may have grown under another process).
        self._unchecked_bytes: dict[str, int] = {}
        self._observe: OperationObserver | None = None

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
        """Open a client for ``redis://``, ``rediss://``, ``unix://`` or ``redis+cluster://h1:p1,h2:p2,…`` (connects
        lazily; see ``redis_urls.py``).

        Query parameters understood by redis-py (``socket_timeout=…``, ``password=…``) override the defaults here.
        Keys under ``cached_prefixes`` are read through ``get_cached`` (see ``tracking.py``) while ``serve`` runs.
        """
        options: dict[str, Any] = {
            "socket_timeout": socket_timeout,
            "socket_connect_timeout": socket_timeout,
            # A few quick retries ride out a dropped connection; more would only delay failing closed.
            "retry": Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), retries=2),
        }
        description = f"{redacted_url(url)} (key prefix {prefix!r})"
        client = open_client(url, options)
        return cls(client, prefix, description, operation_timeout=operation_timeout, cached_prefixes=cached_prefixes)

    @property
    def description(self) -> str:
        return self._description

    @property
    def available(self) -> bool:
        return self._health.available

    def observe_operations(self, observer: OperationObserver) -> None:
        """Time every round trip from now on (``/metrics``: store latency per operation)."""
        self._observe = observer

    @asynccontextmanager
    async def _reaching(
        self, operation: str, within: float | None = None, *, probe: bool = False
    ) -> AsyncIterator[None]:
        """Bound one operation in time and turn every way the client can fail into ``StoreUnavailable``.

        While the store is known to be down (see ``health.py``) an operation fails at once without asking it: a
        hung Redis would otherwise hold every caller for the whole timeout. Only a ``probe`` (a PING) asks anyway,
        since its answer is what ends the outage.

        Only client calls run inside, so any exception here is the store failing (``TimeoutError`` from the
        deadline included), except one the client raises before sending anything: a key or value it cannot encode
        (a lone surrogate in a caller's string). That operation fails closed like any other, but the store is not
        marked unavailable: one bad string must not refuse every request. Cancellation is a ``BaseException`` and
        passes through.
        """
        if not probe and self._health.known_down:
            raise StoreUnavailable(f"store {self._description} is unavailable (it did not answer lately; {operation})")
        started = time.perf_counter()
        failed = False
        try:
            with anyio.fail_after(self._operation_timeout if within is None else within):
                yield
        except NotReplicated as exc:
            # The store answered: no reason to refuse every other request, only to say this write is not durable.
            raise StoreUnavailable(f"store {self._description}: {operation} is not durable yet ({exc})") from exc
        except (UnicodeError, DataError) as exc:
            raise StoreUnavailable(
                f"store {self._description} cannot encode this {operation}: {describe(exc)}"
            ) from exc
        except Exception as exc:
            failed = True
            error = StoreUnavailable(f"store {self._description} is unavailable ({operation}: {describe(exc)})")
            self._health.failed(error.message)
            raise error from exc
        finally:
            if self._observe is not None:
                self._observe(operation, time.perf_counter() - started, failed)

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
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._health.run)
            if self._tracked is not None:
                tg.start_soon(self._tracked.run)

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

    async def delete_durably(self, *keys: str) -> int:
        if not keys:
            return 0
        self._forget(*keys)
        async with self._reaching("DEL + WAIT"):
            deleted = await delete_replicated(self._client, [self._key(k) for k in dict.fromkeys(keys)])
        return deleted

    async def get_touch(self, key: str, ttl_seconds: float) -> bytes | None:
        millis = _ttl_millis(ttl_seconds)
        async with self._reaching("GETEX"):
            value = await self._client.getex(self._key(key), px=millis)
        return value.encode() if isinstance(value, str) else value

    async def append_stream(
        self, stream: str, fields: Mapping[str, str], maxlen: int, *, max_bytes: int | None = None
    ) -> str:
        if maxlen < 1:
            raise ValueError(f"maxlen must be at least 1, got {maxlen}")
        if max_bytes is not None and max_bytes < 1:
            raise ValueError(f"max_bytes must be at least 1, got {max_bytes}")
        key = self._key(stream)
        if max_bytes is not None and self._size_check_due(key, fields, max_bytes):
            args: list[EncodableT] = [maxlen, max_bytes, *(part for pair in fields.items() for part in pair)]
            async with self._reaching("XADD (with a size check)"):
                entry_id = await self._append_and_trim(keys=[key], args=args)
            self._unchecked_bytes[key] = 0
            return _text(entry_id)
        # Exact trimming: the cap is a promise about how much history is kept, not a hint.
        async with self._reaching("XADD"):
            entry_id = await self._client.xadd(key, _fields(fields), maxlen=maxlen, approximate=False)
        return _text(entry_id)

    def _size_check_due(self, key: str, fields: Mapping[str, str], max_bytes: int) -> bool:
        unchecked = self._unchecked_bytes.get(key, max_bytes) + entry_size(fields)
        self._unchecked_bytes[key] = unchecked
        return unchecked >= max_bytes // _CHECKS_PER_CAP

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

    async def put(self, key: str, value: bytes, *, only_if_absent: bool = False) -> bool:
        self._forget(key)
        async with self._reaching("SET"):
            written = await self._client.set(self._key(key), value, nx=only_if_absent)
        return bool(written)

    async def index_add(self, index: str, member: str, score: float) -> None:
        async with self._reaching("ZADD"):
            await self._client.zadd(self._key(index), {member: score})

    async def index_remove(self, index: str, *members: str) -> int:
        if not members:
            return 0
        async with self._reaching("ZREM"):
            removed = await self._client.zrem(self._key(index), *dict.fromkeys(members))
        return int(removed)

    async def index_prune(self, index: str, max_score: float) -> int:
        async with self._reaching("ZREMRANGEBYSCORE"):
            removed = await self._client.zremrangebyscore(self._key(index), "-inf", repr(float(max_score)))
        return int(removed)

    async def index_range(self, index: str, min_score: float = float("-inf")) -> Sequence[tuple[str, float]]:
        low = "-inf" if min_score == float("-inf") else repr(float(min_score))
        async with self._reaching("ZRANGEBYSCORE"):
            members = await self._client.zrangebyscore(self._key(index), low, "+inf", withscores=True)
        # With scores, redis-py answers (member, score) pairs; its annotation covers every reply shape.
        pairs = cast(list[tuple[bytes, float]], members)
        return [(_text(member), float(score)) for member, score in pairs]

    async def take(self, charges: Sequence[Charge]) -> Refusal | None:
        if not charges:
            return None
        for first, group in self._by_slot(charges):
            keys: list[str] = []
            args: list[EncodableT] = []
            for charge in group:
                keys.append(self._key(charge.key))
                if isinstance(charge, RateCharge):
                    args += ["r", charge.interval_us, charge.tolerance_us, ""]
                else:
                    limit = -1 if charge.limit is None else charge.limit
                    args += ["c", charge.field, limit, _ttl_millis(charge.ttl_seconds)]
            async with self._reaching("EVALSHA (take)"):
                answer = await self._take(keys=keys, args=args)
            if answer is not None:
                position, retry_after_ms = (int(part) for part in answer)
                return Refusal(first[position], None if retry_after_ms < 0 else retry_after_ms)
        return None

    def _by_slot(self, charges: Sequence[Charge]) -> list[tuple[list[int], list[Charge]]]:
        """The charges as one group (standalone Redis), or one group per hash slot in order of first appearance
        (Cluster), each with the charges' positions in ``charges``."""
        if self._transactional:
            return [(list(range(len(charges))), list(charges))]
        assert isinstance(self._client, RedisCluster)
        groups: dict[int, tuple[list[int], list[Charge]]] = {}
        for index, charge in enumerate(charges):
            positions, group = groups.setdefault(self._client.keyslot(self._key(charge.key)), ([], []))
            positions.append(index)
            group.append(charge)
        return list(groups.values())

    async def read_counts(self, key: str) -> Mapping[str, int]:
        async with self._reaching("HGETALL"):
            raw = await self._client.hgetall(self._key(key))
        return {_text(field): int(value) for field, value in (raw or {}).items()}

    async def ping(self) -> None:
        async with self._reaching("PING", probe=True):
            await self._ping_every_master()
        self._health.answered()

    async def _ping_briefly(self) -> None:
        async with self._reaching("PING", HEALTH_PING_TIMEOUT, probe=True):
            await self._ping_every_master()

    async def _ping_every_master(self) -> None:
        """PING the server, or in Cluster mode every master the client knows, concurrently.

        One unreachable master leaves its slots unserved (and, with ``cluster-require-full-coverage yes``, the whole
        cluster refusing) until its replica takes over, so the store counts as unavailable until every master
        answers. The PING that fails also makes the client read the topology again, which is how it learns of the
        promoted replica.
        """
        if isinstance(self._client, RedisCluster):
            await self._client.ping(target_nodes=RedisCluster.PRIMARIES)
        else:
            await self._client.ping()

    async def close(self) -> None:
        try:
            with anyio.fail_after(self._operation_timeout):
                await self._client.aclose()
        except Exception:
            # Closing is best effort: the process is shutting down or the connection is already gone.
            pass
