"""JWT access tokens → verified claims, for both the ``jwt`` and the ``oauth`` sections.

Signature (a shared secret, a public key, or a JWKS URL whose keys pyjwt caches and refetches once when a token
names an unknown ``kid``, which is how a key rotation at the issuer reaches us), ``exp`` (required) and ``nbf``
with leeway, issuer and audience. A refusal is described by a fixed text chosen by the exception's type, never by
``str(exc)``: pyjwt's texts quote header values such as ``kid``, and those are the caller's to choose.
"""

from __future__ import annotations

from typing import Any

import anyio.to_thread
import jwt

from mcp_gateway.config import JwtConfig

# How long a fetched JWKS is trusted before a refetch: also the longest a key the issuer withdrew stays usable.
JWKS_CACHE_SECONDS = 300

# Most specific first: pyjwt's exceptions form a hierarchy under InvalidTokenError.
_FAILURES: tuple[tuple[type[jwt.InvalidTokenError], str], ...] = (
    (jwt.ExpiredSignatureError, "token expired"),
    (jwt.ImmatureSignatureError, "token is not valid yet"),
    (jwt.InvalidAudienceError, "invalid token: it was issued for another audience"),
    (jwt.InvalidIssuerError, "invalid token: it comes from an untrusted issuer"),
    (jwt.MissingRequiredClaimError, "invalid token: a required claim is missing"),
    (jwt.InvalidAlgorithmError, "invalid token: its algorithm is not allowed"),
    (jwt.InvalidSignatureError, "invalid token: the signature does not verify"),
    (jwt.DecodeError, "invalid token: it cannot be decoded"),
)


class TokenRefused(Exception):
    """A token that does not verify; ``reason`` is a fixed text, safe for a header and a response body."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _refusal(exc: jwt.InvalidTokenError) -> TokenRefused:
    return TokenRefused(next((text for kind, text in _FAILURES if isinstance(exc, kind)), "invalid token"))


def looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2 and token.startswith("ey")


def granted_scopes(claims: dict[str, Any]) -> tuple[str, ...]:
    """RFC 9068 / RFC 8693 ``scope`` (space-separated), or the ``scp`` list some issuers use instead."""
    scope = claims.get("scope")
    if isinstance(scope, str):
        return tuple(scope.split())
    scp = claims.get("scp")
    if isinstance(scp, list):
        return tuple(item for item in scp if isinstance(item, str))
    return ()


def _key_in_memory(client: jwt.PyJWKClient, token: str) -> Any | None:
    """The token's signing key from the unexpired key set ``client`` holds, or None when only a fetch can tell.

    Saves the thread hop of ``get_signing_key_from_jwt`` on the common path (measured: about half the cost of
    checking a token); an unknown ``kid`` still goes to pyjwt, which refetches within its cooldown.
    """
    key_set = client.jwk_set_cache.get() if client.jwk_set_cache is not None else None
    if key_set is None:
        return None
    kid = jwt.get_unverified_header(token).get("kid")
    return next(
        (jwk.key for jwk in key_set.keys if jwk.key_id == kid and jwk.public_key_use in ("sig", None)),
        None,
    )


class JwtValidator:
    """Built once from config; ``verify`` does one signature check (and, on a JWKS cache miss, one fetch)."""

    def __init__(self, config: JwtConfig) -> None:
        self.config = config
        # The parsed key set is cached (``lifespan``), but not keys per kid: pyjwt's per-kid cache outlives a refetch,
        # so a key the issuer withdrew would stay usable for as long as the process runs.
        self._jwks = (
            jwt.PyJWKClient(
                config.jwks_url,
                cache_keys=False,
                lifespan=JWKS_CACHE_SECONDS,
                timeout=10,
                cooldown_duration=config.jwks_refetch_cooldown,
            )
            if config.jwks_url
            else None
        )

    async def verify(self, token: str) -> dict[str, Any]:
        config = self.config
        key: Any
        if self._jwks is not None:
            client = self._jwks
            try:
                key = _key_in_memory(client, token)
                if key is None:
                    # PyJWKClient fetches over blocking urllib: keep it off the event loop.
                    key = (await anyio.to_thread.run_sync(client.get_signing_key_from_jwt, token)).key
            except jwt.PyJWKClientError as exc:
                raise TokenRefused("invalid token: no signing key of the issuer matches it") from exc
            except jwt.InvalidTokenError as exc:
                raise _refusal(exc) from exc
        else:
            key = config.secret if config.secret is not None else config.public_key
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=list(config.algorithms),
                audience=config.audience,
                issuer=config.issuer,
                leeway=config.leeway,
                options={"require": ["exp"], "verify_aud": config.audience is not None},
            )
        except jwt.InvalidTokenError as exc:
            raise _refusal(exc) from exc
        return claims
