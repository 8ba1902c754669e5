"""OpenTelemetry traces of the requests the gateway serves: off unless the standard ``OTEL_*`` environment turns them
on, and then one span per ``/mcp`` or ``/v1`` request with a child span per step (authentication, task session
binding, policies, the upstream call).

Off must cost nothing a profile would show: every hook below first reads one context variable, which only a traced
request sets, and with none returns a shared no-op object. No span object is made and no attribute is gathered.

The parent of a request's span is the caller's W3C trace context: the ``traceparent`` header, else ``traceparent``
(and ``tracestate``) in the request's ``params._meta``, where the MCP specification (2026-07-28, SEP-414) carries it.
``_meta`` is known only once the body is read, which is after authentication, so the span of a ``POST /mcp`` opens
when its envelope is parsed, with its start time set back to the request's arrival; steps that ended before it opened
are recorded then, with their own times. Every upstream request carries the gateway's upstream span as its parent:
in ``_meta`` for every transport, and as the ``traceparent`` header for HTTP upstreams (``http_calls.py``).

Nothing secret goes into a span: no credential, token, argument or result; identities and task sessions by id.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager
from contextvars import ContextVar
from importlib.metadata import PackageNotFoundError, version
from types import TracebackType
from typing import Any, Protocol

from opentelemetry import context as otel_context
from opentelemetry.context import Context
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer, get_current_span, set_span_in_context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

logger = logging.getLogger(__name__)

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
TRACE_KEYS = (TRACEPARENT, TRACESTATE)
"""The W3C trace context keys, in ``_meta`` (SEP-414) and as HTTP headers alike."""

_PROPAGATOR = TraceContextTextMapPropagator()
_TRACEPARENT_FORM = re.compile(r"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")
_TRACESTATE_FORM = re.compile(r"[\x20-\x7e]{1,512}")
_EXPORTERS = ("otlp", "console")


class SpanHandle(Protocol):
    """What a hook's caller may do with the span it gets: a real span, one recorded later, or none at all."""

    def is_recording(self) -> bool: ...

    def set_attribute(self, key: str, value: AttributeValue) -> None: ...

    def set_attributes(self, attributes: Mapping[str, AttributeValue]) -> None: ...


class _NoSpan:
    """Tracing is off for this request: one shared object, entered and left for free."""

    def is_recording(self) -> bool:
        return False

    def set_attribute(self, key: str, value: AttributeValue) -> None:
        pass

    def set_attributes(self, attributes: Mapping[str, AttributeValue]) -> None:
        pass

    def __enter__(self) -> _NoSpan:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


_NO_SPAN = _NoSpan()


def _gateway_version() -> str:
    try:
        return version("mcp-gateway")
    except PackageNotFoundError:
        return "0+unknown"


