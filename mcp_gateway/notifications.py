"""Fan-out of server-initiated notifications (merged ``list_changed``) to every open client stream.

Slow subscribers lose messages rather than stall the publisher: a ``list_changed`` hint is idempotent, so a dropped
one is repaired by the next list the client asks for.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream


class Notifier:
    def __init__(self) -> None:
        self._subscribers: set[MemoryObjectSendStream[dict[str, Any]]] = set()

    @asynccontextmanager
    async def subscribe(self) -> AsyncIterator[MemoryObjectReceiveStream[dict[str, Any]]]:
        sender, receiver = anyio.create_memory_object_stream[dict[str, Any]](32)
        self._subscribers.add(sender)
        try:
            async with receiver:
                yield receiver
        finally:
            self._subscribers.discard(sender)
            sender.close()

    def publish(self, method: str, params: dict[str, Any] | None = None) -> None:
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params:
            message["params"] = params
        for subscriber in list(self._subscribers):
            try:
                subscriber.send_nowait(message)
            except (anyio.WouldBlock, anyio.BrokenResourceError, anyio.ClosedResourceError):
                continue
