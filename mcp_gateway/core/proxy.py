"""The MCP methods the gateway answers, independent of protocol era and HTTP.

Each handler takes the authenticated caller and the request params and returns the raw result dict; the HTTP
layer adapts it to the era (``resultType``, cache hints) and frames it. This is where visibility, policy and
audit meet the upstream catalog: a hidden tool, resource or prompt is reported exactly like a missing one (the
answer never depends on whether it exists), and a call, read or get is forwarded only after every applicable policy
allowed it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, cast

from mcp.shared.dispatcher import ProgressFnT
from mcp_types import INTERNAL_ERROR, INVALID_PARAMS, REQUEST_TIMEOUT

from mcp_gateway.config import Identity, TaskDefinition
from mcp_gateway.core import tool_calls
from mcp_gateway.core.audit import AuditLog, AuditRecord, RunTag
from mcp_gateway.core.encoded_lists import EncodedList
from mcp_gateway.core.input_bridge import InputBridge, is_input_required, resolve_input_required
from mcp_gateway.core.limits import Limiter
from mcp_gateway.core.policy import Decision, PolicyEngine, TaskContext
from mcp_gateway.core.tool_calls import ResolvedTool
from mcp_gateway.core.visibility import Visibility
from mcp_gateway.errors import POLICY_DENIED, RpcError, UpstreamUnavailable
from mcp_gateway.ops import tracing
from mcp_gateway.ops.metrics import Metrics
from mcp_gateway.tasks.sessions import TaskSession
from mcp_gateway.upstreams.catalog import Catalog
from mcp_gateway.upstreams.client_requests import Downstream
from mcp_gateway.upstreams.connection import UpstreamConnection
from mcp_gateway.upstreams.resource_uris import exposed_result, upstream_uri
from mcp_gateway.upstreams.transports.encoding import UnforwardableRequest
from mcp_gateway.upstreams.transports.untyped import hop_result

logger = logging.getLogger(__name__)

ProgressSink = ProgressFnT

# Keys of the 2026-07-28 request envelope: each hop stamps its own, so the client's are not forwarded.


@dataclass(frozen=True)
class Caller:
    """Who is asking: the identity, and the task session the request is bound to (if any)."""

    identity: Identity
    session: TaskSession | None = None
    task: TaskDefinition | None = None
    run: RunTag | None = None
    """The Task Agent run making the call (its audit records name it); None for a client's own call."""

    @property
    def patterns(self) -> tuple[str, ...] | None:
        return Visibility.patterns(self.identity, self.task)

    @property
    def resource_patterns(self) -> tuple[str, ...] | None:
        return Visibility.resource_patterns(self.identity, self.task)

    @property
    def prompt_patterns(self) -> tuple[str, ...] | None:
        return Visibility.prompt_patterns(self.identity, self.task)

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
    log_level: str | None = None
    """The least severe log message the client takes during this call; None: none (a 2026-07-28 upstream sends none)."""
    answers_verbatim: bool = False
    """The answer is encoded by ``json_codec`` (the HTTP edge), so a result's members the gateway does not read may stay
    the upstream's bytes (``json_codec.Verbatim``). False (agents, stdio): every result is plain Python values."""


NO_LINK = ClientLink()


@dataclass(frozen=True)
class AgentCall:
    """A call of an agent's tool whose run is ready (recorded, its task session open) but not yet started."""

    run: RunTag | None
    """The run it starts, for its audit record; None when the input was refused (``answer`` says why)."""
    answer: Callable[[ProgressSink | None], Awaitable[dict[str, Any]]]
    """Runs the agent to the end, telling ``progress`` of each turn; cancelling it cancels the run."""