class Tracing:
    """The gateway's tracer, or None when tracing is off; built once at start-up."""

    def __init__(self, provider: TracerProvider | None, *, owned: bool = False) -> None:
        self._provider = provider
        self._owned = owned
        self.tracer: Tracer | None = (
            provider.get_tracer("mcp-gateway", _gateway_version()) if provider is not None else None
        )

    @classmethod
    def off(cls) -> Tracing:
        return cls(None)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> Tracing:
        """On when ``OTEL_TRACES_EXPORTER`` names ``otlp`` or ``console``, or, with that unset, when an OTLP endpoint
        is set (``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``); ``OTEL_SDK_DISABLED=true``
        or ``OTEL_TRACES_EXPORTER=none`` keeps it off. The exporter, the sampler (``OTEL_TRACES_SAMPLER``), the batch
        processor (``OTEL_BSP_*``) and the resource (``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``) read the
        rest of the standard variables themselves."""
        if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
            return cls.off()
        names = [name.strip().lower() for name in environ.get("OTEL_TRACES_EXPORTER", "").split(",") if name.strip()]
        if not names and any(environ.get(f"OTEL_EXPORTER_OTLP{kind}_ENDPOINT") for kind in ("", "_TRACES")):
            names = ["otlp"]
        for name in names:
            if name not in (*_EXPORTERS, "none"):
                logger.warning("OTEL_TRACES_EXPORTER: %r is not an exporter the gateway has (otlp, console)", name)
        exporters = [_exporter(name) for name in dict.fromkeys(names) if name in _EXPORTERS]
        if not exporters:
            return cls.off()
        provider = TracerProvider(resource=_resource())
        for exporter in exporters:
            provider.add_span_processor(BatchSpanProcessor(exporter))
        logger.info("tracing: on, exporting spans to %s", ", ".join(n for n in names if n in _EXPORTERS))
        return cls(provider, owned=True)

    @classmethod
    def with_processor(cls, processor: SpanProcessor) -> Tracing:
        """Tracing into one span processor (tests: the SDK's in-memory exporter behind a simple processor)."""
        provider = TracerProvider(resource=_resource())
        provider.add_span_processor(processor)
        return cls(provider)

    def shutdown(self) -> None:
        """Flush and stop what this built from the environment (bounded by the exporters' own timeouts)."""
        if self._provider is not None and self._owned:
            self._provider.shutdown()

    def begin(self, method: str, path: str, headers: Mapping[str, str]) -> RequestTrace | None:
        """The trace of one HTTP request (not yet opened), or None when tracing is off."""
        if self.tracer is None:
            return None
        return RequestTrace(self.tracer, method, path, _extracted(headers))


def _exporter(name: str) -> SpanExporter:
    if name == "console":
        return ConsoleSpanExporter()
    # Imported only when used: the exporter pulls in protobuf and an HTTP client.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


