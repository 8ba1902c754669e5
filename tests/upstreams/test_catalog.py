"""The merged namespace over real upstreams: naming, ``prefix: false``, clashes, ordering, routing, live rebuilds."""

from __future__ import annotations

import logging

import pytest

from mcp_gateway.config import UpstreamConfig
from mcp_gateway.upstreams.catalog import Catalog, LiveCatalog, NameClashError, build_catalog
from mcp_gateway.upstreams.connection import UpstreamConnection
from mcp_gateway.upstreams.list_cache import ListKind
from tests.upstreams.test_upstreams import DEMO_TOOLS, RAW_SERVER, demo_stdio, running, script_stdio, until


async def test_tools_are_namespaced_by_upstream_and_sorted() -> None:
    beta, alpha = UpstreamConnection(demo_stdio("beta")), UpstreamConnection(demo_stdio("alpha"))
    async with running(beta, alpha):
        catalog = build_catalog([beta, alpha])
    names = [entry.name for entry in catalog.tools()]
    assert names == sorted(names)
    assert set(names) == {f"{upstream}__{tool}" for upstream in ("alpha", "beta") for tool in DEMO_TOOLS}


async def test_exposed_tool_is_the_upstreams_definition_with_only_the_name_replaced() -> None:
    connection = UpstreamConnection(demo_stdio())
    async with running(connection):
        catalog = build_catalog([connection])
        entry = catalog.tool("demo__get_customer")
        assert entry is not None
        assert (entry.connection, entry.upstream_name, entry.original_name) == (connection, "demo", "get_customer")
        original = next(tool for tool in connection.lists.tools if tool["name"] == "get_customer")
        assert entry.definition == {**original, "name": "demo__get_customer"}
        assert original["name"] == "get_customer"  # the connection's own list is untouched
        arguments = {"customer_id": "cust-002"}
        result = await entry.connection.request("tools/call", {"name": entry.original_name, "arguments": arguments})
    assert result["structuredContent"]["name"] == "Alan Turing"
    assert catalog.tool("get_customer") is None
    assert catalog.tool("demo__missing") is None


async def test_prompts_are_namespaced_like_tools() -> None:
    connection = UpstreamConnection(demo_stdio())
    async with running(connection):
        catalog = build_catalog([connection])
    entry = catalog.prompt("demo__summarize")
    assert entry is not None and entry.original_name == "summarize"
    assert [prompt["name"] for prompt in catalog.prompt_entries()] == ["demo__summarize"]


async def test_prefix_false_exposes_the_upstreams_own_names() -> None:
    plain = UpstreamConnection(demo_stdio("plain", prefix=False))
    raw = UpstreamConnection(script_stdio("raw", RAW_SERVER, "echo"))
    async with running(plain, raw):
        catalog = build_catalog([plain, raw])
    names = [entry.name for entry in catalog.tools()]
    assert names == sorted(DEMO_TOOLS | {"raw__echo"})
    echo = catalog.tool("echo")
    assert echo is not None and echo.connection is plain


async def test_separator_comes_from_config() -> None:
    connection = UpstreamConnection(demo_stdio())
    async with running(connection):
        catalog = build_catalog([connection], separator=".")
    assert catalog.tool("demo.echo") is not None
    assert catalog.tool("demo__echo") is None


async def test_name_clash_is_a_startup_error_naming_both_upstreams() -> None:
    left = UpstreamConnection(demo_stdio("left", prefix=False))
    right = UpstreamConnection(script_stdio("right", RAW_SERVER, "echo", "other", prefix=False))
    async with running(left, right):
        with pytest.raises(NameClashError) as caught:
            build_catalog([left, right])
        with pytest.raises(NameClashError):
            LiveCatalog([left, right])
    assert caught.value.problems == [
        "tool name 'echo' is exposed by both upstreams 'left' ('echo') and 'right' ('echo'); rename an upstream or "
        "set prefix: true on it"
    ]


async def test_clash_through_the_separator_is_caught() -> None:
    # "a" + "__" + "b__c" and "a__b" + "__" + "c" are the same exposed name.
    short = UpstreamConnection(script_stdio("a", RAW_SERVER, "b__c"))
    long = UpstreamConnection(script_stdio("a__b", RAW_SERVER, "c"))
    async with running(short, long):
        with pytest.raises(NameClashError, match=r"'a__b__c' is exposed by both upstreams 'a' .* and 'a__b'"):
            build_catalog([short, long])


