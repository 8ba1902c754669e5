"""Bearer credential → Identity, for API keys and JWTs.

API keys are never held in clear: config carries their SHA-256, and a presented key is hashed and looked up. The
lookup is by digest (an attacker cannot steer timing towards a stored key without a SHA-256 preimage), and the final
match is still confirmed with ``hmac.compare_digest``. Failure messages say what is wrong with the credential but
never echo it, nor anything decoded from it: pyjwt's exception texts quote header values such as ``kid``, so a JWT
failure is described by its exception type through a fixed table, and the Bearer challenge carries the same fixed
texts.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import anyio.to_thread
import jwt

from mcp_gateway.config import ApiKey, Identity, JwtConfig
from mcp_gateway.errors import BearerChallenge, Unauthorized


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2 and token.startswith("ey")


# Most specific first: pyjwt's exceptions form a hierarchy under InvalidTokenError.
_JWT_FAILURES: tuple[tuple[type[jwt.InvalidTokenError], str], ...] = (
    (jwt.ExpiredSignatureError, "token expired"),
    (jwt.ImmatureSignatureError, "token is not valid yet"),
    (jwt.InvalidAudienceError, "invalid token: it was issued for another audience"),
    (jwt.InvalidIssuerError, "invalid token: it comes from an untrusted issuer"),
    (jwt.MissingRequiredClaimError, "invalid token: a required claim is missing"),
    (jwt.InvalidAlgorithmError, "invalid token: its algorithm is not allowed"),
    (jwt.InvalidSignatureError, "invalid token: the signature does not verify"),
    (jwt.DecodeError, "invalid token: it cannot be decoded"),
)


def _jwt_refusal(exc: jwt.InvalidTokenError) -> Unauthorized:
    """A fixed description of why a JWT was refused: never ``str(exc)``, which may quote the token's header."""
    reason = next((text for kind, text in _JWT_FAILURES if isinstance(exc, kind)), "invalid token")
    return Unauthorized(reason, challenge=BearerChallenge(description=reason))


class Authenticator:
    """Built once from config; ``authenticate`` is on every request's path, so it only does dict lookups and,
    for JWTs, one signature check (JWKS keys are cached by pyjwt's client)."""

    def __init__(self, identities: Sequence[Identity], jwt_config: JwtConfig | None) -> None:
        self._by_digest: dict[str, tuple[Identity, ApiKey]] = {
            key.sha256: (identity, key) for identity in identities for key in identity.api_keys
        }
        self._by_id: Mapping[str, Identity] = {identity.id: identity for identity in identities}
        self._jwt = jwt_config
        self._jwks = (
            jwt.PyJWKClient(jwt_config.jwks_url, cache_keys=True, lifespan=300, timeout=10)
            if jwt_config is not None and jwt_config.jwks_url
            else None
        )

    def identity(self, identity_id: str) -> Identity | None:
        return self._by_id.get(identity_id)

    async def authenticate(self, authorization: str | None) -> Identity:
        if not authorization:
            raise Unauthorized(
                "missing Authorization: Bearer <credential> header", challenge=BearerChallenge(error=None)
            )
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("the Authorization header must use the Bearer scheme")
        if self._jwt is not None and _looks_like_jwt(token):
            return await self._authenticate_jwt(token, self._jwt)
        return self._authenticate_api_key(token)

    def _authenticate_api_key(self, token: str) -> Identity:
        digest = hash_api_key(token)
        found = self._by_digest.get(digest)
        if found is None or not hmac.compare_digest(found[1].sha256, digest):
            raise Unauthorized("unknown credential")
        identity, key = found
        if key.expires_at is not None and key.expires_at <= datetime.now(UTC):
            raise Unauthorized("credential expired")
        return identity

    async def _authenticate_jwt(self, token: str, config: JwtConfig) -> Identity:
        key: Any
        if self._jwks is not None:
            client = self._jwks
            try:
                # PyJWKClient fetches over blocking urllib on a cache miss: keep it off the event loop.
                key = (await anyio.to_thread.run_sync(client.get_signing_key_from_jwt, token)).key
            except jwt.PyJWKClientError as exc:
                reason = "invalid token: no signing key of the issuer matches it"
                raise Unauthorized(reason, challenge=BearerChallenge(description=reason)) from exc
            except jwt.InvalidTokenError as exc:
                raise _jwt_refusal(exc) from exc
        else:
            key = config.secret if config.secret is not None else config.public_key
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=list(config.algorithms),
                audience=config.audience,
                issuer=config.issuer,
                leeway=config.leeway,
                options={"require": ["exp"], "verify_aud": config.audience is not None},
            )
        except jwt.InvalidTokenError as exc:
            raise _jwt_refusal(exc) from exc
        subject = claims.get(config.identity_claim)
        if not isinstance(subject, str) or not subject:
            raise Unauthorized(f"token has no string {config.identity_claim!r} claim")
        identity = self._by_id.get(subject)
        if identity is None:
            raise Unauthorized("token subject is not a known identity")
        return identity
