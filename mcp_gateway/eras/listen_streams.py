"""``subscriptions/listen`` (2026-07-28): the stream a modern client holds open for the gateway's change notifications.

At 2026-07-28 there is no standing GET stream: the response to a ``subscriptions/listen`` request *is* the stream. It
opens with ``notifications/subscriptions/acknowledged`` naming the subset of the requested filter the gateway honors,
then carries the merged ``list_changed`` notifications of every upstream (the same ``Notifier`` feed as the legacy GET
stream), each stamped with the listen request's id, until the client closes it. The gateway honors the three list
kinds, and ``resourceSubscriptions`` for the URIs whose upstream can subscribe: their
``notifications/resources/updated`` come on the same stream.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream
from mcp.shared.subscriptions import SUBSCRIPTION_ID_META_KEY

from mcp_gateway.core.notifications import Notifier
from mcp_gateway.core.proxy import Caller
from mcp_gateway.core.resource_subscriptions import UPDATED, ResourceSubscriptions
from mcp_gateway.eras.answers import EventStream, Frame, NextFrame
from mcp_gateway.errors import RpcError

logger = logging.getLogger(__name__)

# Filter key -> the notification it opts in to.
_KINDS = {
    "toolsListChanged": "notifications/tools/list_changed",
    "promptsListChanged": "notifications/prompts/list_changed",
    "resourcesListChanged": "notifications/resources/list_changed",
}
_MAX_RESOURCE_SUBSCRIPTIONS = 100


def honored_filter(requested: Mapping[str, Any]) -> dict[str, bool]:
    """The list kinds of a requested ``SubscriptionFilter`` the gateway delivers (URIs are settled per stream)."""
    return {key: True for key in _KINDS if requested.get(key) is True}


def requested_uris(requested: Mapping[str, Any]) -> list[str] | None:
    """The filter's ``resourceSubscriptions``, deduplicated; None when malformed."""
    uris = requested.get("resourceSubscriptions")
    if uris is None:
        return []
    if not isinstance(uris, list) or not all(isinstance(uri, str) and uri for uri in uris):
        return None
    return list(dict.fromkeys(uris))


class Listening:
    """One listen subscription, whatever carries it (an SSE response here, the stdio wire in ``eras/stdio.py``):
    the acknowledgment, then the matching notifications, each stamped with the listen request's id.

    Each requested resource URI is subscribed (``ResourceSubscriptions``) before the acknowledgment, which lists only
    the URIs that worked: unknown ones, and those whose upstream cannot subscribe, are left out.
    """

    def __init__(
        self,
        notifier: Notifier,
        subscriptions: ResourceSubscriptions,
        caller: Caller,
        subscription_id: str | int,
        honored: dict[str, bool],
        uris: list[str],
    ) -> None:
        self._notifier = notifier
        self._subscriptions = subscriptions
        self._caller = caller
        self._meta = {SUBSCRIPTION_ID_META_KEY: subscription_id}
        self._honored = honored
        self._uris = uris[:_MAX_RESOURCE_SUBSCRIPTIONS]
        self._methods = frozenset(_KINDS[key] for key in honored)
        self._target = ("listen", id(self))
        self._notes: MemoryObjectReceiveStream[dict[str, Any]] | None = None

    @property
    def meta(self) -> dict[str, Any]:
        """The ``_meta`` every message of the subscription carries, and its final result when the server ends it."""
        return self._meta

    @asynccontextmanager
    async def opened(self) -> AsyncIterator[Listening]:
        """Subscribed for the block (first, so nothing published while acknowledging is lost); dropped after it."""
        try:
            async with self._notifier.subscribe(self._target, self._caller) as notes:
                self._notes = notes
                yield self
        finally:
            with anyio.CancelScope(shield=True):
                await self._subscriptions.drop(self._target)

    async def acknowledgment(self) -> dict[str, Any]:
        """The first message: the honored filter, with the resource URIs whose subscription worked."""
        honored: dict[str, Any] = dict(self._honored)
        uris = [uri for uri in self._uris if await self._subscribe(uri)]
        if uris:
            honored["resourceSubscriptions"] = uris
        return self._message("notifications/subscriptions/acknowledged", {"notifications": honored})

    async def next_message(self) -> dict[str, Any] | None:
        """The next notification the filter asks for; None once the notifier closed (the server is shutting down)."""
        assert self._notes is not None, "use inside opened()"
        while True:
            try:
                note = await self._notes.receive()
            except anyio.EndOfStream:
                return None
            if note["method"] in self._methods or note["method"] == UPDATED:
                return self._message(note["method"], dict(note.get("params", {})))

    async def _subscribe(self, uri: str) -> bool:
        try:
            await self._subscriptions.subscribe(self._target, uri)
        except RpcError as exc:
            logger.info("subscriptions/listen: not subscribing to %s: %s", uri, exc.message)
            return False
        return True

    def _message(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        return {"jsonrpc": "2.0", "method": method, "params": {**params, "_meta": self._meta}}


def listening(
    caller: Caller,
    request_id: str | int,
    params: Mapping[str, Any],
    visible: Callable[[str], bool],
    notifier: Notifier,
    subscriptions: ResourceSubscriptions,
) -> Listening | str:
    """The subscription a ``subscriptions/listen`` request asks for, or why its params are invalid.

    ``caller`` is whom the stream serves (a config reload ends it when the caller's identity goes). A URI the caller
    may not see (``visible`` says no) is left out of the acknowledgment, as one that no upstream
    takes.
    """
    requested = params.get("notifications")
    if not isinstance(requested, Mapping):
        return "subscriptions/listen requires params.notifications"
    uris = requested_uris(requested)
    if uris is None:
        return "params.notifications.resourceSubscriptions must be a list of URIs"
    visible_uris = [u for u in uris if visible(u)]
    return Listening(notifier, subscriptions, caller, request_id, honored_filter(requested), visible_uris)


class ListenStream(EventStream):
    """A listen subscription as the SSE response of its request, until the client goes away.

    When the notifier closes, the server is shutting down: the stream ends cleanly and the client listens again (on
    another replica).
    """

    def __init__(self, listening: Listening) -> None:
        super().__init__()
        self._listening = listening

    @asynccontextmanager
    async def _frames(self) -> AsyncIterator[NextFrame]:
        async with self._listening.opened() as listening:
            # Before the first wait: subscribing is not cancel-safe, so no keepalive may interrupt it.
            first = [await listening.acknowledgment()]

            async def next_frame() -> Frame:
                if first:
                    return first.pop(), False
                message = await listening.next_message()
                return message, message is None

            yield next_frame
