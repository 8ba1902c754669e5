"""The embedded store: one process, no network, the same contract as Redis.

It exists so a single gateway runs without Redis (``memory://``) and so the contract tests can hold the Redis store
to the same behaviour. Lifetimes run on the monotonic clock, so a wall-clock jump neither revives nor kills keys
early. Expired keys are dropped when read, and every write first drops the keys whose deadline has passed, soonest
first from a heap of deadlines, so keys nobody reads again do not pile up (O(log n) per key dropped, one comparison
when none is due).
"""

from __future__ import annotations

import bisect
import heapq
import re
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import islice

from mcp_gateway.store.base import Charge, RateCharge, Refusal, StreamEntry, entry_size

_STREAM_ID = re.compile(r"^(\d+)(?:-(\d+))?$")
_HEAP_SLACK = 1024
"""Stale heap entries (keys rewritten or touched since) tolerated beyond one per live key before a rebuild."""

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
    sizes: deque[int]
    """Each entry's size in bytes, in the order of ``entries``."""
    size: int = 0
    last: StreamId = (0, 0)


class _Counters(dict[str, int]):
    """The counters of ``take`` under one key (a Redis hash): a type of its own, so a sorted index is never read as
    counters or the other way round."""


@dataclass
class _Slot:
    # A value, a stream, a sorted index (member -> score), or the counters of ``take`` (a Redis hash).
    value: bytes | _Stream | dict[str, float] | _Counters
    deadline: float | None


def _check_ttl(ttl_seconds: float) -> None:
    if not ttl_seconds > 0:
        raise ValueError(f"ttl_seconds must be positive, got {ttl_seconds!r}")


