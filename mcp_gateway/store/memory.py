"""The embedded store: one process, no network, the same contract as Redis.

It exists so a single gateway runs without Redis (``memory://``) and so the contract tests can hold the Redis store
to the same behaviour. Lifetimes run on the monotonic clock, so a wall-clock jump neither revives nor kills keys
early; expired keys are dropped when read and swept now and then so keys nobody reads again do not pile up.
"""

from __future__ import annotations

import bisect
import re
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import islice

from mcp_gateway.store.base import StreamEntry

_STREAM_ID = re.compile(r"^(\d+)(?:-(\d+))?$")
_FIRST_SWEEP_AT = 1024

StreamId = tuple[int, int]


def parse_stream_id(value: str) -> StreamId:
    """``"1700000000000-3"`` → ``(1700000000000, 3)``; a bare ``"1700000000000"`` means sequence 0, as in Redis."""
    match = _STREAM_ID.match(value)
    if match is None:
        raise ValueError(f"{value!r} is not a stream entry id (expected '<milliseconds>-<sequence>')")
    return int(match.group(1)), int(match.group(2) or 0)


@dataclass
class _Stream:
    entries: deque[tuple[StreamId, StreamEntry]]
    last: StreamId = (0, 0)


@dataclass
class _Slot:
    value: bytes | _Stream
    deadline: float | None


def _check_ttl(ttl_seconds: float) -> None:
    if not ttl_seconds > 0:
        raise ValueError(f"ttl_seconds must be positive, got {ttl_seconds!r}")


class MemoryStore:
    """A dict of values and streams with per-key deadlines; every operation completes without awaiting."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._slots: dict[str, _Slot] = {}
        self._next_sweep = _FIRST_SWEEP_AT

    @property
    def description(self) -> str:
        return "memory:// (this process only)"

    def _live(self, key: str) -> _Slot | None:
        slot = self._slots.get(key)
        if slot is None:
            return None
        if slot.deadline is not None and slot.deadline <= self._clock():
            del self._slots[key]
            return None
        return slot

    def _sweep_if_due(self) -> None:
        """Drop expired keys once the table has doubled since the last sweep: amortised O(1) per write."""
        if len(self._slots) < self._next_sweep:
            return
        now = self._clock()
        expired = [k for k, s in self._slots.items() if s.deadline is not None and s.deadline <= now]
        for key in expired:
            del self._slots[key]
        self._next_sweep = max(_FIRST_SWEEP_AT, 2 * len(self._slots))

    async def get(self, key: str) -> bytes | None:
        slot = self._live(key)
        if slot is None:
            return None
        if not isinstance(slot.value, bytes):
            raise TypeError(f"key {key!r} holds a stream, not a value")
        return slot.value

    async def set(self, key: str, value: bytes, ttl_seconds: float) -> None:
        _check_ttl(ttl_seconds)
        self._slots[key] = _Slot(value, self._clock() + ttl_seconds)
        self._sweep_if_due()

    async def set_if_absent(self, key: str, value: bytes, ttl_seconds: float) -> bool:
        _check_ttl(ttl_seconds)
        if self._live(key) is not None:
            return False
        await self.set(key, value, ttl_seconds)
        return True

    async def set_many(self, items: Mapping[str, bytes], ttl_seconds: float) -> None:
        _check_ttl(ttl_seconds)
        deadline = self._clock() + ttl_seconds
        for key, value in items.items():
            self._slots[key] = _Slot(value, deadline)
        self._sweep_if_due()

    async def delete(self, *keys: str) -> int:
        existed = 0
        for key in set(keys):
            if self._live(key) is not None:
                del self._slots[key]
                existed += 1
        return existed

    async def get_touch(self, key: str, ttl_seconds: float) -> bytes | None:
        _check_ttl(ttl_seconds)
        value = await self.get(key)
        if value is not None:
            self._slots[key].deadline = self._clock() + ttl_seconds
        return value

    def _stream(self, key: str) -> _Stream | None:
        slot = self._live(key)
        if slot is None:
            return None
        if not isinstance(slot.value, _Stream):
            raise TypeError(f"key {key!r} holds a value, not a stream")
        return slot.value

    def _new_stream(self, key: str) -> _Stream:
        stream = _Stream(deque())
        self._slots[key] = _Slot(stream, None)
        return stream

    async def append_stream(self, stream: str, fields: Mapping[str, str], maxlen: int) -> str:
        if maxlen < 1:
            raise ValueError(f"maxlen must be at least 1, got {maxlen}")
        log = self._stream(stream) or self._new_stream(stream)
        # Ids follow Redis: wall-clock milliseconds, with a sequence that keeps them increasing within a millisecond
        # or when the clock steps back.
        millis = time.time_ns() // 1_000_000
        entry_id = (millis, 0) if millis > log.last[0] else (log.last[0], log.last[1] + 1)
        log.last = entry_id
        entry = StreamEntry(id=f"{entry_id[0]}-{entry_id[1]}", fields=dict(fields))
        log.entries.append((entry_id, entry))
        while len(log.entries) > maxlen:
            log.entries.popleft()
        return entry.id

    async def read_stream(self, stream: str, count: int, after: str | None = None) -> Sequence[StreamEntry]:
        start = None if after is None else parse_stream_id(after)
        log = self._stream(stream)
        if log is None or count < 1:
            return []
        if start is None:
            newest = [entry for _, entry in islice(reversed(log.entries), count)]
            return newest[::-1]
        first = bisect.bisect_right(log.entries, start, key=lambda item: item[0])
        return [entry for _, entry in islice(log.entries, first, first + count)]

    async def get_cached(self, key: str) -> bytes | None:
        # The data already lives in this process: there is no round trip to save.
        return await self.get(key)

    async def ping(self) -> None:
        return None

    async def serve(self) -> None:
        return None

    async def close(self) -> None:
        return None
