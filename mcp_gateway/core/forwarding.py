"""The forward step every method that reaches an upstream shares: audit, metrics and tracing around one upstream
request, and mid-call input bridged when client and upstream speak different eras.

``tools/call`` (``core/tool_calls.py``), ``resources/read``, ``prompts/get`` and ``completion/complete``
(``core/resources_prompts.py``) decide first and come here only with a started audit record; whatever happens from
here on (an answer, an upstream error, a timeout, a cancelled client) the record gets its outcome before anything
else runs. Nothing here decides whether a request may go: a request that reaches ``forward_recorded`` is sent.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from mcp_types import INTERNAL_ERROR, REQUEST_TIMEOUT

from mcp_gateway.core.audit import AuditLog, AuditRecord
from mcp_gateway.core.callers import Caller, ClientLink, ProgressSink
from mcp_gateway.core.input_bridge import InputBridge, is_input_required, resolve_input_required
from mcp_gateway.core.policy import Decision
from mcp_gateway.errors import POLICY_DENIED, RpcError, UpstreamUnavailable
from mcp_gateway.ops import tracing
from mcp_gateway.ops.metrics import Metrics
from mcp_gateway.upstreams.client_requests import Downstream
from mcp_gateway.upstreams.connection import UpstreamConnection
from mcp_gateway.upstreams.jsonrpc import inbound_result
from mcp_gateway.upstreams.transports.encoding import UnforwardableRequest


def audit_record(
    caller: Caller,
    method: str,
    upstream: str,
    decision: Decision,
    args: Mapping[str, Any],
    *,
    resource: str | None = None,
    prompt: str | None = None,
) -> AuditRecord:
    """The audit record of a resource, prompt or completion request (a tool call's is ``tool_calls.record``)."""
    return AuditRecord.begin(
        identity=caller.identity.id,
        task_session_id=caller.session.token_id if caller.session else None,
        task_name=caller.task.name if caller.task else None,
        tool="",
        upstream=upstream,
        args=args,
        decision=decision,
        method=method,
        resource=resource,
        prompt=prompt,
        run=caller.run,
    )


class Forwarder:
    """Sends allowed requests upstream for the proxy; holds only what every forward needs (audit, metrics, bridge)."""

    def __init__(self, audit: AuditLog, metrics: Metrics, bridge: InputBridge | None) -> None:
        self._audit = audit
        self._metrics = metrics
        self._bridge = bridge

    def abandon(self, caller: Caller, params: Mapping[str, Any]) -> None:
        """A call answered without forwarding drops the mid-call state it was resuming (``requestState``), if any."""
        if self._bridge is not None:
            self._bridge.abandon(caller.owner, params.get("requestState"))

    async def forward(
        self,
        caller: Caller,
        connection: UpstreamConnection,
        params: dict[str, Any],
        link: ClientLink,
        decision: Decision,
        record: AuditRecord,
    ) -> dict[str, Any]:
        """Forward a resource, prompt or completion request (``record.method``) if its policies allowed it, auditing
        the outcome.

        A denial is a JSON-RPC error (``POLICY_DENIED``): unlike a tool call, these methods have no result that can
        carry an error.
        """
        if not decision.allowed:
            self.abandon(caller, params)
            self._audit.record(record.finish(outcome="denied", latency_ms=None))
            self._metrics.policy_denied(decision.policy)
            raise RpcError(POLICY_DENIED, decision.denial_text())
        return await self.forward_recorded(caller, connection, params, link, record)

    async def forward_recorded(
        self,
        caller: Caller,
        connection: UpstreamConnection,
        params: dict[str, Any],
        link: ClientLink,
        record: AuditRecord,
    ) -> dict[str, Any]:
        """Forward one allowed request (``record.method``); on every path its audit record gets the outcome, the
        metrics count it and, when the request is traced, its upstream span ends."""
        started = time.perf_counter()
        outcome = "ok"
        span = tracing.upstream_call(connection, record.method, params)
        try:
            result = await self._send(caller, connection, record.method, params, link)
            if result.get("isError") is True:
                outcome = "tool_error"
            elif is_input_required(result):
                outcome = "input_required"
            return result
        except UpstreamUnavailable as exc:
            outcome = "upstream_unavailable"
            raise RpcError(INTERNAL_ERROR, exc.message) from exc
        except TimeoutError as exc:
            outcome = "timeout"
            raise RpcError(REQUEST_TIMEOUT, f"upstream {connection.name!r} did not answer in time") from exc
        except UnforwardableRequest:
            outcome = "invalid_params"
            raise
        except RpcError as exc:
            outcome = "upstream_error" if exc.code != REQUEST_TIMEOUT else "timeout"
            raise
        except BaseException:
            outcome = "cancelled"
            raise
        finally:
            elapsed = time.perf_counter() - started
            # First: nothing else in this block may stand between a forwarded request and its record.
            self._audit.record(record.finish(outcome=outcome, latency_ms=round(elapsed * 1000, 3)))
            self._metrics.upstream(connection.name).forwarded(record.method, outcome, elapsed)
            if span is not None:
                span.end(outcome)

    async def _send(
        self, caller: Caller, connection: UpstreamConnection, method: str, params: dict[str, Any], link: ClientLink
    ) -> dict[str, Any]:
        """Forward one request, translating mid-call input when client and upstream speak different eras."""
        if link.answers_input_required and not connection.modern and self._bridge is not None:

            async def send_parked(params: dict[str, Any], down: Downstream, progress: ProgressSink) -> dict[str, Any]:
                return inbound_result(
                    await connection.request(
                        method,
                        params,
                        on_progress=progress,
                        downstream=down,
                        identity=caller.identity,
                        verbatim=link.answers_verbatim,
                    )
                )

            return await self._bridge.forward(
                owner=caller.owner,
                upstream=connection.name,
                method=method,
                params=params,
                capabilities=link.capabilities,
                progress=link.progress,
                send=send_parked,
                client=link.downstream,
            )
        # A 2026-07-28 upstream is told what the calling client can be asked and nothing more; with no client to ask
        # (NO_LINK: an agent run's call, a completion) that is nothing.
        capabilities = link.downstream.capabilities if link.downstream is not None else link.capabilities

        async def send(params: dict[str, Any]) -> dict[str, Any]:
            result = await connection.request(
                method,
                params,
                on_progress=link.progress,
                downstream=link.downstream,
                client_capabilities=capabilities,
                identity=caller.identity,
                log_level=link.log_level,
                asked_live=not link.answers_input_required,
                verbatim=link.answers_verbatim,
            )
            return inbound_result(result)

        result = await send(params)
        if link.answers_input_required or not is_input_required(result):
            return result

        async def retry(responses: dict[str, Any] | None, state: str | None) -> dict[str, Any]:
            again = {key: value for key, value in params.items() if key not in ("inputResponses", "requestState")}
            if responses is not None:
                again["inputResponses"] = responses
            if state is not None:
                again["requestState"] = state
            return await send(again)

        return await resolve_input_required(result, link.downstream, retry)
