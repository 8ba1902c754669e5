"""What the gateway presents to an HTTP upstream: its own credential, or one made for the caller; never the caller's.

Two kinds of traffic reach an HTTP upstream. The connection's own (handshake or ``server/discover``, the lists, the
listen stream, resource subscriptions; all through the SDK session's httpx2 client) carries the upstream's static
``headers`` and, with ``clientCredentials``, the gateway's token. Forwarded calls (``http_calls``) carry the same, or,
for ``tokenExchange`` and ``perIdentity``, a credential for the caller in place of the upstream-level one. An
upstream with a per-caller mode therefore sees only its static ``headers`` on the shared connection.

When the upstream answers 401, ``refused`` forgets the credential that was used so the retry gets a fresh one:
a new token from the endpoint, or the secret read again (a rotated file is picked up). Nothing here logs a
credential or puts one in an error message; errors name the upstream and, for a missing secret, the identity.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncGenerator

import anyio
import httpx2
from mcp_types import INTERNAL_ERROR, INVALID_REQUEST

from mcp_gateway.config import Identity, UpstreamConfig
from mcp_gateway.errors import RpcError
from mcp_gateway.upstreams.auth.config import (
    SECRET_PLACEHOLDER,
    ClientCredentials,
    PerIdentity,
    SecretRef,
    TokenExchange,
)
from mcp_gateway.upstreams.auth.token_endpoint import IssuedToken, TokenCache, TokenEndpoint

AUTHORIZATION = "authorization"
_UPSTREAM_KEY = ""


class UpstreamCredentials:
    """The credentials of one upstream, built once per connection config and shared by its sessions."""

    def __init__(self, config: UpstreamConfig) -> None:
        self._name = config.name
        auth = config.auth
        self._auth = auth
        self._endpoint = (
            TokenEndpoint(config.name, auth.client) if isinstance(auth, ClientCredentials | TokenExchange) else None
        )
        self._tokens = TokenCache()
        self._secrets: dict[str, str] = {}

    @property
    def refreshable(self) -> bool:
        """Whether a 401 can be answered with another credential (static headers cannot change)."""
        return self._auth is not None

    async def connection_headers(self) -> dict[str, str]:
        """The upstream-level credential, for the connection's own traffic (static headers are the client's)."""
        if isinstance(self._auth, ClientCredentials) and self._endpoint is not None:
            return {AUTHORIZATION: f"Bearer {await self._tokens.get(_UPSTREAM_KEY, self._endpoint.client_credentials)}"}
        return {}

    async def call_headers(self, identity: Identity | None) -> dict[str, str]:
        """The credential a forwarded call carries; ``identity`` None is the gateway's own request."""
        auth = self._auth
        if identity is None or not isinstance(auth, TokenExchange | PerIdentity):
            return await self.connection_headers()
        if isinstance(auth, PerIdentity):
            secret = await self._secret(auth, identity)
            return {auth.header: auth.format.replace(SECRET_PLACEHOLDER, secret)}
        subject = identity.access_token
        if subject is None:
            raise RpcError(
                INVALID_REQUEST,
                f"upstream {self._name!r} acts on behalf of the caller (token exchange) and needs the caller to "
                "authenticate with an OAuth access token; an API key cannot be exchanged",
            )
        endpoint = self._endpoint
        assert endpoint is not None

        async def exchange() -> IssuedToken:
            return await endpoint.exchange(subject)

        return {AUTHORIZATION: f"Bearer {await self._tokens.get(_token_key(subject), exchange)}"}

    def refused(self, identity: Identity | None, headers: dict[str, str]) -> None:
        """The upstream answered 401 to ``headers``: forget that credential so the next one is fresh."""
        auth = self._auth
        if isinstance(auth, PerIdentity) and identity is not None:
            self._secrets.pop(identity.id, None)
            return
        value = headers.get(AUTHORIZATION, "").removeprefix("Bearer ")
        if isinstance(auth, TokenExchange) and identity is not None and identity.access_token is not None:
            self._tokens.drop(_token_key(identity.access_token), value)
        elif isinstance(auth, ClientCredentials):
            self._tokens.drop(_UPSTREAM_KEY, value)

    async def _secret(self, auth: PerIdentity, identity: Identity) -> str:
        secret = self._secrets.get(identity.id)
        if secret is not None:
            return secret
        ref = auth.secrets.get(identity.id)
        if ref is None:
            raise RpcError(
                INVALID_REQUEST,
                f"upstream {self._name!r} needs a personal credential, and none is configured for identity "
                f"{identity.id!r}",
            )
        secret = await _read_secret(ref)
        if not secret:
            raise RpcError(
                INTERNAL_ERROR,
                f"upstream {self._name!r}: the credential of identity {identity.id!r} cannot be read from {ref}",
            )
        self._secrets[identity.id] = secret
        return secret

    def connection_auth(self) -> httpx2.Auth | None:
        """For the SDK session's httpx2 client: the upstream-level credential on every request."""
        return _ConnectionAuth(self) if isinstance(self._auth, ClientCredentials) else None


def _token_key(subject_token: str) -> str:
    """Exchanged tokens are cached by the caller token's digest: the cache never holds the caller's token."""
    return hashlib.sha256(subject_token.encode("utf-8")).hexdigest()


async def _read_secret(ref: SecretRef) -> str | None:
    if ref.kind == "env":
        return os.environ.get(ref.location)
    try:
        return (await anyio.Path(ref.location).read_text(encoding="utf-8")).strip()
    except (OSError, UnicodeDecodeError):
        return None


class _ConnectionAuth(httpx2.Auth):
    """Sets the upstream-level token on each request; on a 401, fetches a new one and sends the request once more."""

    requires_request_body = True

    def __init__(self, credentials: UpstreamCredentials) -> None:
        self._credentials = credentials

    async def async_auth_flow(self, request: httpx2.Request) -> AsyncGenerator[httpx2.Request, httpx2.Response]:
        headers = await self._credentials.connection_headers()
        request.headers.update(headers)
        response = yield request
        if response.status_code == 401:
            self._credentials.refused(None, headers)
            request.headers.update(await self._credentials.connection_headers())
            yield request
