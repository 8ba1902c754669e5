"""Tokens the gateway obtains for an upstream from an OAuth token endpoint, and the cache that holds them.

Two grants: client credentials (OAuth 2.1) and token exchange (RFC 8693). The client authenticates with HTTP Basic
(``client_secret_basic``, which every authorization server supports) and asks for the upstream by ``resource``
(RFC 8707) and/or ``audience``. A failure is described by the endpoint's status and its OAuth ``error`` code only,
never by the response body or the request: either could carry a secret.

The cache holds each token until shortly before it expires and lets one fetch per key be in flight: callers who
find it refreshing wait for that fetch instead of sending their own (no thundering herd at expiry).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import anyio
import httpx
from mcp_types import INTERNAL_ERROR

from mcp_gateway.errors import RpcError, describe
from mcp_gateway.upstreams.auth.config import OAuthClient

logger = logging.getLogger(__name__)

TOKEN_EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
# A token answer without ``expires_in`` is reused for this long.
DEFAULT_LIFETIME = 300.0
# Refresh this long before expiry at most, and never earlier than this share of the token's life before it.
REFRESH_MARGIN = 30.0
REFRESH_SHARE = 0.1
# Per-caller exchanged tokens kept at most (the oldest entry goes first).
MAX_CACHED_TOKENS = 10_000


@dataclass(frozen=True)
class IssuedToken:
    value: str = field(repr=False)
    refresh_at: float
    """Monotonic time after which the token is fetched anew."""


class TokenEndpoint:
    """Requests tokens for one upstream as one OAuth client."""

    def __init__(self, upstream: str, client: OAuthClient) -> None:
        self._upstream = upstream
        self._client = client

    async def client_credentials(self) -> IssuedToken:
        return await self._request({"grant_type": "client_credentials"})

    async def exchange(self, subject_token: str) -> IssuedToken:
        return await self._request(
            {
                "grant_type": TOKEN_EXCHANGE_GRANT,
                "subject_token": subject_token,
                "subject_token_type": ACCESS_TOKEN_TYPE,
                "requested_token_type": ACCESS_TOKEN_TYPE,
            }
        )

    async def _request(self, form: dict[str, str]) -> IssuedToken:
        client = self._client
        for name, value in (("resource", client.resource), ("audience", client.audience), ("scope", client.scope)):
            if value is not None:
                form[name] = value
        grant = "token exchange" if form["grant_type"] == TOKEN_EXCHANGE_GRANT else "client credentials"
        started = time.monotonic()
        try:
            async with httpx.AsyncClient(timeout=client.timeout) as http:
                response = await http.post(
                    client.token_url,
                    data=form,
                    auth=(client.client_id, client.client_secret),
                    headers={"accept": "application/json"},
                )
            answer = response.json() if response.content else None
        except (httpx.HTTPError, ValueError) as exc:
            logger.warning("upstream %r: the token endpoint did not answer (%s)", self._upstream, describe(exc))
            raise self._failure(grant, "the token endpoint did not answer") from exc
        if response.status_code != 200 or not isinstance(answer, dict):
            code = answer.get("error") if isinstance(answer, dict) else None
            reason = f"HTTP {response.status_code}" + (f", {code}" if isinstance(code, str) else "")
            logger.warning("upstream %r: the token endpoint refused the %s request (%s)", self._upstream, grant, reason)
            raise self._failure(grant, f"the token endpoint refused it ({reason})")
        token = answer.get("access_token")
        if not isinstance(token, str) or not token:
            raise self._failure(grant, "the token endpoint's answer has no access_token")
        lifetime = answer.get("expires_in")
        life = float(lifetime) if isinstance(lifetime, int | float) and lifetime > 0 else DEFAULT_LIFETIME
        return IssuedToken(token, started + life - min(REFRESH_MARGIN, life * REFRESH_SHARE))

    def _failure(self, grant: str, reason: str) -> RpcError:
        return RpcError(INTERNAL_ERROR, f"upstream {self._upstream!r}: no {grant} token for it: {reason}")


class TokenCache:
    """Tokens by key (``""`` for the upstream's own, a caller token's SHA-256 for exchanged ones)."""

    def __init__(self) -> None:
        self._tokens: dict[str, IssuedToken] = {}
        self._fetching: dict[str, anyio.Event] = {}

    async def get(self, key: str, fetch: Callable[[], Awaitable[IssuedToken]]) -> str:
        while True:
            cached = self._tokens.get(key)
            if cached is not None and cached.refresh_at > time.monotonic():
                return cached.value
            in_flight = self._fetching.get(key)
            if in_flight is None:
                break
            # Someone is fetching this key: take their token (or, if they failed, try ourselves).
            await in_flight.wait()
        done = self._fetching[key] = anyio.Event()
        try:
            token = await fetch()
            self._tokens.pop(key, None)
            if len(self._tokens) >= MAX_CACHED_TOKENS:
                del self._tokens[next(iter(self._tokens))]
            self._tokens[key] = token
            return token.value
        finally:
            del self._fetching[key]
            done.set()

    def drop(self, key: str, value: str) -> None:
        """Forget ``value`` (the upstream refused it), unless a newer token has replaced it already."""
        cached = self._tokens.get(key)
        if cached is not None and cached.value == value:
            del self._tokens[key]
