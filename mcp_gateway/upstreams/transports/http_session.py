"""The streamable HTTP transport: the gateway is an HTTP client of the upstream's MCP endpoint.

Static headers from config (an API key for the upstream, say) go on every request, and so does the upstream-level
token of a ``clientCredentials`` upstream (``credentials.py``, as an httpx2 ``Auth``). Two ways an HTTP upstream goes
away are invisible to the SDK's transport as a whole: a legacy-era server that restarted and forgot our
``Mcp-Session-Id`` (every request then answers 404), and a server that vanished while nothing but the standalone GET
stream was open (the transport retries that stream twice, then gives up quietly). Both are reported through
``on_lost`` so the connection can start a new session instead of waiting for the next call to fail.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import httpx2
from mcp.client.streamable_http import MCP_SESSION_ID, streamable_http_client

from mcp_gateway.config import HttpTransport
from mcp_gateway.upstreams.transports.http_calls import HttpSessionState

if TYPE_CHECKING:
    from mcp.client._transport import TransportStreams

# Idle SSE streams (a subscriptions/listen stream, a slow tool's progress stream) are read with this timeout at
# least; the per-call timeout bounds calls, and a timed-out listen stream is simply re-opened.
_MIN_READ_TIMEOUT = 300.0


class _ReportingTransport(httpx2.AsyncBaseTransport):
    """Reports every request that could not reach the server at all (refused, reset, unresolvable)."""

    def __init__(self, inner: httpx2.AsyncBaseTransport, on_lost: Callable[[], None]) -> None:
        self._inner = inner
        self._on_lost = on_lost

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        try:
            return await self._inner.handle_async_request(request)
        except httpx2.TransportError:
            self._on_lost()
            raise

    async def aclose(self) -> None:
        await self._inner.aclose()


@asynccontextmanager
async def http_transport(
    config: HttpTransport,
    *,
    connect_timeout: float,
    call_timeout: float,
    on_lost: Callable[[], None],
    state: HttpSessionState,
    auth: httpx2.Auth | None = None,
) -> AsyncIterator[TransportStreams]:
    """A transport to ``config.url``; ``on_lost`` fires when the server is unreachable or forgot our session.

    ``state`` learns the session id the server assigns, for the calls ``http_calls.py`` sends beside this transport.
    """

    async def watch_session(response: httpx2.Response) -> None:
        if response.status_code == 404 and MCP_SESSION_ID in response.request.headers:
            on_lost()
        elif session_id := response.headers.get(MCP_SESSION_ID):
            state.session_id = session_id

    client = httpx2.AsyncClient(
        headers=dict(config.headers),
        auth=auth,
        timeout=httpx2.Timeout(connect_timeout, read=max(_MIN_READ_TIMEOUT, call_timeout)),
        event_hooks={"response": [watch_session]},
        transport=_ReportingTransport(httpx2.AsyncHTTPTransport(), on_lost),
    )
    async with client, streamable_http_client(config.url, http_client=client) as streams:
        yield streams
