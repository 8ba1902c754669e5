"""Resource URIs across upstreams: the same URI from two upstreams routes by a fixed rule and is reported; an upstream
with ``resourcePrefix`` has its URIs exposed under that prefix, rewritten in both directions on every path.

Two real demo upstreams (``demo``, and ``twin`` in either era) that list the same URIs, real SDK clients of both eras.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp import Client
from mcp.client.subscriptions import ResourceUpdated, listen

from mcp_gateway.errors import ConfigError
from mcp_gateway.ops.checks import check_config
from tests.core.test_resource_subscriptions import Updates
from tests.support.harness import DEMO_KEY, DEMO_UPSTREAM, make_config, mcp_client, serve_gateway

MODERN = "2026-07-28"
TWIN = {**DEMO_UPSTREAM, "name": "twin"}
CLASHES = [
    "resource 'demo://note' is listed by upstreams 'demo' and 'twin': it goes to 'demo' (first in config order); "
    "set resourcePrefix on one of them to tell them apart",
    "resource 'demo://readme' is listed by upstreams 'demo' and 'twin': it goes to 'demo' (first in config order); "
    "set resourcePrefix on one of them to tell them apart",
    "resource template 'demo://customers/{customer_id}' is listed by upstreams 'demo' and 'twin': the URIs it matches "
    "go to 'demo' (first in config order); set resourcePrefix on one of them to tell them apart",
]


@pytest.fixture(scope="module", params=["legacy", MODERN], ids=lambda era: f"{era}-twin")
async def gateway(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """``demo`` as it is, and ``twin`` (the same server, in the era under test) under ``resourcePrefix: twin``."""
    twin = {**TWIN, "protocol": request.param, "resourcePrefix": "twin"}
    async with serve_gateway(make_config(upstreams=[DEMO_UPSTREAM, twin])) as url:
        yield url


@pytest.fixture(params=["legacy", MODERN])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def text_of(result: types.CallToolResult) -> str:
    content = result.content[0]
    assert isinstance(content, types.TextContent)
    return content.text


async def read_text(client: Client, uri: str) -> tuple[str, str]:
    """(the URI the contents carry, their text)."""
    [contents] = (await client.read_resource(uri)).contents
    assert isinstance(contents, types.TextResourceContents)
    return str(contents.uri), contents.text


async def test_a_prefixed_upstreams_resources_and_templates_are_listed_under_its_prefix(
    gateway: str, mode: str
) -> None:
    async with mcp_client(gateway, DEMO_KEY, mode=mode) as client:
        uris = [str(resource.uri) for resource in (await client.list_resources()).resources]
        templates = [t.uri_template for t in (await client.list_resource_templates()).resource_templates]
    assert uris == ["demo://note", "demo://readme", "twin+demo://note", "twin+demo://readme"]
    assert templates == ["demo://customers/{customer_id}", "twin+demo://customers/{customer_id}"]


async def test_a_read_under_the_prefix_reaches_that_upstream_without_it(gateway: str, mode: str) -> None:
    async with mcp_client(gateway, DEMO_KEY, mode=mode) as client:
        await client.call_tool("demo__write_note", {"text": f"demo's note, {mode}"})
        await client.call_tool("twin__write_note", {"text": f"twin's note, {mode}"})
        assert await read_text(client, "twin+demo://note") == ("twin+demo://note", f"twin's note, {mode}")
        assert await read_text(client, "demo://note") == ("demo://note", f"demo's note, {mode}")
        uri, text = await read_text(client, f"twin+demo://customers/cust-{mode}")
        assert uri == f"twin+demo://customers/cust-{mode}"
        assert json.loads(text)["id"] == f"cust-{mode}"
        assert f"cust-{mode}" in text_of(await client.call_tool("twin__customer_reads", {}))
        assert f"cust-{mode}" not in text_of(await client.call_tool("demo__customer_reads", {}))


async def test_resource_links_and_embedded_resources_in_tool_results_carry_the_prefix(gateway: str, mode: str) -> None:
    async with mcp_client(gateway, DEMO_KEY, mode=mode) as client:
        twin = (await client.call_tool("twin__note_link", {})).content
        demo = (await client.call_tool("demo__note_link", {})).content
    assert isinstance(twin[0], types.ResourceLink) and isinstance(twin[1], types.EmbeddedResource)
    assert (str(twin[0].uri), str(twin[1].resource.uri)) == ("twin+demo://note", "twin+demo://note")
    assert isinstance(demo[0], types.ResourceLink) and isinstance(demo[1], types.EmbeddedResource)
    assert (str(demo[0].uri), str(demo[1].resource.uri)) == ("demo://note", "demo://note")


async def test_a_legacy_subscription_under_the_prefix_hears_that_upstreams_updates_under_it(gateway: str) -> None:
    updates = Updates()
    async with mcp_client(gateway, DEMO_KEY, mode="legacy", message_handler=updates.handler) as client:
        await client.subscribe_resource("twin+demo://note")
        await client.call_tool("demo__write_note", {"text": "not the subscribed one"})
        await client.call_tool("twin__write_note", {"text": "the subscribed one"})
        await updates.wait_for(lambda uris: len(uris) >= 1)
        await client.unsubscribe_resource("twin+demo://note")
        requests = text_of(await client.call_tool("twin__note_subscriptions", {}))
    assert updates.uris == ["twin+demo://note"]
    if "subscribe" in requests:  # a handshake-era twin is asked by resources/subscribe, with its own URI
        assert "subscribe demo://note" in requests and "unsubscribe demo://note" in requests


async def test_a_modern_listener_under_the_prefix_hears_that_upstreams_updates_under_it(gateway: str) -> None:
    async with (
        mcp_client(gateway, DEMO_KEY, mode=MODERN) as client,
        mcp_client(gateway, DEMO_KEY) as writer,
        listen(client.session, resource_subscriptions=["twin+demo://note"]) as events,
    ):
        assert events.honored.resource_subscriptions == ["twin+demo://note"]
        await writer.call_tool("twin__write_note", {"text": "for the listener"})
        with anyio.fail_after(10):
            event = await anext(events)
    assert event == ResourceUpdated(uri="twin+demo://note")


async def test_no_clash_is_reported_when_a_prefix_tells_them_apart(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="mcp_gateway.upstreams.catalog")
    async with serve_gateway(make_config(upstreams=[DEMO_UPSTREAM, {**TWIN, "resourcePrefix": "twin"}])):
        pass
    assert [r.getMessage() for r in caplog.records if r.name == "mcp_gateway.upstreams.catalog"] == []


@pytest.mark.parametrize("first", ["demo", "twin"])
async def test_without_a_prefix_the_first_upstream_in_config_order_serves_a_shared_uri_and_the_clash_is_logged(
    first: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="mcp_gateway.upstreams.catalog")
    upstreams = [DEMO_UPSTREAM, TWIN] if first == "demo" else [TWIN, DEMO_UPSTREAM]
    async with serve_gateway(make_config(upstreams=upstreams)) as url, mcp_client(url, DEMO_KEY) as client:
        await client.call_tool("demo__write_note", {"text": "demo's note"})
        await client.call_tool("twin__write_note", {"text": "twin's note"})
        assert await read_text(client, "demo://note") == ("demo://note", f"{first}'s note")
        await client.read_resource("demo://customers/routed")
        assert "routed" in text_of(await client.call_tool(f"{first}__customer_reads", {}))
        uris = [str(resource.uri) for resource in (await client.list_resources()).resources]
    assert uris == ["demo://note", "demo://readme"]
    logged = [r.getMessage() for r in caplog.records if r.name == "mcp_gateway.upstreams.catalog"]
    other = "twin" if first == "demo" else "demo"
    expected = [
        c.replace("'demo' and 'twin'", f"'{first}' and '{other}'").replace("to 'demo'", f"to '{first}'")
        for c in CLASHES
    ]
    assert logged == expected


async def test_check_reports_every_resource_clash_as_a_warning() -> None:
    problems, warnings = await check_config(make_config(upstreams=[DEMO_UPSTREAM, TWIN]))
    assert problems == []
    assert [w for w in warnings if w.startswith("resource")] == CLASHES
    problems, warnings = await check_config(make_config(upstreams=[DEMO_UPSTREAM, {**TWIN, "resourcePrefix": "t"}]))
    assert [w for w in warnings if w.startswith("resource")] == []


@pytest.mark.parametrize(
    ("prefixes", "problem"),
    [
        (["two+ways", None], "upstreams[0].resourcePrefix: 'two+ways' must match ^[A-Za-z][A-Za-z0-9.-]*$"),
        (["9lives", None], "upstreams[0].resourcePrefix: '9lives' must match ^[A-Za-z][A-Za-z0-9.-]*$"),
        (["same", "SAME"], "upstreams[1].resourcePrefix: 'SAME' is also upstreams[0]'s"),
    ],
)
def test_a_resource_prefix_must_be_scheme_characters_and_unique(prefixes: list[str | None], problem: str) -> None:
    upstreams: list[dict[str, Any]] = [
        {**upstream, "resourcePrefix": prefix} for upstream, prefix in zip([DEMO_UPSTREAM, TWIN], prefixes, strict=True)
    ]
    with pytest.raises(ConfigError) as refused:
        make_config(upstreams=upstreams)
    assert problem in refused.value.problems
