"""Handshake-era sessions beside a 2026-07-28 connection, for the handshake-era clients that can be asked mid-call.

A 2026-07-28 upstream never asks its client anything while a call runs: it answers ``input_required`` and waits for
the retry. A dual-era upstream's tool written the handshake way (a ``sampling/createMessage`` or ``elicitation/create``
sent during the call) therefore finds no back-channel when the call arrives as a 2026-07-28 request. A handshake-era
client that declared ``sampling``, ``elicitation`` or ``roots`` can be asked that way, so its calls go to the same
upstream over a handshake-era session instead; everyone else's calls stay on the connection's 2026-07-28 path, which
pays nothing for this module.

A session declares exactly the back-channel capabilities of the clients whose calls it carries, never more: the
upstream decides whether to ask from that declaration, and must not learn of a capability the calling client lacks.
So sessions are pooled by capability set: opened on first use, reused by every later call with the same set (never
one per call), closed after ``idle`` seconds without a call, and at most ``limit`` per upstream (an idle one makes
room; with none idle the call takes the 2026-07-28 path, as it would without this module). An upstream that refuses
the handshake (a 2026-07-28-only server) is not asked again for ``retry_after`` seconds.

The pool knows nothing about transports: ``open`` makes a session (for stdio, a second process of the same command,
since a dual-era server settles its era on the first request of its pipe) and the pool only holds it open.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Generic, Protocol, TypeVar

import anyio
import anyio.abc
import mcp_types as types
from mcp.client import ClientSession
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, LATEST_HANDSHAKE_VERSION

from mcp_gateway.upstreams.jsonrpc import send_raw

logger = logging.getLogger(__name__)

BACK_CHANNEL = ("elicitation", "roots", "sampling")
"""The client capabilities that let an upstream ask the client something during a call."""


def back_channel(capabilities: Mapping[str, Any]) -> dict[str, Any]:
    """What a client declared it can be asked mid-call, as a session on its behalf declares it; {} for nothing.

    ``roots.listChanged`` is left out: the gateway does not relay a client's ``notifications/roots/list_changed``, so
    an upstream must not wait for one.
    """
    declared: dict[str, Any] = {}
    for name in BACK_CHANNEL:
        value = capabilities.get(name)
        if isinstance(value, Mapping):
            declared[name] = {key: sub for key, sub in value.items() if not (name == "roots" and key == "listChanged")}
    return declared


async def initialize(
    session: ClientSession, capabilities: Mapping[str, Any], client_info: types.Implementation
) -> None:
    """The handshake, declaring ``capabilities`` as given (the SDK would derive them from its callbacks)."""
    params = {
        "protocolVersion": LATEST_HANDSHAKE_VERSION,
        "capabilities": dict(capabilities),
        "clientInfo": client_info.model_dump(by_alias=True, mode="json", exclude_none=True),
    }
    result = types.InitializeResult.model_validate(await send_raw(session, "initialize", params, {}))
    if result.protocol_version not in HANDSHAKE_PROTOCOL_VERSIONS:
        raise RuntimeError(f"the upstream answered initialize with protocol {result.protocol_version!r}")
    session.adopt(result)
    await session.send_notification(types.InitializedNotification())


class Session(Protocol):
    @property
    def lost(self) -> anyio.Event:
        """Set when the session has ended."""
        ...


S = TypeVar("S", bound=Session)

Opener = Callable[[dict[str, Any]], AbstractAsyncContextManager[S]]
"""Opens one handshake-era session declaring the given capabilities; yields it once established."""


class _Entry(Generic[S]):
    def __init__(self, capabilities: dict[str, Any]) -> None:
        self.capabilities = capabilities
        self.ready = anyio.Event()
        self.session: S | None = None
        self.in_flight = 0
        self.last_used = anyio.current_time()
        self.closing = False
        self.close = anyio.Event()


class HandshakeSessions(Generic[S]):
    """The handshake-era sessions of one upstream connection, one per declared capability set.

    Lives as long as the connection's session: ``task_group`` is that session's, so its end closes every pooled one.
    """

    def __init__(
        self,
        task_group: anyio.abc.TaskGroup,
        open_session: Opener[S],
        *,
        upstream: str,
        open_timeout: float,
        limit: int = 4,
        idle: float = 300.0,
        retry_after: float = 60.0,
    ) -> None:
        self._tg = task_group
        self._open = open_session
        self._upstream = upstream
        self._open_timeout = open_timeout
        self._limit = limit
        self._idle = idle
        self._retry_after = retry_after
        self._entries: dict[str, _Entry[S]] = {}
        self._refused_until = -math.inf

    def __len__(self) -> int:
        return len(self._entries)

    @asynccontextmanager
    async def lease(self, capabilities: dict[str, Any]) -> AsyncIterator[S | None]:
        """The session declaring ``capabilities``, held for one call; None when there is none to be had."""
        entry = await self._entry(capabilities)
        if entry is None or entry.session is None:
            yield None
            return
        entry.in_flight += 1
        try:
            yield entry.session
        finally:
            entry.in_flight -= 1
            entry.last_used = anyio.current_time()

    async def _entry(self, capabilities: dict[str, Any]) -> _Entry[S] | None:
        if anyio.current_time() < self._refused_until:
            return None
        key = json.dumps(capabilities, sort_keys=True, separators=(",", ":"))
        entry = self._entries.get(key)
        if entry is None:
            if len(self._entries) >= self._limit and not self._evict_idle():
                logger.info(
                    "upstream %r: %d handshake sessions busy; this call goes as 2026-07-28", self._upstream, len(self)
                )
                return None
            entry = _Entry[S](capabilities)
            try:
                self._tg.start_soon(self._hold, key, entry)
            except RuntimeError:
                return None  # the connection's session has just ended; its caller is about to hear so
            self._entries[key] = entry
        await entry.ready.wait()
        if entry.closing or entry.session is None or entry.session.lost.is_set():
            return None
        return entry

    def _evict_idle(self) -> bool:
        idle = [entry for entry in self._entries.values() if entry.in_flight == 0 and entry.session is not None]
        if not idle:
            return False
        self._retire(min(idle, key=lambda entry: entry.last_used))
        return True

    def _retire(self, entry: _Entry[S]) -> None:
        """No call takes ``entry`` from now on; its holder closes it."""
        entry.closing = True
        for key, held in list(self._entries.items()):
            if held is entry:
                del self._entries[key]
        entry.close.set()

    async def _hold(self, key: str, entry: _Entry[S]) -> None:
        """Open the session, publish it, and close it when idle, retired or lost."""
        try:
            with anyio.CancelScope(deadline=anyio.current_time() + self._open_timeout) as opening:
                async with self._open(entry.capabilities) as session:
                    opening.deadline = math.inf
                    entry.session = session
                    entry.last_used = anyio.current_time()
                    entry.ready.set()
                    logger.info("upstream %r: handshake session open for clients declaring %s", self._upstream, key)
                    await self._until_done(entry, session)
            if opening.cancelled_caught and entry.session is None:
                raise TimeoutError(f"no handshake within {self._open_timeout:g}s")
        except Exception as exc:
            if entry.session is None:
                self._refused_until = anyio.current_time() + self._retry_after
                logger.warning(
                    "upstream %r: no handshake-era session (%s); handshake-era clients' calls go as 2026-07-28 for %gs",
                    self._upstream,
                    exc,
                    self._retry_after,
                )
            else:
                logger.info("upstream %r: handshake session for %s ended: %s", self._upstream, key, exc)
        finally:
            entry.closing = True
            if self._entries.get(key) is entry:
                del self._entries[key]
            entry.ready.set()

    async def _until_done(self, entry: _Entry[S], session: S) -> None:
        async with anyio.create_task_group() as tg:

            async def stop_on(event: anyio.Event) -> None:
                await event.wait()
                tg.cancel_scope.cancel()

            tg.start_soon(stop_on, session.lost)
            tg.start_soon(stop_on, entry.close)
            while True:
                remaining = entry.last_used + self._idle - anyio.current_time()
                if remaining <= 0 and entry.in_flight == 0:
                    self._retire(entry)
                    break
                await anyio.sleep(remaining if remaining > 0 else self._idle)
            tg.cancel_scope.cancel()
