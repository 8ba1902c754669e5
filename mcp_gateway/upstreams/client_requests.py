"""Requests and notifications an upstream sends, mid-call, to the client whose call it is serving.

While it serves a call an upstream may ask its client something (``sampling/createMessage``, ``elicitation/create``,
``roots/list``) or tell it something (``notifications/message``). The gateway is that client, so it has to find the
downstream client that made the call and relay. Over streamable HTTP the answer is exact: the SDK runs each incoming
message in the context of the task that sent the POST it arrived on, so a context variable set around the call names
it. Over stdio the (pre-2026) wire does not say which call a request belongs to; then the request goes to the
upstream's only call in flight, and is refused when several are in flight: never ask the wrong client.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Protocol, TypeVar

import mcp_types as types
from mcp.client.session import ClientRequestContext
from pydantic import BaseModel, TypeAdapter, ValidationError

from mcp_gateway.errors import RpcError

logger = logging.getLogger(__name__)

R = TypeVar("R")

# The client capability a server→client request needs.
_CAPABILITY = {"sampling/createMessage": "sampling", "elicitation/create": "elicitation", "roots/list": "roots"}

_SamplingResult: TypeAdapter[types.CreateMessageResult | types.CreateMessageResultWithTools] = TypeAdapter(
    types.CreateMessageResult | types.CreateMessageResultWithTools
)
_ElicitResult = TypeAdapter(types.ElicitResult)
_ListRootsResult = TypeAdapter(types.ListRootsResult)


class Downstream(Protocol):
    """The client a forwarded call came from, as the upstream may address it while the call runs."""

    @property
    def capabilities(self) -> Mapping[str, Any]:
        """The client's declared capabilities (``sampling``, ``elicitation``, ``roots``, ...)."""
        ...

    async def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """Ask the client; return its result, or raise ``RpcError`` with its error (or the gateway's refusal)."""
        ...

    async def notify(self, method: str, params: dict[str, Any]) -> None:
        """Tell the client something about the call; best effort."""
        ...


async def ask(downstream: Downstream, method: str, params: dict[str, Any]) -> dict[str, Any]:
    """``downstream.request``, refused up front when the client did not declare the capability ``method`` needs."""
    capability = _CAPABILITY.get(method)
    if capability is None:
        raise RpcError(types.METHOD_NOT_FOUND, f"{method}: not a request the gateway relays to clients")
    if capability not in downstream.capabilities:
        # The 2026-07-28 error for exactly this, with the data that names what is missing; the upstream passes it on.
        raise RpcError(
            types.MISSING_REQUIRED_CLIENT_CAPABILITY,
            f"{method}: the client did not declare the {capability} capability",
            {"requiredCapabilities": {capability: {}}},
        )
    return await downstream.request(method, params)


class _Call:
    def __init__(self, router: DownstreamRouter, downstream: Downstream | None) -> None:
        self.router = router
        self.downstream = downstream


_current: ContextVar[_Call | None] = ContextVar("mcp_gateway_upstream_call", default=None)


class DownstreamRouter:
    """Finds the downstream client of the call an upstream request belongs to, for one upstream connection.

    ``exact`` says the transport carries the caller's context with every incoming message (streamable HTTP); without
    it (stdio) the only call in flight is the one the message belongs to, and with several there is no telling.
    """

    def __init__(self, upstream: str, *, exact: bool) -> None:
        self._upstream = upstream
        self._exact = exact
        self._in_flight: list[_Call] = []

    @contextmanager
    def call(self, downstream: Downstream | None) -> Iterator[None]:
        """Mark the block as one call on behalf of ``downstream`` (``None``: a client that cannot be asked)."""
        call = _Call(self, downstream)
        self._in_flight.append(call)
        token = _current.set(call)
        try:
            yield
        finally:
            _current.reset(token)
            self._in_flight.remove(call)

    def find(self) -> Downstream | None:
        """The downstream of the call the current incoming message belongs to, if it can be told for sure."""
        call = _current.get()
        if call is not None and call.router is self:
            return call.downstream
        if not self._exact and len(self._in_flight) == 1:
            return self._in_flight[0].downstream
        return None

    async def relay_request(self, method: str, params: BaseModel | None) -> dict[str, Any]:
        """Relay one server→client request to its downstream client; ``RpcError`` when it cannot or will not answer."""
        downstream = self.find()
        if downstream is None:
            logger.info("upstream %r: %s refused, no client of a call can be asked", self._upstream, method)
            raise RpcError(types.INVALID_REQUEST, f"{method}: no client can be asked (not attributable to a call)")
        raw = params.model_dump(by_alias=True, mode="json", exclude_none=True) if params is not None else {}
        return await ask(downstream, method, raw)

    async def sampling(
        self, context: ClientRequestContext, params: types.CreateMessageRequestParams
    ) -> types.CreateMessageResult | types.CreateMessageResultWithTools | types.ErrorData:
        return await self._answer("sampling/createMessage", params, _SamplingResult)

    async def elicitation(
        self, context: ClientRequestContext, params: types.ElicitRequestParams
    ) -> types.ElicitResult | types.ErrorData:
        return await self._answer("elicitation/create", params, _ElicitResult)

    async def list_roots(self, context: ClientRequestContext) -> types.ListRootsResult | types.ErrorData:
        return await self._answer("roots/list", None, _ListRootsResult)

    async def logging(self, params: types.LoggingMessageNotificationParams) -> None:
        downstream = self.find()
        if downstream is not None:
            raw = params.model_dump(by_alias=True, mode="json", exclude_none=True)
            await downstream.notify("notifications/message", raw)

    async def _answer(self, method: str, params: BaseModel | None, parse: TypeAdapter[R]) -> R | types.ErrorData:
        try:
            raw = await self.relay_request(method, params)
        except RpcError as exc:
            return types.ErrorData(code=exc.code, message=exc.message, data=exc.data)
        try:
            return parse.validate_python(raw)
        except ValidationError:
            return types.ErrorData(code=types.INTERNAL_ERROR, message=f"{method}: the client's answer is malformed")
