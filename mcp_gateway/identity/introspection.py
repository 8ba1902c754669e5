"""Opaque access tokens → claims, through the authorization server's RFC 7662 introspection endpoint.

An answer is only taken if it is ``active``, from the configured issuer (when it names one), unexpired, and bound to
this resource (RFC 8707: ``aud`` holds it; an answer without ``aud`` cannot show that and is refused). Active answers
are cached under the token's SHA-256 (never the token) for at most ``cacheSeconds`` and never past the token's
``exp``. The endpoint failing refuses the request (503): an unverifiable token is never accepted.
"""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Any

import httpx

from mcp_gateway.config import IntrospectionConfig
from mcp_gateway.errors import AuthorizationServerUnavailable, describe
from mcp_gateway.identity.access_tokens import TokenRefused

logger = logging.getLogger(__name__)

# Enough for every live token of a large deployment; past it the oldest entry goes (insertion order).
MAX_CACHED_TOKENS = 10_000


class TokenIntrospector:
    def __init__(self, config: IntrospectionConfig, resource: str, issuer: str | None, leeway: float) -> None:
        self._config = config
        self._resource = resource
        self._issuer = issuer
        self._leeway = leeway
        self._cache: dict[str, tuple[float, dict[str, Any]]] = {}

    async def verify(self, token: str) -> dict[str, Any]:
        key = hashlib.sha256(token.encode("utf-8")).hexdigest()
        now = time.time()
        cached = self._cache.get(key)
        if cached is not None:
            if cached[0] > now:
                return cached[1]
            del self._cache[key]
        claims = self._check(await self._introspect(token), now)
        expires = now + self._config.cache_seconds
        if isinstance(claims.get("exp"), int | float):
            expires = min(expires, float(claims["exp"]))
        if len(self._cache) >= MAX_CACHED_TOKENS:
            del self._cache[next(iter(self._cache))]
        self._cache[key] = (expires, claims)
        return claims

    async def _introspect(self, token: str) -> dict[str, Any]:
        config = self._config
        try:
            async with httpx.AsyncClient(timeout=config.timeout) as http:
                response = await http.post(
                    config.url,
                    data={"token": token, "token_type_hint": "access_token"},
                    auth=(config.client_id, config.client_secret),
                    headers={"accept": "application/json"},
                )
            response.raise_for_status()
            answer = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            logger.warning("token introspection failed, refusing the request: %s", describe(exc))
            raise AuthorizationServerUnavailable("the authorization server could not check the token") from exc
        if not isinstance(answer, dict):
            raise AuthorizationServerUnavailable("the authorization server could not check the token")
        return answer

    def _check(self, answer: dict[str, Any], now: float) -> dict[str, Any]:
        if answer.get("active") is not True:
            raise TokenRefused("invalid token: it is not active")
        exp = answer.get("exp")
        if isinstance(exp, int | float) and exp + self._leeway <= now:
            raise TokenRefused("token expired")
        if self._issuer is not None and "iss" in answer and answer["iss"] != self._issuer:
            raise TokenRefused("invalid token: it comes from an untrusted issuer")
        audience = answer.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if self._resource not in audiences:
            raise TokenRefused("invalid token: it was issued for another audience")
        return answer
