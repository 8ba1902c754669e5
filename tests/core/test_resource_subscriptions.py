"""Resource subscriptions through the gateway, both eras on both sides: real SDK clients, the demo upstream speaking
2026-07-28 (``subscriptions/listen`` with ``resourceSubscriptions``) and the npm ``server-everything`` speaking the
handshake era (``resources/subscribe``)."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp import Client
from mcp.client.subscriptions import ResourceUpdated, listen
from mcp.shared.exceptions import MCPError

from tests.support.harness import DEMO_KEY, DEMO_UPSTREAM, everything_upstream, make_config, mcp_client, serve_gateway

MODERN = "2026-07-28"
NOTE = "demo://note"


@pytest.fixture(scope="module")
async def gateway() -> AsyncIterator[str]:
    upstreams = [DEMO_UPSTREAM, everything_upstream()]
    async with serve_gateway(make_config(upstreams=upstreams)) as url:
        yield url


class Updates:
    """What a handshake-era client hears on its GET stream: the URIs of resource updates, in order."""

    def __init__(self) -> None:
        self.uris: list[str] = []
        self._changed = anyio.Event()

    async def handler(self, message: Any) -> None:
        if isinstance(message, types.ResourceUpdatedNotification):
            self.uris.append(str(message.params.uri))
            self._changed.set()
            self._changed = anyio.Event()

    async def wait_for(self, predicate: Callable[[list[str]], bool], within: float = 10) -> None:
        with anyio.fail_after(within):
            while not predicate(self.uris):
                await self._changed.wait()


async def write_note(client: Client, text: str) -> None:
    result = await client.call_tool("demo__write_note", {"text": text})
    assert result.content[0].text == "noted"  # type: ignore[union-attr]


async def upstream_requests(client: Client) -> str:
    """The subscribe and unsubscribe requests the demo upstream received."""
    result = await client.call_tool("demo__note_subscriptions", {})
    return result.content[0].text  # type: ignore[union-attr]


async def everything_uri(client: Client) -> str:
    resources = (await client.list_resources()).resources
    return next(str(r.uri) for r in resources if str(r.uri).startswith("demo://resource/"))


async def test_a_legacy_client_hears_of_the_resources_it_subscribed_to_and_no_other(gateway: str) -> None:
    mine, theirs = Updates(), Updates()
    async with (
        mcp_client(gateway, DEMO_KEY, mode="legacy", message_handler=mine.handler) as client,
        mcp_client(gateway, DEMO_KEY, mode="legacy", message_handler=theirs.handler) as other,
    ):
        await anyio.sleep(0.2)  # the GET streams open after initialize, in the background
        await client.subscribe_resource(NOTE)
        await write_note(other, "first")
        await mine.wait_for(lambda uris: uris == [NOTE])
        assert (await client.read_resource(NOTE)).contents[0].text == "first"  # type: ignore[union-attr]
        await client.unsubscribe_resource(NOTE)
        await write_note(other, "second")
        await client.subscribe_resource(NOTE)
        await write_note(other, "third")
        await mine.wait_for(lambda uris: len(uris) == 2)
    assert mine.uris == [NOTE, NOTE]  # not the second write, made while unsubscribed
    assert theirs.uris == []


async def test_a_modern_listener_hears_of_the_uris_the_gateway_acknowledged(gateway: str) -> None:
    async with mcp_client(gateway, DEMO_KEY, mode=MODERN) as client, mcp_client(gateway, DEMO_KEY) as writer:
        wanted = [NOTE, "test://unlisted"]  # the second: at server-everything, which takes any URI
        async with listen(client.session, resource_subscriptions=wanted) as events:
            assert events.honored.resource_subscriptions == wanted
            await write_note(writer, "for the listener")
            with anyio.fail_after(10):
                event = await anext(events)
    assert event == ResourceUpdated(uri=NOTE)


@pytest.mark.parametrize("mode", ["legacy", MODERN])
async def test_updates_from_a_handshake_era_upstream_reach_both_eras(gateway: str, mode: str) -> None:
    """The gateway subscribes upstream once for both clients; when one leaves, the other still hears."""
    staying, leaving = Updates(), Updates()
    async with (
        mcp_client(gateway, DEMO_KEY, mode="legacy", message_handler=staying.handler) as first,
        mcp_client(gateway, DEMO_KEY, mode="legacy", message_handler=leaving.handler) as second,
        mcp_client(gateway, DEMO_KEY, mode=mode) as third,
    ):
        await anyio.sleep(0.2)
        uri = await everything_uri(first)
        await first.subscribe_resource(uri)
        await second.subscribe_resource(uri)
        await second.unsubscribe_resource(uri)
        if mode == MODERN:
            async with listen(third.session, resource_subscriptions=[uri]) as events:
                assert events.honored.resource_subscriptions == [uri]
                # server-everything sends an update at once, then every 5 s, until toggled off again.
                await third.call_tool("everything__toggle-subscriber-updates", {})
                try:
                    with anyio.fail_after(10):
                        assert await anext(events) == ResourceUpdated(uri=uri)
                    await staying.wait_for(lambda uris: uri in uris)
                finally:
                    await third.call_tool("everything__toggle-subscriber-updates", {})
        else:
            await third.call_tool("everything__toggle-subscriber-updates", {})
            try:
                await staying.wait_for(lambda uris: uri in uris)
            finally:
                await third.call_tool("everything__toggle-subscriber-updates", {})
    assert leaving.uris == []


async def test_a_uri_no_upstream_lists_is_subscribed_where_subscriptions_are_taken(gateway: str) -> None:
    """Not every resource is listed; server-everything takes a subscription to any URI, so the gateway does too."""
    async with mcp_client(gateway, DEMO_KEY, mode="legacy") as client:
        await client.subscribe_resource("test://watched-resource")
        await client.unsubscribe_resource("test://watched-resource")
        await client.unsubscribe_resource("test://never-subscribed")  # leaving what you never joined is fine


async def test_two_sessions_share_one_upstream_subscription_which_ends_with_the_last() -> None:
    """Reference counting: the upstream is asked once, and told to stop only when the last subscriber leaves."""
    upstream = {**DEMO_UPSTREAM, "protocol": "legacy"}
    leaving, staying = Updates(), Updates()
    async with serve_gateway(make_config(upstreams=[upstream])) as url:
        async with (
            mcp_client(url, DEMO_KEY, mode="legacy", message_handler=leaving.handler) as first,
            mcp_client(url, DEMO_KEY, mode="legacy", message_handler=staying.handler) as second,
        ):
            await anyio.sleep(0.2)
            await first.subscribe_resource(NOTE)
            await second.subscribe_resource(NOTE)
            await first.unsubscribe_resource(NOTE)
            assert await upstream_requests(first) == f"subscribe {NOTE}"
            await write_note(first, "for the one still subscribed")
            await staying.wait_for(lambda uris: uris == [NOTE])
            await second.unsubscribe_resource(NOTE)
            assert await upstream_requests(first) == f"subscribe {NOTE}; unsubscribe {NOTE}"
        assert leaving.uris == []


async def test_a_deleted_session_leaves_its_subscriptions() -> None:
    upstream = {**DEMO_UPSTREAM, "protocol": "legacy"}
    async with serve_gateway(make_config(upstreams=[upstream])) as url:
        async with mcp_client(url, DEMO_KEY, mode="legacy") as client:
            await client.subscribe_resource(NOTE)
        # Leaving the client's context ends its session with DELETE /mcp.
        async with mcp_client(url, DEMO_KEY, mode="legacy") as observer:
            assert await upstream_requests(observer) == f"subscribe {NOTE}; unsubscribe {NOTE}"


# An SDK low-level server that lists a resource but takes no subscriptions.
NO_SUBSCRIBE_SERVER = r"""
import anyio
import mcp_types as types
from mcp.server import Server
from mcp.server.stdio import stdio_server

async def list_resources(ctx, params):
    return types.ListResourcesResult(resources=[types.Resource(uri="plain://fixed", name="fixed")])

async def main():
    server = Server("plain", on_list_resources=list_resources)
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())

anyio.run(main)
"""


async def test_a_resource_whose_upstream_cannot_subscribe_is_refused() -> None:
    upstream = {"name": "plain", "transport": "stdio", "command": sys.executable, "args": ["-c", NO_SUBSCRIBE_SERVER]}
    async with (
        serve_gateway(make_config(upstreams=[upstream])) as url,
        mcp_client(url, DEMO_KEY, mode="legacy") as legacy,
        mcp_client(url, DEMO_KEY, mode=MODERN) as modern,
    ):
        with pytest.raises(MCPError, match="upstream 'plain' does not support resource subscriptions"):
            await legacy.subscribe_resource("plain://fixed")
        with pytest.raises(MCPError, match="Unknown resource: nope://x") as unknown:
            await legacy.subscribe_resource("nope://x")
        assert unknown.value.error.code == types.INVALID_PARAMS
        async with listen(modern.session, resource_subscriptions=["plain://fixed"]) as events:
            assert not events.honored.resource_subscriptions
