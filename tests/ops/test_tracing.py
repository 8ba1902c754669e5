"""OpenTelemetry traces end to end: a real gateway traced into the SDK's in-memory exporter, real MCP clients of both
eras, the demo upstream over stdio and an HTTP upstream that reports the trace context each call reached it with."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

import anyio
import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from mcp_gateway.core.audit import AuditRecord
from mcp_gateway.ops.tracing import Tracing
from tests.support.harness import (
    DEMO_KEY,
    DEMO_UPSTREAM,
    SUPPORT_KEY,
    create_task_session,
    make_config,
    mcp_client,
    serve_app,
    serve_gateway,
)
from tests.support.peers import trace_recording_upstream

MODERN = "2026-07-28"
CLIENT_TRACE = "0af7651916cd43dd8448eb211c80319c"
CLIENT_SPAN = "00f067aa0ba902b7"
CLIENT_TRACEPARENT = f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"


@pytest.fixture(scope="module")
async def recorder() -> AsyncIterator[str]:
    async with serve_app(trace_recording_upstream.build()) as url:
        yield f"{url}/mcp"


def config_with_recorder(recorder: str) -> Any:
    return make_config(upstreams=[DEMO_UPSTREAM, {"name": "rec", "transport": "streamable-http", "url": recorder}])


@pytest.fixture(scope="module")
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture(scope="module")
async def traced(recorder: str, exporter: InMemorySpanExporter) -> AsyncIterator[str]:
    tracing = Tracing.with_processor(SimpleSpanProcessor(exporter))
    async with serve_gateway(config_with_recorder(recorder), tracing=tracing) as url:
        yield url


@pytest.fixture(scope="module")
async def untraced(recorder: str) -> AsyncIterator[str]:
    async with serve_gateway(config_with_recorder(recorder)) as url:
        yield url


async def request_span(exporter: InMemorySpanExporter, name: str) -> tuple[ReadableSpan, list[ReadableSpan]]:
    """The finished request span called ``name`` and the spans of its trace; a request's span ends just after its
    response went out, so it is waited for."""
    with anyio.fail_after(10):
        while True:
            spans = exporter.get_finished_spans()
            found = [s for s in spans if s.name == name and s.kind == SpanKind.SERVER]
            if found:
                [span] = found
                assert span.context is not None
                return span, [s for s in spans if s.context and s.context.trace_id == span.context.trace_id]
            await anyio.sleep(0.02)


def children(spans: Sequence[ReadableSpan], parent: ReadableSpan) -> dict[str, ReadableSpan]:
    assert parent.context is not None
    return {s.name: s for s in spans if s.parent is not None and s.parent.span_id == parent.context.span_id}


async def post_in_client_trace(url: str, body: dict[str, Any], key: str) -> httpx.Response:
    """A POST carrying the client's trace context as the ``traceparent`` header."""
    async with httpx.AsyncClient() as http:
        headers = {"Authorization": f"Bearer {key}", "traceparent": CLIENT_TRACEPARENT}
        return await http.post(url, json=body, headers=headers)


def audit_trace_ids(caplog: pytest.LogCaptureFixture, tool: str) -> list[str | None]:
    records = [AuditRecord.from_json(r.getMessage()) for r in caplog.records if r.name == "mcp_gateway.audit"]
    return [record.trace_id for record in records if record.tool == tool]


async def test_a_tool_call_is_one_trace_from_the_clients_meta_through_the_http_upstream(
    traced: str, exporter: InMemorySpanExporter, caplog: pytest.LogCaptureFixture
) -> None:
    exporter.clear()
    meta: Any = {"traceparent": CLIENT_TRACEPARENT, "tracestate": "vendor=1"}
    with caplog.at_level(logging.INFO, logger="mcp_gateway.audit"):
        async with mcp_client(traced, DEMO_KEY, mode=MODERN) as client:
            result = await client.call_tool("rec__whose_trace", {}, meta=meta)
        request, spans = await request_span(exporter, "tools/call rec__whose_trace")

    assert request.parent is not None and request.parent.span_id == int(CLIENT_SPAN, 16)
    assert request.context is not None and format(request.context.trace_id, "032x") == CLIENT_TRACE
    assert request.attributes is not None
    assert request.attributes["http.response.status_code"] == 200
    assert request.attributes["mcp.method.name"] == "tools/call"
    assert request.attributes["gen_ai.tool.name"] == "rec__whose_trace"
    assert request.attributes["mcp.protocol.version"] == MODERN
    steps = children(spans, request)
    assert {"authenticate", "policy", "tools/call whose_trace"} <= set(steps)
    assert steps["authenticate"].attributes == {"mcp_gateway.identity": "demo-agent"}
    assert steps["policy"].attributes == {"mcp_gateway.policy.names": (), "mcp_gateway.policy.decision": "allow"}
    upstream = steps["tools/call whose_trace"]
    assert upstream.kind == SpanKind.CLIENT
    assert upstream.attributes is not None
    assert upstream.attributes["mcp_gateway.upstream"] == "rec"
    assert upstream.attributes["mcp_gateway.outcome"] == "ok"
    assert upstream.attributes["mcp_gateway.upstream.era"] in ("2026-07-28", "handshake")
    assert upstream.context is not None
    # The upstream's parent is the gateway's upstream span, in _meta and as W3C headers alike; tracestate is kept.
    expected = {"traceparent": f"00-{CLIENT_TRACE}-{upstream.context.span_id:016x}-01", "tracestate": "vendor=1"}
    assert json.loads(result.content[0].text) == {"headers": expected, "meta": expected}  # type: ignore[union-attr]
    assert audit_trace_ids(caplog, "rec__whose_trace") == [CLIENT_TRACE]


