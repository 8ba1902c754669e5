"""The MCP methods the gateway answers, independent of protocol era and HTTP.

Each handler takes the authenticated caller and the request params and returns the raw result dict; the HTTP
layer adapts it to the era (``resultType``, cache hints) and frames it. This is where visibility, policy and
audit meet the upstream catalog: a hidden tool is reported exactly like a missing one, and a call is forwarded
only after every applicable policy allowed it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

from mcp.shared.dispatcher import ProgressFnT
from mcp.shared.inbound import x_mcp_header_map
from mcp_types import INTERNAL_ERROR, INVALID_PARAMS, REQUEST_TIMEOUT

from mcp_gateway.audit import AuditLog, AuditRecord
from mcp_gateway.bridge import InputBridge, is_input_required, resolve_input_required
from mcp_gateway.config import Identity, TaskDefinition
from mcp_gateway.errors import RpcError, UpstreamUnavailable
from mcp_gateway.metrics import Metrics
from mcp_gateway.policy import PolicyEngine, TaskContext
from mcp_gateway.sessions import TaskSession
from mcp_gateway.upstreams.catalog import Catalog
from mcp_gateway.upstreams.connection import UpstreamConnection
from mcp_gateway.upstreams.downstream import Downstream
from mcp_gateway.upstreams.encoding import UnforwardableRequest
from mcp_gateway.upstreams.raw import hop_result
from mcp_gateway.visibility import Visibility

logger = logging.getLogger(__name__)

ProgressSink = ProgressFnT

# Keys of the 2026-07-28 request envelope: each hop stamps its own, so the client's are not forwarded.


@dataclass(frozen=True)
class Caller:
    """Who is asking: the identity, and the task session the request is bound to (if any)."""

    identity: Identity
    session: TaskSession | None = None
    task: TaskDefinition | None = None

    @property
    def patterns(self) -> tuple[str, ...] | None:
        return Visibility.patterns(self.identity, self.task)

    @property
    def owner(self) -> str:
        """Whose work this is, for state that must only be resumed by the same caller: identity and task session."""
        return f"{self.identity.id}\x00{self.session.token_id if self.session else ''}"

    def task_context(self) -> TaskContext | None:
        if self.session is None or self.task is None:
            return None
        return TaskContext(
            session_id=self.session.token_id,
            task_id=self.task.id,
            task_name=self.task.name,
            labels=self.task.labels,
            context=self.session.context,
        )


@dataclass(frozen=True)
class ClientLink:
    """How a forwarded call can reach its client while it runs."""

    progress: ProgressSink | None = None
    downstream: Downstream | None = None
    """Relays what the upstream asks or tells the client mid-call (handshake era: live server→client requests)."""
    answers_input_required: bool = False
    """The client resolves ``input_required`` results itself (2026-07-28)."""
    capabilities: Mapping[str, Any] = field(default_factory=dict)
    """What the client declared it can be asked (2026-07-28 ``_meta``; the handshake era's live in ``downstream``)."""


NO_LINK = ClientLink()


def forwarded_params(params: Mapping[str, Any], **replace: Any) -> dict[str, Any]:
    """The client's params for the upstream, names swapped back; the connection drops the client's envelope."""
    return {**params, **replace}


def _require_str(params: Mapping[str, Any], key: str) -> str:
    value = params.get(key)
    if not isinstance(value, str) or not value:
        raise RpcError(INVALID_PARAMS, f"params.{key} must be a non-empty string")
    return value


def _unknown_tool(name: str) -> RpcError:
    return RpcError(INVALID_PARAMS, f"Unknown tool: {name}")


class Proxy:
    def __init__(
        self,
        catalog: Callable[[], Catalog],
        policies: PolicyEngine,
        audit: AuditLog,
        metrics: Metrics,
        bridge: InputBridge | None = None,
    ) -> None:
        self._catalog = catalog
        self._bridge = bridge
        self._policies = policies
        self._audit = audit
        self._metrics = metrics
        self._visibility = Visibility()
        self._tool_lists: dict[tuple[int, tuple[str, ...] | None], list[dict[str, Any]]] = {}
        self._param_header_tools: dict[tuple[int, str], bool] = {}

    @property
    def visibility(self) -> Visibility:
        return self._visibility

    def visible_tools(self, caller: Caller) -> list[dict[str, Any]]:
        """The caller's filtered tool list, memoised per catalog snapshot and pattern list."""
        catalog = self._catalog()
        key = (catalog.version, caller.patterns)
        tools = self._tool_lists.get(key)
        if tools is None:
            if len(self._tool_lists) > 1024:
                self._tool_lists.clear()
            tools = [t.definition for t in catalog.tools() if self._visibility.allows(caller.patterns, t.name)]
            self._tool_lists[key] = tools
        return tools

    def param_header_schema(self, caller: Caller, name: str) -> Any:
        """The input schema of a visible tool that declares ``x-mcp-header`` arguments, else None.

        Most tools declare none; remembering which do (per catalog snapshot) spares every other call two schema
        walks in the SDK's header validator.
        """
        catalog = self._catalog()
        entry = catalog.tool(name)
        if entry is None or not self._visibility.allows(caller.patterns, name):
            return None
        schema = entry.definition.get("inputSchema")
        key = (catalog.version, name)
        annotated = self._param_header_tools.get(key)
        if annotated is None:
            if len(self._param_header_tools) > 4096:
                self._param_header_tools.clear()
            annotated = bool(x_mcp_header_map(schema))
            self._param_header_tools[key] = annotated
        return schema if annotated else None

    async def list_tools(self, caller: Caller, params: Mapping[str, Any]) -> dict[str, Any]:
        self._reject_cursor(params)
        return {"tools": self.visible_tools(caller)}

    async def call_tool(self, caller: Caller, params: Mapping[str, Any], link: ClientLink = NO_LINK) -> dict[str, Any]:
        name = _require_str(params, "name")
        arguments = params.get("arguments") or {}
        if not isinstance(arguments, dict):
            raise RpcError(INVALID_PARAMS, "params.arguments must be an object")
        entry = self._catalog().tool(name)
        if entry is None or not self._visibility.allows(caller.patterns, name):
            raise _unknown_tool(name)
        args = cast(dict[str, Any], arguments)
        decision = self._policies.evaluate(
            identity=caller.identity,
            task=caller.task_context(),
            tool_name=name,
            upstream=entry.upstream_name,
            args=args,
        )
        record = AuditRecord.begin(
            identity=caller.identity.id,
            task_session_id=caller.session.token_id if caller.session else None,
            task_name=caller.task.name if caller.task else None,
            tool=name,
            upstream=entry.upstream_name,
            args=args,
            decision=decision,
        )
        if not decision.allowed:
            if self._bridge is not None:
                self._bridge.abandon(caller.owner, params.get("requestState"))
            self._metrics.tool_calls.labels(entry.upstream_name, "deny", "denied").inc()
            self._audit.record(record.finish(outcome="denied", latency_ms=None))
            return {"content": [{"type": "text", "text": decision.denial_text()}], "isError": True}

        started = time.perf_counter()
        outcome = "ok"
        try:
            result = await self._send(
                caller, entry.connection, "tools/call", forwarded_params(params, name=entry.original_name), link
            )
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
            raise RpcError(REQUEST_TIMEOUT, f"upstream {entry.upstream_name!r} did not answer in time") from exc
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
            # First: nothing else in this block may stand between a forwarded call and its record.
            self._audit.record(record.finish(outcome=outcome, latency_ms=round(elapsed * 1000, 3)))
            self._metrics.upstream_latency.labels(entry.upstream_name).observe(elapsed)
            self._metrics.tool_calls.labels(entry.upstream_name, "allow", outcome).inc()

    async def list_resources(self, caller: Caller, params: Mapping[str, Any]) -> dict[str, Any]:
        self._reject_cursor(params)
        return {"resources": self._catalog().resource_entries()}

    async def list_resource_templates(self, caller: Caller, params: Mapping[str, Any]) -> dict[str, Any]:
        self._reject_cursor(params)
        return {"resourceTemplates": self._catalog().resource_template_entries()}

    async def read_resource(
        self, caller: Caller, params: Mapping[str, Any], link: ClientLink = NO_LINK
    ) -> dict[str, Any]:
        uri = _require_str(params, "uri")
        connection = self._catalog().resource_owner(uri)
        if connection is None:
            raise RpcError(INVALID_PARAMS, f"Unknown resource: {uri}")
        return await self._forward(caller, connection, "resources/read", forwarded_params(params), link)

    async def list_prompts(self, caller: Caller, params: Mapping[str, Any]) -> dict[str, Any]:
        self._reject_cursor(params)
        return {"prompts": self._catalog().prompt_entries()}

    async def get_prompt(self, caller: Caller, params: Mapping[str, Any], link: ClientLink = NO_LINK) -> dict[str, Any]:
        name = _require_str(params, "name")
        entry = self._catalog().prompt(name)
        if entry is None:
            raise RpcError(INVALID_PARAMS, f"Unknown prompt: {name}")
        return await self._forward(
            caller, entry.connection, "prompts/get", forwarded_params(params, name=entry.original_name), link
        )

    async def complete(self, caller: Caller, params: Mapping[str, Any]) -> dict[str, Any]:
        ref = params.get("ref")
        if not isinstance(ref, dict):
            raise RpcError(INVALID_PARAMS, "params.ref must be an object")
        ref = cast(dict[str, Any], ref)
        catalog = self._catalog()
        if ref.get("type") == "ref/prompt" and isinstance(ref.get("name"), str):
            entry = catalog.prompt(ref["name"])
            if entry is None:
                raise RpcError(INVALID_PARAMS, f"Unknown prompt: {ref['name']}")
            new_ref = {**ref, "name": entry.original_name}
            params = forwarded_params(params, ref=new_ref)
            return await self._forward(caller, entry.connection, "completion/complete", params)
        if ref.get("type") == "ref/resource" and isinstance(ref.get("uri"), str):
            connection = catalog.resource_owner(ref["uri"])
            if connection is None:
                raise RpcError(INVALID_PARAMS, f"Unknown resource: {ref['uri']}")
            return await self._forward(caller, connection, "completion/complete", forwarded_params(params))
        raise RpcError(INVALID_PARAMS, "params.ref must be a ref/prompt with a name or a ref/resource with a uri")

    async def _forward(
        self,
        caller: Caller,
        connection: UpstreamConnection,
        method: str,
        params: dict[str, Any],
        link: ClientLink = NO_LINK,
    ) -> dict[str, Any]:
        try:
            return await self._send(caller, connection, method, params, link)
        except UpstreamUnavailable as exc:
            raise RpcError(INTERNAL_ERROR, exc.message) from exc
        except TimeoutError as exc:
            raise RpcError(REQUEST_TIMEOUT, "upstream did not answer in time") from exc

    async def _send(
        self, caller: Caller, connection: UpstreamConnection, method: str, params: dict[str, Any], link: ClientLink
    ) -> dict[str, Any]:
        """Forward one request, translating mid-call input when client and upstream speak different eras."""
        if link.answers_input_required and not connection.modern and self._bridge is not None:

            async def send_parked(params: dict[str, Any], down: Downstream, progress: ProgressSink) -> dict[str, Any]:
                return hop_result(await connection.request(method, params, on_progress=progress, downstream=down))

            return await self._bridge.forward(
                owner=caller.owner,
                upstream=connection.name,
                method=method,
                params=params,
                capabilities=link.capabilities,
                progress=link.progress,
                send=send_parked,
            )
        # A 2026-07-28 upstream is told what the calling client can be asked; with no client to ask (NO_LINK) it
        # sees the gateway's own declaration.
        capabilities: Mapping[str, Any] | None = None
        if link.downstream is not None:
            capabilities = link.downstream.capabilities
        elif link.answers_input_required:
            capabilities = link.capabilities

        async def send(params: dict[str, Any]) -> dict[str, Any]:
            result = await connection.request(
                method,
                params,
                on_progress=link.progress,
                downstream=link.downstream,
                client_capabilities=capabilities,
            )
            return hop_result(result)

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

    @staticmethod
    def _reject_cursor(params: Mapping[str, Any]) -> None:
        """The gateway returns merged lists whole, so it never hands out a cursor; any cursor is not ours."""
        if params.get("cursor") is not None:
            raise RpcError(INVALID_PARAMS, "Invalid cursor: the gateway returns complete lists")


def utc_now() -> datetime:
    return datetime.now(UTC)
