"""Handshake-era sessions beside a 2026-07-28 connection (``upstreams/handshake_sessions.py``).

The pool's own rules (one session per capability set, reused, bounded, closed when idle, not retried at once after a
refused handshake) with a plain opener; then the connection with the conformance fixture, a real dual-era upstream, over
stdio and streamable HTTP, asked by a client stand-in that records what it is asked.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest

from mcp_gateway.config import GatewayConfig, HttpTransport, StdioTransport, UpstreamConfig
from mcp_gateway.core.proxy import Caller, ClientLink
from mcp_gateway.eras.modern_client import ModernDownstream
from mcp_gateway.gateway import Gateway, running_gateway
from mcp_gateway.upstreams.connection import UpstreamConnection
from mcp_gateway.upstreams.handshake_sessions import HandshakeSessions, back_channel
from scripts.conformance import FIXTURE_MODULE, ROOT, fixture_server
from tests.support.harness import make_config
from tests.upstreams.test_upstreams import running


@dataclass
class FakeUpstreamSession:
    capabilities: dict[str, Any]
    lost: anyio.Event = field(default_factory=anyio.Event)
    closed: bool = False


@dataclass
class Opener:
    """Opens sessions that stand for upstream ones, recording each; ``refuse`` makes the handshake fail."""

    refuse: bool = False
    opened: list[FakeUpstreamSession] = field(default_factory=list)

    @asynccontextmanager
    async def __call__(self, capabilities: dict[str, Any]) -> AsyncIterator[FakeUpstreamSession]:
        if self.refuse:
            raise RuntimeError("initialize refused")
        session = FakeUpstreamSession(capabilities)
        self.opened.append(session)
        try:
            yield session
        finally:
            session.closed = True


SAMPLING: dict[str, Any] = {"sampling": {}}
ELICITATION: dict[str, Any] = {"elicitation": {"form": {}}}


@asynccontextmanager
async def pool(opener: Opener, **options: Any) -> AsyncIterator[HandshakeSessions[FakeUpstreamSession]]:
    async with anyio.create_task_group() as tg:
        yield HandshakeSessions(tg, opener, upstream="up", open_timeout=5, **options)
        tg.cancel_scope.cancel()


async def lease(sessions: HandshakeSessions[FakeUpstreamSession], capabilities: dict[str, Any]) -> Any:
    async with sessions.lease(capabilities) as session:
        return session


def test_back_channel_keeps_only_what_can_be_asked_and_no_roots_list_changed() -> None:
    declared = {"sampling": {"tools": {}}, "roots": {"listChanged": True}, "experimental": {"x": {}}, "elicitation": 1}
    assert back_channel(declared) == {"sampling": {"tools": {}}, "roots": {}}
    assert back_channel({"experimental": {}}) == {}


async def test_one_session_per_capability_set_reused_by_every_call() -> None:
    opener = Opener()
    async with pool(opener) as sessions:
        first = await lease(sessions, SAMPLING)
        again = await lease(sessions, {"sampling": {}})
        other = await lease(sessions, ELICITATION)
        assert first is again
        assert other is not first
        assert [session.capabilities for session in opener.opened] == [SAMPLING, ELICITATION]
        assert len(sessions) == 2


async def test_calls_arriving_together_share_the_session_being_opened() -> None:
    opener = Opener()
    async with pool(opener) as sessions:
        got: list[Any] = []
        async with anyio.create_task_group() as tg:
            for _ in range(5):

                async def one() -> None:
                    got.append(await lease(sessions, SAMPLING))

                tg.start_soon(one)
        assert len(opener.opened) == 1
        assert all(session is opener.opened[0] for session in got)


async def test_full_pool_makes_room_by_closing_the_longest_idle_session() -> None:
    opener = Opener()
    async with pool(opener, limit=2) as sessions:
        oldest = await lease(sessions, SAMPLING)
        await lease(sessions, ELICITATION)
        await lease(sessions, {"roots": {}})
        await anyio.wait_all_tasks_blocked()
        assert oldest.closed
        assert len(sessions) == 2


async def test_full_pool_of_busy_sessions_gives_none() -> None:
    opener = Opener()
    async with pool(opener, limit=1) as sessions, sessions.lease(SAMPLING) as busy:
        assert busy is not None
        assert await lease(sessions, ELICITATION) is None
        assert len(opener.opened) == 1


async def test_idle_session_is_closed_and_the_next_call_opens_a_new_one() -> None:
    opener = Opener()
    async with pool(opener, idle=0.05) as sessions:
        first = await lease(sessions, SAMPLING)
        with anyio.fail_after(5):
            while not first.closed:  # noqa: ASYNC110 - the holder closes it on its own clock
                await anyio.sleep(0.01)
        assert len(sessions) == 0
        assert await lease(sessions, SAMPLING) is not first


async def test_lost_session_is_replaced_on_the_next_call() -> None:
    opener = Opener()
    async with pool(opener) as sessions:
        first = await lease(sessions, SAMPLING)
        first.lost.set()
        await anyio.wait_all_tasks_blocked()
        assert await lease(sessions, SAMPLING) is not first


async def test_refused_handshake_is_not_tried_again_until_retry_after() -> None:
    opener = Opener(refuse=True)
    async with pool(opener, retry_after=60) as sessions:
        assert await lease(sessions, SAMPLING) is None
        opener.refuse = False
        assert await lease(sessions, SAMPLING) is None
        assert opener.opened == []


class Client:
    """The downstream client of a call, as the connection sees it: what it declared, and what it was asked."""

    def __init__(self, capabilities: Mapping[str, Any]) -> None:
        self._capabilities = capabilities
        self.asked: list[str] = []

    @property
    def capabilities(self) -> Mapping[str, Any]:
        return self._capabilities

    async def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        self.asked.append(method)
        if method == "sampling/createMessage":
            return {"role": "assistant", "model": "m", "content": {"type": "text", "text": "Paris"}}
        return {"action": "accept", "content": {"name": "Ada"}}

    async def notify(self, method: str, params: dict[str, Any]) -> None:
        pass


@asynccontextmanager
async def fixture_upstream(transport: str, protocol: str, workdir: Path) -> AsyncIterator[UpstreamConnection]:
    """A connection to the conformance fixture (dual-era) over ``transport``, running."""
    if transport == "stdio":
        stdio = StdioTransport(command=sys.executable, args=("-m", FIXTURE_MODULE), cwd=str(ROOT))
        connection = UpstreamConnection(UpstreamConfig(name="fixture", transport=stdio, protocol=protocol))
        async with running(connection):
            yield connection
        return
    async with fixture_server(workdir) as url:
        config = UpstreamConfig(name="fixture", transport=HttpTransport(url=url), protocol=protocol)
        connection = UpstreamConnection(config)
        async with running(connection):
            yield connection


def text(result: dict[str, Any]) -> str:
    value: str = result["content"][0]["text"]
    return value


SAMPLE = {"name": "test_sampling", "arguments": {"prompt": "capital of France?"}}


@pytest.mark.parametrize("transport", ["stdio", "http"])
async def test_handshake_clients_that_declared_the_same_capabilities_share_one_upstream_session(
    transport: str, tmp_path: Path
) -> None:
    async with fixture_upstream(transport, "auto", tmp_path) as connection:
        assert connection.modern
        first, second, other = Client(SAMPLING), Client(SAMPLING), Client(ELICITATION)
        answers = [await connection.request("tools/call", SAMPLE, downstream=client) for client in (first, second)]
        capabilities = {"name": "test_input_required_result_capabilities", "arguments": {}}
        asked_other = await connection.request("tools/call", capabilities, downstream=other)
        assert [text(answer) for answer in answers] == ["LLM response: Paris"] * 2
        assert first.asked == second.asked == ["sampling/createMessage"]
        # The elicitation-only client's session declared elicitation alone: the upstream asked nothing else.
        assert other.asked == ["elicitation/create"]
        assert text(asked_other).startswith("user_name: ")
        assert connection.handshake_sessions == 2


@pytest.mark.parametrize("protocol", ["auto", "2026-07-28"])
async def test_calls_without_a_client_to_ask_stay_2026_07_28(protocol: str, tmp_path: Path) -> None:
    """A client that declared nothing askable, or an upstream pinned to 2026-07-28: no handshake session.

    The call reaches the fixture as 2026-07-28, so its tool asks the MRTR way: the ``input_required`` result comes
    back to the proxy, whose bridge asks a handshake-era client (``bridge.resolve_input_required``).
    """
    async with fixture_upstream("stdio", protocol, tmp_path) as connection:
        callers = [Client({"experimental": {}})] + ([Client(SAMPLING)] if protocol == "2026-07-28" else [])
        for caller in callers:
            result = await connection.request("tools/call", SAMPLE, downstream=caller)
            assert result["resultType"] == "input_required"
            assert result["inputRequests"]["sampling"]["method"] == "sampling/createMessage"
            assert caller.asked == []
        assert connection.handshake_sessions == 0


async def test_a_call_made_for_no_client_declares_no_capability_to_a_2026_upstream() -> None:
    """An agent run's tool call has nobody to ask: the upstream must not be told sampling or elicitation exist."""
    stdio = {"transport": "stdio", "command": sys.executable, "args": ["-m", FIXTURE_MODULE], "cwd": str(ROOT)}
    config = make_config(upstreams=[{"name": "fixture", **stdio}])
    async with running_gateway(config) as gateway:
        caller = Caller(identity=next(i for i in config.identities if i.id == "demo-agent"))
        params = {"name": "fixture__test_input_required_result_capabilities", "arguments": {}}
        result = await gateway.proxy.call_tool(caller, params)
    assert text(result) == "nothing to ask: the client declared neither sampling nor elicitation"


