"""Mid-call input across protocol eras: 2026-07-28 ``input_required`` results on one side, live server→client
requests on the other.

A handshake-era upstream asks its client mid-call with a request (sampling, elicitation, roots) and waits for the answer
inside the call; a 2026-07-28 upstream instead ends the call with an ``input_required`` result and expects it retried
with ``inputResponses`` and its ``requestState``. The gateway translates whenever the two ends disagree:

- A legacy client and a modern upstream (``resolve_input_required``): the gateway asks the client each embedded request
  as a live request and retries the upstream with the answers, until the upstream's result is final.
- A modern client and a legacy upstream (``InputBridge``): the upstream call keeps running in the gateway, *parked*
  on its question, while the client gets an ``input_required`` result whose ``requestState`` is a random id that only
  this process knows. The retry must present that id, from the same identity and task session, for the same tool and
  arguments; the answers then go to the waiting upstream. Anything else (a tampered, replayed, expired or foreign id)
  is refused, and nothing reaches the upstream. A parked call lives in memory, so with several replicas the retry has
  to reach the same one; a client that does not come back within the timeout gets its upstream question failed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.abc
from anyio.streams.memory import MemoryObjectSendStream
from mcp.shared.dispatcher import ProgressFnT
from mcp_types import INTERNAL_ERROR, INVALID_PARAMS, REQUEST_TIMEOUT

from mcp_gateway.errors import RpcError
from mcp_gateway.upstreams.client_requests import Downstream, ask

logger = logging.getLogger(__name__)

MAX_ROUNDS = 10
"""Input rounds the gateway drives for a legacy client before giving up (the SDK's own default)."""

_STATE_ONLY_BACKOFF = (0.05, 0.25)
"""First and largest pause before retrying a result that carries only ``requestState`` (as the SDK does)."""

INPUT_FIELDS = ("inputResponses", "requestState")

Retry = Callable[[dict[str, Any] | None, str | None], Awaitable[dict[str, Any]]]
"""Sends the original request again with ``inputResponses`` and ``requestState``; returns the raw result."""

Send = Callable[[dict[str, Any], Downstream, ProgressFnT], Awaitable[dict[str, Any]]]
"""Sends the request upstream with these params, for this downstream, reporting progress to this callback."""


def is_input_required(result: Mapping[str, Any]) -> bool:
    return result.get("resultType") == "input_required"


async def resolve_input_required(first: dict[str, Any], downstream: Downstream | None, retry: Retry) -> dict[str, Any]:
    """Turn a modern upstream's ``input_required`` into live requests to a legacy client, until the result is final."""
    result = first
    pause = _STATE_ONLY_BACKOFF[0]
    for _ in range(MAX_ROUNDS):
        if not is_input_required(result):
            return result
        requests = result.get("inputRequests")
        state = result.get("requestState")
        if requests:
            if downstream is None or not isinstance(requests, Mapping):
                raise RpcError(INTERNAL_ERROR, "the upstream needs input this client cannot be asked for")
            responses = {key: await _ask_one(downstream, request) for key, request in requests.items()}
            pause = _STATE_ONLY_BACKOFF[0]
        else:
            await anyio.sleep(pause)
            pause = min(pause * 2, _STATE_ONLY_BACKOFF[1])
            responses = None
        result = await retry(responses, state if isinstance(state, str) else None)
    raise RpcError(INTERNAL_ERROR, f"the upstream still needed input after {MAX_ROUNDS} rounds")


async def _ask_one(downstream: Downstream, request: Any) -> dict[str, Any]:
    if not isinstance(request, Mapping) or not isinstance(request.get("method"), str):
        raise RpcError(INTERNAL_ERROR, "the upstream sent a malformed input request")
    params = request.get("params")
    return await ask(downstream, request["method"], dict(params) if isinstance(params, Mapping) else {})


@dataclass(frozen=True)
class _Asked:
    """The parked upstream call asked its client something and waits on ``reply``."""

    key: str
    request: dict[str, Any]
    reply: MemoryObjectSendStream[dict[str, Any]]


@dataclass(frozen=True)
class _Finished:
    """The upstream call ended: its raw result, or the exception it raised (re-raised in the client's request)."""

    result: dict[str, Any] | None
    error: Exception | None


class _ParkedCall:
    """An upstream call from a 2026-07-28 client, and the client as the upstream sees it (a ``Downstream``)."""

    def __init__(self, owner: str, fingerprint: str, capabilities: Mapping[str, Any], answer_within: float) -> None:
        self.owner = owner
        self.fingerprint = fingerprint
        self.scope = anyio.CancelScope()
        self.events, self.event_stream = anyio.create_memory_object_stream[_Asked | _Finished](16)
        self.waiting: dict[str, _Asked] = {}
        self.state: str | None = None
        self.progress: ProgressFnT | None = None
        self.client: Downstream | None = None
        """The client while one of its requests waits on this call; it hears what the upstream tells it meanwhile."""
        self._capabilities = capabilities
        self._answer_within = answer_within
        self._asked = 0

    @property
    def capabilities(self) -> Mapping[str, Any]:
        return self._capabilities

    async def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        self._asked += 1
        reply, replies = anyio.create_memory_object_stream[dict[str, Any]](1)
        with reply, replies:
            await self.events.send(_Asked(f"input-{self._asked}", {"method": method, "params": params}, reply))
            try:
                with anyio.fail_after(self._answer_within):
                    return await replies.receive()
            except TimeoutError:
                raise RpcError(REQUEST_TIMEOUT, f"{method}: the client did not come back with input in time") from None
            except anyio.EndOfStream:
                raise RpcError(INTERNAL_ERROR, f"{method}: the client's call was abandoned") from None

    async def notify(self, method: str, params: dict[str, Any]) -> None:
        """Relayed to the client's request of this round (log messages it opted in to); between rounds the client has
        no stream open, and what the upstream says then is dropped."""
        if self.client is not None:
            await self.client.notify(method, params)

    async def report(self, progress: float, total: float | None, message: str | None) -> None:
        if self.progress is not None:
            await self.progress(progress, total, message)


class InputBridge:
    """Parks upstream calls of 2026-07-28 clients while the clients answer what a legacy upstream asked.

    Run it in the gateway's task group (``await tg.start(bridge.run)``): parked calls outlive the HTTP request that
    started them.
    """

    def __init__(self, *, answer_within: float = 300.0, max_parked: int = 1000) -> None:
        self._answer_within = answer_within
        self._max_parked = max_parked
        self._states: dict[str, _ParkedCall] = {}
        self._running = 0
        self._tg: anyio.abc.TaskGroup | None = None

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with anyio.create_task_group() as tg:
            self._tg = tg
            task_status.started()
            try:
                await anyio.sleep_forever()
            finally:
                self._tg = None
                tg.cancel_scope.cancel()

    async def forward(
        self,
        *,
        owner: str,
        upstream: str,
        method: str,
        params: Mapping[str, Any],
        capabilities: Mapping[str, Any],
        progress: ProgressFnT | None,
        send: Send,
        client: Downstream | None = None,
    ) -> dict[str, Any]:
        """Start the call, or resume the parked one ``params.requestState`` names; answer when it finishes or asks.

        ``client`` is the client's request of this round, for the notifications the upstream sends while it waits.

        A retry must be for the same upstream, method and params (bar the input fields and ``_meta``) as the call it
        resumes: it cannot steer a parked call to arguments other than those its policy decision saw.
        """
        plain = {key: value for key, value in params.items() if key not in INPUT_FIELDS}
        same_call = {key: value for key, value in plain.items() if key != "_meta"}
        fingerprint = json.dumps([upstream, method, same_call], sort_keys=True, default=str)
        state = params.get("requestState")
        if state is None:
            return await self._start(
                owner, fingerprint, capabilities, progress, client, lambda down: send(plain, down, down.report)
            )
        return await self._resume(owner, fingerprint, state, params.get("inputResponses"), progress, client)

    def abandon(self, owner: str, state: object) -> None:
        """End the parked call ``state`` names, if ``owner``'s (a retry that policy denied)."""
        parked = self._states.get(state) if isinstance(state, str) else None
        if parked is not None and parked.owner == owner:
            parked.scope.cancel()

    async def _start(
        self,
        owner: str,
        fingerprint: str,
        capabilities: Mapping[str, Any],
        progress: ProgressFnT | None,
        client: Downstream | None,
        call: Callable[[_ParkedCall], Awaitable[dict[str, Any]]],
    ) -> dict[str, Any]:
        if self._tg is None:
            raise RpcError(INTERNAL_ERROR, "the gateway is shutting down")
        if self._running >= self._max_parked:
            raise RpcError(INTERNAL_ERROR, "too many calls are waiting for client input; try again later")
        parked = _ParkedCall(owner, fingerprint, capabilities, self._answer_within)
        self._running += 1
        self._tg.start_soon(self._run, parked, call)
        return await self._next(parked, progress, client)

    async def _resume(
        self,
        owner: str,
        fingerprint: str,
        state: object,
        responses: object,
        progress: ProgressFnT | None,
        client: Downstream | None,
    ) -> dict[str, Any]:
        parked = self._states.get(state) if isinstance(state, str) else None
        if parked is None or parked.owner != owner or parked.fingerprint != fingerprint:
            # One answer for unknown, expired, replayed, tampered and foreign states: it reveals nothing.
            raise RpcError(INVALID_PARAMS, "Invalid or expired requestState")
        if not isinstance(responses, Mapping) or not all(
            isinstance(responses.get(key), dict) for key in parked.waiting
        ):
            raise RpcError(INVALID_PARAMS, "inputResponses must answer every key of inputRequests with an object")
        assert isinstance(state, str)
        del self._states[state]
        parked.state = None
        for key, asked in parked.waiting.items():
            try:
                asked.reply.send_nowait(responses[key])
            except (anyio.WouldBlock, anyio.ClosedResourceError, anyio.BrokenResourceError):
                logger.debug("input %r arrived after its upstream question was withdrawn", key)
        parked.waiting = {}
        return await self._next(parked, progress, client)

    async def _run(self, parked: _ParkedCall, call: Callable[[_ParkedCall], Awaitable[dict[str, Any]]]) -> None:
        outcome = _Finished(None, RpcError(INTERNAL_ERROR, "the call was abandoned"))
        try:
            with parked.scope:
                try:
                    outcome = _Finished(await call(parked), None)
                except Exception as exc:  # handed to the client's request, which maps it like any upstream failure
                    outcome = _Finished(None, exc)
        finally:
            self._running -= 1
            if parked.state is not None:
                self._states.pop(parked.state, None)
            # Never full (the call ends once), and a closed stream means nobody waits for the outcome any more.
            with contextlib.suppress(anyio.WouldBlock, anyio.ClosedResourceError, anyio.BrokenResourceError):
                parked.events.send_nowait(outcome)
            parked.events.close()

    async def _next(
        self, parked: _ParkedCall, progress: ProgressFnT | None, client: Downstream | None
    ) -> dict[str, Any]:
        """Wait for the parked call to finish or ask; an ask parks it under a fresh ``requestState``."""
        parked.progress = progress
        parked.client = client
        try:
            event = await parked.event_stream.receive()
        except anyio.EndOfStream:
            raise RpcError(INTERNAL_ERROR, "the upstream call ended without an answer") from None
        except anyio.get_cancelled_exc_class():
            # The client went away before it could learn a requestState: nobody can resume this call.
            parked.scope.cancel()
            raise
        finally:
            parked.progress = None
            parked.client = None
        if isinstance(event, _Finished):
            if event.error is not None:
                raise event.error
            assert event.result is not None
            return event.result
        # One question per round: a legacy upstream asks one at a time, and any other waits for the next round.
        parked.waiting = {event.key: event}
        parked.state = secrets.token_urlsafe(32)
        self._states[parked.state] = parked
        return {
            "resultType": "input_required",
            "inputRequests": {event.key: event.request},
            "requestState": parked.state,
        }
