"""Mid-call input across eras: a 2026-07-28 client in front of a handshake-era upstream, and the other way round.

A legacy upstream's live server→client request becomes an ``input_required`` result for a modern client (the upstream
call waits, parked, for the retry); a modern upstream's ``input_required`` result becomes live requests to a legacy
client. Real gateway, real demo upstream over stdio in the era under test, real SDK clients and raw HTTP.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import mcp_types as types
import pytest
from mcp.shared.exceptions import MCPError

from tests.e2e.test_fidelity_legacy import Answers, text_of
from tests.e2e.test_fidelity_modern import audited_outcomes
from tests.eras.test_mcp_endpoint import modern_body, modern_headers
from tests.support.harness import BASE_CONFIG, DEMO_KEY, DEMO_UPSTREAM, make_config, mcp_client, serve_gateway, sha

MODERN = "2026-07-28"
TWIN_KEY = "mgw_test_twin_key_3333333333333333333333"
IDENTITIES = [*BASE_CONFIG["identities"], {"id": "twin-agent", "credentials": [{"sha256": sha(TWIN_KEY)}]}]
CONFIRM = {"name": "demo__confirm_action", "arguments": {"action": "ship"}}
ELICITING: dict[str, Any] = {"elicitation": {}}


@pytest.fixture(scope="module")
async def legacy_upstream() -> AsyncIterator[str]:
    """The gateway in front of a handshake-era upstream."""
    upstream = {**DEMO_UPSTREAM, "protocol": "legacy"}
    async with serve_gateway(make_config(upstreams=[upstream], identities=IDENTITIES)) as url:
        yield url


@pytest.fixture(scope="module")
async def modern_upstream() -> AsyncIterator[str]:
    """The gateway in front of a 2026-07-28 upstream."""
    async with serve_gateway(make_config(upstreams=[{**DEMO_UPSTREAM, "protocol": MODERN}])) as url:
        yield url


def call_body(params: dict[str, Any], capabilities: dict[str, Any], request_id: int = 1) -> dict[str, Any]:
    body = modern_body("tools/call", params, request_id)
    body["params"]["_meta"]["io.modelcontextprotocol/clientCapabilities"] = capabilities
    return body


async def post(url: str, body: dict[str, Any], key: str = DEMO_KEY) -> httpx.Response:
    headers = modern_headers("tools/call", body["params"]["name"], key=key)
    async with httpx.AsyncClient(timeout=30) as http:
        return await http.post(f"{url}/mcp", json=body, headers=headers)


async def first_round(url: str) -> tuple[str, str]:
    """Start a confirm_action call; return the input key and the requestState of its input_required answer."""
    response = await post(url, call_body(CONFIRM, ELICITING))
    result = response.json()["result"]
    assert result["resultType"] == "input_required", result
    [key] = result["inputRequests"]
    return key, result["requestState"]


def retry_body(key: str, state: str, confirm: bool = True, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
    params = {
        "name": "demo__confirm_action",
        "arguments": arguments or CONFIRM["arguments"],
        "inputResponses": {key: {"action": "accept", "content": {"confirm": confirm}}},
        "requestState": state,
    }
    return call_body(params, ELICITING, request_id=2)


async def test_modern_client_answers_a_legacy_upstreams_questions(legacy_upstream: str) -> None:
    answers = Answers()
    async with mcp_client(legacy_upstream, DEMO_KEY, mode=MODERN, **answers.callbacks()) as client:
        confirmed = await client.call_tool("demo__confirm_action", {"action": "ship"})
        sampled = await client.call_tool("demo__ask_model", {"question": "why?"})
        roots = await client.call_tool("demo__client_roots", {})
    assert text_of(confirmed) == "ship: confirmed"
    assert text_of(sampled) == "client model says hi"
    assert roots.structured_content == {"result": ["file:///client"]}
    assert [kind for kind, _ in answers.asked] == ["elicitation", "sampling", "roots"]


async def test_legacy_question_becomes_input_required_and_the_retry_resumes_the_call(legacy_upstream: str) -> None:
    response = await post(legacy_upstream, call_body(CONFIRM, ELICITING))
    result = response.json()["result"]
    assert result["resultType"] == "input_required"
    [(key, request)] = result["inputRequests"].items()
    assert request["method"] == "elicitation/create"
    assert request["params"]["message"] == "Really ship?"
    final = await post(legacy_upstream, retry_body(key, result["requestState"], confirm=False))
    assert final.json()["result"]["content"][0]["text"] == "ship: not confirmed"


@pytest.mark.parametrize(
    ("change", "key"),
    [
        (lambda state: state[:-2] + ("AA" if not state.endswith("AA") else "BB"), DEMO_KEY),
        (lambda state: "made-up", DEMO_KEY),
        (lambda state: state, TWIN_KEY),
    ],
    ids=["tampered", "unknown", "other-identity"],
)
async def test_bad_request_state_is_refused_and_the_call_stays_resumable(
    legacy_upstream: str, change: Any, key: str
) -> None:
    input_key, state = await first_round(legacy_upstream)
    refused = await post(legacy_upstream, retry_body(input_key, change(state)), key=key)
    assert refused.json()["error"] == {"code": -32602, "message": "Invalid or expired requestState"}
    final = await post(legacy_upstream, retry_body(input_key, state))
    assert final.json()["result"]["content"][0]["text"] == "ship: confirmed"


async def test_request_state_cannot_be_replayed(legacy_upstream: str) -> None:
    key, state = await first_round(legacy_upstream)
    assert "result" in (await post(legacy_upstream, retry_body(key, state))).json()
    replayed = await post(legacy_upstream, retry_body(key, state))
    assert replayed.json()["error"]["code"] == -32602


async def test_retry_for_other_arguments_is_refused(legacy_upstream: str) -> None:
    """A retry cannot point a parked call at arguments its policy decision never saw."""
    key, state = await first_round(legacy_upstream)
    steered = await post(legacy_upstream, retry_body(key, state, arguments={"action": "delete everything"}))
    assert steered.json()["error"]["code"] == -32602
    final = await post(legacy_upstream, retry_body(key, state))
    assert final.json()["result"]["content"][0]["text"] == "ship: confirmed"


async def test_every_round_is_a_policy_decision_of_its_own(
    legacy_upstream: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mcp_gateway.audit")
    key, state = await first_round(legacy_upstream)
    await post(legacy_upstream, retry_body(key, state))
    await audited_outcomes(caplog, "demo__confirm_action", "ok")
    records = [json.loads(r.getMessage()) for r in caplog.records if r.name == "mcp_gateway.audit"]
    assert [(r["decision"], r["outcome"]) for r in records if r["tool"] == "demo__confirm_action"][-2:] == [
        ("allow", "input_required"),
        ("allow", "ok"),
    ]


async def test_modern_client_without_the_capability_is_not_asked(legacy_upstream: str) -> None:
    """Refused with the 2026-07-28 error for it (-32021), whose data names the missing capability."""
    async with mcp_client(legacy_upstream, DEMO_KEY, mode=MODERN) as client:
        with pytest.raises(MCPError, match="did not declare the sampling capability") as refused:
            await client.call_tool("demo__ask_model", {"question": "anyone?"})
    assert refused.value.error.code == -32021
    assert refused.value.error.data == {"requiredCapabilities": {"sampling": {}}}


async def test_legacy_client_answers_a_modern_upstreams_input_required(modern_upstream: str) -> None:
    answers = Answers()
    async with mcp_client(modern_upstream, DEMO_KEY, mode="legacy", **answers.callbacks()) as client:
        confirmed = await client.call_tool("demo__confirm_action", {"action": "ship"})
        sampled = await client.call_tool("demo__ask_model", {"question": "why?"})
        roots = await client.call_tool("demo__client_roots", {})
    assert text_of(confirmed) == "ship: confirmed"
    assert text_of(sampled) == "client model says hi"
    assert roots.structured_content == {"result": ["file:///client"]}
    assert [kind for kind, _ in answers.asked] == ["elicitation", "sampling", "roots"]
    assert isinstance(answers.asked[0][1], types.ElicitRequestParams)


async def test_legacy_client_without_the_capability_gets_an_error_not_a_state(modern_upstream: str) -> None:
    """The modern upstream is told the legacy client's own capabilities, so it refuses rather than asks."""
    async with mcp_client(modern_upstream, DEMO_KEY, mode="legacy") as client:
        with pytest.raises(MCPError, match="did not declare the form elicitation capability") as refused:
            await client.call_tool("demo__confirm_action", {"action": "ship"})
    assert refused.value.error.code == -32021


