"""``core/forwarding.py`` on its own: the forward step that tools, resources, prompts and completion share.

Every collaborator is the real one: the demo upstream served in this process over streamable HTTP (either era) or
over stdio, an ``UpstreamConnection`` to it, an ``AuditLog`` writing to a memory store (records are read back from
its stream, as ``audit tail`` would), ``Metrics``, a running ``InputBridge`` and tracing into an in-memory exporter.
Each request is made inside a traced request, so every audit record can be checked for the trace it belongs to.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import pytest
from mcp_types import INTERNAL_ERROR, INVALID_PARAMS, REQUEST_TIMEOUT
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from mcp_gateway.config import AuditConfig, Identity
from mcp_gateway.core import tool_calls
from mcp_gateway.core.audit import AuditLog, AuditRecord, read_recent
from mcp_gateway.core.callers import NO_LINK, Caller, ClientLink
from mcp_gateway.core.forwarding import Forwarder, audit_record
from mcp_gateway.core.input_bridge import InputBridge
from mcp_gateway.core.policy import Decision
from mcp_gateway.errors import POLICY_DENIED, RpcError
from mcp_gateway.examples.demo_server import build_server
from mcp_gateway.json_codec import Verbatim
from mcp_gateway.ops.metrics import Metrics
from mcp_gateway.ops.tracing import RequestTrace, Tracing, bind, unbind
from mcp_gateway.store import MemoryStore
from mcp_gateway.upstreams.connection import UpstreamConnection
from mcp_gateway.upstreams.jsonrpc import forwarded_params
from mcp_gateway.upstreams.transports.encoding import UnforwardableRequest
from tests.core.test_input_bridge import LegacyClient
from tests.support.harness import serve_app
from tests.upstreams.test_upstreams import (
    MODERN,
    PROBE_SERVER,
    demo_stdio,
    http_config,
    nested,
    running,
    script_stdio,
)

ALICE = Caller(identity=Identity(id="alice", name="alice"))
BOB = Caller(identity=Identity(id="bob", name="bob"))
ALLOWED = Decision(allowed=True, reason="no policy applies")
DENIED = Decision(allowed=False, reason="deny policy 'closed' holds", policy="closed")
WAIT = 10.0
"""A bound on waits that end as soon as the awaited thing happens: a hang fails the test instead of the run."""
CONFIRM: dict[str, Any] = {"name": "confirm_action", "arguments": {"action": "delete"}}
CONFIRMED = {"action": "accept", "content": {"confirm": True}}


@dataclass
class Forwarding:
    """A ``Forwarder`` and the real parts it reports to."""

    forwarder: Forwarder
    store: MemoryStore
    metrics: Metrics
    tracing: Tracing
    spans: InMemorySpanExporter
    trace_ids: list[str | None]
    """The trace id of each request made through ``traced_request``, in order."""

    @contextmanager
    def traced_request(self) -> Iterator[RequestTrace]:
        """One client request's trace, made current as the HTTP edge does (``http/request_tracing.py``)."""
        assert self.tracing.tracer is not None
        trace = RequestTrace(self.tracing.tracer, "POST", "/mcp", None)
        token = bind(trace)
        trace.open()
        self.trace_ids.append(trace.trace_id)
        try:
            yield trace
        finally:
            trace.finish(200)
            unbind(token)

    async def records(self, count: int) -> list[AuditRecord]:
        """The audit stream's records, oldest first, once it holds ``count`` (the writer runs in the background)."""
        with anyio.fail_after(WAIT):
            # The stream is written after the log line; there is no event for it.
            while len(found := await read_recent(self.store, "audit", 100)) < count:  # noqa: ASYNC110
                await anyio.sleep(0.01)
        assert len(found) == count
        return found

    def sample(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0

    def calls(self, upstream: str, outcome: str) -> float:
        return self.sample("mcp_gateway_tool_calls_total", upstream=upstream, decision="allow", outcome=outcome)

    def latencies(self, upstream: str, method: str) -> float:
        return self.sample("mcp_gateway_upstream_latency_seconds_count", upstream=upstream, method=method)

    def errors(self, upstream: str, method: str, outcome: str) -> float:
        return self.sample("mcp_gateway_upstream_errors_total", upstream=upstream, method=method, outcome=outcome)

    def upstream_spans(self) -> list[Any]:
        return [span for span in self.spans.get_finished_spans() if span.kind == SpanKind.CLIENT]


@asynccontextmanager
async def forwarding() -> AsyncIterator[Forwarding]:
    store, metrics, bridge, spans = MemoryStore(), Metrics(), InputBridge(), InMemorySpanExporter()
    audit = AuditLog(AuditConfig(), store)
    async with audit.running(), anyio.create_task_group() as tg:
        await tg.start(bridge.run)
        tracing = Tracing.with_processor(SimpleSpanProcessor(spans))
        yield Forwarding(Forwarder(audit, metrics, bridge), store, metrics, tracing, spans, [])
        tg.cancel_scope.cancel()


@asynccontextmanager
async def demo_over_http(protocol: str, **config: Any) -> AsyncIterator[UpstreamConnection]:
    """The demo upstream served in this process over streamable HTTP, and a running connection to it ("demo")."""
    async with serve_app(build_server().streamable_http_app(host="127.0.0.1")) as url:
        connection = UpstreamConnection(http_config(f"{url}/mcp", protocol, **config))
        async with running(connection):
            assert connection.ready
            yield connection


async def call_tool(
    f: Forwarding,
    connection: UpstreamConnection,
    params: dict[str, Any],
    link: ClientLink = NO_LINK,
    caller: Caller = ALICE,
) -> dict[str, Any]:
    """One allowed ``tools/call`` through ``forward_recorded``, in a traced request of its own."""
    with f.traced_request():
        record = tool_calls.record(caller, f"demo__{params['name']}", connection.name, params["arguments"], ALLOWED)
        return await f.forwarder.forward_recorded(caller, connection, params, link, record)


async def failed_call(f: Forwarding, connection: UpstreamConnection, params: dict[str, Any]) -> RpcError:
    with pytest.raises(RpcError) as caught:
        await call_tool(f, connection, params)
    return caught.value


# --- the audit record and the metrics, on every path ------------------------------------------------------------------


async def test_an_answered_call_is_audited_ok_under_its_trace_and_counted_for_its_upstream() -> None:
    async with forwarding() as f, demo_over_http("auto") as demo:
        result = await call_tool(f, demo, {"name": "add", "arguments": {"a": 2, "b": 40}})
        [record] = await f.records(1)
    assert result["content"][0]["text"] == "42"
    [trace_id] = f.trace_ids
    assert trace_id is not None
    assert (record.tool, record.method, record.decision, record.outcome) == ("demo__add", "tools/call", "allow", "ok")
    assert record.trace_id == trace_id and record.latency_ms is not None
    assert (f.calls("demo", "ok"), f.latencies("demo", "tools/call")) == (1, 1)
    [span] = f.upstream_spans()
    assert (span.name, format(span.context.trace_id, "032x")) == ("tools/call add", trace_id)
    assert span.attributes is not None and span.attributes["mcp_gateway.outcome"] == "ok"


async def test_a_tool_error_result_is_returned_and_audited_as_a_tool_error() -> None:
    async with forwarding() as f, demo_over_http("auto") as demo:
        result = await call_tool(f, demo, {"name": "fail", "arguments": {"message": "nope"}})
        [record] = await f.records(1)
    assert result["isError"] is True
    assert (record.outcome, [record.trace_id]) == ("tool_error", f.trace_ids)
    assert f.calls("demo", "tool_error") == f.errors("demo", "tools/call", "tool_error") == 1


async def test_an_upstream_json_rpc_error_is_raised_as_sent_and_audited_as_an_upstream_error() -> None:
    async with forwarding() as f, demo_over_http("auto") as demo:
        with f.traced_request() as trace, pytest.raises(RpcError) as caught:
            record = audit_record(ALICE, "prompts/get", "demo", ALLOWED, {}, prompt="demo__missing")
            await f.forwarder.forward(ALICE, demo, {"name": "missing", "arguments": {}}, NO_LINK, ALLOWED, record)
        [written] = await f.records(1)
    # The SDK's server answers an unknown prompt with its generic error; it reaches the caller as sent.
    assert (caught.value.code, caught.value.message) == (INTERNAL_ERROR, "Internal server error")
    assert (written.method, written.prompt, written.outcome) == ("prompts/get", "demo__missing", "upstream_error")
    assert written.trace_id == trace.trace_id is not None
    assert f.errors("demo", "prompts/get", "upstream_error") == f.latencies("demo", "prompts/get") == 1
    [span] = f.upstream_spans()
    assert span.attributes is not None and span.attributes["mcp_gateway.outcome"] == "upstream_error"


async def test_an_upstream_that_is_not_connected_is_audited_as_unavailable() -> None:
    never_started = UpstreamConnection(demo_stdio("offline"))
    async with forwarding() as f:
        error = await failed_call(f, never_started, {"name": "echo", "arguments": {"text": "hi"}})
        [record] = await f.records(1)
    assert error.code == INTERNAL_ERROR and "offline" in error.message
    assert (record.outcome, record.upstream) == ("upstream_unavailable", "offline")
    assert [record.trace_id] == f.trace_ids
    assert f.calls("offline", "upstream_unavailable") == f.errors("offline", "tools/call", "upstream_unavailable") == 1


async def test_params_that_cannot_be_encoded_are_refused_with_invalid_params_and_audited() -> None:
    async with forwarding() as f, demo_over_http("auto") as demo:
        params = {"name": "echo", "arguments": {"text": "t", "deep": nested(1000)}}
        error = await failed_call(f, demo, params)
        [record] = await f.records(1)
    assert isinstance(error, UnforwardableRequest) and error.code == INVALID_PARAMS
    assert (record.outcome, [record.trace_id]) == ("invalid_params", f.trace_ids)
    assert f.calls("demo", "invalid_params") == f.errors("demo", "tools/call", "invalid_params") == 1


async def test_an_upstream_that_does_not_answer_in_time_is_audited_as_a_timeout() -> None:
    async with forwarding() as f, demo_over_http("auto", call_timeout=0.2) as demo:
        error = await failed_call(f, demo, {"name": "count_slowly", "arguments": {"n": 1, "delay": 30}})
        [record] = await f.records(1)
    assert error.code == REQUEST_TIMEOUT and "'demo'" in error.message
    assert (record.outcome, [record.trace_id]) == ("timeout", f.trace_ids)
    assert f.calls("demo", "timeout") == f.errors("demo", "tools/call", "timeout") == 1


async def test_a_call_cancelled_while_the_upstream_works_is_audited_as_cancelled() -> None:
    started = anyio.Event()

    async def progressed(progress: float, total: float | None, message: str | None) -> None:
        started.set()

    async with forwarding() as f, demo_over_http("auto") as demo:
        params: dict[str, Any] = {"name": "count_slowly", "arguments": {"n": 1000, "delay": 0.05}}

        async def client_call() -> None:
            with f.traced_request():
                record = tool_calls.record(ALICE, "demo__count_slowly", "demo", params["arguments"], ALLOWED)
                await f.forwarder.forward_recorded(ALICE, demo, params, ClientLink(progress=progressed), record)

        async with anyio.create_task_group() as tg:
            tg.start_soon(client_call)
            with anyio.fail_after(WAIT):
                await started.wait()
            tg.cancel_scope.cancel()
        [record] = await f.records(1)
    assert (record.outcome, record.trace_id) == ("cancelled", f.trace_ids[0])
    assert f.calls("demo", "cancelled") == f.errors("demo", "tools/call", "cancelled") == 1


# --- forwarded_params -------------------------------------------------------------------------------------------------


async def test_forwarded_params_go_out_under_the_upstreams_name_without_the_previous_hops_envelope() -> None:
    client_meta = {
        "progressToken": "client-token",
        "io.modelcontextprotocol/protocolVersion": "1999-01-01",
        "io.modelcontextprotocol/clientInfo": {"name": "downstream", "version": "1"},
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "vendor/key": "kept",
    }
    client_params = {"name": "probe__tool00", "arguments": {}, "_meta": client_meta}
    sent_as = json.dumps(client_params)
    probe = UpstreamConnection(script_stdio("probe", PROBE_SERVER))
    async with forwarding() as f, running(probe):
        with f.traced_request() as trace:
            record = tool_calls.record(ALICE, "probe__tool00", "probe", {}, ALLOWED)
            forwarded = forwarded_params(client_params, name="tool00")
            # The probe answers any name, so the swap is checked here: the upstream's name, all else as the client's.
            assert forwarded == {**client_params, "name": "tool00"}
            result = await f.forwarder.forward_recorded(ALICE, probe, forwarded, NO_LINK, record)
    received = json.loads(result["content"][0]["text"])
    assert received["vendor/key"] == "kept" and "progressToken" not in received
    assert received["io.modelcontextprotocol/protocolVersion"] == MODERN
    assert received["io.modelcontextprotocol/clientInfo"]["name"] == "mcp-gateway"
    # The trace context is the gateway's upstream span's, in the request's trace, not the caller's.
    [span] = f.upstream_spans()
    assert received["traceparent"].startswith(f"00-{trace.trace_id}-{format(span.context.span_id, '016x')}-")
    # The client's own params are left as they came.
    assert json.dumps(client_params) == sent_as


# --- mid-call input: a handshake-era upstream -------------------------------------------------------------------------


async def test_a_modern_clients_call_to_a_handshake_era_upstream_parks_in_the_bridge_and_resumes() -> None:
    never_asked = LegacyClient({}, {})
    link = ClientLink(answers_input_required=True, capabilities={"elicitation": {}}, downstream=never_asked)
    async with forwarding() as f, demo_over_http("legacy") as demo:
        assert not demo.modern
        first = await call_tool(f, demo, CONFIRM, link)
        assert first["resultType"] == "input_required"
        [(key, request)] = first["inputRequests"].items()
        assert request["method"] == "elicitation/create"
        retry = {**CONFIRM, "inputResponses": {key: CONFIRMED}, "requestState": first["requestState"]}
        final = await call_tool(f, demo, retry, link)
        records = await f.records(2)
    assert final["content"][0]["text"] == "delete: confirmed"
    assert never_asked.asked == []
    assert [record.outcome for record in records] == ["input_required", "ok"]
    assert (f.calls("demo", "input_required"), f.calls("demo", "ok")) == (1, 1)


async def test_a_handshake_era_clients_call_to_a_handshake_era_upstream_is_asked_live() -> None:
    client = LegacyClient({"elicitation/create": CONFIRMED}, {"elicitation": {}})
    async with forwarding() as f, demo_over_http("legacy") as demo:
        result = await call_tool(f, demo, CONFIRM, ClientLink(downstream=client))
        [record] = await f.records(1)
    assert result["content"][0]["text"] == "delete: confirmed"
    assert [method for method, _ in client.asked] == ["elicitation/create"]
    assert record.outcome == "ok"


async def test_a_denied_retry_abandons_its_owners_parked_call_and_no_one_elses() -> None:
    link = ClientLink(answers_input_required=True, capabilities={"elicitation": {}})

    def retry_of(first: dict[str, Any]) -> dict[str, Any]:
        (key,) = first["inputRequests"]
        return {**CONFIRM, "inputResponses": {key: CONFIRMED}, "requestState": first["requestState"]}

    async with forwarding() as f, demo_over_http("legacy") as demo:
        first = await call_tool(f, demo, CONFIRM, link)
        f.forwarder.abandon(BOB, retry_of(first))
        assert (await call_tool(f, demo, retry_of(first), link))["content"][0]["text"] == "delete: confirmed"

        second = await call_tool(f, demo, CONFIRM, link)
        with pytest.raises(RpcError) as denied:
            record = tool_calls.record(ALICE, "demo__confirm_action", "demo", CONFIRM["arguments"], DENIED)
            await f.forwarder.forward(ALICE, demo, retry_of(second), link, DENIED, record)
        with pytest.raises(RpcError) as abandoned:
            await call_tool(f, demo, retry_of(second), link)
        records = await f.records(5)
    assert denied.value.code == POLICY_DENIED
    assert abandoned.value.message in ("Invalid or expired requestState", "the call was abandoned")
    assert [r.outcome for r in records[:4]] == ["input_required", "ok", "input_required", "denied"]
    assert records[3].latency_ms is None
    assert f.sample("mcp_gateway_policy_denials_total", policy="closed") == 1


# --- verbatim results -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("protocol", "link", "verbatim"),
    [
        pytest.param("auto", ClientLink(answers_verbatim=True), True, id="http-verbatim-link"),
        pytest.param("auto", ClientLink(), False, id="http-plain-link"),
        pytest.param(
            "legacy",
            ClientLink(answers_verbatim=True, answers_input_required=True, capabilities={"elicitation": {}}),
            True,
            id="http-parked-verbatim-link",
        ),
        pytest.param("legacy", ClientLink(answers_input_required=True), False, id="http-parked-plain-link"),
    ],
)
async def test_a_verbatim_link_gets_an_http_upstreams_unread_members_as_its_bytes(
    protocol: str, link: ClientLink, verbatim: bool
) -> None:
    async with forwarding() as f, demo_over_http(protocol) as demo:
        result = await call_tool(f, demo, {"name": "echo", "arguments": {"text": "hi"}}, link)
    assert isinstance(result["content"], Verbatim) is verbatim
    content = json.loads(bytes(result["content"])) if verbatim else result["content"]
    assert content == [{"type": "text", "text": "hi"}]
    assert result["isError"] is False


async def test_a_verbatim_link_gets_plain_values_from_a_stdio_upstream() -> None:
    demo = UpstreamConnection(demo_stdio("demo"))
    async with forwarding() as f, running(demo):
        result = await call_tool(
            f, demo, {"name": "echo", "arguments": {"text": "hi"}}, ClientLink(answers_verbatim=True)
        )
    assert result["content"] == [{"type": "text", "text": "hi"}]