async def test_unprefixed_tool_in_the_agents_namespace_is_a_clash() -> None:
    squatter = UpstreamConnection(script_stdio("squatter", RAW_SERVER, "agents__helper", prefix=False))
    async with running(squatter):
        with pytest.raises(NameClashError) as caught:
            build_catalog([squatter])
    assert caught.value.problems == [
        "tool name 'agents__helper' of upstream 'squatter' is in the gateway's own namespace 'agents'; "
        "set prefix: true on it"
    ]


async def test_resource_listed_by_two_upstreams_goes_to_the_first_in_config_and_the_clash_is_named() -> None:
    first, second = UpstreamConnection(demo_stdio("first")), UpstreamConnection(demo_stdio("second"))
    async with running(first, second):
        catalog = build_catalog([first, second])
    assert catalog.resource_owner("demo://readme") is first
    assert catalog.resource_owner("demo://customers/cust-001") is first
    assert [resource["uri"] for resource in catalog.resource_entries()] == ["demo://note", "demo://readme"]
    assert any(
        clash.startswith("resource 'demo://readme' is listed by upstreams 'first' and 'second': it goes to 'first'")
        for clash in catalog.resource_clashes
    )


async def test_a_resource_prefix_exposes_an_upstreams_uris_and_templates_under_it() -> None:
    plain = UpstreamConnection(demo_stdio("plain"))
    prefixed = UpstreamConnection(demo_stdio("work", resource_prefix="Work"))
    async with running(plain, prefixed):
        catalog = build_catalog([plain, prefixed])
    assert [r["uri"] for r in catalog.resource_entries()] == [
        "Work+demo://note",
        "Work+demo://readme",
        "demo://note",
        "demo://readme",
    ]
    assert catalog.resource_owner("Work+demo://note") is prefixed
    assert catalog.resource_owner("Work+demo://customers/cust-001") is prefixed
    assert catalog.resource_owner("demo://customers/cust-001") is plain
    assert catalog.resource_clashes == ()


async def test_resources_keep_their_uris_and_route_to_their_upstream() -> None:
    demo = UpstreamConnection(demo_stdio())
    raw = UpstreamConnection(script_stdio("raw", RAW_SERVER))
    async with running(demo, raw):
        catalog = build_catalog([raw, demo])
    assert [resource["uri"] for resource in catalog.resource_entries()] == ["demo://note", "demo://readme"]
    assert [t["uriTemplate"] for t in catalog.resource_template_entries()] == ["demo://customers/{customer_id}"]
    assert catalog.resource_owner("demo://readme") is demo
    assert catalog.resource_owner("demo://customers/cust-001") is demo  # through the template
    assert catalog.resource_owner("other://thing") is None


async def test_live_catalog_swaps_in_a_new_snapshot_when_an_upstream_changes() -> None:
    connection = UpstreamConnection(demo_stdio())
    heard: list[tuple[Catalog, frozenset[ListKind]]] = []

    async def listener(catalog: Catalog, kinds: frozenset[ListKind]) -> None:
        heard.append((catalog, kinds))

    async with running(connection):
        live = LiveCatalog([connection], on_change=listener)
        before = live.snapshot()
        await connection.request("tools/call", {"name": "toggle_extra_tool", "arguments": {}})
        await until(lambda: bool(heard), within=5)
    after = live.snapshot()
    assert heard == [(after, frozenset({"tools"}))]
    assert after.version > before.version
    assert after.tool("demo__extra") is not None
    assert before.tool("demo__extra") is None  # a snapshot never changes under a request holding it


async def test_clash_appearing_at_runtime_keeps_the_previous_snapshot(caplog: pytest.LogCaptureFixture) -> None:
    demo = UpstreamConnection(demo_stdio("demo", prefix=False))
    raw = UpstreamConnection(script_stdio("raw", RAW_SERVER, "extra", prefix=False))
    async with running(demo, raw):
        live = LiveCatalog([demo, raw])
        before = live.snapshot()
        with caplog.at_level(logging.ERROR, logger="mcp_gateway.upstreams.catalog"):
            await demo.request("tools/call", {"name": "toggle_extra_tool", "arguments": {}})  # demo now lists "extra"
            await until(lambda: "clash" in caplog.text, within=5)
        assert any(tool["name"] == "extra" for tool in demo.lists.tools)
    assert live.snapshot() is before
    extra = before.tool("extra")
    assert extra is not None and extra.connection is raw
    assert "tool name 'extra' is exposed by both upstreams 'demo'" in caplog.text


def test_catalog_of_upstreams_that_never_connected_is_empty() -> None:
    connection = UpstreamConnection(UpstreamConfig(name="idle", transport=demo_stdio().transport))
    catalog = build_catalog([connection])
    assert (
        catalog.tools() == () and catalog.resource_entries() == [] and catalog.resource_owner("demo://readme") is None
    )
