"""Bearer credential → Identity, for API keys and JWT / OAuth access tokens.

API keys are never held in clear: config carries their SHA-256, and a presented key is hashed and looked up. The
lookup is by digest (an attacker cannot steer timing towards a stored key without a SHA-256 preimage), and the final
match is still confirmed with ``hmac.compare_digest``. Failure messages say what is wrong with the credential but
never echo it, nor anything decoded from it, and the Bearer challenge carries only fixed texts and config values.

With ``oauth`` configured every 401 challenge names the protected resource metadata (how MCP clients find the
authorization server), and an access token lacking a required scope is a 403 ``insufficient_scope`` naming the
scopes to ask for (step-up). API keys are a separate credential kind: scopes do not apply to them. A bearer that
is neither a JWT nor a configured API key is introspected when ``oauth.introspection`` is set (opaque tokens).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from mcp_gateway.config import ApiKey, Identity, IdentityRule, JwtConfig, OAuthConfig
from mcp_gateway.errors import BearerChallenge, InsufficientScope, Unauthorized
from mcp_gateway.identity.access_tokens import JwtValidator, TokenRefused, granted_scopes, looks_like_jwt
from mcp_gateway.identity.introspection import TokenIntrospector
from mcp_gateway.identity.oauth_metadata import first_sight_identity, resource_metadata_url
from mcp_gateway.ops import tracing


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class _Identities:
    """The configured identities, by key digest and by id: replaced whole when the config is reloaded, so a lookup
    never sees one table's keys with another's identities."""

    by_digest: Mapping[str, tuple[Identity, ApiKey]]
    by_id: Mapping[str, Identity]

    @classmethod
    def of(cls, identities: Sequence[Identity]) -> _Identities:
        return cls(
            by_digest={key.sha256: (identity, key) for identity in identities for key in identity.api_keys},
            by_id={identity.id: identity for identity in identities},
        )


class Authenticator:
    """Built once from config; ``authenticate`` is on every request's path, so it only does dict lookups and,
    for JWTs, one signature check (JWKS keys are cached by pyjwt's client)."""

    def __init__(
        self, identities: Sequence[Identity], jwt_config: JwtConfig | None, oauth: OAuthConfig | None = None
    ) -> None:
        self._identities = _Identities.of(identities)
        token_config = oauth.token if oauth is not None else jwt_config
        self._tokens = JwtValidator(token_config) if token_config is not None else None
        self._introspector = (
            TokenIntrospector(oauth.introspection, oauth.resource, oauth.token.issuer, oauth.token.leeway)
            if oauth is not None and oauth.introspection is not None
            else None
        )
        self._identity_claim = token_config.identity_claim if token_config is not None else "sub"
        self._rules: tuple[IdentityRule, ...] = oauth.identity_rules if oauth is not None else ()
        self._required_scopes = oauth.required_scopes if oauth is not None else ()
        scope = " ".join(self._required_scopes) or None
        self._challenge = (
            BearerChallenge(resource_metadata=resource_metadata_url(oauth.resource), scope=scope)
            if oauth is not None
            else BearerChallenge()
        )

    def identity(self, identity_id: str) -> Identity | None:
        return self._identities.by_id.get(identity_id)

    def identity_ids(self) -> frozenset[str]:
        """The configured identities' ids (not those a token rule makes on first sight)."""
        return frozenset(self._identities.by_id)

    def set_identities(self, identities: Sequence[Identity]) -> None:
        """A config reload: from the next lookup on, these identities and keys (one reference replaced)."""
        self._identities = _Identities.of(identities)

    def _refuse(self, reason: str, *, error: str | None = "invalid_token") -> Unauthorized:
        return Unauthorized(reason, challenge=replace(self._challenge, error=error, description=reason))

    async def authenticate(self, authorization: str | None) -> Identity:
        with tracing.span("authenticate") as span:
            identity = await self._authenticate(authorization)
            if span.is_recording():
                span.set_attribute("mcp_gateway.identity", identity.id)
            return identity

    async def _authenticate(self, authorization: str | None) -> Identity:
        if not authorization:
            raise self._refuse("missing Authorization: Bearer <credential> header", error=None)
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise self._refuse("the Authorization header must use the Bearer scheme", error="invalid_request")
        try:
            if self._tokens is not None and looks_like_jwt(token):
                return self._identify(await self._tokens.verify(token), token)
            identity = self._authenticate_api_key(token)
            if identity is None and self._introspector is not None:
                return self._identify(await self._introspector.verify(token), token)
        except TokenRefused as exc:
            raise self._refuse(exc.reason) from exc
        if identity is None:
            raise self._refuse("unknown credential")
        return identity

    def _authenticate_api_key(self, token: str) -> Identity | None:
        digest = hash_api_key(token)
        found = self._identities.by_digest.get(digest)
        if found is None or not hmac.compare_digest(found[1].sha256, digest):
            return None
        identity, key = found
        if key.expires_at is not None and key.expires_at <= datetime.now(UTC):
            raise self._refuse("credential expired")
        return identity

    def _identify(self, claims: dict[str, Any], token: str) -> Identity:
        """Verified claims → the identity their ``identityClaim`` names, carrying the token and its scopes (the
        token only for a ``tokenExchange`` upstream to exchange)."""
        claim = self._identity_claim
        subject = claims.get(claim)
        if not isinstance(subject, str) or not subject:
            raise self._refuse(f"token has no string {claim!r} claim")
        identity = self._identities.by_id.get(subject) or first_sight_identity(self._rules, subject, claims)
        if identity is None:
            raise self._refuse("token subject is not a known identity")
        scopes = granted_scopes(claims)
        if missing := [scope for scope in self._required_scopes if scope not in scopes]:
            raise InsufficientScope(
                f"the access token lacks the required scope {' '.join(missing)}",
                challenge=replace(
                    self._challenge,
                    error="insufficient_scope",
                    description="the access token lacks a required scope",
                ),
            )
        return replace(identity, scopes=scopes, access_token=token)
