"""MCP conformance: every scenario our fixture server passes directly also passes through the gateway, in both eras.

The work is ``scripts/conformance.py`` (also ``make conformance``, and the source of the README's table); these tests
run its full matrix once against real processes: the pinned conformance CLI on the pinned Node 22, the fixture server
``mcp_gateway.examples.conformance_server`` and ``mcp-gateway serve`` in front of it for every upstream setting.

:data:`KNOWN_REGRESSIONS` is the one list of scenarios the gateway loses today, each an ``xfail(strict=True)``: a
fix makes its entry pass, the strict xfail then fails, and the entry must go.
"""

from __future__ import annotations

import sys
from pathlib import Path

import mcp_types as types
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client

from scripts.conformance import (
    DIRECT,
    ERAS,
    FIXTURE_MODULE,
    ROOT,
    TARGETS,
    BearerProxy,
    Comparison,
    conformance_command,
    fixture_server,
    read_result,
    run_comparison,
    run_suite,
    serve_asgi,
)

GATEWAY_TARGETS = tuple(target.name for target in TARGETS if target.through_gateway)
LEGACY_UPSTREAM = ("http legacy",)

# (era, scenario) -> (the gateway settings that lose it, why): the one list of what the gateway loses today. The
# causes are written up in the conformance report on issue 12; remove a setting (or the entry) when its fix lands.
KNOWN_REGRESSIONS: dict[tuple[str, str], tuple[tuple[str, ...], str]] = {
    ("2026-07-28", scenario): (
        LEGACY_UPSTREAM,
        # A limit of `protocol: legacy`: a handshake-era upstream asks one unkeyed question at a time, mid-call,
        # so the client cannot get the fixture's own input keys, nor several questions in one round.
        "a legacy upstream's questions reach the 2026-07-28 client one per round, under the gateway's own keys",
    )
    for scenario in ("input-required-result-basic-elicitation", "input-required-result-multiple-input-requests")
}


def _known(era: str, target: str) -> set[str]:
    return {scenario for (e, scenario), (targets, _) in KNOWN_REGRESSIONS.items() if e == era and target in targets}


@pytest.fixture(scope="module")
async def comparison(tmp_path_factory: pytest.TempPathFactory) -> Comparison:
    """The full matrix (both eras, direct and every gateway setting), run once for this module (~70 s)."""
    return await run_comparison(tmp_path_factory.mktemp("conformance"))


def _report(comparison: Comparison) -> str:
    return f"\n{comparison.markdown()}\n{comparison.details()}\nartifacts: {comparison.workdir}"


@pytest.mark.parametrize("era", ERAS)
def test_fixture_server_passes_every_scenario_directly(comparison: Comparison, era: str) -> None:
    results = comparison.era(era)
    assert len(results.scenarios) >= 30, _report(comparison)  # the suite really ran
    assert results.direct_failures() == [], _report(comparison)


@pytest.mark.parametrize("target", GATEWAY_TARGETS)
@pytest.mark.parametrize("era", ERAS)
def test_gateway_loses_no_scenario_beyond_the_known_regressions(comparison: Comparison, era: str, target: str) -> None:
    lost = {scenario for scenario, where in comparison.era(era).regressions() if where == target}
    assert lost - _known(era, target) == set(), _report(comparison)


@pytest.mark.parametrize(
    ("era", "scenario", "target"),
    [
        pytest.param(era, scenario, target, marks=pytest.mark.xfail(raises=AssertionError, strict=True, reason=reason))
        for (era, scenario), (targets, reason) in KNOWN_REGRESSIONS.items()
        for target in targets
    ],
)
def test_known_regression_passes_through_the_gateway(
    comparison: Comparison, era: str, scenario: str, target: str
) -> None:
    results = comparison.era(era)
    assert results.result(DIRECT, scenario).passed, _report(comparison)
    assert results.result(target, scenario).passed, f"{results.result(target, scenario).failures}"


async def test_a_scenario_failing_only_through_the_gateway_is_a_regression(tmp_path: Path) -> None:
    # The auth proxy presents a key the gateway does not know: every request through it gets 401.
    comparison = await run_comparison(
        tmp_path,
        eras=["2025-11-25"],
        targets=["http auto"],
        scenarios=["server-initialize", "tools-list"],
        proxy_key="mgw_not_a_real_key",
    )
    results = comparison.era("2025-11-25")
    assert results.direct_failures() == []
    assert results.regressions() == [("server-initialize", "http auto"), ("tools-list", "http auto")]
    assert "| `tools-list` | pass | **fail** |" in comparison.markdown()
    assert comparison.failed()


@pytest.mark.parametrize("era", ERAS)
async def test_the_auth_proxy_changes_no_scenario_outcome(tmp_path: Path, era: str) -> None:
    """The gateway columns go through BearerProxy; in front of the fixture itself it must be invisible.

    The hard parts: long-lived SSE streams and resumption (2025-11-25), header values padded on purpose (2026-07-28).
    """
    command = conformance_command()
    async with fixture_server(tmp_path) as url:
        direct = await run_suite(command, url, tmp_path / "direct", era)
        proxy = BearerProxy(url.removesuffix("/mcp"), "mgw_ignored_by_the_fixture")
        try:
            async with serve_asgi(proxy) as port:
                proxied = await run_suite(command, f"http://127.0.0.1:{port}/mcp", tmp_path / "proxied", era)
        finally:
            await proxy.aclose()
    assert {name: result.label for name, result in proxied.items()} == {
        name: result.label for name, result in direct.items()
    }
    assert all(result.passed for result in direct.values())
    assert len(proxy.traffic) > len(direct), "the proxied run really went through the proxy"


def test_a_scenario_passes_only_with_a_success_and_no_failure() -> None:
    success = {"id": "ping", "status": "SUCCESS"}
    failure = {"id": "ping", "status": "FAILURE", "errorMessage": "no pong"}
    assert read_result("ping", [success]).passed
    assert not read_result("ping", [success, failure]).passed
    assert read_result("ping", [success, failure]).failures == ("ping: no pong",)
    assert not read_result("ping", [{"id": "ping", "status": "SKIPPED"}]).passed


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_fixture_server_answers_over_stdio_in_both_eras(mode: str) -> None:
    """The suite only drives HTTP; the stdio fixture (the gateway's stdio upstream in the matrix) is checked here."""
    params = StdioServerParameters(command=sys.executable, args=["-m", FIXTURE_MODULE], cwd=ROOT)
    async with Client(stdio_client(params), mode=mode) as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        result = await client.call_tool("test_simple_text", {})
        read = await client.read_resource("test://static-text")
    assert {"test_simple_text", "test_sampling", "test_input_required_result_elicitation"} <= names
    assert result.content == [types.TextContent(type="text", text="This is a simple text response for testing.")]
    assert isinstance(read.contents[0], types.TextResourceContents)
    assert read.contents[0].text == "This is the content of the static text resource."