def _resource() -> Resource:
    """The standard resource (``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_SERVICE_NAME``), named mcp-gateway by default."""
    detected = Resource.create({SERVICE_VERSION: _gateway_version()})
    if str(detected.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        detected = detected.merge(Resource({SERVICE_NAME: "mcp-gateway"}))
    return detected


def _extracted(carrier: Mapping[str, Any] | None) -> Context | None:
    """The trace context a carrier (headers, ``_meta``) names, or None when it names none validly."""
    if not carrier or not isinstance(carrier.get(TRACEPARENT), str):
        return None
    state = carrier.get(TRACESTATE)
    text = {TRACEPARENT: carrier[TRACEPARENT], **({TRACESTATE: state} if isinstance(state, str) else {})}
    found = _PROPAGATOR.extract(text)
    return found if get_current_span(found).get_span_context().is_valid else None


class _Pending:
    """A step that ran before its request's span opened; it becomes a span, with its own times, when it does."""

    def __init__(self, trace: RequestTrace, name: str) -> None:
        self._trace = trace
        self.name = name
        self.attributes: dict[str, AttributeValue] = {}
        self.started = 0
        self.ended = 0
        self.error: str | None = None

    def is_recording(self) -> bool:
        return True

    def set_attribute(self, key: str, value: AttributeValue) -> None:
        self.attributes[key] = value

    def set_attributes(self, attributes: Mapping[str, AttributeValue]) -> None:
        self.attributes.update(attributes)

    def __enter__(self) -> _Pending:
        self.started = time.time_ns()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.ended = time.time_ns()
        if exc_type is not None:
            self.error = exc_type.__name__
        self._trace.record(self)


class _Step:
    """A step of an opened request: a real child span, current while the step runs.

    Exceptions mark the span failed with their type only: their messages can quote what the caller sent.
    """

    def __init__(self, tracer: Tracer, name: str, kind: SpanKind) -> None:
        self._span = tracer.start_span(name, kind=kind)
        self._token: object = None

    def __enter__(self) -> Span:
        self._token = otel_context.attach(set_span_in_context(self._span))
        return self._span

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is not None:
            _failed(self._span, exc_type.__name__)
        self._span.end()
        otel_context.detach(self._token)  # type: ignore[arg-type]


def _failed(span: Span, error_type: str) -> None:
    span.set_attribute("error.type", error_type)
    span.set_status(Status(StatusCode.ERROR))


class RequestTrace:
    """One HTTP request's span and the steps recorded before it opened."""

    def __init__(self, tracer: Tracer, method: str, path: str, header_parent: Context | None) -> None:
        self.tracer = tracer
        self._name = f"{method} {path}"
        self._attributes: dict[str, AttributeValue] = {"http.request.method": method, "url.path": path}
        self._header_parent = header_parent
        self._started = time.time_ns()
        self._span: Span | None = None
        self._token: object = None
        self._pending: list[_Pending] = []
        self.trace_id: str | None = None
        """The trace's id as 32 hex digits (audit records carry it), once the span is open."""

    def open(
        self,
        name: str | None = None,
        meta: Mapping[str, Any] | None = None,
        attributes: Mapping[str, AttributeValue] | None = None,
    ) -> None:
        """Start the request's span, under the header's trace context, else ``meta``'s, else a new trace."""
        if self._span is not None:
            return
        parent = self._header_parent or _extracted(meta) or Context()
        span = self.tracer.start_span(
            name or self._name,
            context=parent,
            kind=SpanKind.SERVER,
            attributes={**self._attributes, **(attributes or {})},
            start_time=self._started,
        )
        self._span = span
        context = span.get_span_context()
        self.trace_id = format(context.trace_id, "032x") if context.is_valid else None
        self._token = otel_context.attach(set_span_in_context(span, parent))
        for step in self._pending:
            self.record(step)
        self._pending.clear()

    def record(self, step: _Pending) -> None:
        if self._span is None:
            self._pending.append(step)
            return
        span = self.tracer.start_span(
            step.name, context=set_span_in_context(self._span), attributes=step.attributes, start_time=step.started
        )
        if step.error is not None:
            _failed(span, step.error)
        span.end(end_time=step.ended)

    def step(self, name: str, kind: SpanKind) -> AbstractContextManager[SpanHandle]:
        if self._span is None:
            return _Pending(self, name)
        return _Step(self.tracer, name, kind)

    def finish(self, status: int, error: str | None = None) -> None:
        """End the span (opening it first if nothing did) with the HTTP status the response started with."""
        self.open()
        assert self._span is not None
        if status:
            self._span.set_attribute("http.response.status_code", status)
        if error is not None or status >= 500:
            _failed(self._span, error or str(status))
        self._span.end()
        otel_context.detach(self._token)  # type: ignore[arg-type]


_current: ContextVar[RequestTrace | None] = ContextVar("mcp_gateway_request_trace", default=None)


def bind(trace: RequestTrace) -> object:
    """Make ``trace`` the current request's; returns the token for :func:`unbind`."""
    return _current.set(trace)


def unbind(token: object) -> None:
    _current.reset(token)  # type: ignore[arg-type]


def span(name: str, kind: SpanKind = SpanKind.INTERNAL) -> AbstractContextManager[SpanHandle]:
    """A child span of the current request for one step, or a no-op when the request is not traced.

    Set attributes only ``if span.is_recording()``, so that an untraced request never builds them.
    """
    trace = _current.get()
    if trace is None:
        return _NO_SPAN
    return trace.step(name, kind)


def request_parsed(method: str, params: Mapping[str, Any], request_id: Any, protocol_version: str | None) -> None:
    """A ``POST /mcp`` envelope was read: open the request's span under its caller's trace context (the request's
    ``MCP-Protocol-Version``, when it sent one, becomes an attribute)."""
    trace = _current.get()
    if trace is None:
        return
    target = params.get("name") if method in ("tools/call", "prompts/get") else None
    attributes: dict[str, AttributeValue] = {"mcp.method.name": method or "response"}
    if protocol_version:
        attributes["mcp.protocol.version"] = protocol_version
    if request_id is not None:
        attributes["jsonrpc.request.id"] = str(request_id)
    if isinstance(target, str):
        attributes["gen_ai.tool.name" if method == "tools/call" else "gen_ai.prompt.name"] = target
    if method == "tools/call":
        attributes["gen_ai.operation.name"] = "execute_tool"
    meta = params.get("_meta")
    name = f"{method} {target}" if isinstance(target, str) else method or None
    trace.open(name, meta if isinstance(meta, Mapping) else None, attributes)


def current_trace_id() -> str | None:
    """The current request's trace id (32 hex digits), None when it is not traced."""
    trace = _current.get()
    return None if trace is None else trace.trace_id


def policy_attributes(names: Iterable[str], allowed: bool, deciding: str | None) -> dict[str, AttributeValue]:
    attributes: dict[str, AttributeValue] = {
        "mcp_gateway.policy.names": list(names),
        "mcp_gateway.policy.decision": "allow" if allowed else "deny",
    }
    if deciding is not None:
        attributes["mcp_gateway.policy.deciding"] = deciding
    return attributes


_FAILED_OUTCOMES = frozenset({"upstream_error", "upstream_unavailable", "timeout", "invalid_params", "cancelled"})


class UpstreamSpan:
    """The span of one request forwarded upstream; current while it runs, so the upstream's trace context (stamped
    into the request's ``_meta`` here) names it."""

    def __init__(self, tracer: Tracer, name: str, attributes: Mapping[str, AttributeValue]) -> None:
        self._span = tracer.start_span(name, kind=SpanKind.CLIENT, attributes=attributes)
        self._token = otel_context.attach(set_span_in_context(self._span))

    def stamp(self, params: dict[str, Any]) -> None:
        """Replace the caller's trace context in ``params._meta`` with this span's."""
        meta = params.get("_meta")
        kept = meta.items() if isinstance(meta, Mapping) else ()
        carrier: dict[str, Any] = {key: value for key, value in kept if key not in TRACE_KEYS}
        _PROPAGATOR.inject(carrier, set_span_in_context(self._span))
        params["_meta"] = carrier

    def end(self, outcome: str) -> None:
        if self._span.is_recording():
            self._span.set_attribute("mcp_gateway.outcome", outcome)
            if outcome in _FAILED_OUTCOMES:
                _failed(self._span, outcome)
            elif outcome == "tool_error":
                self._span.set_attribute("error.type", "tool_error")
        self._span.end()
        otel_context.detach(self._token)


class Upstream(Protocol):
    """What an upstream span says about the upstream (``UpstreamConnection``)."""

    @property
    def name(self) -> str: ...

    @property
    def protocol_version(self) -> str | None: ...

    @property
    def modern(self) -> bool: ...


def upstream_call(upstream: Upstream, method: str, params: dict[str, Any]) -> UpstreamSpan | None:
    """Start the span of a request about to go to ``upstream`` and stamp its trace context into ``params``; None
    when the request is not traced (the caller's own ``_meta`` trace context then goes upstream unchanged)."""
    trace = _current.get()
    if trace is None:
        return None
    tool = params.get("name") if method in ("tools/call", "prompts/get") else None
    attributes: dict[str, AttributeValue] = {
        "mcp_gateway.upstream": upstream.name,
        "mcp_gateway.upstream.era": "2026-07-28" if upstream.modern else "handshake",
        "mcp.method.name": method,
    }
    if upstream.protocol_version:
        attributes["mcp.protocol.version"] = upstream.protocol_version
    if isinstance(tool, str):
        attributes["gen_ai.tool.name" if method == "tools/call" else "gen_ai.prompt.name"] = tool
    name = f"{method} {tool}" if isinstance(tool, str) else method
    span = UpstreamSpan(trace.tracer, name, attributes)
    span.stamp(params)
    return span


def trace_headers(meta: Mapping[str, Any]) -> dict[str, str]:
    """The W3C trace context of a request's ``_meta`` as HTTP headers, for an HTTP upstream that reads those; only
    well-formed values (a client's ``_meta`` must not be able to write anything else into a header)."""
    parent = meta.get(TRACEPARENT)
    if not isinstance(parent, str) or not _TRACEPARENT_FORM.fullmatch(parent):
        return {}
    headers = {TRACEPARENT: parent}
    state = meta.get(TRACESTATE)
    if isinstance(state, str) and _TRACESTATE_FORM.fullmatch(state):
        headers[TRACESTATE] = state
    return headers
