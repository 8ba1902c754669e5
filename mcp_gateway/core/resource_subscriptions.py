"""Resource subscriptions: many clients, one upstream subscription per resource.

Clients subscribe to a resource URI (``resources/subscribe`` in the handshake era, ``resourceSubscriptions`` in a
``subscriptions/listen`` filter at 2026-07-28); the gateway subscribes once per (upstream, URI) on its own long-lived
upstream connection, however many clients want the resource, and unsubscribes when the last one leaves. When the
upstream says the resource changed, each subscribed client is told through the ``Notifier`` under its own target
(its legacy session, or its listen stream), never anyone else.

Subscriptions live in the process that accepted them: a handshake-era client whose GET stream is held by another
replica than the one it subscribed on hears nothing. A handshake-era session can expire without saying goodbye, so
its subscriptions carry the session's idle lifetime and are dropped once it passes without a request.

Clients name resources as the gateway exposes them (under an upstream's ``resourcePrefix``, if it has one); the
upstream subscription is for the URI as the upstream knows it, and its updates reach clients as exposed again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable

import anyio
from mcp_types import INTERNAL_ERROR, INVALID_PARAMS

from mcp_gateway.core.notifications import Notifier
from mcp_gateway.errors import RpcError, UpstreamUnavailable
from mcp_gateway.upstreams.catalog import Catalog
from mcp_gateway.upstreams.connection import UpstreamConnection
from mcp_gateway.upstreams.resource_uris import claimants, exposed_uri, upstream_uri

logger = logging.getLogger(__name__)

UPDATED = "notifications/resources/updated"


class ResourceSubscriptions:
    def __init__(self, catalog: Callable[[], Catalog], notifier: Notifier) -> None:
        self._catalog = catalog
        self._notifier = notifier
        # (upstream, uri) -> targets; a key exists exactly while the upstream subscription should.
        self._slots: dict[tuple[str, str], set[Hashable]] = {}
        # Targets that can vanish silently (a legacy session expiring): when they are presumed gone (monotonic).
        self._expiry: dict[Hashable, float] = {}
        self._connections: dict[str, UpstreamConnection] = {}
        # Upstream subscribe/unsubscribe calls are rare; one lock keeps "first in" and "last out" consistent.
        self._lock = anyio.Lock()

    async def subscribe(self, target: Hashable, uri: str, *, idle_lifetime: float | None = None) -> None:
        """Subscribe ``target`` to ``uri``, at the upstream that lists it (or whose template matches it).

        A URI no upstream lists may still name a resource (not every resource is enumerable), so it is subscribed at
        every upstream that takes subscriptions, and updates from any of them count. ``RpcError`` when no upstream
        can take it. With ``idle_lifetime``, the target's subscriptions are dropped once that long passes without
        ``touch``.
        """
        connections = self._owners(uri)
        async with self._lock:
            await self._sweep()
            if idle_lifetime is not None:
                self._expiry[target] = anyio.current_time() + idle_lifetime
            failures: list[RpcError] = []
            for connection in connections:
                try:
                    await self._join((connection.name, upstream_uri(connection, uri)), connection, target)
                except RpcError as exc:
                    failures.append(exc)
            if len(failures) == len(connections):
                raise failures[0]

    def _owners(self, uri: str) -> list[UpstreamConnection]:
        catalog = self._catalog()
        owner = catalog.resource_owner(uri)
        if owner is not None:
            if not owner.supports_resource_subscriptions:
                raise RpcError(INVALID_PARAMS, f"upstream {owner.name!r} does not support resource subscriptions")
            return [owner]
        capable = [c for c in claimants(catalog.connections(), uri) if c.supports_resource_subscriptions]
        if not capable:
            raise RpcError(INVALID_PARAMS, f"Unknown resource: {uri}")
        return capable

    async def _join(self, slot: tuple[str, str], connection: UpstreamConnection, target: Hashable) -> None:
        targets = self._slots.get(slot)
        if targets is not None:
            targets.add(target)
            return
        try:
            await connection.subscribe_resource(slot[1])
        except UpstreamUnavailable as exc:
            raise RpcError(INTERNAL_ERROR, f"cannot subscribe to {slot[1]} now: {exc.message}") from exc
        except TimeoutError as exc:
            raise RpcError(INTERNAL_ERROR, f"upstream {connection.name!r} did not answer the subscription") from exc
        self._slots[slot] = {target}
        self._connections[connection.name] = connection

    async def unsubscribe(self, target: Hashable, uri: str) -> None:
        """Idempotent: unsubscribing from something never subscribed is not an error."""
        async with self._lock:
            for slot in [slot for slot in self._slots if exposed_uri(self._connections[slot[0]], slot[1]) == uri]:
                await self._leave(slot, target)

    async def drop(self, target: Hashable) -> None:
        """``target`` is gone (its session ended, its listen stream closed): all of its subscriptions go."""
        async with self._lock:
            self._expiry.pop(target, None)
            for slot in [slot for slot, targets in self._slots.items() if target in targets]:
                await self._leave(slot, target)

    def touch(self, target: Hashable, idle_lifetime: float) -> None:
        """``target`` is still around: push back the moment its subscriptions are presumed abandoned."""
        if target in self._expiry:
            self._expiry[target] = anyio.current_time() + idle_lifetime

    def updated(self, connection: UpstreamConnection, uri: str) -> None:
        """The upstream says ``uri`` (as it knows it) changed: tell each subscriber, in the URI it subscribed to."""
        exposed = exposed_uri(connection, uri)
        for target in self._slots.get((connection.name, uri), ()):
            self._notifier.publish(UPDATED, {"uri": exposed}, to=target)

    async def _leave(self, slot: tuple[str, str], target: Hashable) -> None:
        targets = self._slots.get(slot)
        if targets is None or target not in targets:
            return
        targets.discard(target)
        if targets:
            return
        del self._slots[slot]
        connection = self._connections.get(slot[0])
        if connection is None:
            return
        try:
            await connection.unsubscribe_resource(slot[1])
        except (RpcError, UpstreamUnavailable, TimeoutError) as exc:
            # The upstream may keep sending updates nobody is told about; harmless, and gone at its next restart.
            logger.info("upstream %r: unsubscribing from %s failed: %s", slot[0], slot[1], exc)

    async def _sweep(self) -> None:
        """Forget targets presumed gone, and the upstream subscriptions only they held."""
        now = anyio.current_time()
        for target in [target for target, expires_at in self._expiry.items() if expires_at < now]:
            del self._expiry[target]
            for slot in [slot for slot, targets in self._slots.items() if target in targets]:
                await self._leave(slot, target)
