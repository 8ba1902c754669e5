"""One long-lived connection per configured upstream, shared by every request the gateway forwards.

The connection is opened when the gateway starts and kept open: a request never pays for a process spawn or a
handshake. When the upstream goes away (its process exits, its HTTP endpoint stops answering, it forgets our legacy
session) the connection notices, fails the calls in flight, answers new ones at once with ``UpstreamUnavailable``
instead of letting them hang, and reconnects in the background with exponential backoff.

Requests are forwarded raw: the client's params go out as they came (bar the envelope, which each hop stamps for
itself: ``jsonrpc.py``) and the upstream's result dict comes back exactly as sent, unknown fields included, so the
gateway never narrows what either side can say to what this SDK version models.

The upstream's lists (``list_cache.py``) are fetched on every connect and again whenever it says one changed; listeners
hear about every list that actually changed.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Concatenate, ParamSpec, TypeVar

import anyio
import anyio.abc
import mcp_types as types
from mcp import Client
from mcp.client import ClientSession, IncomingMessage, Transport
from mcp.client.session import MessageHandlerFnT
from mcp.client.subscriptions import ListenNotSupportedError, SubscriptionLost, listen
from mcp.shared.dispatcher import CallOptions, ProgressFnT
from mcp.shared.exceptions import MCPError
from mcp.shared.inbound import mcp_param_headers, x_mcp_header_map
from mcp_types import INTERNAL_ERROR
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from mcp_gateway.config import HttpTransport, Identity, UpstreamConfig
from mcp_gateway.errors import RpcError, UpstreamUnavailable, describe
from mcp_gateway.upstreams.auth.credentials import UpstreamCredentials
from mcp_gateway.upstreams.backoff import Backoff
from mcp_gateway.upstreams.client_requests import Downstream, DownstreamRouter
from mcp_gateway.upstreams.handshake_sessions import HandshakeSessions, back_channel, initialize
from mcp_gateway.upstreams.jsonrpc import outbound_params, send_raw, stamped, upstream_error
from mcp_gateway.upstreams.list_cache import (
    ALL_LISTS,
    ListKind,
    StaleLists,
    UpstreamLists,
    changed_lists,
    fetch_lists,
    hold_listen_stream,
)
from mcp_gateway.upstreams.liveness import watched
from mcp_gateway.upstreams.transports.encoding import encoded_first
from mcp_gateway.upstreams.transports.http_calls import CredentialRefused, HttpHop, HttpSessionState
from mcp_gateway.upstreams.transports.http_session import http_transport
from mcp_gateway.upstreams.transports.stdio import stdio_transport

logger = logging.getLogger(__name__)

ChangeListener = Callable[["UpstreamConnection", frozenset[ListKind]], Awaitable[None]]
"""Called with the connection and the lists that changed, after the new lists are in place."""
ResourceListener = Callable[["UpstreamConnection", str], None]
"""Called with the connection and the URI of a subscribed resource the upstream says changed."""


def _gateway_version() -> str:
    try:
        return version("mcp-gateway")
    except PackageNotFoundError:
        return "0.0.0"


CLIENT_INFO = types.Implementation(name="mcp-gateway", version=_gateway_version())


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _counted(
    method: Callable[Concatenate[UpstreamConnection, _P], Coroutine[Any, Any, _R]],
) -> Callable[Concatenate[UpstreamConnection, _P], Coroutine[Any, Any, _R]]:
    """Count the requests in flight, so a connection a config reload removed can close once they are done."""

    async def counted(self: UpstreamConnection, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        self._in_flight += 1
        try:
            return await method(self, *args, **kwargs)
        finally:
            self._in_flight -= 1
            if not self._in_flight and self._drained is not None:
                self._drained.set()
                self._drained = None

    return counted


class UpstreamTimeout(TimeoutError):
    """The upstream did not answer a call within its timeout (a ``TimeoutError``, so callers can treat it as one)."""


@dataclass(frozen=True)
class _Live:
    """The state of one established session; replaced wholesale on reconnect."""

    session: ClientSession
    lost: anyio.Event
    modern: bool
    hop: HttpHop | None
    """Streamable HTTP upstreams: the lean path calls take (``http_calls.py``); stdio calls go through the session."""
    router: DownstreamRouter
    """Finds the client of the call a server→client request or log message arriving on ``session`` belongs to."""
    handshakes: HandshakeSessions[_Live] | None = None
    """A 2026-07-28 session of ``protocol: auto``: the handshake-era sessions for clients that can be asked."""


class UpstreamConnection:
    """The gateway's connection to one upstream MCP server.

    Run it in a task group for the gateway's lifetime: ``await tg.start(connection.run)`` returns once the first
    connect attempt has finished, whether or not it succeeded; later attempts continue in the background.
    """

    def __init__(
        self,
        config: UpstreamConfig,
        *,
        on_change: ChangeListener | None = None,
        backoff: Backoff | None = None,
        client_info: types.Implementation = CLIENT_INFO,
    ) -> None:
        self.config = config
        self._backoff = backoff or Backoff()
        self._client_info = client_info
        self._listeners: list[ChangeListener] = [on_change] if on_change is not None else []
        self._live: _Live | None = None
        self._lists = UpstreamLists()
        # Per tool name, the arguments a 2026-07-28 HTTP call mirrors into Mcp-Param-* headers.
        self._param_headers: dict[str, dict[tuple[str, ...], str]] = {}
        self._state_changed: anyio.Event | None = None
        # Resources the gateway is subscribed to, kept across reconnects; see subscribe_resource.
        self._resource_uris: set[str] = set()
        self._resource_uris_changed: anyio.Event | None = None
        self._resource_listeners: list[ResourceListener] = []
        # Server→client requests and log messages the upstream sends during a call go to that call's client.
        self._router = DownstreamRouter(config.name, exact=isinstance(config.transport, HttpTransport))
        # Kept across reconnects: a token fetched for one session is good for the next.
        self._credentials = UpstreamCredentials(config)
        self.last_error: str | None = None
        self._in_flight = 0
        self._drained: anyio.Event | None = None
        self.generation = 0
        """How many sessions have been established so far; a reconnect increments it."""

    def __repr__(self) -> str:
        return f"<UpstreamConnection {self.name!r} ready={self.ready}>"

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def ready(self) -> bool:
        live = self._live
        return live is not None and not live.lost.is_set()

    @property
    def protocol_version(self) -> str | None:
        return self._live.session.protocol_version if self._live else None

    @property
    def modern(self) -> bool:
        """Whether the live session speaks 2026-07-28 or later (asks for input with ``input_required`` results)."""
        return self._live is not None and self._live.modern

    @property
    def handshake_sessions(self) -> int:
        """How many handshake-era sessions are open beside a 2026-07-28 one, for clients that can be asked."""
        handshakes = self._live.handshakes if self._live else None
        return len(handshakes) if handshakes is not None else 0

    @property
    def server_capabilities(self) -> types.ServerCapabilities | None:
        return self._live.session.server_capabilities if self._live else None

    @property
    def server_info(self) -> types.Implementation | None:
        return self._live.session.server_info if self._live else None

    @property
    def instructions(self) -> str | None:
        return self._live.session.instructions if self._live else None

    @property
    def lists(self) -> UpstreamLists:
        """The last lists fetched; kept while the upstream is down so its tools stay listed across a restart."""
        return self._lists

    def add_change_listener(self, listener: ChangeListener) -> None:
        self._listeners.append(listener)

    def add_resource_listener(self, listener: ResourceListener) -> None:
        self._resource_listeners.append(listener)

    @property
    def supports_resource_subscriptions(self) -> bool:
        capabilities = self.server_capabilities
        return bool(capabilities and capabilities.resources and capabilities.resources.subscribe)

    async def subscribe_resource(self, uri: str) -> None:
        """Ask the upstream for ``notifications/resources/updated`` about ``uri``, now and after every reconnect.

        Handshake era: ``resources/subscribe``. 2026-07-28: the URI joins the ``resourceSubscriptions`` of the
        connection's resource listen stream, which is re-opened with the new set.
        """
        live = self._live
        if live is None or live.lost.is_set():
            raise self._unavailable()
        if not live.modern:
            await self.request("resources/subscribe", {"uri": uri})
        self._resource_uris.add(uri)
        self._resources_changed()

    async def unsubscribe_resource(self, uri: str) -> None:
        self._resource_uris.discard(uri)
        self._resources_changed()
        live = self._live
        if live is not None and not live.modern and not live.lost.is_set():
            await self.request("resources/unsubscribe", {"uri": uri})

    async def drained(self) -> None:
        """Wait until no request is in flight (bound it with ``anyio.move_on_after``)."""
        while self._in_flight:
            if self._drained is None:
                self._drained = anyio.Event()
            await self._drained.wait()

    async def wait_ready(self) -> None:
        """Wait until a session is established (bound it with ``anyio.fail_after``)."""
        while not self.ready:
            await self._state_event().wait()

    @_counted
    async def request(
        self,
        method: str,
        params: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - defaults per upstream, and the error names the upstream
        on_progress: ProgressFnT | None = None,
        downstream: Downstream | None = None,
        client_capabilities: Mapping[str, Any] | None = None,
        identity: Identity | None = None,
        log_level: str | None = None,
        asked_live: bool = True,
        verbatim: bool = False,
    ) -> dict[str, Any]:
        """Send one request upstream and return its raw result dict.

        ``downstream`` is the client the call is made for: requests (sampling, elicitation, roots) and log messages
        the upstream sends while serving this call are relayed to it; without one they are refused.
        ``client_capabilities`` are that client's, declared to a 2026-07-28 upstream in place of the gateway's own
        (a handshake-era session declared the gateway's once, at initialize). ``identity`` is the caller, for an
        HTTP upstream whose credential is made per caller (``credentials.py``); None for the gateway's own requests.
        ``log_level`` is that client's log opt-in, stamped on a 2026-07-28 request (a handshake-era upstream logs per
        session, filtered downstream). ``asked_live`` is False for a 2026-07-28 client: it is asked with
        ``input_required`` results, never mid-call, so its call never takes a pooled handshake-era session (its
        ``downstream`` still hears the call's log messages). ``verbatim``: from a streamable HTTP upstream, the result's
        members the gateway never reads stay the bytes the upstream sent (``json_codec.Verbatim``, written unchanged
        by the answer encoder); only a caller that encodes with ``json_codec`` or calls ``json_codec.materialized``
        may ask for it.

        Raises:
            UpstreamUnavailable: not connected, or the connection died before the answer arrived.
            UpstreamTimeout: no answer within ``timeout`` (default: the upstream's configured timeout); the
                upstream is told the request was cancelled.
            RpcError: the upstream answered with a JSON-RPC error (code, message and data as it sent them).
            UnforwardableRequest: an ``RpcError`` (-32602) for params that cannot be encoded (``encoding.py``);
                nothing was sent and the connection is unaffected.
        """
        live = self._live
        if live is None or live.lost.is_set():
            raise self._unavailable()
        call = partial(
            self._forward,
            method=method,
            params=params,
            timeout=timeout,
            on_progress=on_progress,
            downstream=downstream,
            client_capabilities=client_capabilities,
            identity=identity,
            log_level=log_level,
            verbatim=verbatim,
        )
        if (
            asked_live
            and live.handshakes is not None
            and downstream is not None
            and (asks := back_channel(downstream.capabilities))
        ):
            # A handshake-era client that can be asked: the upstream asks it live, as that client's era does.
            async with live.handshakes.lease(asks) as handshake:
                if handshake is not None:
                    return await call(handshake)
        return await call(live)

    async def _forward(
        self,
        live: _Live,
        *,
        method: str,
        params: Mapping[str, Any] | None,
        timeout: float | None,  # noqa: ASYNC109 - see request
        on_progress: ProgressFnT | None,
        downstream: Downstream | None,
        client_capabilities: Mapping[str, Any] | None,
        identity: Identity | None,
        log_level: str | None,
        verbatim: bool,
    ) -> dict[str, Any]:
        """``request`` over one established session: the connection's own or a pooled handshake-era one."""
        outbound = outbound_params(params)
        opts: CallOptions = {}
        if on_progress is not None:
            opts["on_progress"] = on_progress
        if live.modern and method == "tools/call":
            self._add_param_headers(outbound, opts)
        limit = self.config.call_timeout if timeout is None else timeout
        try:
            # Our own deadline rather than the dispatcher's: it also bounds a write the transport never accepts,
            # and the dispatcher's timeout error would be indistinguishable from an upstream's -32001.
            with anyio.fail_after(limit):
                if live.hop is not None:
                    stamped_params = stamped(
                        live.session,
                        method,
                        outbound,
                        opts,
                        client_capabilities=client_capabilities,
                        log_level=log_level,
                    )
                    return await self._hop_request(
                        live.hop,
                        method,
                        stamped_params or {},
                        opts.get("headers") or {},
                        identity,
                        on_progress=on_progress,
                        downstream=downstream,
                        verbatim=verbatim,
                    )
                with live.router.call(downstream):
                    return await send_raw(
                        live.session,
                        method,
                        outbound,
                        opts,
                        client_capabilities=client_capabilities,
                        log_level=log_level,
                    )
        except TimeoutError:
            raise UpstreamTimeout(f"upstream {self.name!r} did not answer {method} within {limit:g}s") from None
        except MCPError as exc:
            if live.lost.is_set():
                raise UpstreamUnavailable(f"upstream {self.name!r} went away during {method}") from exc
            raise upstream_error(exc.code, exc.message, exc.data) from exc

    async def _hop_request(
        self,
        hop: HttpHop,
        method: str,
        params: dict[str, Any],
        headers: Mapping[str, str],
        identity: Identity | None,
        *,
        on_progress: ProgressFnT | None,
        downstream: Downstream | None,
        verbatim: bool,
    ) -> dict[str, Any]:
        """A call with its credential; on a 401, once more with a fresh one, then an error naming the upstream."""
        credentials = self._credentials
        for attempt in range(2):
            # Without `auth` there is nothing but the static headers, which the hop already sends.
            credential = await credentials.call_headers(identity) if credentials.refreshable else {}
            try:
                return await hop.request(
                    method,
                    params,
                    {**headers, **credential},
                    on_progress=on_progress,
                    downstream=downstream,
                    verbatim=verbatim,
                )
            except CredentialRefused:
                if attempt == 0 and credentials.refreshable:
                    logger.info(
                        "upstream %r refused the credential of %s; retrying with a fresh one", self.name, method
                    )
                    credentials.refused(identity, credential)
                    continue
                break
        raise RpcError(
            INTERNAL_ERROR, f"upstream {self.name!r} refused the gateway's credential for {method} (HTTP 401)"
        )

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Connect, stay connected, reconnect with backoff; runs until cancelled."""
        started = False
        attempt = 0

        def signal_started() -> None:
            nonlocal started
            if not started:
                started = True
                task_status.started()

        try:
            while True:
                up_since: float | None = None

                def on_ready() -> None:
                    nonlocal up_since
                    up_since = anyio.current_time()
                    signal_started()

                try:
                    await self._connect_and_serve(on_ready)
                    reason = "the upstream closed the connection"
                except Exception as exc:
                    reason = describe(exc)
                    logger.debug("upstream %r failed", self.name, exc_info=True)
                self.last_error = reason
                self._set_live(None)
                if up_since is not None and anyio.current_time() - up_since >= self._backoff.stable_after:
                    attempt = 0
                delay = self._backoff.delay(attempt)
                attempt += 1
                logger.warning("upstream %r is down (%s); reconnecting in %.2fs", self.name, reason, delay)
                signal_started()
                await anyio.sleep(delay)
        finally:
            self._set_live(None)

    async def _connect_and_serve(self, on_ready: Callable[[], None]) -> None:
        """Establish one session, publish it, and return when it is lost (or raise if it never came up)."""
        lost = anyio.Event()
        stale = StaleLists()
        http_state = HttpSessionState()
        client = Client(
            watched(encoded_first(self._transport(lost, http_state)), lost),
            mode=self.config.protocol,
            cache=None,
            client_info=self._client_info,
            message_handler=self._message_handler(stale),
            sampling_callback=self._router.sampling,
            elicitation_callback=self._router.elicitation,
            list_roots_callback=self._router.list_roots,
            logging_callback=self._router.logging,
        )
        # One scope for the session's whole life so the task groups entered below nest properly; only the connect
        # phase has a deadline.
        with anyio.CancelScope(deadline=anyio.current_time() + self.config.connect_timeout) as connect_scope:
            async with client, anyio.create_task_group() as tg:
                session = client.session
                if self.config.protocol in MODERN_PROTOCOL_VERSIONS:
                    await _discover(session, self.config.protocol)
                modern = session.protocol_version in MODERN_PROTOCOL_VERSIONS
                if modern:
                    # Listen before listing, so no change can slip between the two.
                    await tg.start(hold_listen_stream, session, stale, self._backoff, self.name)
                lists = await fetch_lists(session, ALL_LISTS, self._lists, self.name)
                connect_scope.deadline = math.inf
                changed = self._store(lists)
                self.generation += 1
                self.last_error = None
                hop = self._hop(lost, http_state, stale, legacy=not modern)
                tg.start_soon(_close_when_cancelled, hop)
                handshakes = None
                if modern and self.config.protocol == "auto":
                    handshakes = HandshakeSessions(
                        tg,
                        partial(self._handshake_session, stale),
                        upstream=self.name,
                        open_timeout=self.config.connect_timeout,
                    )
                self._set_live(
                    _Live(
                        session=session, lost=lost, modern=modern, hop=hop, router=self._router, handshakes=handshakes
                    )
                )
                logger.info("upstream %r connected (protocol %s)", self.name, session.protocol_version)
                tg.start_soon(self._refresh_when_stale, session, stale)
                if modern:
                    tg.start_soon(self._hold_resource_listen, session)
                elif self._resource_uris:
                    tg.start_soon(self._resubscribe)
                # Before signalling readiness: whoever waits for the first connect reads the lists directly.
                if changed:
                    await self._notify(changed)
                on_ready()
                await lost.wait()
                tg.cancel_scope.cancel()
        if connect_scope.cancelled_caught:
            raise TimeoutError(f"connect timed out after {self.config.connect_timeout:g}s")

    @asynccontextmanager
    async def _handshake_session(self, stale: StaleLists, capabilities: dict[str, Any]) -> AsyncIterator[_Live]:
        """One more session to the upstream, in the handshake era, declaring ``capabilities`` (``handshake_sessions``).

        Over HTTP it is a second ``Mcp-Session-Id`` at the same server; over stdio a second process of the command.
        Its lists are not fetched (the connection's own session keeps them), but what it says changed is refetched.
        """
        lost = anyio.Event()
        http_state = HttpSessionState()
        router = DownstreamRouter(self.name, exact=isinstance(self.config.transport, HttpTransport))
        async with watched(encoded_first(self._transport(lost, http_state)), lost) as (read, write):
            session = ClientSession(
                read,
                write,
                client_info=self._client_info,
                message_handler=self._message_handler(stale),
                sampling_callback=router.sampling,
                elicitation_callback=router.elicitation,
                list_roots_callback=router.list_roots,
                logging_callback=router.logging,
            )
            async with session, anyio.create_task_group() as tg:
                await initialize(session, capabilities, self._client_info)
                hop = self._hop(lost, http_state, stale, legacy=True)
                tg.start_soon(_close_when_cancelled, hop)
                yield _Live(session=session, lost=lost, modern=False, hop=hop, router=router)
                tg.cancel_scope.cancel()

    def _transport(self, lost: anyio.Event, http_state: HttpSessionState) -> Transport:
        transport = self.config.transport
        if isinstance(transport, HttpTransport):
            return http_transport(
                transport,
                connect_timeout=self.config.connect_timeout,
                call_timeout=self.config.call_timeout,
                on_lost=lost.set,
                state=http_state,
                auth=self._credentials.connection_auth(),
            )
        return stdio_transport(transport)

    def _hop(
        self, lost: anyio.Event, http_state: HttpSessionState, stale: StaleLists, *, legacy: bool
    ) -> HttpHop | None:
        transport = self.config.transport
        if not isinstance(transport, HttpTransport):
            return None

        async def on_notification(method: str, params: dict[str, Any]) -> None:
            await self._on_notification(stale, method, params)

        return HttpHop(
            url=transport.url,
            static_headers={name.lower(): value for name, value in transport.headers.items()},
            state=http_state,
            on_lost=lost.set,
            on_notification=on_notification,
            connect_timeout=self.config.connect_timeout,
            legacy=legacy,
        )

    def _message_handler(self, stale: StaleLists) -> MessageHandlerFnT:
        async def handle(message: IncomingMessage) -> None:
            if isinstance(message, Exception):
                logger.warning("upstream %r sent something unreadable: %s", self.name, message)
                return
            params = message.params.model_dump(by_alias=True, mode="json", exclude_none=True) if message.params else {}
            await self._on_notification(stale, message.method, params)

        return handle

    async def _on_notification(self, stale: StaleLists, method: str, params: dict[str, Any]) -> None:
        """Every notification the upstream sends outside a call's own progress and log messages, by either path."""
        if method == "notifications/resources/updated":
            uri = params.get("uri")
            if isinstance(uri, str) and uri in self._resource_uris:
                for listener in list(self._resource_listeners):
                    listener(self, uri)
            return
        stale.mark(changed_lists(method))

    async def _resubscribe(self) -> None:
        """A new handshake-era session knows nothing of the old one's subscriptions."""
        for uri in sorted(self._resource_uris):
            try:
                await self.request("resources/subscribe", {"uri": uri})
            except (RpcError, UpstreamUnavailable, TimeoutError) as exc:
                logger.warning("upstream %r: could not subscribe to %s again: %s", self.name, uri, exc)

    async def _hold_resource_listen(self, session: ClientSession) -> None:
        """2026-07-28: the subscribed URIs ride one ``subscriptions/listen`` stream, re-opened when the set changes.

        Its ``notifications/resources/updated`` reach ``_on_notification`` through the session's message handler;
        this only keeps the stream open (and re-opens it after a failure, with backoff).
        """
        failures = 0
        while True:
            changed = self._resource_event()
            uris = sorted(self._resource_uris)
            async with anyio.create_task_group() as tg:

                async def hold(uris: list[str] = uris) -> None:
                    nonlocal failures
                    if not uris:
                        await anyio.sleep_forever()
                    try:
                        async with listen(session, resource_subscriptions=uris) as subscription:
                            failures = 0
                            async for _event in subscription:
                                pass
                    except (MCPError, SubscriptionLost, ListenNotSupportedError, TimeoutError) as exc:
                        logger.info("upstream %r: resource listen stream ended: %s", self.name, exc)
                    await anyio.sleep(self._backoff.delay(failures))
                    failures += 1
                    tg.cancel_scope.cancel()

                tg.start_soon(hold)
                await changed.wait()
                tg.cancel_scope.cancel()

    def _resource_event(self) -> anyio.Event:
        if self._resource_uris_changed is None:
            self._resource_uris_changed = anyio.Event()
        return self._resource_uris_changed

    def _resources_changed(self) -> None:
        if self._resource_uris_changed is not None:
            self._resource_uris_changed.set()
            self._resource_uris_changed = None

    async def _refresh_when_stale(self, session: ClientSession, stale: StaleLists) -> None:
        while True:
            kinds = await stale.take()
            try:
                with anyio.fail_after(self.config.call_timeout):
                    lists = await fetch_lists(session, kinds, self._lists, self.name)
            except (MCPError, TimeoutError) as exc:
                logger.warning("upstream %r: could not refresh %s: %s", self.name, ", ".join(sorted(kinds)), exc)
                continue
            changed = self._store(lists)
            if changed:
                await self._notify(changed)

    def _store(self, lists: UpstreamLists) -> frozenset[ListKind]:
        """Swap in new lists; return the kinds whose content differs from before."""
        changed = lists.changed_from(self._lists)
        self._lists = lists
        if "tools" in changed:
            self._param_headers = {
                tool["name"]: header_map
                for tool in lists.tools
                if isinstance(tool.get("name"), str) and (header_map := x_mcp_header_map(tool.get("inputSchema")))
            }
        return changed

    async def _notify(self, changed: frozenset[ListKind]) -> None:
        for listener in list(self._listeners):
            try:
                await listener(self, changed)
            except Exception:
                logger.exception("upstream %r: change listener failed", self.name)

    def _add_param_headers(self, params: dict[str, Any], opts: CallOptions) -> None:
        """Mirror annotated arguments into ``Mcp-Param-*`` headers, as 2026-07-28 HTTP servers verify them."""
        name = params.get("name")
        header_map = self._param_headers.get(name) if isinstance(name, str) else None
        arguments = params.get("arguments")
        if header_map and isinstance(arguments, Mapping):
            opts.setdefault("headers", {}).update(mcp_param_headers(header_map, arguments))

    def _set_live(self, live: _Live | None) -> None:
        self._live = live
        if self._state_changed is not None:
            self._state_changed.set()
            self._state_changed = None

    def _state_event(self) -> anyio.Event:
        if self._state_changed is None:
            self._state_changed = anyio.Event()
        return self._state_changed

    def _unavailable(self) -> UpstreamUnavailable:
        reason = f": {self.last_error}" if self.last_error else ""
        return UpstreamUnavailable(f"upstream {self.name!r} is not connected{reason}")


async def _close_when_cancelled(hop: HttpHop | None) -> None:
    """Release the hop's HTTP connections when its session ends (the session's task group is cancelled)."""
    if hop is None:
        return
    try:
        await anyio.sleep_forever()
    finally:
        with anyio.CancelScope(shield=True):
            await hop.close()


async def _discover(session: ClientSession, protocol_version: str) -> None:
    """With the version pinned the SDK adopts it blind; ask the server what it offers so capabilities are real."""
    raw = await session.send_discover(protocol_version)
    session.adopt(types.DiscoverResult.model_validate(raw))