async def test_a_denied_call_in_a_task_session_traces_binding_and_policy_under_the_header_traceparent(
    traced: str, exporter: InMemorySpanExporter, caplog: pytest.LogCaptureFixture
) -> None:
    created = await create_task_session(
        traced, SUPPORT_KEY, "resolve-ticket", {"ticket_id": "t-1", "customer_id": "c-1"}
    )
    body = created.json()
    exporter.clear()
    headers = {"traceparent": CLIENT_TRACEPARENT}
    with caplog.at_level(logging.INFO, logger="mcp_gateway.audit"):
        async with mcp_client(
            traced, SUPPORT_KEY, mode="legacy", task_token=body["taskToken"], headers=headers
        ) as client:
            result = await client.call_tool("demo__get_customer", {"customer_id": "c-2"})
        request, spans = await request_span(exporter, "tools/call demo__get_customer")

    assert result.is_error
    assert request.parent is not None and request.parent.span_id == int(CLIENT_SPAN, 16)
    steps = children(spans, request)
    assert steps["bind task session"].attributes == {
        "mcp_gateway.task.id": "resolve-ticket",
        "mcp_gateway.task_session.id": body["tokenId"],
    }
    assert steps["policy"].attributes == {
        "mcp_gateway.policy.names": ("same-customer",),
        "mcp_gateway.policy.decision": "deny",
        "mcp_gateway.policy.deciding": "same-customer",
    }
    # Denied: never forwarded, so no upstream span.
    assert not [name for name in steps if name.startswith("tools/call")]
    assert audit_trace_ids(caplog, "demo__get_customer") == [CLIENT_TRACE]


async def test_a_refused_credential_is_a_failed_authenticate_step_of_a_401_request(
    traced: str, exporter: InMemorySpanExporter
) -> None:
    exporter.clear()
    answer = await post_in_client_trace(f"{traced}/mcp", {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, "nope")
    assert answer.status_code == 401
    request, spans = await request_span(exporter, "POST /mcp")
    assert request.attributes is not None and request.attributes["http.response.status_code"] == 401
    step = children(spans, request)["authenticate"]
    assert step.status.status_code == StatusCode.ERROR
    assert step.attributes == {"error.type": "Unauthorized"}


async def test_a_rest_request_has_its_own_span_with_an_authenticate_step(
    traced: str, exporter: InMemorySpanExporter
) -> None:
    exporter.clear()
    body = {"taskId": "resolve-ticket", "context": {"ticket_id": "t-1", "customer_id": "c-1"}}
    answer = await post_in_client_trace(f"{traced}/v1/tasks/sessions", body, SUPPORT_KEY)
    assert answer.status_code == 201
    request, spans = await request_span(exporter, "POST /v1/tasks/sessions")
    assert request.parent is not None and request.parent.span_id == int(CLIENT_SPAN, 16)
    assert request.attributes is not None and request.attributes["http.response.status_code"] == 201
    assert children(spans, request)["authenticate"].attributes == {"mcp_gateway.identity": "support-agent"}


async def test_without_tracing_the_clients_trace_context_reaches_the_upstream_unchanged(
    untraced: str, caplog: pytest.LogCaptureFixture
) -> None:
    meta: Any = {"traceparent": CLIENT_TRACEPARENT}
    with caplog.at_level(logging.INFO, logger="mcp_gateway.audit"):
        async with mcp_client(untraced, DEMO_KEY, mode=MODERN) as client:
            result = await client.call_tool("rec__whose_trace", {}, meta=meta)
    seen = {"traceparent": CLIENT_TRACEPARENT, "tracestate": None}
    assert json.loads(result.content[0].text) == {"headers": seen, "meta": seen}  # type: ignore[union-attr]
    assert audit_trace_ids(caplog, "rec__whose_trace") == [None]


async def test_without_tracing_a_malformed_meta_traceparent_never_becomes_a_header(untraced: str) -> None:
    injected = "00-not-a-trace\r\nx-injected: 1"
    async with mcp_client(untraced, DEMO_KEY, mode=MODERN) as client:
        result = await client.call_tool("rec__whose_trace", {}, meta={"traceparent": injected})  # type: ignore[arg-type]
    seen = json.loads(result.content[0].text)  # type: ignore[union-attr]
    assert seen == {
        "headers": {"traceparent": None, "tracestate": None},
        "meta": {"traceparent": injected, "tracestate": None},
    }


async def test_a_malformed_meta_traceparent_starts_a_new_trace_and_is_not_sent_upstream(
    traced: str, exporter: InMemorySpanExporter
) -> None:
    exporter.clear()
    meta: Any = {"traceparent": "00-not-a-trace\r\nx-injected: 1"}
    async with mcp_client(traced, DEMO_KEY, mode=MODERN) as client:
        result = await client.call_tool("rec__whose_trace", {}, meta=meta)
    request, spans = await request_span(exporter, "tools/call rec__whose_trace")
    assert request.parent is None
    upstream = children(spans, request)["tools/call whose_trace"]
    assert upstream.context is not None and request.context is not None
    # A new trace: its id is the gateway's own (flags: sampled, and the trace id's "random" bit).
    expected = f"00-{request.context.trace_id:032x}-{upstream.context.span_id:016x}-03"
    seen = json.loads(result.content[0].text)  # type: ignore[union-attr]
    assert seen["headers"]["traceparent"] == seen["meta"]["traceparent"] == expected


@pytest.mark.parametrize(
    ("environ", "on"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_TRACES_EXPORTER": "none"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_SDK_DISABLED": "true"}, False),
    ],
)
def test_tracing_is_off_unless_the_otel_environment_asks_for_an_exporter(environ: dict[str, str], on: bool) -> None:
    tracing = Tracing.from_environment(environ)
    try:
        assert (tracing.tracer is not None) is on
    finally:
        tracing.shutdown()