class AgentToolset(Protocol):
    """The Task Agents as MCP tools ``agents{separator}{name}`` (``agents/mcp_tool.py``), served beside the upstreams'.

    The proxy keeps the rules: it filters their definitions by visibility, and judges (CEL policies, with
    ``request.tool.upstream`` the namespace), charges (limits) and audits a call to one exactly like a call to an
    upstream's tool. The toolset knows only agents: which exist, and how to run one as its caller.
    """

    @property
    def namespace(self) -> str: ...

    @property
    def prefix(self) -> str: ...

    async def definitions(self) -> Sequence[dict[str, Any]]:
        """Every live agent's tool, sorted by name, before visibility; the same sequence until the agents change."""
        ...

    async def runnable(self, caller: Caller, name: str) -> bool:
        """Whether the tool ``name`` names a live agent this caller may run."""
        ...

    async def prepare(self, caller: Caller, name: str, arguments: dict[str, Any]) -> AgentCall: ...


def forwarded_params(params: Mapping[str, Any], **replace: Any) -> dict[str, Any]:
    """The client's params for the upstream, names swapped back; the connection drops the client's envelope."""
    return {**params, **replace}


def _completion_arguments(params: Mapping[str, Any], argument: Mapping[str, Any]) -> dict[str, Any]:
    """A prompt's arguments as a ``completion/complete`` shows them: those filled in so far, plus the partial one."""
    context = params.get("context")
    filled = context.get("arguments") if isinstance(context, Mapping) else None
    arguments = dict(cast(Mapping[str, Any], filled)) if isinstance(filled, Mapping) else {}
    if isinstance(argument.get("name"), str):
        arguments[argument["name"]] = argument.get("value")
    return arguments


def _require_str(params: Mapping[str, Any], key: str) -> str:
    value = params.get(key)
    if not isinstance(value, str) or not value:
        raise RpcError(INVALID_PARAMS, f"params.{key} must be a non-empty string")
    return value


def unknown_resource(uri: str) -> RpcError:
    """The one answer for a resource that does not exist or that the caller may not see."""
    return RpcError(INVALID_PARAMS, f"Unknown resource: {uri}", {"uri": uri})


def _unknown_prompt(name: str) -> RpcError:
    return RpcError(INVALID_PARAMS, f"Unknown prompt: {name}")


