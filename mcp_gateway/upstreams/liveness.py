"""Notice when an upstream transport has stopped delivering messages.

The SDK's dispatcher treats the end of its read stream as the end of the connection and fails the calls waiting on
it, but nothing tells whoever holds the ``Client`` open: a stdio server that exited leaves the client context sitting
there, dead. Wrapping the transport's read stream is the narrowest public seam that sees every ending (EOF, a closed
stream, a transport torn down by an error or by cancellation). The dispatcher leaves the stream's context before it
fails its waiters, so by the time a caller sees ``CONNECTION_CLOSED`` the loss is already recorded.
"""

from __future__ import annotations

import contextvars
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import TracebackType
from typing import TYPE_CHECKING, Self

import anyio
from mcp.client import Transport
from mcp.shared.message import SessionMessage

if TYPE_CHECKING:
    # Typing only: the SDK exports ``Transport`` publicly but spells the stream types only in this module.
    from mcp.client._transport import ReadStream, TransportStreams

Incoming = SessionMessage | Exception


class _WatchedReadStream:
    """A read stream that sets ``lost`` once it ends, for whatever reason."""

    def __init__(self, inner: ReadStream[Incoming], lost: anyio.Event) -> None:
        self._inner = inner
        self._lost = lost

    @property
    def last_context(self) -> contextvars.Context | None:
        # The dispatcher runs handlers in the sender's context when the stream records one (streamable HTTP does).
        context: contextvars.Context | None = getattr(self._inner, "last_context", None)
        return context

    async def receive(self) -> Incoming:
        try:
            return await self._inner.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._lost.set()
            raise

    async def aclose(self) -> None:
        self._lost.set()
        await self._inner.aclose()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Incoming:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc_val: BaseException | None, exc_tb: TracebackType | None
    ) -> None:
        await self.aclose()


@asynccontextmanager
async def watched(transport: Transport, lost: anyio.Event) -> AsyncIterator[TransportStreams]:
    """``transport`` with a read stream that sets ``lost`` when the connection ends."""
    async with transport as (read_stream, write_stream):
        yield _WatchedReadStream(read_stream, lost), write_stream
