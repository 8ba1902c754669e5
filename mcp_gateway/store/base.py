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


class Store(Protocol):
    """Keys are given without the configured prefix; implementations add it."""

    @property
    def description(self) -> str:
        """Where the data lives, safe to log (no password)."""
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

    async def get_touch(self, key: str, ttl_seconds: float) -> bytes | None:
        """Read a value and restart its lifetime in the same round trip (a sliding expiry)."""
        ...

    async def append_stream(self, stream: str, fields: Mapping[str, str], maxlen: int) -> str:
        """Append to a capped, ordered log (a Redis Stream); return the entry id."""
        ...

    async def read_stream(self, stream: str, count: int, after: str | None = None) -> Sequence[StreamEntry]:
        """The newest ``count`` entries oldest-first, or up to ``count`` entries after the id ``after``."""
        ...

    async def ping(self) -> None: ...

    async def serve(self) -> None:
        """Background work the store needs while the gateway runs (the invalidation listener); may return at once."""
        ...

    async def close(self) -> None: ...
