"""The gateway in front of a server nobody here wrote: the pinned npm ``server-everything`` over stdio."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.support.harness import DEMO_KEY, DEMO_UPSTREAM, everything_upstream, make_config, mcp_client, serve_gateway

ERAS = ["legacy", "2026-07-28"]


@pytest.fixture(scope="module")
async def gateway() -> AsyncIterator[str]:
    upstreams = [DEMO_UPSTREAM, everything_upstream()]
    async with serve_gateway(make_config(upstreams=upstreams)) as url:
        yield url


@pytest.mark.parametrize("mode", ERAS)
async def test_everything_tools_are_merged_and_callable(gateway: str, mode: str) -> None:
    async with mcp_client(gateway, DEMO_KEY, mode=mode) as client:
        names = [tool.name for tool in (await client.list_tools()).tools]
        echo = await client.call_tool("everything__echo", {"message": "through the gateway"})
        total = await client.call_tool("everything__get-sum", {"a": 20, "b": 22})
    assert names == sorted(names)
    assert {"everything__echo", "everything__get-sum", "demo__echo"} <= set(names)
    assert echo.content[0].text == "Echo: through the gateway"  # type: ignore[union-attr]
    assert "42" in total.content[0].text  # type: ignore[union-attr]


@pytest.mark.parametrize("mode", ERAS)
async def test_everything_progress_streams_through(gateway: str, mode: str) -> None:
    seen: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(progress)

    async with mcp_client(gateway, DEMO_KEY, mode=mode) as client:
        await client.call_tool(
            "everything__trigger-long-running-operation", {"duration": 0.3, "steps": 3}, progress_callback=on_progress
        )
    assert seen == [1.0, 2.0, 3.0]


@pytest.mark.parametrize("mode", ERAS)
async def test_everything_prompts_and_resources_pass_through(gateway: str, mode: str) -> None:
    async with mcp_client(gateway, DEMO_KEY, mode=mode) as client:
        prompts = [p.name for p in (await client.list_prompts()).prompts]
        resources = (await client.list_resources()).resources
        everything_resource = next(r for r in resources if str(r.uri).startswith("demo://resource/"))
        read = await client.read_resource(str(everything_resource.uri))
    assert any(name.startswith("everything__") for name in prompts)
    assert read.contents