async def test_resource_read_from_a_legacy_upstream_carries_a_no_reuse_cache_hint(legacy_upstream: str) -> None:
    """2026-07-28 requires ttlMs/cacheScope on resources/read; a handshake-era upstream gives none to pass on."""
    async with mcp_client(legacy_upstream, DEMO_KEY, mode=MODERN) as client:
        uri = str((await client.list_resources()).resources[0].uri)
    headers = modern_headers("resources/read", uri)
    async with httpx.AsyncClient(timeout=30) as http:
        response = await http.post(
            f"{legacy_upstream}/mcp", json=modern_body("resources/read", {"uri": uri}), headers=headers
        )
    result = response.json()["result"]
    assert result["contents"]
    assert (result["ttlMs"], result["cacheScope"]) == (0, "private")


async def test_legacy_clients_log_level_reaches_a_modern_upstream_and_its_log_messages_come_back(
    modern_upstream: str,
) -> None:
    """A 2026-07-28 upstream logs only on a per-request opt-in: the session's level (every level by default)."""
    logged: list[Any] = []

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        logged.append((params.level, params.data))

    async with mcp_client(modern_upstream, DEMO_KEY, mode="legacy", logging_callback=on_log) as client:
        assert text_of(await client.call_tool("demo__log_steps", {"n": 2})) == "logged 2"
        assert logged == [("info", "step 1 of 2"), ("info", "step 2 of 2")]
        await client.set_logging_level("warning")
        await client.call_tool("demo__log_steps", {"n": 1})
    assert len(logged) == 2  # the demo logs at info


async def test_modern_client_abandoning_a_call_to_a_legacy_upstream_cancels_it(
    legacy_upstream: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The plain-JSON call runs as a handshake-era upstream call: abandoning it cancels that call too."""
    caplog.set_level(logging.INFO, logger="mcp_gateway.audit")
    async with mcp_client(legacy_upstream, DEMO_KEY, mode=MODERN) as client:
        with anyio.move_on_after(1):
            await client.call_tool("demo__count_slowly", {"n": 100, "delay": 0.1})
    [record] = await audited_outcomes(caplog, "demo__count_slowly", "cancelled")
    assert record["latency_ms"] < 5000
