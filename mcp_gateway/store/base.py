"""The store contract: the small set of operations the gateway needs from Redis or from memory.

Keeping it this narrow is what lets the memory store be a faithful stand-in for one process and lets one contract
test suite run against both. Every method raises ``StoreUnavailable`` when the backend cannot be reached, so the
callers fail closed instead of treating "no answer" as "no record".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class StreamEntry:
    id: str
    fields: Mapping[str, str]


@dataclass(frozen=True)
class RateCharge:
    """One request against a rate limit (GCRA): on average one per ``interval_us`` microseconds, ``burst`` at once.

    The key holds the limit's theoretical arrival time and expires once the limit is back to full.
    """

    key: str
    interval_us: int
    burst: int

    @property
    def tolerance_us(self) -> int:
        """How far ahead of now the arrival time may run: the room ``burst - 1`` back-to-back requests take."""
        return self.interval_us * (self.burst - 1)


@dataclass(frozen=True)
class CountCharge:
    """One unit added to ``field`` of the counters under ``key``, refused when it would pass ``limit`` (None:
    count only). The counters disappear ``ttl_seconds`` after the last charge."""

    key: str
    field: str
    limit: int | None
    ttl_seconds: float


Charge = RateCharge | CountCharge


@dataclass(frozen=True)
class Refusal:
    """Why ``Store.take`` applied nothing: ``charges[index]`` is over its limit. ``retry_after_ms`` says when a rate
    limit has room again; None for a counter, which never refills."""

    index: int
    retry_after_ms: int | None


def entry_size(fields: Mapping[str, str]) -> int:
    """What an entry counts against a stream's ``max_bytes``: its field names and values in UTF-8."""
    return sum(_utf8_length(name) + _utf8_length(value) for name, value in fields.items())


def _utf8_length(text: str) -> int:
    # isascii() is O(1) in CPython, and audit records are mostly ASCII: no copy for those.
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


class Store(Protocol):
    """Keys are given without the configured prefix; implementations add it."""

    @property
    def description(self) -> str:
        """Where the data lives, safe to log (no password)."""
        ...

    @property
    def available(self) -> bool:
        """Whether the backend answered lately, known without a round trip (read on every request to fail closed).

        Kept current while ``serve`` runs (see ``health.py``); a store that cannot fail is always available.
        """
        ...

    async def get(self, key: str) -> bytes | None: ...

    async def get_cached(self, key: str) -> bytes | None:
        """``get``, answered from a local copy when the store can keep one coherent (Redis: RESP3 client tracking
        of the prefixes the store was opened with); a change by any replica evicts the copy."""
        ...

    async def set(self, key: str, value: bytes, ttl_seconds: float) -> None:
        """Store ``value`` so that it disappears by itself after ``ttl_seconds``."""
        ...

    async def set_if_absent(self, key: str, value: bytes, ttl_seconds: float) -> bool:
        """Store ``value`` only if ``key`` holds nothing (atomically, across replicas); return whether it did."""
        ...

    async def set_many(self, items: Mapping[str, bytes], ttl_seconds: float) -> None:
        """Store several keys with the same lifetime (a record and its index)."""
        ...

    async def delete(self, *keys: str) -> int:
        """Delete keys; return how many existed."""
        ...

    async def delete_durably(self, *keys: str) -> int:
        """``delete``, answered only once the deletion survives a failover (a revocation): with Redis replicas, at
        least one acknowledged it (``WAIT``); without replicas there is nothing a failover could bring back. Raises
        ``StoreUnavailable`` when no replica confirms in time; the keys may be gone anyway, and deleting again is
        harmless. Keys sharing a hash tag are deleted in one command (in Cluster, one per hash slot)."""
        ...

    async def get_touch(self, key: str, ttl_seconds: float) -> bytes | None:
        """Read a value and restart its lifetime in the same round trip (a sliding expiry)."""
        ...

    async def append_stream(
        self, stream: str, fields: Mapping[str, str], maxlen: int, *, max_bytes: int | None = None
    ) -> str:
        """Append to a capped, ordered log (a Redis Stream); return the entry id.

        The log keeps its newest ``maxlen`` entries, exactly. With ``max_bytes`` it also drops its oldest entries
        while it holds more than that many bytes (field names and values, UTF-8), always keeping the newest entry:
        exactly in memory; in Redis approximately, by the stream's memory usage, checked in the append's own round
        trip after every ``max_bytes / 16`` bytes this client appended, and trimmed to three quarters of the cap.
        """
        ...

    async def read_stream(self, stream: str, count: int, after: str | None = None) -> Sequence[StreamEntry]:
        """The newest ``count`` entries oldest-first, or up to ``count`` entries after the id ``after``."""
        ...

    async def put(self, key: str, value: bytes, *, only_if_absent: bool = False) -> bool:
        """Store ``value`` with no expiry (task definitions); with ``only_if_absent``, only when ``key`` does not
        exist yet, so two replicas writing the same immutable key cannot both succeed. Return whether it was
        written."""
        ...

    async def index_add(self, index: str, member: str, score: float) -> None:
        """Add ``member`` to a sorted index (a Redis sorted set, no expiry), or move it to ``score``."""
        ...

    async def index_remove(self, index: str, *members: str) -> int:
        """Remove members from a sorted index; return how many were in it."""
        ...

    async def index_range(self, index: str, min_score: float = float("-inf")) -> Sequence[tuple[str, float]]:
        """The members scored ``min_score`` or more, lowest score first (ties by member)."""

    async def index_prune(self, index: str, max_score: float) -> int:
        """Remove the members scored ``max_score`` or less; return how many went (one step: two replicas pruning at
        once count each member once)."""
        ...

    async def take(self, charges: Sequence[Charge]) -> Refusal | None:
        """Apply every charge, or none of them and say which one is over its limit; one atomic step.

        Rate limits are judged on the store's clock (Redis ``TIME``), so replicas with skewed clocks agree. Redis
        Cluster cannot run one script over several hash slots: there the charges are applied per slot, in order of
        first appearance, each slot's atomically, stopping at the first refusal, so the charges of slots before a
        refusing one stay spent (never fewer units spent than allowed calls). Keys meant to be charged together
        share a hash tag (``{...}``).
        """
        ...

    async def read_counts(self, key: str) -> Mapping[str, int]:
        """The counters ``CountCharge`` keeps under ``key``; empty when there are none."""
        ...

    async def ping(self) -> None: ...

    async def serve(self) -> None:
        """Background work the store needs while the gateway runs (the invalidation listener); may return at once."""
        ...

    async def close(self) -> None: ...
