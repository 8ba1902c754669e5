"""Fan-out of server-initiated notifications to open client streams.

Merged ``list_changed`` hints go to every stream; a ``notifications/resources/updated`` goes only to the streams of
the client that subscribed to the resource (its ``target``: a legacy session, or one ``subscriptions/listen``).

Slow subscribers lose messages rather than stall the publisher: a ``list_changed`` hint is idempotent, so a dropped
one is repaired by the next list the client asks for, and an update only says "read it again".

At shutdown ``close`` ends every stream, so that no idle client holds the server open. A stream remembers who opened
it (its ``Caller``), so that a config reload can tell only the clients whose visible lists changed, and end the
streams of callers it removed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Hashable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from mcp_gateway.core.callers import Caller


@dataclass(frozen=True)
class Listener:
    """An open stream's target (see ``subscribe``) and the caller that opened it."""

    target: Hashable | None
    caller: Caller | None


class Notifier:
    def __init__(self) -> None:
        self._subscribers: dict[MemoryObjectSendStream[dict[str, Any]], Listener] = {}
        self._closed = False

    def close(self) -> None:
        """End every subscriber's stream (its ``receive`` raises ``EndOfStream``), and any subscribed from now on."""
        self._closed = True
        for subscriber in list(self._subscribers):
            subscriber.close()

    def end(self, target: Hashable) -> None:
        """End the streams subscribed with ``target`` (their caller is gone), as ``close`` ends all."""
        for subscriber, listener in list(self._subscribers.items()):
            if listener.target == target:
                subscriber.close()

    def listeners(self) -> list[Listener]:
        """Every open stream's target and caller."""
        return list(self._subscribers.values())

    @asynccontextmanager
    async def subscribe(
        self, target: Hashable | None = None, caller: Caller | None = None
    ) -> AsyncIterator[MemoryObjectReceiveStream[dict[str, Any]]]:
        """A stream of what is published to everyone, plus what is published to ``target``."""
        sender, receiver = anyio.create_memory_object_stream[dict[str, Any]](32)
        if self._closed:
            sender.close()
        else:
            self._subscribers[sender] = Listener(target, caller)
        try:
            async with receiver:
                yield receiver
        finally:
            self._subscribers.pop(sender, None)
            sender.close()

    def publish(self, method: str, params: dict[str, Any] | None = None, *, to: Hashable | None = None) -> None:
        """Send to every stream, or with ``to`` only to the streams subscribed with that target."""
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params:
            message["params"] = params
        for subscriber, listener in list(self._subscribers.items()):
            if to is not None and listener.target != to:
                continue
            try:
                subscriber.send_nowait(message)
            except (anyio.WouldBlock, anyio.BrokenResourceError, anyio.ClosedResourceError):
                continue
