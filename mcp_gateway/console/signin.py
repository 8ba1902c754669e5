"""The console's session cookie: who is signed in, and the CSRF token every form must echo.

The cookie is signed (itsdangerous, keyed by ``console.secret``) and time-limited, never encrypted, so it holds
nothing secret: the identity id, the SHA-256 of the API key used to sign in (re-checked on every request, so a key
removed from config or expired ends the console session too), and a random CSRF token. It is HttpOnly and
SameSite=Strict; forms carry the CSRF token as well, and a cross-origin POST is refused by its Origin header.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from itsdangerous import BadSignature, URLSafeTimedSerializer

from mcp_gateway.config import ApiKey, Identity

COOKIE_NAME = "mcpgw_console"
_SALT = "mcp-gateway-console-session"


@dataclass(frozen=True)
class ConsoleSession:
    csrf: str
    identity_id: str | None = None
    key_digest: str | None = None

    @classmethod
    def anonymous(cls) -> ConsoleSession:
        return cls(csrf=secrets.token_urlsafe(32))

    def csrf_matches(self, submitted: str | None) -> bool:
        return submitted is not None and hmac.compare_digest(self.csrf.encode(), submitted.encode())


class CookieSigner:
    def __init__(self, secret: str, max_age_seconds: int) -> None:
        self._serializer = URLSafeTimedSerializer(secret, salt=_SALT)
        self.max_age = max_age_seconds

    def encode(self, session: ConsoleSession) -> str:
        return self._serializer.dumps([session.csrf, session.identity_id, session.key_digest])

    def decode(self, cookie: str | None) -> ConsoleSession | None:
        if not cookie:
            return None
        try:
            csrf, identity_id, digest = self._serializer.loads(cookie, max_age=self.max_age)
        except (BadSignature, ValueError, TypeError):
            return None
        if not isinstance(csrf, str) or not all(v is None or isinstance(v, str) for v in (identity_id, digest)):
            return None
        return ConsoleSession(csrf=csrf, identity_id=identity_id, key_digest=digest)


class AdminKeys:
    """API keys by digest, to sign in with a key and to re-check the signed-in key on every request."""

    def __init__(self, identities: tuple[Identity, ...]) -> None:
        self._keys: dict[str, tuple[Identity, ApiKey]] = {
            key.sha256: (identity, key) for identity in identities for key in identity.api_keys
        }

    @staticmethod
    def digest(api_key: str) -> str:
        return hashlib.sha256(api_key.encode("utf-8")).hexdigest()

    def identity(self, digest: str | None) -> Identity | None:
        """The identity holding this live key, whatever its roles; None for an unknown or expired key."""
        found = self._keys.get(digest or "")
        if found is None:
            return None
        identity, key = found
        if key.expires_at is not None and key.expires_at <= datetime.now(UTC):
            return None
        return identity
