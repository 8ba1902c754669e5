"""``HttpHop`` (``upstreams/transports/http_calls.py``) on its own, against a real HTTP server in the test's loop.

The server (aiohttp's) answers each POST as the test scripts it: JSON, an SSE stream, an error status, a body cut
short, an answer that never comes. Every request it receives is recorded with its headers, so a test checks what
went out as well as what the hop made of the answer. The SSE parser itself is ``test_http_hop_sse.py``'s subject;
the upstream connection around the hop (reconnecting, the call timeout it sets) is ``test_upstreams.py``'s.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest
from aiohttp import web
from mcp_types import (
    CONNECTION_CLOSED,
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
)

from mcp_gateway.errors import RpcError, UpstreamUnavailable
from mcp_gateway.upstreams.transports.http_calls import CredentialRefused, HttpHop, HttpSessionState

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
STAMPED = {"mcp-protocol-version": "2025-11-25", "mcp-method": "tools/call", "mcp-name": "echo"}
"""The headers the SDK session stamps on a call; the hop sends them as given."""
WAIT = 10.0
"""A bound on waits that end as soon as the awaited thing happens: a hang fails the test instead of the run."""

Answer = Callable[[web.Request, dict[str, Any]], Awaitable[web.StreamResponse]]


@dataclass
class Seen:
    method: str
    headers: dict[str, str]
    body: Any


@dataclass
class Upstream:
    """A streamable HTTP endpoint: each POST of a request is answered by ``answer``, the rest is recorded."""

    answer: Answer
    resume: Answer | None = None
    url: str = ""
    seen: list[Seen] = field(default_factory=list)
    arrived: anyio.Event = field(default_factory=anyio.Event)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        body: dict[str, Any] = json.loads(raw) if raw else {}
        self.seen.append(Seen(request.method, {k.lower(): v for k, v in request.headers.items()}, body))
        self.arrived.set()
        self.arrived = anyio.Event()
        if request.method == "GET":
            assert self.resume is not None, "the hop resumed a stream the test did not expect it to"
            return await self.resume(request, {})
        if "method" not in body or "id" not in body:  # a notification or a response to the upstream's request
            return web.Response(status=202)
        return await self.answer(request, body)

    def posts(self, method: str | None = None) -> list[Seen]:
        return [s for s in self.seen if s.method == "POST" and (method is None or s.body.get("method") == method)]

    async def wait_for(self, method: str) -> Seen:
        with anyio.fail_after(WAIT):
            while not self.posts(method):
                await self.arrived.wait()
        return self.posts(method)[-1]


@asynccontextmanager
async def serving(answer: Answer, resume: Answer | None = None) -> AsyncIterator[Upstream]:
    upstream = Upstream(answer, resume)
    app = web.Application()
    app.router.add_route("*", "/mcp", upstream.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    upstream.url = f"http://{host}:{port}/mcp"
    try:
        yield upstream
    finally:
        await runner.cleanup()


class Hop:
    """An ``HttpHop`` and what it told its connection: lost sessions and notifications not about the call."""

    def __init__(self, upstream: Upstream, *, legacy: bool, session_id: str | None) -> None:
        self.lost: list[None] = []
        self.notifications: list[tuple[str, dict[str, Any]]] = []
        self.hop = HttpHop(
            url=upstream.url,
            static_headers={"x-static": "kept", "authorization": "Bearer static"},
            state=HttpSessionState(session_id),
            on_lost=lambda: self.lost.append(None),
            on_notification=self._on_notification,
            connect_timeout=5.0,
            legacy=legacy,
        )

    async def _on_notification(self, method: str, params: dict[str, Any]) -> None:
        self.notifications.append((method, params))

    async def call(self, params: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
        kw.setdefault("on_progress", None)
        kw.setdefault("downstream", None)
        return await self.hop.request("tools/call", params or {"name": "echo"}, kw.pop("headers", STAMPED), **kw)


@asynccontextmanager
async def hop_to(upstream: Upstream, *, legacy: bool = False, session_id: str | None = None) -> AsyncIterator[Hop]:
    hop = Hop(upstream, legacy=legacy, session_id=session_id)
    try:
        yield hop
    finally:
        await hop.hop.close()


class Client:
    """The caller of a call, as the upstream may address it mid-call (a ``Downstream``)."""

    def __init__(self) -> None:
        self.told: list[tuple[str, dict[str, Any]]] = []
        self.asked: list[tuple[str, dict[str, Any]]] = []

    @property
    def capabilities(self) -> Mapping[str, Any]:
        return {"elicitation": {}}

    async def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        self.asked.append((method, params))
        return {"action": "accept"}

    async def notify(self, method: str, params: dict[str, Any]) -> None:
        self.told.append((method, params))


def result_of(body: dict[str, Any], text: str = "done") -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": body["id"], "result": {"content": [{"type": "text", "text": text}]}}


def json_answer(message: Callable[[dict[str, Any]], Any], status: int = 200) -> Answer:
    async def answer(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        return web.json_response(message(body), status=status)

    return answer


def raw_answer(body: bytes, status: int = 200, content_type: str = "application/json", **headers: str) -> Answer:
    async def answer(request: web.Request, _: dict[str, Any]) -> web.StreamResponse:
        return web.Response(body=body, status=status, headers={"content-type": content_type, **headers})

    return answer


async def sse_start(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"content-type": "text/event-stream", "cache-control": "no-cache"})
    await response.prepare(request)
    return response


def event(message: Any, event_id: str | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: message\ndata: {json.dumps(message)}\n\n".encode()


def progress(body: dict[str, Any], value: float, token: Any = None) -> dict[str, Any]:
    token = body["params"]["_meta"]["progressToken"] if token is None else token
    params = {"progressToken": token, "progress": value, "total": 2, "message": f"step {value}"}
    return {"jsonrpc": "2.0", "method": "notifications/progress", "params": params}


async def cut(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
    """Drop the connection mid-answer, as a crashed or restarted upstream does."""
    assert request.transport is not None
    request.transport.abort()
    return response


# What goes out.


async def test_a_call_goes_out_as_the_session_stamped_it_with_the_trace_context_as_headers() -> None:
    async with serving(json_answer(result_of)) as upstream, hop_to(upstream, session_id="s-1") as hop:
        meta = {"traceparent": TRACEPARENT, "tracestate": "vendor=1", "progressToken": "client's"}
        headers = {**STAMPED, "authorization": "Bearer per-call"}
        result = await hop.call({"name": "echo", "arguments": {"text": "hi"}, "_meta": meta}, headers=headers)
        await hop.call()
    assert result == {"content": [{"type": "text", "text": "done"}]}
    first, second = upstream.posts()
    assert first.body == {
        "jsonrpc": "2.0",
        "id": "gw-0",
        "method": "tools/call",
        "params": {"name": "echo", "arguments": {"text": "hi"}, "_meta": meta},
    }
    assert second.body["id"] == "gw-1"
    expected = {
        **STAMPED,
        "mcp-session-id": "s-1",
        "x-static": "kept",
        "authorization": "Bearer per-call",
        "accept": "application/json, text/event-stream",
        "content-type": "application/json",
        "traceparent": TRACEPARENT,
        "tracestate": "vendor=1",
    }
    assert {k: first.headers.get(k) for k in expected} == expected
    assert "traceparent" not in second.headers and second.headers["authorization"] == "Bearer static"
    assert "user-agent" not in first.headers


async def test_a_malformed_traceparent_in_meta_is_sent_in_the_body_only() -> None:
    async with serving(json_answer(result_of)) as upstream, hop_to(upstream) as hop:
        await hop.call({"name": "echo", "_meta": {"traceparent": "00-x\r\nx-injected: 1"}})
    (seen,) = upstream.posts()
    assert "traceparent" not in seen.headers and "x-injected" not in seen.headers
    assert "mcp-session-id" not in seen.headers


async def test_a_progress_callback_adds_a_progress_token_named_for_the_request() -> None:
    async def reported(value: float, total: float | None, message: str | None) -> None:
        pass

    async with serving(json_answer(result_of)) as upstream, hop_to(upstream) as hop:
        await hop.call({"name": "echo", "_meta": {"traceparent": TRACEPARENT}}, on_progress=reported)
    (seen,) = upstream.posts()
    assert seen.body["params"]["_meta"] == {"traceparent": TRACEPARENT, "progressToken": "gw-0"}


# What comes back as JSON, or as an HTTP status.


async def test_a_json_rpc_error_is_raised_with_its_code_message_and_data() -> None:
    def error(body: dict[str, Any]) -> Any:
        return {"jsonrpc": "2.0", "id": body["id"], "error": {"code": INVALID_PARAMS, "message": "no", "data": [1]}}

    async with serving(json_answer(error)) as upstream, hop_to(upstream) as hop:
        with pytest.raises(RpcError) as caught:
            await hop.call()
    assert (caught.value.code, caught.value.message, caught.value.data) == (INVALID_PARAMS, "no", [1])


@pytest.mark.parametrize(
    ("answer", "code", "words"),
    [
        pytest.param(raw_answer(b"<html>oops</html>"), PARSE_ERROR, "not JSON", id="json-type-not-json"),
        pytest.param(raw_answer(b"[1, 2]"), PARSE_ERROR, "not a JSON-RPC message", id="json-not-an-object"),
        pytest.param(raw_answer(b'{"jsonrpc": "2.0", "id": "gw-0"}'), PARSE_ERROR, "no result", id="no-result"),
        pytest.param(raw_answer(b"hello", content_type="text/plain"), INVALID_REQUEST, "text/plain", id="plain-text"),
        pytest.param(raw_answer(b"", status=202), INVALID_REQUEST, "202 Accepted", id="accepted"),
        pytest.param(raw_answer(b"", status=503), INTERNAL_ERROR, "HTTP 503", id="unavailable"),
        pytest.param(raw_answer(b"not json", status=500), INTERNAL_ERROR, "HTTP 500", id="error-not-json"),
        pytest.param(raw_answer(b"", status=404), METHOD_NOT_FOUND, "Not Found", id="not-found-without-session"),
        pytest.param(
            raw_answer(b"", status=307, location="http://elsewhere/mcp"), INVALID_REQUEST, "http://elsewhere/mcp",
            id="redirect-not-followed",
        ),
        pytest.param(
            json_answer(lambda body: {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": "bad"}}, 400),
            INVALID_REQUEST, "bad", id="error-status-with-json-rpc-error",
        ),
    ],
)  # fmt: skip
async def test_an_answer_that_is_not_a_result_is_an_rpc_error(answer: Answer, code: int, words: str) -> None:
    async with serving(answer) as upstream, hop_to(upstream) as hop:
        with pytest.raises(RpcError) as caught:
            await hop.call()
    assert caught.value.code == code and words in caught.value.message
    assert hop.lost == [] and len(upstream.seen) == 1


async def test_404_for_our_session_reports_the_session_lost() -> None:
    async with serving(raw_answer(b"", status=404)) as upstream, hop_to(upstream, session_id="s-1") as hop:
        with pytest.raises(UpstreamUnavailable, match="no longer knows our session"):
            await hop.call()
    assert hop.lost == [None]


async def test_404_for_our_session_with_a_json_rpc_error_body_reports_the_session_lost() -> None:
    sdk_404 = b'{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"Session not found"}}'
    async with serving(raw_answer(sdk_404, status=404)) as upstream, hop_to(upstream, session_id="s-1") as hop:
        with pytest.raises(UpstreamUnavailable):
            await hop.call()
    assert hop.lost == [None]


async def test_401_refuses_the_credential_without_losing_the_connection() -> None:
    async with serving(raw_answer(b"", status=401)) as upstream, hop_to(upstream, session_id="s-1") as hop:
        with pytest.raises(CredentialRefused):
            await hop.call()
    assert hop.lost == []


async def test_an_unreachable_upstream_is_reported_lost() -> None:
    async with serving(json_answer(result_of)) as upstream:
        pass
    async with hop_to(upstream) as hop:
        with pytest.raises(UpstreamUnavailable, match="unreachable"):
            await hop.call()
    assert hop.lost == [None]


async def test_a_json_body_cut_short_is_upstream_unavailable() -> None:
    async def half(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "application/json"})
        response.content_length = 1000
        await response.prepare(request)
        await response.write(b'{"jsonrpc": "2.0", "id": "gw-0", "res')
        return await cut(request, response)

    async with serving(half) as upstream, hop_to(upstream) as hop:
        with pytest.raises(UpstreamUnavailable, match="cut its answer short"):
            await hop.call()


# What comes back as an event stream.


async def test_an_event_stream_relays_progress_logs_and_other_notifications_before_the_result() -> None:
    async def stream(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        response = await sse_start(request)
        await response.write(b": keepalive\n\nretry: 1500\n\n")
        await response.write(event(progress(body, 1)) + event(progress(body, 1.5, token="another call's")))
        log = {"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": "info", "data": "half"}}
        changed = {"jsonrpc": "2.0", "method": "notifications/tools/list_changed"}
        await response.write(event(log, "e1") + b": keepalive\n\n" + event(changed, "e2"))
        await response.write(event({"jsonrpc": "2.0", "id": "someone else's", "result": {}}))
        await response.write(event(progress(body, 2)) + event(result_of(body, "streamed"), "e3"))
        return response

    reports: list[tuple[float, float | None, str | None]] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        reports.append((value, total, message))

    client = Client()
    async with serving(stream) as upstream, hop_to(upstream) as hop:
        result = await hop.call(on_progress=on_progress, downstream=client)
    assert result == {"content": [{"type": "text", "text": "streamed"}]}
    assert reports == [(1.0, 2.0, "step 1"), (2.0, 2.0, "step 2")]
    assert client.told == [("notifications/message", {"level": "info", "data": "half"})]
    assert hop.notifications == [("notifications/tools/list_changed", {})]
    assert len(upstream.seen) == 1


async def test_a_result_of_several_megabytes_in_the_last_event_arrives_whole() -> None:
    """A tool with progress answers over SSE: its result may be as big as one answered as JSON, written in pieces."""
    text = "é" + "x" * (3 * 1024 * 1024) + "\u2028"

    async def stream(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        response = await sse_start(request)
        await response.write(event(progress(body, 1)))
        last = event(result_of(body, text), "e1")
        for start in range(0, len(last), 16 * 1024):
            await response.write(last[start : start + 16 * 1024])
        return response

    reports: list[tuple[float, float | None, str | None]] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        reports.append((value, total, message))

    async with serving(stream) as upstream, hop_to(upstream) as hop:
        result = await hop.call(on_progress=on_progress)
    assert result == {"content": [{"type": "text", "text": text}]}
    assert reports == [(1.0, 2.0, "step 1")]


async def test_an_upstream_request_on_the_stream_is_put_to_the_caller_and_answered_on_a_post_of_its_own() -> None:
    async def asking(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        response = await sse_start(request)
        question = {"jsonrpc": "2.0", "id": "q-1", "method": "elicitation/create", "params": {"message": "sure?"}}
        await response.write(event(question))
        answer = await wait_for_reply(upstream, "q-1")
        await response.write(event(result_of(body, json.dumps(answer))))
        return response

    client = Client()
    async with serving(asking) as upstream, hop_to(upstream, legacy=True, session_id="s-1") as hop:
        result = await hop.call(downstream=client)
    assert client.asked == [("elicitation/create", {"message": "sure?"})]
    assert result["content"][0]["text"] == json.dumps({"jsonrpc": "2.0", "id": "q-1", "result": {"action": "accept"}})
    reply = upstream.seen[1]
    assert (
        reply.headers["mcp-session-id"] == "s-1"
        and reply.headers["mcp-protocol-version"] == STAMPED["mcp-protocol-version"]
    )
    assert "mcp-method" not in reply.headers and "mcp-name" not in reply.headers


async def wait_for_reply(upstream: Upstream, key: str) -> Any:
    with anyio.fail_after(WAIT):
        while True:
            for seen in upstream.posts():
                if seen.body.get("id") == key and "method" not in seen.body:
                    return seen.body
            await upstream.arrived.wait()


async def test_a_stream_that_ends_without_an_answer_or_event_ids_is_connection_closed() -> None:
    async def ends(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        response = await sse_start(request)
        await response.write(event(progress(body, 1, token="x")))
        return response

    async with serving(ends) as upstream, hop_to(upstream) as hop:
        with pytest.raises(RpcError) as caught:
            await hop.call()
    assert caught.value.code == CONNECTION_CLOSED and len(upstream.seen) == 1


async def test_a_stream_that_ends_after_event_ids_is_resumed_with_last_event_id() -> None:
    async def ends(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        response = await sse_start(request)
        await response.write(b"retry: 1\n" + event(progress(body, 1, token="x"), "e-7"))
        return response

    async def resume(request: web.Request, _: dict[str, Any]) -> web.StreamResponse:
        response = await sse_start(request)
        await response.write(event(result_of(upstream.posts()[0].body, "resumed"), "e-8"))
        return response

    async with serving(ends, resume) as upstream, hop_to(upstream, session_id="s-1") as hop:
        result = await hop.call()
    assert result == {"content": [{"type": "text", "text": "resumed"}]}
    _, get = upstream.seen
    assert get.method == "GET"
    assert get.headers["last-event-id"] == "e-7" and get.headers["accept"] == "text/event-stream"
    assert get.headers["mcp-session-id"] == "s-1" and "content-type" not in get.headers


async def test_resuming_gives_up_after_two_attempts() -> None:
    async def ends(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        response = await sse_start(request)
        await response.write(event(progress(body, 1, token="x"), f"e-{len(upstream.seen)}"))
        return response

    async with serving(ends, ends) as upstream, hop_to(upstream) as hop:
        with pytest.raises(RpcError) as caught:
            await hop.call()
    assert caught.value.code == CONNECTION_CLOSED
    assert [s.method for s in upstream.seen] == ["POST", "GET", "GET"]
    assert [s.headers.get("last-event-id") for s in upstream.seen] == [None, "e-1", "e-2"]


async def test_a_stream_cut_mid_event_after_event_ids_is_resumed() -> None:
    async def cut_short(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        response = await sse_start(request)
        await response.write(event(progress(body, 1, token="x"), "e-7") + b'data: {"jsonrpc": "2.0", "id": "gw')
        return await cut(request, response)

    async def resume(request: web.Request, _: dict[str, Any]) -> web.StreamResponse:
        response = await sse_start(request)
        await response.write(event(result_of(upstream.posts()[0].body, "resumed"), "e-8"))
        return response

    async with serving(cut_short, resume) as upstream, hop_to(upstream) as hop:
        result = await hop.call()
    assert result == {"content": [{"type": "text", "text": "resumed"}]}


async def test_a_stream_cut_mid_event_without_event_ids_is_upstream_unavailable() -> None:
    async def cut_short(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        response = await sse_start(request)
        await response.write(event(progress(body, 1, token="x")) + b'data: {"jsonrpc": "2.0", "id": "gw')
        return await cut(request, response)

    async with serving(cut_short) as upstream, hop_to(upstream) as hop:
        with pytest.raises(UpstreamUnavailable, match="cut its answer short"):
            await hop.call()
    assert len(upstream.seen) == 1


# A call abandoned: the connection's call timeout, or the caller gone.


def stalled(started: anyio.Event) -> Answer:
    async def stall(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        response = await sse_start(request)
        await response.write(event(progress(body, 1, token="x")))
        started.set()
        await anyio.sleep_forever()
        return response

    return stall


async def nothing(value: float, total: float | None, message: str | None) -> None:
    pass


async def test_a_handshake_era_call_that_times_out_is_cancelled_upstream() -> None:
    async with serving(stalled(anyio.Event())) as upstream, hop_to(upstream, legacy=True, session_id="s-1") as hop:
        with pytest.raises(TimeoutError), anyio.fail_after(0.5):
            await hop.call(on_progress=nothing)
        cancelled = await upstream.wait_for("notifications/cancelled")
    assert cancelled.body["params"]["requestId"] == "gw-0"
    assert cancelled.headers["mcp-session-id"] == "s-1" and "mcp-method" not in cancelled.headers


async def test_a_handshake_era_call_whose_caller_goes_away_is_cancelled_upstream() -> None:
    async with serving(stalled(started := anyio.Event())) as upstream, hop_to(upstream, legacy=True) as hop:
        async with anyio.create_task_group() as tg:
            tg.start_soon(hop.call)
            with anyio.fail_after(WAIT):
                await started.wait()
            tg.cancel_scope.cancel()
        cancelled = await upstream.wait_for("notifications/cancelled")
    assert cancelled.body["params"]["requestId"] == "gw-0"


async def test_a_2026_call_that_is_abandoned_only_closes_its_stream() -> None:
    async with serving(stalled(anyio.Event())) as upstream, hop_to(upstream) as hop:
        with pytest.raises(TimeoutError), anyio.fail_after(0.5):
            await hop.call(on_progress=nothing)
        upstream.answer = json_answer(result_of)
        assert await hop.call() == {"content": [{"type": "text", "text": "done"}]}
    assert [s.body["method"] for s in upstream.seen] == ["tools/call", "tools/call"]