class MemoryStore:
    """A dict of values and streams with per-key deadlines; every operation completes without awaiting."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._slots: dict[str, _Slot] = {}
        # (deadline, key) for every deadline set; an entry whose key has since got another deadline is stale.
        self._deadlines: list[tuple[float, str]] = []

    def __len__(self) -> int:
        """How many keys are held, expired ones not yet dropped included."""
        return len(self._slots)

    @property
    def description(self) -> str:
        return "memory:// (this process only)"

    @property
    def available(self) -> bool:
        return True

    def _live(self, key: str) -> _Slot | None:
        slot = self._slots.get(key)
        if slot is None:
            return None
        if slot.deadline is not None and slot.deadline <= self._clock():
            del self._slots[key]
            return None
        return slot

    def _drop_expired(self) -> None:
        """Drop every key whose deadline has passed, soonest first."""
        heap = self._deadlines
        now = self._clock()
        while heap and heap[0][0] <= now:
            _, key = heapq.heappop(heap)
            slot = self._slots.get(key)
            if slot is not None and slot.deadline is not None and slot.deadline <= now:
                del self._slots[key]

    def _expires(self, key: str, deadline: float) -> None:
        heapq.heappush(self._deadlines, (deadline, key))
        if len(self._deadlines) > 2 * len(self._slots) + _HEAP_SLACK:
            # Mostly stale entries: rebuild from the live deadlines, O(n) once per n writes.
            self._deadlines = [(s.deadline, k) for k, s in self._slots.items() if s.deadline is not None]
            heapq.heapify(self._deadlines)

    async def get(self, key: str) -> bytes | None:
        slot = self._live(key)
        if slot is None:
            return None
        if not isinstance(slot.value, bytes):
            raise TypeError(f"key {key!r} holds a stream, an index or counters, not a value")
        return slot.value

    async def set(self, key: str, value: bytes, ttl_seconds: float) -> None:
        _check_ttl(ttl_seconds)
        self._drop_expired()
        deadline = self._clock() + ttl_seconds
        self._slots[key] = _Slot(value, deadline)
        self._expires(key, deadline)

    async def set_if_absent(self, key: str, value: bytes, ttl_seconds: float) -> bool:
        _check_ttl(ttl_seconds)
        if self._live(key) is not None:
            return False
        await self.set(key, value, ttl_seconds)
        return True

    async def set_many(self, items: Mapping[str, bytes], ttl_seconds: float) -> None:
        _check_ttl(ttl_seconds)
        self._drop_expired()
        deadline = self._clock() + ttl_seconds
        for key, value in items.items():
            self._slots[key] = _Slot(value, deadline)
            self._expires(key, deadline)

    async def delete(self, *keys: str) -> int:
        existed = 0
        for key in set(keys):
            if self._live(key) is not None:
                del self._slots[key]
                existed += 1
        return existed

    async def delete_durably(self, *keys: str) -> int:
        # One process, no replica: deleted is durable.
        return await self.delete(*keys)

    async def get_touch(self, key: str, ttl_seconds: float) -> bytes | None:
        _check_ttl(ttl_seconds)
        self._drop_expired()
        value = await self.get(key)
        if value is not None:
            deadline = self._clock() + ttl_seconds
            self._slots[key].deadline = deadline
            self._expires(key, deadline)
        return value

    def _stream(self, key: str) -> _Stream | None:
        slot = self._live(key)
        if slot is None:
            return None
        if not isinstance(slot.value, _Stream):
            raise TypeError(f"key {key!r} holds a value, not a stream")
        return slot.value

    def _new_stream(self, key: str) -> _Stream:
        stream = _Stream(deque(), deque())
        self._slots[key] = _Slot(stream, None)
        return stream

    async def append_stream(
        self, stream: str, fields: Mapping[str, str], maxlen: int, *, max_bytes: int | None = None
    ) -> str:
        if maxlen < 1:
            raise ValueError(f"maxlen must be at least 1, got {maxlen}")
        if max_bytes is not None and max_bytes < 1:
            raise ValueError(f"max_bytes must be at least 1, got {max_bytes}")
        self._drop_expired()
        log = self._stream(stream) or self._new_stream(stream)
        # Ids follow Redis: wall-clock milliseconds, with a sequence that keeps them increasing within a millisecond
        # or when the clock steps back.
        millis = time.time_ns() // 1_000_000
        entry_id = (millis, 0) if millis > log.last[0] else (log.last[0], log.last[1] + 1)
        log.last = entry_id
        entry = StreamEntry(id=f"{entry_id[0]}-{entry_id[1]}", fields=dict(fields))
        size = entry_size(entry.fields)
        log.entries.append((entry_id, entry))
        log.sizes.append(size)
        log.size += size
        cap = log.size if max_bytes is None else max_bytes
        while len(log.entries) > maxlen or (log.size > cap and len(log.entries) > 1):
            log.entries.popleft()
            log.size -= log.sizes.popleft()
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

    async def put(self, key: str, value: bytes, *, only_if_absent: bool = False) -> bool:
        if only_if_absent and self._live(key) is not None:
            return False
        self._slots[key] = _Slot(value, None)
        return True

    def _index(self, key: str) -> dict[str, float] | None:
        slot = self._live(key)
        if slot is None:
            return None
        if not isinstance(slot.value, dict) or isinstance(slot.value, _Counters):
            raise TypeError(f"key {key!r} does not hold a sorted index")
        return slot.value

    async def index_add(self, index: str, member: str, score: float) -> None:
        members = self._index(index)
        if members is None:
            members = {}
            self._slots[index] = _Slot(members, None)
        members[member] = score

    async def index_remove(self, index: str, *members: str) -> int:
        present = self._index(index)
        if present is None:
            return 0
        removed = sum(1 for member in set(members) if present.pop(member, None) is not None)
        if not present:
            # Redis drops an emptied sorted set; so does this store.
            del self._slots[index]
        return removed

    async def index_prune(self, index: str, max_score: float) -> int:
        present = self._index(index) or {}
        return await self.index_remove(index, *[member for member, score in present.items() if score <= max_score])

    async def index_range(self, index: str, min_score: float = float("-inf")) -> Sequence[tuple[str, float]]:
        present = self._index(index) or {}
        return sorted(((m, s) for m, s in present.items() if s >= min_score), key=lambda item: (item[1], item[0]))

    async def take(self, charges: Sequence[Charge]) -> Refusal | None:
        # Nothing awaits between the check and the update, so the pair is atomic in this process: exact.
        self._drop_expired()
        now_us = round(self._clock() * 1_000_000)
        arrivals: dict[int, int] = {}
        for index, charge in enumerate(charges):
            if isinstance(charge, RateCharge):
                slot = self._live(charge.key)
                stored = int(slot.value) if slot is not None and isinstance(slot.value, bytes) else now_us
                arrival = max(stored, now_us)
                if arrival - charge.tolerance_us > now_us:
                    return Refusal(index, -(-(arrival - charge.tolerance_us - now_us) // 1000))
                arrivals[index] = arrival + charge.interval_us
            elif charge.limit is not None and self._counters(charge.key).get(charge.field, 0) >= charge.limit:
                return Refusal(index, None)
        for index, charge in enumerate(charges):
            if isinstance(charge, RateCharge):
                arrival = arrivals[index]
                self._put(charge.key, str(arrival).encode(), (arrival - now_us) / 1_000_000)
            else:
                counters = self._counters(charge.key)
                counters[charge.field] = counters.get(charge.field, 0) + 1
                self._put(charge.key, counters, charge.ttl_seconds)
        return None

    def _counters(self, key: str) -> _Counters:
        slot = self._live(key)
        if slot is None:
            return _Counters()
        if not isinstance(slot.value, _Counters):
            raise TypeError(f"key {key!r} holds a value, a stream or an index, not counters")
        return slot.value

    def _put(self, key: str, value: bytes | _Counters, ttl_seconds: float) -> None:
        deadline = self._clock() + max(ttl_seconds, 0.001)
        self._slots[key] = _Slot(value, deadline)
        self._expires(key, deadline)

    async def read_counts(self, key: str) -> Mapping[str, int]:
        return dict(self._counters(key))

    async def get_cached(self, key: str) -> bytes | None:
        # The data already lives in this process: there is no round trip to save.
        return await self.get(key)

    async def ping(self) -> None:
        return None

    async def serve(self) -> None:
        return None

    async def close(self) -> None:
        return None
