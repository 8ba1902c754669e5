"""CPU per call of the tracing hooks on the tools/call path, tracing off vs on, and of the call's metrics.

Run from the repository root: ``PYTHONPATH=$PWD .venv/bin/python benchmarks/tracing_hooks.py``. One simulated
``POST /mcp`` tools/call goes through the ``TraceRequests`` middleware into an ASGI app that makes the same hook calls,
in the same order, as the real path (``request_parsed``, ``authenticate``, ``bind task session``, ``policy``,
``upstream_call`` with its ``_meta`` stamp, the audit record's ``current_trace_id``): off is the gateway's default;
on exports through a ``BatchSpanProcessor`` into an exporter that encodes every span to OTLP protobuf, as the OTLP
exporter does before it sends, then drops it. Prints the process's CPU time (``time.process_time``: the export
thread included) per call, best of 5 repeats. The metrics line compares the call's metric updates done with
``labels()`` per call (before) and through the bound children (``Metrics.upstream``).
"""

from __future__ import annotations

import asyncio
import time
import timeit
from collections.abc import Sequence
from typing import Any

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from starlette.types import Receive, Scope, Send

from mcp_gateway.http.request_tracing import TraceRequests
from mcp_gateway.ops import tracing
from mcp_gateway.ops.metrics import Metrics
from mcp_gateway.ops.tracing import Tracing

CALLS = 20_000
PARAMS: dict[str, Any] = {
    "name": "get_customer",
    "arguments": {"customer_id": "c-42"},
    "_meta": {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01"},
}
SCOPE: Scope = {
    "type": "http",
    "method": "POST",
    "path": "/mcp",
    "headers": [(b"authorization", b"Bearer x"), (b"mcp-protocol-version", b"2026-07-28")],
}


class EncodingExporter(SpanExporter):
    """Encodes like the OTLP exporter, sends nowhere."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        encode_spans(spans).SerializeToString()
        return SpanExportResult.SUCCESS


class Upstream:
    name = "crm"
    protocol_version = "2026-07-28"
    modern = True


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """The hook calls of one tools/call, in the order the gateway makes them."""
    with tracing.span("authenticate") as span:
        if span.is_recording():
            span.set_attribute("mcp_gateway.identity", "alice")
    tracing.request_parsed("tools/call", PARAMS, 1, "2026-07-28")
    with tracing.span("bind task session") as span:
        if span.is_recording():
            span.set_attributes({"mcp_gateway.task.id": "t", "mcp_gateway.task_session.id": "ts_1"})
    with tracing.span("policy") as span:
        if span.is_recording():
            span.set_attributes(tracing.policy_attributes(["same-customer"], True, None))
    forwarded = dict(PARAMS)
    upstream = tracing.upstream_call(Upstream(), "tools/call", forwarded)
    tracing.current_trace_id()
    if upstream is not None:
        upstream.end("ok")
    await send({"type": "http.response.start", "status": 200, "headers": []})


async def no_body() -> Any:
    return {"type": "http.request", "body": b"", "more_body": False}


async def discard(message: Any) -> None:
    pass


def cpu_us_per_call(tracing_: Tracing) -> float:
    middleware = TraceRequests(app, tracing_)

    async def run() -> None:
        for _ in range(CALLS):
            await middleware(SCOPE, no_body, discard)

    best = float("inf")
    for _ in range(5):
        started = time.process_time()
        asyncio.run(run())
        best = min(best, time.process_time() - started)
    return best / CALLS * 1e6


def hooks_off_us_per_call() -> float:
    """The hooks alone, with no request trace (tracing off): what the call path pays for them."""

    async def hooks() -> None:
        await app(SCOPE, no_body, discard)

    async def bare() -> None:
        await discard({"type": "http.response.start", "status": 200, "headers": []})

    def per_call(fn: Any) -> float:
        async def run() -> None:
            for _ in range(CALLS):
                await fn()

        best = float("inf")
        for _ in range(5):
            started = time.process_time()
            asyncio.run(run())
            best = min(best, time.process_time() - started)
        return best / CALLS * 1e6

    return per_call(hooks) - per_call(bare)


def bare_span_us() -> float:
    """One span of the SDK itself, started and ended into the same batch exporter: the floor of a span's cost."""
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(EncodingExporter()))
    tracer = provider.get_tracer("bench")
    started = time.process_time()
    for _ in range(CALLS):
        tracer.start_span("x").end()
    provider.shutdown()
    return (time.process_time() - started) / CALLS * 1e6


def metrics_us_per_call() -> tuple[float, float]:
    metrics = Metrics()
    metrics.bind(["crm"], [])

    def per_call_labels() -> None:
        metrics.upstream_latency.labels("crm", "tools/call").observe(0.002)
        metrics.tool_calls.labels("crm", "allow", "ok").inc()

    def bound() -> None:
        metrics.upstream("crm").forwarded("tools/call", "ok", 0.002)

    return tuple(  # type: ignore[return-value]
        min(timeit.repeat(fn, number=CALLS, repeat=5)) / CALLS * 1e6 for fn in (per_call_labels, bound)
    )


def main() -> None:
    off = cpu_us_per_call(Tracing.off())
    on_tracing = Tracing.with_processor(BatchSpanProcessor(EncodingExporter()))
    on = cpu_us_per_call(on_tracing)
    on_tracing._provider.shutdown()  # type: ignore[union-attr]
    unsampled_provider = TracerProvider(sampler=ALWAYS_OFF)
    unsampled = cpu_us_per_call(Tracing(unsampled_provider))
    print(f"tracing off: {off:6.2f} us CPU per tools/call (middleware check + hooks + the simulated app itself)")
    print(f"             {hooks_off_us_per_call():6.2f} us of it are the 6 hook calls")
    print(f"tracing on:  {on:6.2f} us CPU per tools/call (6 spans, OTLP-encoded by the batch exporter)")
    print(f"  unsampled: {unsampled:6.2f} us CPU per tools/call (on, but the sampler records nothing)")
    print(f"SDK floor:   {bare_span_us():6.2f} us CPU per bare SDK span into the same exporter")
    labels, bound = metrics_us_per_call()
    print(f"metrics:     {labels:6.2f} us with labels() per call, {bound:6.2f} us through bound children")


if __name__ == "__main__":
    main()
