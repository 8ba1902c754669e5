"""``core/input_bridge.py`` on its own: mid-call input carried across the two MCP eras.

No gateway and no transport run here. The peers are the smallest that speak each era's way: a handshake-era client
that answers what it is asked (``LegacyClient``), a 2026-07-28 upstream that ends a call with ``input_required`` and
checks the retry (``ModernUpstream``), and a handshake-era upstream that asks its client mid-call through the real
``client_requests.ask`` and waits (``LegacyUpstream``). Every refused retry is checked for what it must not do as
well: reach the upstream, or spend the parked call, which the rightful retry still resumes afterwards.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from mcp_types import INTERNAL_ERROR, INVALID_PARAMS, MISSING_REQUIRED_CLIENT_CAPABILITY, REQUEST_TIMEOUT

from mcp_gateway.core.input_bridge import MAX_ROUNDS, InputBridge, resolve_input_required
from mcp_gateway.errors import RpcError
from mcp_gateway.upstreams.client_requests import Downstream, ask

ALICE = "alice\x00"
ALICE_IN_TASK = "alice\x00session-1"
BOB = "bob\x00"
ELICIT = {"message": "Delete the ticket?", "requestedSchema": {"type": "object", "properties": {}}}
CALL = {"name": "confirm_action", "arguments": {"ticket": "t-1"}}
WAIT = 10.0
"""A bound on waits that end as soon as the awaited thing happens: a hang fails the test instead of the run."""


class LegacyClient:
    """A handshake-era client: declares capabilities, answers each request from ``answers``, records what it heard."""

    def __init__(self, answers: Mapping[str, dict[str, Any]], capabilities: Mapping[str, Any] | None = None) -> None:
        self._answers = answers
        self._capabilities = capabilities if capabilities is not None else {"elicitation": {}, "sampling": {}}
        self.asked: list[tuple[str, dict[str, Any]]] = []
        self.told: list[tuple[str, dict[str, Any]]] = []

    @property
    def capabilities(self) -> Mapping[str, Any]:
        return self._capabilities

    async def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        self.asked.append((method, params))
        return self._answers[method]

    async def notify(self, method: str, params: dict[str, Any]) -> None:
        self.told.append((method, params))


class ModernUpstream:
    """A 2026-07-28 upstream's ``confirm_action``: ``input_required`` first, the result once the retry answers."""

    def __init__(self, requests: Mapping[str, Any] | None = None) -> None:
        self.requests = (
            requests if requests is not None else {"confirm": {"method": "elicitation/create", "params": ELICIT}}
        )
        self.retries: list[tuple[dict[str, Any] | None, str | None]] = []

    async def retry(self, responses: dict[str, Any] | None, state: str | None) -> dict[str, Any]:
        self.retries.append((responses, state))
        if state != "state-1" or responses is None or set(responses) != set(self.requests):
            return self.first()
        return {"content": [{"type": "text", "text": f"answered {sorted(responses)}"}]}

    def first(self) -> dict[str, Any]:
        return {"resultType": "input_required", "inputRequests": dict(self.requests), "requestState": "state-1"}


