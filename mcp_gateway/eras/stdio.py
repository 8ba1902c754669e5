"""``mcp-gateway stdio``: the gateway serving one MCP client over stdin/stdout, as a sidecar for desktop clients that
launch their MCP servers as local processes.

It is the same gateway as ``serve``: built by ``running_gateway`` from the same config, answering through the same
method table (``McpContext.methods`` → ``Proxy``), so identities, visibility, task sessions, policies, limits and
audit apply unchanged. Only the edge differs from ``/mcp``:

- Who is asking comes from the environment, not a header: a credential (any the config accepts as a bearer: an API key,
  a JWT) and optionally a task token. Both are checked at start, so a bad one ends the process with the reason before
  the client is answered, and again on every request, as ``/mcp`` does, so an expired key or a revoked task session
  stops working at once.
- The wire is the SDK's stdio transport (``mcp.server.stdio``) under its JSON-RPC dispatcher, which runs requests
  concurrently, applies ``notifications/cancelled`` and carries requests to the client mid-call. The client's first
  request decides the era once, as the SDK's own stdio servers do: ``initialize`` opens a handshake-era connection, a
  request with the 2026-07-28 ``_meta`` envelope a modern one.
- What ``/mcp`` refuses with an HTTP status (401, 403, 503) is a JSON-RPC error ``GATEWAY_REFUSED`` here, whose data
  carries the same stable ``error`` string and the status.
- stdout carries protocol messages only. Logs and audit lines go to stderr, and while it serves, the transport points
  fd 1 at stderr, so nothing else in the process (a library's print, a child process) can write into the protocol.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import anyio
from mcp.server.stdio import stdio_server
from mcp.shared.dispatcher import DispatchContext, Outbound
from mcp.shared.exceptions import MCPError, NoBackChannelError
from mcp.shared.inbound import InboundLadderRejection, classify_inbound_request
from mcp.shared.jsonrpc_dispatcher import JSONRPCDispatcher
from mcp.shared.transport_context import TransportContext
from mcp_types import (
    CLIENT_CAPABILITIES_META_KEY,
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PROTOCOL_VERSION_META_KEY,
    UNSUPPORTED_PROTOCOL_VERSION,
)
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, LATEST_HANDSHAKE_VERSION, MODERN_PROTOCOL_VERSIONS

from mcp_gateway.config import GatewayConfig
from mcp_gateway.core.proxy import Caller, ClientLink, unknown_resource
from mcp_gateway.eras.answers import progress_token
from mcp_gateway.eras.context import McpContext
from mcp_gateway.eras.handshake import finish_for_handshake_era
from mcp_gateway.eras.listen_streams import listening
from mcp_gateway.eras.log_levels import LOG_LEVELS, relayed
from mcp_gateway.eras.modern import ModernEra
from mcp_gateway.errors import GATEWAY_REFUSED, GatewayError, RpcError, StoreUnavailable
from mcp_gateway.gateway import running_gateway

logger = logging.getLogger(__name__)

Dispatch = DispatchContext[TransportContext]


@dataclass(frozen=True)
class StdioCaller:
    """Whom the process acts for: its credential and, optionally, the task session it is bound to."""

    credential: str
    task_token: str | None = None


def refusal(exc: GatewayError) -> MCPError:
    """What ``/mcp`` answers with an HTTP status, as a JSON-RPC error; the message never quotes a credential."""
    message = exc.message
    if isinstance(exc, StoreUnavailable):
        message = "the session store is unreachable; the request was refused"  # the detail names internal hosts
    data: dict[str, Any] = {"error": exc.code, "status": exc.status}
    if exc.details is not None:
        data["details"] = exc.details
    return MCPError(GATEWAY_REFUSED, message, data)


class _ClientDownstream:
    """The stdio client as an upstream addresses it mid-call (a ``Downstream``): on the same pipe, in either era."""

    def __init__(self, dctx: Dispatch, capabilities: Mapping[str, Any], log_level: str | None) -> None:
        self._dctx = dctx
        self._capabilities = capabilities
        # No level set: every message, as the handshake era's sessions do before logging/setLevel.
        self._log_level = log_level or LOG_LEVELS[0]

    @property
    def capabilities(self) -> Mapping[str, Any]:
        return self._capabilities

    async def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        try:
            return await self._dctx.send_raw_request(method, params)
        except NoBackChannelError:
            raise RpcError(INTERNAL_ERROR, f"{method}: the call has ended") from None
        except MCPError as exc:
            raise RpcError(exc.code, exc.message, exc.data) from None

    async def notify(self, method: str, params: dict[str, Any]) -> None:
        if not relayed(method, params, self._log_level):
            return
        await self._dctx.notify(method, params)


@dataclass
class _Handshake:
    """A handshake-era connection's state: here the process is the session, so it needs no store record."""

    capabilities: Mapping[str, Any]
    log_level: str | None = None


