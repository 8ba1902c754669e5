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
from collections.abc import Mapping
from typing import Any

import anyio
from mcp.shared.subscriptions import SUBSCRIPTION_ID_META_KEY
from starlette.types import Receive, Scope, Send

from mcp_gateway.errors import RpcError
from mcp_gateway.http.responses import sse_event
from mcp_gateway.http.streaming import KEEPALIVE_SECONDS, EventStream
from mcp_gateway.notifications import Notifier
from mcp_gateway.proxy import Caller
from mcp_gateway.resource_subscriptions import UPDATED, ResourceSubscriptions

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


class ListenStream(EventStream):
    """One listen subscription: the acknowledgment, then matching notifications until the client goes away.

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
        super().__init__()
        self._notifier = notifier
        self._subscriptions = subscriptions
        self._caller = caller
        self._meta = {SUBSCRIPTION_ID_META_KEY: subscription_id}
        self._honored = honored
        self._uris = uris[:_MAX_RESOURCE_SUBSCRIPTIONS]
        self._methods = frozenset(_KINDS[key] for key in honored)
        self._target = ("listen", id(self))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        # Subscribe before acknowledging, so nothing published meanwhile is lost; the ack is still the first frame.
        try:
            async with anyio.create_task_group() as tg, self._notifier.subscribe(self._target, self._caller) as notes:

                async def watch_disconnect() -> None:
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    tg.cancel_scope.cancel()

                tg.start_soon(watch_disconnect)
                honored: dict[str, Any] = dict(self._honored)
                uris = [uri for uri in self._uris if await self._subscribe(uri)]
                if uris:
                    honored["resourceSubscriptions"] = uris
                await self._send(send, "notifications/subscriptions/acknowledged", {"notifications": honored})
                while True:
                    with anyio.move_on_after(KEEPALIVE_SECONDS) as waited:
                        try:
                            note = await notes.receive()
                        except anyio.EndOfStream:
                            break
                    if waited.cancelled_caught:
                        await send({"type": "http.response.body", "body": b": keepalive\r\n\r\n", "more_body": True})
                    elif note["method"] in self._methods or note["method"] == UPDATED:
                        await self._send(send, note["method"], dict(note.get("params", {})))
                # The notifier closed: the server is shutting down, so the stream ends cleanly and the client
                # listens again (on another replica).
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await self._subscriptions.drop(self._target)

    async def _subscribe(self, uri: str) -> bool:
        try:
            await self._subscriptions.subscribe(self._target, uri)
        except RpcError as exc:
            logger.info("subscriptions/listen: not subscribing to %s: %s", uri, exc.message)
            return False
        return True

    async def _send(self, send: Send, method: str, params: dict[str, Any]) -> None:
        message = {"jsonrpc": "2.0", "method": method, "params": {**params, "_meta": self._meta}}
        await send({"type": "http.response.body", "body": sse_event(message), "more_body": True})