class LegacyUpstream:
    """A handshake-era upstream's ``confirm_action``: reports progress, asks its client, waits, answers with it."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.answers: list[dict[str, Any]] = []
        self.failures: list[RpcError] = []
        self.cancelled = anyio.Event()
        self.failed = anyio.Event()

    async def send(self, params: dict[str, Any], down: Downstream, progress: Any) -> dict[str, Any]:
        self.calls.append(params)
        await progress(0.5, 1.0, "looking the ticket up")
        await down.notify("notifications/message", {"level": "info", "data": "asking"})
        try:
            answer = await ask(down, "elicitation/create", ELICIT)
        except RpcError as exc:
            self.failures.append(exc)
            self.failed.set()
            raise
        except anyio.get_cancelled_exc_class():
            self.cancelled.set()
            raise
        self.answers.append(answer)
        return {"content": [{"type": "text", "text": f"action={answer['action']}"}]}


class Round:
    """What one client request (one round) heard while it waited: progress and relayed notifications."""

    def __init__(self) -> None:
        self.progress: list[tuple[float, float | None, str | None]] = []
        self.client = LegacyClient({}, {"elicitation": {}})

    async def report(self, progress: float, total: float | None, message: str | None) -> None:
        self.progress.append((progress, total, message))


@asynccontextmanager
async def running(bridge: InputBridge) -> AsyncIterator[InputBridge]:
    async with anyio.create_task_group() as tg:
        await tg.start(bridge.run)
        yield bridge
        tg.cancel_scope.cancel()


async def forward(
    bridge: InputBridge,
    upstream: LegacyUpstream,
    params: dict[str, Any],
    *,
    owner: str = ALICE,
    name: str = "legacy",
    this_round: Round | None = None,
) -> dict[str, Any]:
    this_round = this_round or Round()
    with anyio.fail_after(WAIT):
        return await bridge.forward(
            owner=owner,
            upstream=name,
            method="tools/call",
            params=params,
            capabilities={"elicitation": {}},
            progress=this_round.report,
            send=upstream.send,
            client=this_round.client,
        )


def retry_of(first: dict[str, Any], params: dict[str, Any] = CALL, action: str = "accept") -> dict[str, Any]:
    (key,) = first["inputRequests"]
    return {**params, "inputResponses": {key: {"action": action}}, "requestState": first["requestState"]}


async def refused(bridge: InputBridge, upstream: LegacyUpstream, params: dict[str, Any], **kw: Any) -> RpcError:
    with pytest.raises(RpcError) as caught:
        await forward(bridge, upstream, params, **kw)
    return caught.value


# A handshake-era client, a 2026-07-28 upstream: resolve_input_required.


async def test_a_final_first_result_is_returned_without_asking_or_retrying() -> None:
    upstream, client = ModernUpstream(), LegacyClient({})
    final = {"content": [], "resultType": "complete"}
    assert await resolve_input_required(final, client, upstream.retry) is final
    assert client.asked == [] and upstream.retries == []


async def test_input_requests_are_asked_live_and_the_upstream_retried_with_the_answers_and_its_state() -> None:
    upstream = ModernUpstream(
        {
            "confirm": {"method": "elicitation/create", "params": ELICIT},
            "draft": {"method": "sampling/createMessage", "params": {"messages": [], "maxTokens": 5}},
        }
    )
    client = LegacyClient({"elicitation/create": {"action": "accept"}, "sampling/createMessage": {"role": "assistant"}})
    result = await resolve_input_required(upstream.first(), client, upstream.retry)
    assert result == {"content": [{"type": "text", "text": "answered ['confirm', 'draft']"}]}
    assert client.asked == [
        ("elicitation/create", ELICIT),
        ("sampling/createMessage", {"messages": [], "maxTokens": 5}),
    ]
    assert upstream.retries == [
        ({"confirm": {"action": "accept"}, "draft": {"role": "assistant"}}, "state-1"),
    ]


async def test_a_result_with_only_request_state_is_retried_with_that_state_and_no_answers() -> None:
    upstream, client = ModernUpstream(), LegacyClient({"elicitation/create": {"action": "accept"}})
    first = {"resultType": "input_required", "requestState": "still-working"}
    await resolve_input_required(first, client, upstream.retry)
    assert upstream.retries[0] == (None, "still-working")
    assert client.asked == [("elicitation/create", ELICIT)]


async def test_a_question_the_client_cannot_be_asked_fails_before_any_retry() -> None:
    upstream = ModernUpstream()
    with pytest.raises(RpcError) as no_client:
        await resolve_input_required(upstream.first(), None, upstream.retry)
    assert no_client.value.code == INTERNAL_ERROR
    without_elicitation = LegacyClient({"elicitation/create": {"action": "accept"}}, {"sampling": {}})
    with pytest.raises(RpcError) as undeclared:
        await resolve_input_required(upstream.first(), without_elicitation, upstream.retry)
    assert undeclared.value.code == MISSING_REQUIRED_CLIENT_CAPABILITY
    assert undeclared.value.data == {"requiredCapabilities": {"elicitation": {}}}
    assert without_elicitation.asked == [] and upstream.retries == []


async def test_a_malformed_input_request_fails_without_asking_the_client() -> None:
    upstream, client = ModernUpstream({"confirm": {"params": ELICIT}}), LegacyClient({})
    with pytest.raises(RpcError) as caught:
        await resolve_input_required(upstream.first(), client, upstream.retry)
    assert caught.value.code == INTERNAL_ERROR and "malformed" in caught.value.message
    assert client.asked == [] and upstream.retries == []


async def test_an_upstream_that_keeps_asking_is_given_up_on_after_max_rounds() -> None:
    upstream, client = ModernUpstream(), LegacyClient({"elicitation/create": {"action": "accept"}})

    async def never_satisfied(responses: dict[str, Any] | None, state: str | None) -> dict[str, Any]:
        upstream.retries.append((responses, state))
        return upstream.first()

    with pytest.raises(RpcError) as caught:
        await resolve_input_required(upstream.first(), client, never_satisfied)
    assert caught.value.code == INTERNAL_ERROR
    assert len(upstream.retries) == MAX_ROUNDS == len(client.asked)


# A 2026-07-28 client, a handshake-era upstream: InputBridge parks the call.


async def test_the_upstreams_question_parks_the_call_and_the_retry_resumes_the_same_call() -> None:
    upstream = LegacyUpstream()
    async with running(InputBridge()) as bridge:
        first_round = Round()
        first = await forward(bridge, upstream, {**CALL, "_meta": {"progressToken": 1}}, this_round=first_round)
        assert first["resultType"] == "input_required"
        assert first["inputRequests"] == {"input-1": {"method": "elicitation/create", "params": ELICIT}}
        assert len(first["requestState"]) >= 40
        assert first_round.progress == [(0.5, 1.0, "looking the ticket up")]
        assert first_round.client.told == [("notifications/message", {"level": "info", "data": "asking"})]

        final = await forward(bridge, upstream, retry_of(first, {**CALL, "_meta": {"progressToken": 2}}))
    assert final == {"content": [{"type": "text", "text": "action=accept"}]}
    assert upstream.calls == [{**CALL, "_meta": {"progressToken": 1}}]
    assert upstream.answers == [{"action": "accept"}]


@pytest.mark.parametrize(
    ("change", "owner"),
    [
        pytest.param(
            lambda state: state[:-4] + ("AAAA" if not state.endswith("AAAA") else "BBBB"), ALICE, id="tampered"
        ),
        pytest.param(lambda state: "never-issued", ALICE, id="unknown"),
        pytest.param(lambda state: state, BOB, id="another-identity"),
        pytest.param(lambda state: state, ALICE_IN_TASK, id="another-task-session"),
    ],
)
async def test_a_request_state_that_is_not_the_callers_own_is_refused_and_reaches_nothing(
    change: Any, owner: str
) -> None:
    upstream = LegacyUpstream()
    async with running(InputBridge()) as bridge:
        first = await forward(bridge, upstream, CALL)
        forged = {**retry_of(first), "requestState": change(first["requestState"])}
        error = await refused(bridge, upstream, forged, owner=owner)
        assert (error.code, error.message) == (INVALID_PARAMS, "Invalid or expired requestState")
        assert upstream.answers == []
        final = await forward(bridge, upstream, retry_of(first))
    assert final == {"content": [{"type": "text", "text": "action=accept"}]}
    assert len(upstream.calls) == 1


@pytest.mark.parametrize(
    ("params", "name"),
    [
        pytest.param({**CALL, "arguments": {"ticket": "t-2"}}, "legacy", id="other-arguments"),
        pytest.param({**CALL, "name": "delete_everything"}, "legacy", id="other-tool"),
        pytest.param(CALL, "another-upstream", id="other-upstream"),
    ],
)
async def test_a_retry_for_another_call_than_the_parked_one_is_refused(params: dict[str, Any], name: str) -> None:
    upstream = LegacyUpstream()
    async with running(InputBridge()) as bridge:
        first = await forward(bridge, upstream, CALL)
        error = await refused(bridge, upstream, retry_of(first, params), name=name)
        assert (error.code, error.message) == (INVALID_PARAMS, "Invalid or expired requestState")
        assert upstream.answers == []
        await forward(bridge, upstream, retry_of(first))
    assert upstream.answers == [{"action": "accept"}]


async def test_a_request_state_is_spent_by_its_retry_and_a_replay_is_refused() -> None:
    upstream = LegacyUpstream()
    async with running(InputBridge()) as bridge:
        first = await forward(bridge, upstream, CALL)
        await forward(bridge, upstream, retry_of(first))
        error = await refused(bridge, upstream, retry_of(first, action="decline"))
    assert (error.code, error.message) == (INVALID_PARAMS, "Invalid or expired requestState")
    assert upstream.answers == [{"action": "accept"}]


async def test_a_retry_that_does_not_answer_the_question_is_refused_and_the_call_stays_parked() -> None:
    upstream = LegacyUpstream()
    async with running(InputBridge()) as bridge:
        first = await forward(bridge, upstream, CALL)
        for responses in ({}, {"input-1": "accept"}, None):
            error = await refused(bridge, upstream, {**retry_of(first), "inputResponses": responses})
            assert error.code == INVALID_PARAMS and "inputResponses" in error.message
        assert upstream.answers == []
        await forward(bridge, upstream, retry_of(first))
    assert upstream.answers == [{"action": "accept"}]


async def test_a_client_that_does_not_come_back_in_time_fails_the_question_and_its_state_expires() -> None:
    upstream = LegacyUpstream()
    async with running(InputBridge(answer_within=0.01)) as bridge:
        first = await forward(bridge, upstream, CALL)
        with anyio.fail_after(WAIT):
            await upstream.failed.wait()
        error = await refused(bridge, upstream, retry_of(first))
    assert (error.code, error.message) == (INVALID_PARAMS, "Invalid or expired requestState")
    assert [failure.code for failure in upstream.failures] == [REQUEST_TIMEOUT]
    assert upstream.answers == []


async def test_abandon_ends_the_owners_parked_call_only() -> None:
    upstream = LegacyUpstream()
    async with running(InputBridge()) as bridge:
        first = await forward(bridge, upstream, CALL)
        bridge.abandon(BOB, first["requestState"])
        bridge.abandon(ALICE, "never-issued")
        assert await forward(bridge, upstream, retry_of(first)) == {
            "content": [{"type": "text", "text": "action=accept"}]
        }
        second = await forward(bridge, upstream, CALL)
        bridge.abandon(ALICE, second["requestState"])
        with anyio.fail_after(WAIT):
            await upstream.cancelled.wait()
        error = await refused(bridge, upstream, retry_of(second))
    assert error.message == "Invalid or expired requestState"
    assert upstream.answers == [{"action": "accept"}]


async def test_an_upstream_error_reaches_the_clients_request() -> None:
    async def failing(params: dict[str, Any], down: Downstream, progress: Any) -> dict[str, Any]:
        raise RpcError(INVALID_PARAMS, "no such ticket")

    async with running(InputBridge()) as bridge:
        with pytest.raises(RpcError) as caught, anyio.fail_after(WAIT):
            await bridge.forward(
                owner=ALICE, upstream="legacy", method="tools/call", params=CALL, capabilities={}, progress=None,
                send=failing,
            )  # fmt: skip
    assert (caught.value.code, caught.value.message) == (INVALID_PARAMS, "no such ticket")


async def test_calls_beyond_max_parked_are_refused_without_reaching_the_upstream() -> None:
    upstream = LegacyUpstream()
    async with running(InputBridge(max_parked=1)) as bridge:
        first = await forward(bridge, upstream, CALL)
        error = await refused(bridge, upstream, {**CALL, "arguments": {"ticket": "t-2"}})
        assert error.code == INTERNAL_ERROR and "too many" in error.message
        assert len(upstream.calls) == 1
        await forward(bridge, upstream, retry_of(first))
        await forward(bridge, upstream, {**CALL, "arguments": {"ticket": "t-3"}})
    assert len(upstream.calls) == 2


async def test_a_bridge_that_is_not_running_refuses_calls() -> None:
    upstream = LegacyUpstream()
    error = await refused(InputBridge(), upstream, CALL)
    assert error.code == INTERNAL_ERROR and upstream.calls == []