class StdioEndpoint:
    """Answers one stdio client through the gateway's method table."""

    def __init__(self, context: McpContext, caller: StdioCaller) -> None:
        self._context = context
        self._caller = caller
        self._modern = ModernEra(context)
        self._era: str | None = None
        self._handshake: _Handshake | None = None
        self._target = ("stdio", id(self))
        """Whom this client's resource updates are published to (``Notifier``)."""

    async def bind(self) -> Caller:
        """Who is asking, checked again for every request: store gate, credential, task token."""
        self._context.check_store()
        identity = await self._context.authenticate_bearer(f"Bearer {self._caller.credential}")
        return await self._context.bind_token(identity, self._caller.task_token)

    async def on_request(self, dctx: Dispatch, method: str, params: Mapping[str, Any] | None) -> dict[str, Any]:
        try:
            return await self._answer(dctx, method, params or {})
        except RpcError as exc:
            raise MCPError(exc.code, exc.message, exc.data) from None
        except GatewayError as exc:
            raise refusal(exc) from None
        except (MCPError, anyio.get_cancelled_exc_class()):
            raise
        except Exception:
            # The dispatcher would put the exception's text on the wire; the client gets the fact, the log the rest.
            logger.exception("stdio: %s failed", method)
            raise MCPError(INTERNAL_ERROR, "the gateway failed to handle the request") from None

    async def on_notify(self, dctx: Dispatch, method: str, params: Mapping[str, Any] | None) -> None:
        """Cancellation is the dispatcher's; ``notifications/initialized`` and the rest need nothing."""

    async def relay_notifications(self, outbound: Outbound) -> None:
        """What a handshake-era client's GET stream would carry: merged ``list_changed`` hints and the updates of the
        resources it subscribed to. A 2026-07-28 client hears them through ``subscriptions/listen`` instead."""
        async with self._context.notifier.subscribe(self._target) as notes:
            async for note in notes:
                if self._handshake is not None:
                    await outbound.notify(note["method"], note.get("params"))

    async def close(self) -> None:
        with anyio.CancelScope(shield=True):
            await self._context.subscriptions.drop(self._target)

    async def _answer(self, dctx: Dispatch, method: str, params: Mapping[str, Any]) -> dict[str, Any]:
        if self._era is None:
            self._era = "handshake" if method == "initialize" or not _enveloped(params) else "modern"
        caller = await self.bind()
        if self._era == "modern":
            return await self._modern_request(dctx, caller, method, params)
        return await self._handshake_request(dctx, caller, method, params)

    async def _modern_request(
        self, dctx: Dispatch, caller: Caller, method: str, params: Mapping[str, Any]
    ) -> dict[str, Any]:
        if method == "initialize":
            message = "this connection speaks 2026-07-28: the initialize handshake is not accepted"
            raise RpcError(UNSUPPORTED_PROTOCOL_VERSION, message, {"supported": list(MODERN_PROTOCOL_VERSIONS)})
        verdict = classify_inbound_request({"method": method, "params": params})
        if isinstance(verdict, InboundLadderRejection):
            raise RpcError(verdict.code, verdict.message, verdict.data)
        if method == "server/discover":
            return self._modern.discover_result()
        if method == "subscriptions/listen":
            return await self._listen(dctx, caller, params)
        handler = self._context.methods.get(method)
        if handler is None:
            raise RpcError(METHOD_NOT_FOUND, f"Method not found: {method}")
        meta = params.get("_meta")
        capabilities = meta.get(CLIENT_CAPABILITIES_META_KEY) if isinstance(meta, Mapping) else None
        link = ClientLink(
            progress=dctx.progress if progress_token(params) is not None else None,
            answers_input_required=True,
            capabilities=capabilities if isinstance(capabilities, Mapping) else {},
        )
        return self._modern.finish(method, caller, await handler(caller, params, link))

    async def _listen(self, dctx: Dispatch, caller: Caller, params: Mapping[str, Any]) -> dict[str, Any]:
        """The listen stream on the pipe: its notifications until the client cancels the request (never answered)
        or the gateway stops (answered, which ends the stream as the 2026-07-28 spec says)."""
        request_id = dctx.request_id
        assert request_id is not None, "a request has an id"
        visible = functools.partial(self._context.proxy.resource_visible, caller)
        subscription = listening(
            caller, request_id, params, visible, self._context.notifier, self._context.subscriptions
        )
        if isinstance(subscription, str):
            raise RpcError(INVALID_PARAMS, subscription)
        async with subscription.opened() as stream:
            message: dict[str, Any] | None = await stream.acknowledgment()
            while message is not None:
                await dctx.notify(message["method"], message["params"])
                message = await stream.next_message()
        return {"_meta": subscription.meta}

    async def _handshake_request(
        self, dctx: Dispatch, caller: Caller, method: str, params: Mapping[str, Any]
    ) -> dict[str, Any]:
        if method == "initialize":
            return self._initialize(params)
        handshake = self._handshake
        if handshake is None:
            raise RpcError(INVALID_REQUEST, f"{method}: send initialize first (or the 2026-07-28 _meta envelope)")
        if method == "ping":
            return {}
        if method == "logging/setLevel":
            level = params.get("level")
            if level not in LOG_LEVELS:
                raise RpcError(INVALID_PARAMS, f"params.level must be one of {', '.join(LOG_LEVELS)}")
            handshake.log_level = level
            return {}
        if method in ("resources/subscribe", "resources/unsubscribe"):
            return await self._subscription(caller, method, params)
        handler = self._context.methods.get(method)
        if handler is None:
            raise RpcError(METHOD_NOT_FOUND, f"Method not found: {method}")
        # A handshake-era client gets every log level until it sets one.
        log_level = handshake.log_level or LOG_LEVELS[0]
        link = ClientLink(
            progress=dctx.progress if progress_token(params) is not None else None,
            downstream=_ClientDownstream(dctx, handshake.capabilities, handshake.log_level),
            log_level=log_level,
        )
        return finish_for_handshake_era(await handler(caller, params, link))

    def _initialize(self, params: Mapping[str, Any]) -> dict[str, Any]:
        if self._handshake is not None:
            raise RpcError(INVALID_REQUEST, "initialize was already sent on this connection")
        requested = params.get("protocolVersion")
        if not isinstance(requested, str):
            raise RpcError(INVALID_PARAMS, "initialize requires params.protocolVersion")
        capabilities = params.get("capabilities")
        self._handshake = _Handshake(capabilities if isinstance(capabilities, Mapping) else {})
        return {
            "protocolVersion": requested if requested in HANDSHAKE_PROTOCOL_VERSIONS else LATEST_HANDSHAKE_VERSION,
            "capabilities": self._context.capabilities,
            "serverInfo": self._context.server_info,
        }

    async def _subscription(self, caller: Caller, method: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """As on ``/mcp``: a URI the caller may not see is refused as unknown; unsubscribing stays idempotent."""
        uri = params.get("uri")
        if not isinstance(uri, str) or not uri:
            raise RpcError(INVALID_PARAMS, "params.uri must be a non-empty string")
        subscriptions = self._context.subscriptions
        if method == "resources/unsubscribe":
            await subscriptions.unsubscribe(self._target, uri)
        elif not self._context.proxy.resource_visible(caller, uri):
            raise unknown_resource(uri)
        else:
            await subscriptions.subscribe(self._target, uri)
        return {}


def _enveloped(params: Mapping[str, Any]) -> bool:
    meta = params.get("_meta")
    return isinstance(meta, Mapping) and PROTOCOL_VERSION_META_KEY in meta


async def serve_stdio(config: GatewayConfig, caller: StdioCaller) -> int:
    """Serve the client on stdin/stdout until it closes stdin; 2 when the credentials are refused at start."""
    async with stdio_server() as (read_stream, write_stream), running_gateway(config) as gateway:
        endpoint = StdioEndpoint(McpContext.of(gateway), caller)
        try:
            caller_at_start = await endpoint.bind()
        except GatewayError as exc:
            logger.error("refusing to serve: %s (%s)", refusal(exc).message, exc.code)
            await write_stream.aclose()
            return 2
        logger.info(
            "serving one MCP client over stdio as identity %r%s",
            caller_at_start.identity.id,
            f", task session {caller_at_start.session.token_id}" if caller_at_start.session else "",
        )
        dispatcher: JSONRPCDispatcher[TransportContext] = JSONRPCDispatcher(read_stream, write_stream)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(endpoint.relay_notifications, dispatcher)
                await dispatcher.run(endpoint.on_request, endpoint.on_notify)
                tg.cancel_scope.cancel()
        finally:
            await endpoint.close()
    return 0