class Proxy:
    def __init__(
        self,
        catalog: Callable[[], Catalog],
        policies: PolicyEngine,
        audit: AuditLog,
        metrics: Metrics,
        bridge: InputBridge | None = None,
        limiter: Limiter | None = None,
    ) -> None:
        self._catalog = catalog
        self._limiter = limiter
        self._bridge = bridge
        self._policies = policies
        self._audit = audit
        self._metrics = metrics
        self._visibility = Visibility()
        self._tool_lists: dict[tuple[int, tuple[str, ...] | None], list[dict[str, Any]]] = {}
        # (list kind, catalog version, pattern list) -> that list filtered for those patterns.
        self._lists: dict[tuple[str, int, tuple[str, ...] | None], list[dict[str, Any]]] = {}
        self._agents: AgentToolset | None = None
        self._agent_lists: dict[
            tuple[str, ...] | None,
            tuple[Sequence[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]],
        ] = {}

    @property
    def visibility(self) -> Visibility:
        return self._visibility

    def serve_agents(self, agents: AgentToolset | None) -> None:
        """List and call the Task Agents' tools from now on (they start after the proxy); None: stop."""
        self._agents = agents

    def set_policies(self, policies: PolicyEngine) -> None:
        """A config reload: every decision from now on is the new engine's (compiled and checked beforehand)."""
        self._policies = policies

    def visible_tools(self, caller: Caller) -> list[dict[str, Any]]:
        """The caller's filtered tool list, memoised per catalog snapshot and pattern list; it keeps its JSON
        encoding once made (``EncodedList``), so a warm ``tools/list`` is not encoded again. Never mutate it."""
        catalog = self._catalog()
        key = (catalog.version, caller.patterns)
        tools = self._tool_lists.get(key)
        if tools is None:
            if len(self._tool_lists) > 1024:
                self._tool_lists.clear()
            tools = EncodedList(
                [t.definition for t in catalog.tools() if self._visibility.allows(caller.patterns, t.name)]
            )
            self._tool_lists[key] = tools
        return tools

    def find_tool(self, caller: Caller, params: Mapping[str, Any]) -> ResolvedTool | None:
        """The upstream tool a ``tools/call`` with ``params`` names, resolved once for the whole call (see
        ``tool_calls``); None when it does not resolve (``call_tool`` then gives the answer) or names an agent."""
        name = params.get("name")
        if not isinstance(name, str) or (self._agents is not None and name.startswith(self._agents.prefix)):
            return None
        return tool_calls.find(self._catalog(), self._visibility, caller.patterns, name)

    def resource_visible(self, caller: Caller, uri: str) -> bool:
        """Whether ``uri`` (or the ``uriTemplate`` text of a template) matches the caller's ``allowedResources``."""
        return self._visibility.allows(caller.resource_patterns, uri)

    def _visible_list(
        self,
        kind: str,
        patterns: tuple[str, ...] | None,
        build: Callable[[Catalog], list[dict[str, Any]]],
        key_of: Callable[[dict[str, Any]], Any],
    ) -> list[dict[str, Any]]:
        """One of the catalog's resource, template or prompt lists filtered for ``patterns``, memoised like
        :meth:`visible_tools`; ``key_of`` gives the text of an item the patterns are matched against."""
        catalog = self._catalog()
        key = (kind, catalog.version, patterns)
        items = self._lists.get(key)
        if items is None:
            if len(self._lists) > 1024:
                self._lists.clear()
            items = [item for item in build(catalog) if self._visibility.allows(patterns, str(key_of(item)))]
            self._lists[key] = items
        return items

    async def list_tools(self, caller: Caller, params: Mapping[str, Any]) -> dict[str, Any]:
        self._reject_cursor(params)
        tools = self.visible_tools(caller)
        if self._agents is not None:
            tools = self._with_agent_tools(caller, tools, await self._agents.definitions())
        return {"tools": tools}

    def _with_agent_tools(
        self, caller: Caller, tools: list[dict[str, Any]], agents: Sequence[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """``tools`` and the agents' tools the caller may see, sorted by name; memoised per pattern list, kept while
        both inputs are the very same objects (``visible_tools`` hands out one list per catalog snapshot and
        visibility, the toolset one sequence until the agents change): a catalog version alone does not say that a
        review withheld or restored a tool."""
        key = caller.patterns
        memo = self._agent_lists.get(key)
        if memo is not None and memo[0] is agents and memo[1] is tools:
            return memo[2]
        visible = [tool for tool in agents if self._visibility.allows(caller.patterns, tool["name"])]
        merged = EncodedList(sorted([*tools, *visible], key=lambda tool: str(tool["name"]))) if visible else tools
        if len(self._agent_lists) > 1024:
            self._agent_lists.clear()
        self._agent_lists[key] = (agents, tools, merged)
        return merged

    async def call_tool(
        self,
        caller: Caller,
        params: Mapping[str, Any],
        link: ClientLink = NO_LINK,
        tool: ResolvedTool | None = None,
    ) -> dict[str, Any]:
        """One tool call, in the security order (``tool_calls``): resolve → decide → record → charge → forward.

        ``tool``: the tool ``find_tool`` resolved from these ``params`` earlier in the same request.
        """
        name, args = tool_calls.requested_tool(params)
        if self._agents is not None and name.startswith(self._agents.prefix):
            return await self._call_agent(self._agents, caller, name, args, link)
        tool = tool or tool_calls.resolve(self._catalog(), self._visibility, caller.patterns, name)
        decision = await tool_calls.decide(self._policies, self._limiter, caller, tool, args)
        record = tool_calls.record(caller, name, tool.upstream, args, decision)
        if not decision.allowed:
            self._abandon(caller, params)
            return tool_calls.denied(self._audit, self._metrics, tool.upstream, record, decision)
        refusal = await tool_calls.charge(self._limiter, self._audit, self._metrics, caller, tool.upstream, record)
        if refusal is not None:
            self._abandon(caller, params)
            raise refusal
        forwarded = forwarded_params(params, name=tool.original_name)
        result = await self._forward_recorded(caller, tool.connection, forwarded, link, record)
        return exposed_result(tool.connection, "tools/call", result)

    def _abandon(self, caller: Caller, params: Mapping[str, Any]) -> None:
        """A call answered without forwarding drops the mid-call state it was resuming (``requestState``), if any."""
        if self._bridge is not None:
            self._bridge.abandon(caller.owner, params.get("requestState"))

    async def _call_agent(
        self, agents: AgentToolset, caller: Caller, name: str, args: dict[str, Any], link: ClientLink
    ) -> dict[str, Any]:
        """Run an agent as the caller: visibility, policies, limits and audit as for any tool, then the run itself.

        The audit record names the run the call started; its latency is the whole run's.
        """
        if not self._visibility.allows(caller.patterns, name) or not await agents.runnable(caller, name):
            raise tool_calls.unknown_tool(name)
        upstream = agents.namespace
        decision = await tool_calls.judge(self._policies, self._limiter, caller, name, upstream, args)
        record = tool_calls.record(caller, name, upstream, args, decision)
        if not decision.allowed:
            return tool_calls.denied(self._audit, self._metrics, upstream, record, decision)
        refusal = await tool_calls.charge(self._limiter, self._audit, self._metrics, caller, upstream, record)
        if refusal is not None:
            raise refusal
        started = time.perf_counter()
        outcome = "ok"
        call: AgentCall | None = None
        try:
            call = await agents.prepare(caller, name, args)
            result = await call.answer(link.progress)
            if result.get("isError") is True:
                outcome = "tool_error"
            return result
        except Exception:
            outcome = "error"
            raise
        except BaseException:
            outcome = "cancelled"
            raise
        finally:
            latency_ms = round((time.perf_counter() - started) * 1000, 3)
            self._audit.record(record.finish(outcome=outcome, latency_ms=latency_ms, run=call.run if call else None))
            self._metrics.tool_calls.labels(upstream, "allow", outcome).inc()

    async def list_resources(self, caller: Caller, params: Mapping[str, Any]) -> dict[str, Any]:
        self._reject_cursor(params)
        resources = self._visible_list(
            "resources", caller.resource_patterns, Catalog.resource_entries, lambda item: item.get("uri")
        )
        return {"resources": resources}

    async def list_resource_templates(self, caller: Caller, params: Mapping[str, Any]) -> dict[str, Any]:
        self._reject_cursor(params)
        templates = self._visible_list(
            "templates", caller.resource_patterns, Catalog.resource_template_entries, lambda t: t.get("uriTemplate")
        )
        return {"resourceTemplates": templates}

    async def read_resource(
        self, caller: Caller, params: Mapping[str, Any], link: ClientLink = NO_LINK
    ) -> dict[str, Any]:
        uri = _require_str(params, "uri")
        connection = self._catalog().resource_owner(uri) if self.resource_visible(caller, uri) else None
        if connection is None:
            raise unknown_resource(uri)
        decision = self._policies.evaluate_resource(
            identity=caller.identity, task=caller.task_context(), uri=uri, upstream=connection.name
        )
        record = self._record(caller, "resources/read", connection.name, decision, {}, resource=uri)
        params = forwarded_params(params, uri=upstream_uri(connection, uri))
        result = await self._forward(caller, connection, params, link, decision, record)
        return exposed_result(connection, "resources/read", result)

    async def list_prompts(self, caller: Caller, params: Mapping[str, Any]) -> dict[str, Any]:
        self._reject_cursor(params)
        prompts = self._visible_list(
            "prompts", caller.prompt_patterns, Catalog.prompt_entries, lambda item: item.get("name")
        )
        return {"prompts": prompts}

    async def get_prompt(self, caller: Caller, params: Mapping[str, Any], link: ClientLink = NO_LINK) -> dict[str, Any]:
        name = _require_str(params, "name")
        arguments = params.get("arguments") or {}
        if not isinstance(arguments, dict):
            raise RpcError(INVALID_PARAMS, "params.arguments must be an object")
        entry = self._catalog().prompt(name)
        if entry is None or not self._visibility.allows(caller.prompt_patterns, name):
            raise _unknown_prompt(name)
        args = cast(dict[str, Any], arguments)
        decision = self._policies.evaluate_prompt(
            identity=caller.identity,
            task=caller.task_context(),
            prompt_name=name,
            upstream=entry.upstream_name,
            arguments=args,
        )
        record = self._record(caller, "prompts/get", entry.upstream_name, decision, args, prompt=name)
        params = forwarded_params(params, name=entry.original_name)
        result = await self._forward(caller, entry.connection, params, link, decision, record)
        return exposed_result(entry.connection, "prompts/get", result)

    async def complete(self, caller: Caller, params: Mapping[str, Any]) -> dict[str, Any]:
        """A completion is judged like a use of what it completes: visibility and the prompt or resource policies.

        A ``ref/prompt`` completion shows policies the prompt's arguments so far (``context.arguments``) with the
        argument being completed set to its partial value.
        """
        ref = params.get("ref")
        if not isinstance(ref, dict):
            raise RpcError(INVALID_PARAMS, "params.ref must be an object")
        ref = cast(dict[str, Any], ref)
        argument = params.get("argument")
        argument = cast(dict[str, Any], argument) if isinstance(argument, dict) else {}
        catalog = self._catalog()
        task = caller.task_context()
        if ref.get("type") == "ref/prompt" and isinstance(ref.get("name"), str):
            name: str = ref["name"]
            entry = catalog.prompt(name)
            if entry is None or not self._visibility.allows(caller.prompt_patterns, name):
                raise _unknown_prompt(name)
            decision = self._policies.evaluate_prompt(
                identity=caller.identity,
                task=task,
                prompt_name=name,
                upstream=entry.upstream_name,
                arguments=_completion_arguments(params, argument),
                method="completion/complete",
            )
            record = self._record(caller, "completion/complete", entry.upstream_name, decision, argument, prompt=name)
            params = forwarded_params(params, ref={**ref, "name": entry.original_name})
            return await self._forward(caller, entry.connection, params, NO_LINK, decision, record)
        if ref.get("type") == "ref/resource" and isinstance(ref.get("uri"), str):
            uri: str = ref["uri"]
            connection = catalog.resource_owner(uri) if self.resource_visible(caller, uri) else None
            if connection is None:
                raise unknown_resource(uri)
            decision = self._policies.evaluate_resource(
                identity=caller.identity, task=task, uri=uri, upstream=connection.name, method="completion/complete"
            )
            record = self._record(caller, "completion/complete", connection.name, decision, argument, resource=uri)
            params = forwarded_params(params, ref={**ref, "uri": upstream_uri(connection, uri)})
            return await self._forward(caller, connection, params, NO_LINK, decision, record)
        raise RpcError(INVALID_PARAMS, "params.ref must be a ref/prompt with a name or a ref/resource with a uri")

    @staticmethod
    def _record(
        caller: Caller,
        method: str,
        upstream: str,
        decision: Decision,
        args: Mapping[str, Any],
        *,
        resource: str | None = None,
        prompt: str | None = None,
    ) -> AuditRecord:
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

    async def _forward(
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
            if self._bridge is not None:
                self._bridge.abandon(caller.owner, params.get("requestState"))
            self._audit.record(record.finish(outcome="denied", latency_ms=None))
            self._metrics.policy_denied(decision.policy)
            raise RpcError(POLICY_DENIED, decision.denial_text())
        return await self._forward_recorded(caller, connection, params, link, record)

    async def _forward_recorded(
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
                return hop_result(
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
