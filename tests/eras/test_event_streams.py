"""Frame-exact tests of the gateway's answers: the SSE stream base and each stream kind (a call's answer, the
handshake era's GET stream, ``subscriptions/listen``) and the plain JSON answer, driven in memory (no server, no
upstream): exactly what is sent, and that a client going away cancels the work behind it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from mcp.shared.subscriptions import SUBSCRIPTION_ID_META_KEY

from mcp_gateway.config import Identity
from mcp_gateway.core.notifications import Notifier
from mcp_gateway.core.proxy import Caller, ClientLink
from mcp_gateway.core.resource_subscriptions import ResourceSubscriptions
from mcp_gateway.eras.answers import (
    END,
    KEEPALIVE,
    CallStream,
    EventStream,
    Frame,
    NextFrame,
    answer,
    progress_sink,
)
from mcp_gateway.eras.calls import Emit, PreparedCall
from mcp_gateway.eras.context import MethodHandler
from mcp_gateway.eras.handshake import _NotificationStream
from mcp_gateway.eras.handshake_calls import LegacyCalls
from mcp_gateway.eras.listen_streams import ListenStream, listening
from tests.support.asgi_driver import AsgiClient

SSE_HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache, no-transform"),
    (b"x-accel-buffering", b"no"),
]
PROGRESS = b'{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"t","progress":1}}'
ANSWER = b'{"jsonrpc":"2.0","id":7,"result":{"content":[]}}'
CALLER = Caller(Identity(id="alice", name="Alice"))
GUARD_SECONDS = 30
"""A broken stream fails its test instead of hanging it (no test waits for time to pass)."""

CALLS = LegacyCalls()


class ScriptedEra:
    """An era that frames nothing: the call's link carries progress for token "t" (when there is a stream), the
    call runs registered in flight as a handshake-era call does, and an error body is answered with 400."""

    @contextmanager
    def calling(self, call: PreparedCall, emit: Emit | None) -> Iterator[ClientLink]:
        with CALLS.running("s", call.request_id):
            yield ClientLink(progress=progress_sink(emit, "t") if emit is not None else None)

    def finish(self, method: str, caller: Caller, result: dict[str, Any]) -> dict[str, Any]:
        return result

    def error_status(self, code: int) -> int:
        return 400


async def cancelled(caller: Caller, params: Mapping[str, Any], link: ClientLink) -> dict[str, Any]:
    """A call its client cancels (``notifications/cancelled``) before it answers."""
    CALLS.cancel("s", 7)
    await anyio.sleep_forever()
    raise AssertionError("unreachable")


def prepared(handler: MethodHandler, *, stream: bool, lazy: bool = False, event_ids: str | None = None) -> PreparedCall:
    return PreparedCall(7, "tools/call", {}, CALLER, handler, ScriptedEra(), stream, lazy, event_ids)


def event(data: bytes, event_id: str | None = None) -> bytes:
    head = f"id: {event_id}\r\n".encode() if event_id is not None else b""
    return head + b"event: message\r\ndata: " + data + b"\r\n\r\n"


def emitting(progress: int) -> MethodHandler:
    """A call that sends ``progress`` progress notifications, then answers."""

    async def handler(caller: Caller, params: Mapping[str, Any], link: ClientLink) -> dict[str, Any]:
        for _ in range(progress):
            assert link.progress is not None
            await link.progress(1, None, None)
        return {"content": []}

    return handler


async def respond(
    handler: MethodHandler, *, stream: bool, lazy: bool = False, event_ids: str | None = None
) -> AsgiClient:
    client = AsgiClient()
    await client.call(answer(prepared(handler, stream=stream, lazy=lazy, event_ids=event_ids)))
    return client


# The stream base, with a scripted stream kind.


class Scripted(EventStream):
    def __init__(self, frames: list[Frame], *, event_ids: str | None = None) -> None:
        super().__init__({"x-extra": "1"}, event_ids=event_ids)
        self._script = frames

    @asynccontextmanager
    async def _frames(self) -> AsyncIterator[NextFrame]:
        async def next_frame() -> Frame:
            return self._script.pop(0)

        yield next_frame


async def test_stream_base_starts_sends_each_message_and_ends_with_an_empty_frame() -> None:
    client = AsgiClient()
    await client.call(Scripted([({"a": 1}, False), ({"b": 2}, True)]))
    assert client.status == 200
    assert client.headers == [*SSE_HEADERS, (b"x-extra", b"1")]
    assert client.frames == [event(b'{"a":1}'), event(b'{"b":2}'), b""]
    assert client.finished


async def test_stream_base_with_event_ids_primes_and_numbers_events_and_may_end_without_a_message() -> None:
    client = AsgiClient()
    await client.call(Scripted([({"a": 1}, False), END], event_ids="s"))
    assert client.frames == [b"id: s-0\r\nretry: 1000\r\ndata: \r\n\r\n", event(b'{"a":1}', "s-1"), b""]


# A call's answer.


async def test_call_stream_sends_progress_then_the_answer() -> None:
    client = await respond(emitting(1), stream=True)
    assert client.status == 200
    assert client.headers == SSE_HEADERS
    assert client.frames == [event(PROGRESS), event(ANSWER), b""]


async def test_resumable_call_stream_opens_with_a_priming_event_and_numbers_its_events() -> None:
    client = await respond(emitting(1), stream=True, event_ids="abc")
    assert client.frames == [
        b"id: abc-0\r\nretry: 1000\r\ndata: \r\n\r\n",
        event(PROGRESS, "abc-1"),
        event(ANSWER, "abc-2"),
        b"",
    ]


async def test_lazy_call_stream_that_emits_nothing_answers_with_json() -> None:
    client = await respond(emitting(0), stream=True, lazy=True)
    assert client.status == 200
    assert client.headers == [(b"content-type", b"application/json"), (b"content-length", str(len(ANSWER)).encode())]
    assert client.frames == [ANSWER]


async def test_lazy_call_stream_switches_to_sse_at_its_first_message() -> None:
    client = await respond(emitting(2), stream=True, lazy=True)
    assert client.headers == SSE_HEADERS
    assert client.frames == [event(PROGRESS), event(PROGRESS), event(ANSWER), b""]


async def test_lazy_call_stream_cancelled_by_its_client_sends_an_empty_stream() -> None:
    client = await respond(cancelled, stream=True, lazy=True)
    assert client.headers == SSE_HEADERS
    assert client.frames == [b""]


async def test_json_answer_and_its_error_status() -> None:
    client = await respond(emitting(0), stream=False)
    assert client.status == 200
    assert client.frames == [ANSWER]

    client = await respond(cancelled, stream=False)
    assert client.status == 400
    assert client.json() == {"jsonrpc": "2.0", "id": 7, "error": {"code": -32800, "message": "Request cancelled"}}


@pytest.mark.parametrize(
    ("stream", "lazy", "frames_first"),
    [(True, False, 1), (True, True, 0), (False, False, 0)],
    ids=["sse", "lazy-sse", "json"],
)
async def test_client_going_away_cancels_the_call_and_ends_the_answer_without_a_last_frame(
    stream: bool, lazy: bool, frames_first: int
) -> None:
    started = anyio.Event()
    cancelled = anyio.Event()

    async def hanging(caller: Caller, params: Mapping[str, Any], link: ClientLink) -> dict[str, Any]:
        if link.progress is not None and not lazy:
            await link.progress(1, None, None)
        started.set()
        try:
            await anyio.sleep_forever()
        finally:
            cancelled.set()
        raise AssertionError("unreachable")

    response = answer(prepared(hanging, stream=stream, lazy=lazy))
    client = AsgiClient()
    with anyio.fail_after(GUARD_SECONDS):
        async with anyio.create_task_group() as tg:
            tg.start_soon(client.call, response)
            await started.wait()
            await client.wait_for_frames(frames_first)
            client.disconnect()
    assert cancelled.is_set()
    assert client.returned
    assert not client.finished
    assert client.frames == ([event(PROGRESS)] if frames_first else [])


# The handshake era's GET stream and subscriptions/listen.


async def _listeners(notifier: Notifier, count: int) -> None:
    while len(notifier.listeners()) != count:
        await anyio.lowlevel.checkpoint()


async def test_legacy_get_stream_carries_notifications_until_the_server_shuts_down() -> None:
    notifier = Notifier()
    client = AsgiClient(method="GET")
    with anyio.fail_after(GUARD_SECONDS):
        async with anyio.create_task_group() as tg:
            tg.start_soon(client.call, _NotificationStream(notifier, ("mcp-session", "s1"), CALLER))
            await _listeners(notifier, 1)
            notifier.publish("notifications/tools/list_changed")
            notifier.publish("notifications/resources/updated", {"uri": "a://x"}, to=("mcp-session", "s2"))
            notifier.publish("notifications/resources/updated", {"uri": "a://y"}, to=("mcp-session", "s1"))
            await client.wait_for_frames(2)
            notifier.close()
    assert client.headers == SSE_HEADERS
    assert client.frames == [
        event(b'{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}'),
        event(b'{"jsonrpc":"2.0","method":"notifications/resources/updated","params":{"uri":"a://y"}}'),
        b"",
    ]


def _listen_stream(notifier: Notifier) -> ListenStream:
    subscriptions = ResourceSubscriptions(lambda: pytest.fail("no URI to subscribe"), notifier)
    params = {"notifications": {"toolsListChanged": True, "promptsListChanged": False}}
    subscription = listening(CALLER, 9, params, lambda uri: True, notifier, subscriptions)
    assert not isinstance(subscription, str)
    return ListenStream(subscription)


async def test_listen_stream_acknowledges_then_carries_the_notifications_it_asked_for() -> None:
    notifier = Notifier()
    client = AsgiClient()
    meta = b'"_meta":{"' + SUBSCRIPTION_ID_META_KEY.encode() + b'":9}'
    with anyio.fail_after(GUARD_SECONDS):
        async with anyio.create_task_group() as tg:
            tg.start_soon(client.call, _listen_stream(notifier))
            await client.wait_for_frames(1)
            notifier.publish("notifications/prompts/list_changed")
            notifier.publish("notifications/tools/list_changed")
            await client.wait_for_frames(2)
            notifier.close()
    assert client.headers == SSE_HEADERS
    assert client.frames == [
        event(
            b'{"jsonrpc":"2.0","method":"notifications/subscriptions/acknowledged",'
            b'"params":{"notifications":{"toolsListChanged":true},' + meta + b"}}"
        ),
        event(b'{"jsonrpc":"2.0","method":"notifications/tools/list_changed","params":{' + meta + b"}}"),
        b"",
    ]


@pytest.mark.parametrize("kind", ["legacy", "listen"])
async def test_notification_stream_ends_its_subscription_when_the_client_goes_away(kind: str) -> None:
    notifier = Notifier()
    stream: EventStream = (
        _NotificationStream(notifier, ("mcp-session", "s1"), CALLER) if kind == "legacy" else _listen_stream(notifier)
    )
    client = AsgiClient()
    with anyio.fail_after(GUARD_SECONDS):
        async with anyio.create_task_group() as tg:
            tg.start_soon(client.call, stream)
            await _listeners(notifier, 1)
            client.disconnect()
    assert notifier.listeners() == []
    assert client.returned
    assert not client.finished


@pytest.mark.parametrize("kind", ["call", "legacy", "listen"])
async def test_idle_stream_sends_keepalive_comments(kind: str) -> None:
    notifier = Notifier()
    release = anyio.Event()

    async def waiting(caller: Caller, params: Mapping[str, Any], link: ClientLink) -> dict[str, Any]:
        await release.wait()
        return {"content": []}

    streams: dict[str, Callable[[], EventStream]] = {
        "call": lambda: CallStream(prepared(waiting, stream=True)),
        "legacy": lambda: _NotificationStream(notifier, ("mcp-session", "s1"), CALLER),
        "listen": lambda: _listen_stream(notifier),
    }
    stream = streams[kind]()
    stream.keepalive_seconds = 0.001
    first = 1 if kind == "listen" else 0  # the acknowledgment
    client = AsgiClient()
    with anyio.fail_after(GUARD_SECONDS):
        async with anyio.create_task_group() as tg:
            tg.start_soon(client.call, stream)
            await client.wait_for_frames(first + 2)
            release.set()
            notifier.close()
    assert client.frames[first : first + 2] == [KEEPALIVE, KEEPALIVE]
    assert client.frames[-1] == b""
