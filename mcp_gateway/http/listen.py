"""``subscriptions/listen`` (2026-07-28): the stream a modern client holds open for the gateway's change notifications.

At 2026-07-28 there is no standing GET stream: the response to a ``subscriptions/listen`` request *is* the stream. It
opens with ``notifications/subscriptions/acknowledged`` naming the subset of the requested filter the gateway honors,
then carries the merged ``list_changed`` notifications of every upstream (the same ``Notifier`` feed as the legacy GET
stream), each stamped with the listen request's id, until the client closes it. The gateway honors the three list
kinds; ``resourceSubscriptions`` are not relayed from upstreams, so they are left out of the acknowledgment, which
tells the client they will never fire.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import anyio
from mcp.shared.subscriptions import SUBSCRIPTION_ID_META_KEY
from starlette.types import Receive, Scope, Send

from mcp_gateway.http.responses import sse_event
from mcp_gateway.http.streaming import KEEPALIVE_SECONDS, EventStream
from mcp_gateway.notifications import Notifier

# Filter key -> the notification it opts in to.
_KINDS = {
    "toolsListChanged": "notifications/tools/list_changed",
    "promptsListChanged": "notifications/prompts/list_changed",
    "resourcesListChanged": "notifications/resources/list_changed",
}


def honored_filter(requested: Mapping[str, Any]) -> dict[str, bool]:
    """The part of a requested ``SubscriptionFilter`` the gateway delivers."""
    return {key: True for key in _KINDS if requested.get(key) is True}


class ListenStream(EventStream):
    """One listen subscription: the acknowledgment, then matching change notifications until the client goes away."""

    def __init__(self, notifier: Notifier, subscription_id: str | int, honored: dict[str, bool]) -> None:
        super().__init__()
        self._notifier = notifier
        self._meta = {SUBSCRIPTION_ID_META_KEY: subscription_id}
        self._honored = honored
        self._methods = frozenset(_KINDS[key] for key in honored)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        # Subscribe before acknowledging, so nothing published meanwhile is lost; the ack is still the first frame.
        async with anyio.create_task_group() as tg, self._notifier.subscribe() as notes:

            async def watch_disconnect() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass
                tg.cancel_scope.cancel()

            tg.start_soon(watch_disconnect)
            ack = {"notifications": self._honored, "_meta": self._meta}
            await self._send(send, "notifications/subscriptions/acknowledged", ack)
            while True:
                with anyio.move_on_after(KEEPALIVE_SECONDS) as waited:
                    note = await notes.receive()
                if waited.cancelled_caught:
                    await send({"type": "http.response.body", "body": b": keepalive\r\n\r\n", "more_body": True})
                elif note["method"] in self._methods:
                    await self._send(send, note["method"], {**note.get("params", {}), "_meta": self._meta})

    @staticmethod
    async def _send(send: Send, method: str, params: dict[str, Any]) -> None:
        message = {"jsonrpc": "2.0", "method": method, "params": params}
        await send({"type": "http.response.body", "body": sse_event(message), "more_body": True})
