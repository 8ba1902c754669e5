"""What both MCP eras share, at ``/mcp`` and over stdio: who is asking (credential, task session) and the method table.

Both eras answer the same tools/resources/prompts methods through ``Proxy``; they differ only in how a request
proves which conversation it belongs to and how results are framed, which lives in ``modern.py`` and
``handshake.py``. Nothing here reads an HTTP request: the edges (``endpoint.py``, ``stdio.py``) hand in the values.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from mcp_gateway.config import Identity, ServerConfig
from mcp_gateway.core.notifications import Notifier
from mcp_gateway.core.proxy import Caller, ClientLink, Proxy
from mcp_gateway.core.resource_subscriptions import ResourceSubscriptions
from mcp_gateway.errors import GatewayError, StoreUnavailable, TaskRequired
from mcp_gateway.identity.authenticator import Authenticator
from mcp_gateway.ops import tracing
from mcp_gateway.ops.metrics import Metrics
from mcp_gateway.store.base import Store
from mcp_gateway.tasks.sessions import TaskSessions

if TYPE_CHECKING:
    from mcp_gateway.gateway import Gateway

MethodHandler = Callable[[Caller, Mapping[str, Any], ClientLink], Awaitable[dict[str, Any]]]

TASK_TOKEN_HEADER = "x-task-token"
SESSION_HEADER = "mcp-session-id"

LIST_METHODS = frozenset({"tools/list", "resources/list", "resources/templates/list", "prompts/list"})


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

    def check_store(self) -> None:
        """Fail closed while the store is unavailable (its last PING went unanswered: a bool, no round trip)."""
        store = self.store
        if not store.available:
            raise StoreUnavailable(f"store {store.description} is unavailable (last PING unanswered)")

    async def authenticate_bearer(self, authorization: str | None) -> Identity:
        """The identity an ``Authorization`` value (``Bearer <credential>``) proves; counted when refused."""
        try:
            return await self.authenticator.authenticate(authorization)
        except GatewayError:
            self.metrics.auth_failures.labels("credential").inc()
            raise

    async def bind_token(self, identity: Identity, token: str | None) -> Caller:
        """Attach the task session of ``token`` (``X-Task-Token``; None or empty: no task session, if the identity may
        go without); fail closed on anything but a valid, owned token."""
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