def only_connection(gateway: Gateway) -> UpstreamConnection:
    (connection,) = gateway.catalog.snapshot().connections()
    return connection


def fixture_gateway_config(protocol: str) -> GatewayConfig:
    stdio = {"transport": "stdio", "command": sys.executable, "args": ["-m", FIXTURE_MODULE], "cwd": str(ROOT)}
    return make_config(upstreams=[{"name": "fixture", "protocol": protocol, **stdio}])


async def test_a_2026_client_that_can_be_asked_gets_input_required_not_a_handshake_session() -> None:
    """A 2026-07-28 client declares sampling too, but answers with ``inputResponses``: its call stays 2026-07-28.

    Its link carries a ``ModernDownstream`` (for the call's log messages); that must not take it to a pooled
    handshake-era session, where the fixture would push a request that such a client cannot take.
    """
    config = fixture_gateway_config("auto")
    async with running_gateway(config) as gateway:
        caller = Caller(identity=next(i for i in config.identities if i.id == "demo-agent"))
        link = ClientLink(
            downstream=ModernDownstream(SAMPLING, None, None), answers_input_required=True, capabilities=SAMPLING
        )
        params = {"name": "fixture__test_input_required_result_sampling", "arguments": {}}
        result = await gateway.proxy.call_tool(caller, params, link)
        assert result["resultType"] == "input_required"
        assert result["inputRequests"]["capital_question"]["method"] == "sampling/createMessage"
        assert only_connection(gateway).handshake_sessions == 0


async def test_a_handshake_client_is_asked_through_the_bridge_when_the_upstream_is_pinned_to_2026() -> None:
    """``protocol: 2026-07-28``: no handshake-era session, so the fixture asks the MRTR way and the gateway asks the
    client live, then retries with its answer (``bridge.resolve_input_required``)."""
    config = fixture_gateway_config("2026-07-28")
    async with running_gateway(config) as gateway:
        caller = Caller(identity=next(i for i in config.identities if i.id == "demo-agent"))
        client = Client(SAMPLING)
        params = {"name": "fixture__test_sampling", "arguments": {"prompt": "capital of France?"}}
        result = await gateway.proxy.call_tool(caller, params, ClientLink(downstream=client))
        assert text(result) == "LLM response: Paris"
        assert client.asked == ["sampling/createMessage"]
        assert only_connection(gateway).handshake_sessions == 0
