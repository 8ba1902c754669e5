"""MCP conformance: the gateway in front of ``server-everything`` passes every scenario the server passes directly.

The work is ``scripts/conformance.py`` (also runnable by hand, and the source of the README's table); these tests run
its core against real processes: the pinned conformance CLI, ``server-everything`` over streamable HTTP and
``mcp-gateway serve``.
"""

from __future__ import annotations

from pathlib import Path

from scripts.conformance import (
    BearerProxy,
    conformance_command,
    everything_server,
    list_server_scenarios,
    read_result,
    run_comparison,
    run_suite,
    serve_asgi,
)

# Scenarios server-everything really passes; if it stops passing them the comparison has lost its teeth.
CORE = {"server-initialize", "ping", "tools-list", "resources-list", "prompts-list", "logging-set-level"}


async def test_gateway_passes_every_scenario_the_direct_server_passes(tmp_path: Path) -> None:
    comparison = await run_comparison(tmp_path)
    report = f"\n{comparison.markdown()}\n{comparison.details()}\nartifacts: {tmp_path}"
    assert set(comparison.passing(comparison.direct)) >= CORE, report
    assert comparison.regressions() == [], report


async def test_a_scenario_failing_only_through_the_gateway_is_a_regression(tmp_path: Path) -> None:
    # The auth proxy presents a key the gateway does not know: every request through it gets 401.
    comparison = await run_comparison(tmp_path, ["server-initialize", "tools-list"], proxy_key="mgw_not_a_real_key")
    assert comparison.passing(comparison.direct) == ["server-initialize", "tools-list"]
    assert comparison.regressions() == ["server-initialize", "tools-list"]
    assert "**fail (regression)**" in comparison.markdown()


async def test_the_auth_proxy_changes_no_scenario_outcome(tmp_path: Path) -> None:
    """The gateway column goes through BearerProxy; in front of server-everything it must be invisible."""
    command = await conformance_command(tmp_path)
    names = await list_server_scenarios(command)
    async with everything_server(tmp_path) as url:
        direct = await run_suite(command, url, tmp_path / "direct", names, whole_suite=True)
        proxy = BearerProxy(url.removesuffix("/mcp"), "mgw_ignored_by_server_everything")
        try:
            async with serve_asgi(proxy) as port:
                proxied_url = f"http://127.0.0.1:{port}/mcp"
                proxied = await run_suite(command, proxied_url, tmp_path / "proxied", names, whole_suite=True)
        finally:
            await proxy.aclose()
    assert {name: proxied[name].label for name in names} == {name: direct[name].label for name in names}
    assert len(proxy.traffic) > len(names), "the proxied run really went through the proxy"


def test_a_pass_on_a_tool_the_server_does_not_have_sets_no_bar() -> None:
    def check(text: str) -> dict[str, object]:
        result = {"content": [{"type": "text", "text": text}], "isError": True}
        return {"id": "tools-call-error", "status": "SUCCESS", "details": {"result": result}}

    missing = read_result("tools-call-error", [check("MCP error -32602: Tool test_error_handling not found")])
    real = read_result("tools-call-error", [check("this tool always fails")])
    assert missing.passed and not missing.counts
    assert missing.label == "pass (vacuous)"
    assert real.passed and real.counts
