"""What both MCP eras share at ``/mcp``: the request envelope, caller binding, and the common method table.

Both eras answer the same tools/resources/prompts methods through ``Proxy``; they differ only in how a request
proves which conversation it belongs to and how results are framed, which lives in ``modern.py`` and ``legacy.py``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mcp_types import INVALID_REQUEST, METHOD_NOT_FOUND, PARSE_ERROR
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from starlette.requests import Request

from mcp_gateway import json_codec
from mcp_gateway.config import Identity, ServerConfig
from mcp_gateway.core.notifications import Notifier
from mcp_gateway.core.proxy import Caller, ClientLink, Proxy
from mcp_gateway.core.resource_subscriptions import ResourceSubscriptions
from mcp_gateway.errors import GatewayError, TaskRequired
from mcp_gateway.http.json_nesting import nesting_bound
from mcp_gateway.http.responses import rpc_error_body
from mcp_gateway.identity.authenticator import Authenticator
from mcp_gateway.ops import tracing
from mcp_gateway.ops.metrics import Metrics
from mcp_gateway.store.base import Store
from mcp_gateway.tasks.sessions import TaskSessions

if TYPE_CHECKING:
    from mcp_gateway.gateway import Gateway

MethodHandler = Callable[[Caller, Mapping[str, Any], ClientLink], Awaitable[dict[str, Any]]]

TASK_TOKEN_HEADER = "x-task-token"
PROTOCOL_VERSION_HEADER = "mcp-protocol-version"
SESSION_HEADER = "mcp-session-id"

LIST_METHODS = frozenset({"tools/list", "resources/list", "resources/templates/list", "prompts/list"})


@dataclass(frozen=True)
class Envelope:
    """A JSON-RPC message that passed the shape check."""

    id: Any
    method: str
    params: Mapping[str, Any]
    is_notification: bool
    raw: Mapping[str, Any]
    nesting: int
    """An upper bound of how deeply the whole message nests (see ``nesting_bound``)."""


def method_table(proxy: Proxy) -> dict[str, MethodHandler]:
    """The methods both eras share; each era adds its own (initialize and ping, server/discover) in front."""

    def unlinked(
        fn: Callable[[Caller, Mapping[str, Any]], Awaitable[dict[str, Any]]],
    ) -> MethodHandler:
        """A method answered at once, that never needs to reach the client before its answer."""

        async def handler(caller: Caller, params: Mapping[str, Any], link: ClientLink) -> dict[str, Any]:
            return await fn(caller, params)

        return handler

    return {
        "tools/list": unlinked(proxy.list_tools),
        "tools/call": proxy.call_tool,
        "resources/list": unlinked(proxy.list_resources),
        "resources/templates/list": unlinked(proxy.list_resource_templates),
        "resources/read": proxy.read_resource,
        "prompts/list": unlinked(proxy.list_prompts),
        "prompts/get": proxy.get_prompt,
        "completion/complete": unlinked(proxy.complete),
    }


class McpContext:
    """What the /mcp handlers of both eras need, built once at start-up."""

    def __init__(
        self,
        *,
        server: ServerConfig,
        authenticator: Authenticator,
        sessions: TaskSessions,
        proxy: Proxy,
        store: Store,
        metrics: Metrics,
        notifier: Notifier,
        subscriptions: ResourceSubscriptions,
        capabilities: dict[str, Any],
        server_info: dict[str, Any],
    ) -> None:
        self.server = server
        self.authenticator = authenticator
        self.sessions = sessions
        self.proxy = proxy
        self.store = store
        self.metrics = metrics
        self.notifier = notifier
        self.subscriptions = subscriptions
        self.capabilities = capabilities
        self.server_info = server_info
        self.methods = method_table(proxy)

    @classmethod
    def of(cls, gateway: Gateway) -> McpContext:
        """The context of a running gateway (``gateway.py`` imports the eras, so its names are read here, late)."""
        from mcp_gateway.gateway import CAPABILITIES

        return cls(
            server=gateway.config.server,
            authenticator=gateway.authenticator,
            sessions=gateway.sessions,
            proxy=gateway.proxy,
            store=gateway.store,
            metrics=gateway.metrics,
            notifier=gateway.notifier,
            subscriptions=gateway.subscriptions,
            capabilities=CAPABILITIES,
            server_info=gateway.server_info,
        )

    async def authenticate(self, request: Request) -> Identity:
        return await self.authenticate_bearer(request.headers.get("authorization"))

    async def authenticate_bearer(self, authorization: str | None) -> Identity:
        """The identity an ``Authorization`` value (``Bearer <credential>``) proves; counted when refused."""
        try:
            return await self.authenticator.authenticate(authorization)
        except GatewayError:
            self.metrics.auth_failures.labels("credential").inc()
            raise

    async def bind_task(self, identity: Identity, request: Request) -> Caller:
        """Attach the task session named by ``X-Task-Token``; fail closed on anything but a valid, owned token."""
        return await self.bind_token(identity, request.headers.get(TASK_TOKEN_HEADER))

    async def bind_token(self, identity: Identity, token: str | None) -> Caller:
        """Attach the task session of ``token`` (None or empty: no task session, if the identity may go without)."""
        if not token:
            if identity.require_task:
                self.metrics.auth_failures.labels("task_required").inc()
                raise TaskRequired(f"identity {identity.id!r} must send an X-Task-Token header")
            return Caller(identity=identity)
        try:
            with tracing.span("bind task session") as span:
                session, task = await self.sessions.bind(token, identity.id)
                if span.is_recording():
                    span.set_attributes(
                        {"mcp_gateway.task.id": task.id, "mcp_gateway.task_session.id": session.token_id}
                    )
        except GatewayError:
            self.metrics.auth_failures.labels("task_token").inc()
            raise
        return Caller(identity=identity, session=session, task=task)


def parse_envelope(body: bytes, max_depth: int) -> Envelope | dict[str, Any]:
    """The message, or the JSON-RPC error body to answer with HTTP 400.

    A message nesting deeper than ``max_depth`` is refused (-32600) before it is parsed.
    """
    nesting = nesting_bound(body, max_depth)
    if nesting > max_depth:
        return _invalid(INVALID_REQUEST, f"the message nests deeper than {max_depth} levels")
    try:
        message = json_codec.loads(body)
    except (ValueError, RecursionError) as exc:
        return _invalid(PARSE_ERROR, f"Parse error: {exc}")
    if isinstance(message, list):
        return _invalid(INVALID_REQUEST, "JSON-RPC batches are not supported: send one message per request")
    if not isinstance(message, dict):
        return _invalid(INVALID_REQUEST, "the body must be a JSON-RPC 2.0 object")
    request_id = message.get("id")
    if message.get("jsonrpc") != "2.0":
        return _invalid(INVALID_REQUEST, 'the message must carry "jsonrpc": "2.0"', request_id)
    if "id" in message and (isinstance(request_id, bool) or not isinstance(request_id, str | int)):
        return _invalid(INVALID_REQUEST, "id must be a string or an integer", None)
    method = message.get("method")
    if not isinstance(method, str) or not method:
        if "result" in message or "error" in message:
            # A client's answer to a request the gateway sent it mid-call; the legacy era routes it to that call.
            return Envelope(request_id, "", {}, True, message, nesting)
        return _invalid(INVALID_REQUEST, "the message has no method", request_id)
    params = message.get("params", {})
    if params is None:
        params = {}
    if not isinstance(params, dict):
        return _invalid(INVALID_REQUEST, "params must be an object", request_id)
    return Envelope(request_id, method, params, "id" not in message, message, nesting)


def _invalid(code: int, message: str, request_id: Any = None) -> dict[str, Any]:
    return rpc_error_body(request_id, code, message)


def method_not_found(method: str) -> dict[str, Any]:
    return {"code": METHOD_NOT_FOUND, "message": f"Method not found: {method}"}


def is_modern(request: Request) -> bool:
    version = request.headers.get(PROTOCOL_VERSION_HEADER)
    return version is not None and version.strip(" \t") not in HANDSHAKE_PROTOCOL_VERSIONS


def accepts_sse(request: Request) -> bool:
    return "text/event-stream" in request.headers.get("accept", "")
