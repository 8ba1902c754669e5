"""Bearer credentials: API keys (hashed, rotating, expiring) and JWTs (HS, RS/ES public key, JWKS)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from mcp_gateway.config import parse_config
from mcp_gateway.errors import Unauthorized
from mcp_gateway.identity.authenticator import Authenticator, hash_api_key
from tests.support.harness import BASE_CONFIG, make_config, serve_gateway

SECRET = "test-shared-secret-that-is-long-enough-for-hs256"


def authenticator(jwt_section: dict[str, Any] | None, identities: list[dict[str, Any]] | None = None) -> Authenticator:
    raw: dict[str, Any] = {"identities": identities or [{"id": "alice"}, {"id": "bob"}]}
    if jwt_section is not None:
        raw["jwt"] = jwt_section
    config = parse_config(raw)
    return Authenticator(config.identities, config.jwt)


def token(key: Any, algorithm: str = "HS256", **claims: Any) -> str:
    payload = {"sub": "alice", "exp": int(time.time()) + 60, **claims}
    return jwt.encode(payload, key, algorithm=algorithm, headers={"kid": "k1"})


async def test_api_key_rotation_both_keys_work_and_expired_one_does_not() -> None:
    auth = authenticator(
        None,
        [
            {
                "id": "alice",
                "credentials": [
                    {"sha256": hash_api_key("new")},
                    {"sha256": hash_api_key("old"), "expiresAt": "2001-01-01T00:00:00Z"},
                    {"sha256": hash_api_key("soon"), "expiresAt": "2999-01-01T00:00:00Z"},
                ],
            }
        ],
    )
    assert (await auth.authenticate("Bearer new")).id == "alice"
    assert (await auth.authenticate("bearer soon")).id == "alice"
    with pytest.raises(Unauthorized, match="expired"):
        await auth.authenticate("Bearer old")


async def test_hs256_jwt_maps_claim_to_identity() -> None:
    auth = authenticator({"secret": SECRET, "issuer": "idp", "audience": "gw", "identityClaim": "sub"})
    assert (await auth.authenticate("Bearer " + token(SECRET, iss="idp", aud="gw"))).id == "alice"


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"exp": int(time.time()) - 120}, "expired"),
        ({"iss": "someone-else"}, "invalid token"),
        ({"aud": "other"}, "invalid token"),
        ({"sub": "mallory"}, "not a known identity"),
    ],
    ids=["expired", "issuer", "audience", "unknown-subject"],
)
async def test_bad_jwt_is_rejected(claims: dict[str, Any], reason: str) -> None:
    auth = authenticator({"secret": SECRET, "issuer": "idp", "audience": "gw"})
    base = {"iss": "idp", "aud": "gw", **claims}
    with pytest.raises(Unauthorized, match=reason):
        await auth.authenticate("Bearer " + token(SECRET, **base))


async def test_jwt_signed_with_another_key_is_rejected() -> None:
    auth = authenticator({"secret": SECRET})
    with pytest.raises(Unauthorized, match="invalid token"):
        await auth.authenticate("Bearer " + token("a-different-secret-of-sufficient-length!!"))


async def test_leeway_accepts_recently_expired_token() -> None:
    auth = authenticator({"secret": SECRET, "leeway": 300})
    assert (await auth.authenticate("Bearer " + token(SECRET, exp=int(time.time()) - 60))).id == "alice"


async def test_es256_public_key_jwt() -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    auth = authenticator({"publicKey": public_pem.decode(), "algorithms": ["ES256"]})
    assert (await auth.authenticate("Bearer " + token(private, "ES256"))).id == "alice"


@pytest.fixture
def jwks_server() -> Iterator[tuple[str, rsa.RSAPrivateKey]]:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key()))
    body = json.dumps({"keys": [{**jwk, "kid": "k1", "use": "sig", "alg": "RS256"}]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/jwks.json", private
    server.shutdown()


async def test_rs256_jwt_verified_through_jwks_url(jwks_server: tuple[str, rsa.RSAPrivateKey]) -> None:
    url, private = jwks_server
    auth = authenticator({"jwksUrl": url, "algorithms": ["RS256"]})
    assert (await auth.authenticate("Bearer " + token(private, "RS256"))).id == "alice"
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(Unauthorized):
        await auth.authenticate("Bearer " + token(other, "RS256"))


async def test_gateway_accepts_jwt_and_rejects_tampered_one() -> None:
    identities = [*BASE_CONFIG["identities"], {"id": "alice"}]
    config = make_config(identities=identities, jwt={"secret": SECRET})
    good = token(SECRET)
    tampered = good[:-2] + ("AA" if not good.endswith("AA") else "BB")
    async with serve_gateway(config) as url, httpx.AsyncClient() as http:
        ok = await http.get(f"{url}/v1/tasks/sessions/current", headers={"Authorization": f"Bearer {good}"})
        bad = await http.get(f"{url}/v1/tasks/sessions/current", headers={"Authorization": f"Bearer {tampered}"})
    # Authenticated but without a task token: 401 for the task token, not for the credential.
    assert ok.json()["error"] == "invalid_task_token"
    assert bad.json()["error"] == "unauthorized"
    assert "WWW-Authenticate" in bad.headers


def _unsigned_looking_token(kid: str) -> str:
    """A JWT-shaped bearer whose header carries ``kid`` verbatim (signed with a throwaway key: it never verifies)."""
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return jwt.encode({"sub": "alice", "exp": int(time.time()) + 60}, other, algorithm="RS256", headers={"kid": kid})


@pytest.mark.parametrize(
    "kid", ["ключ-\u2603", "k1\r\nX-Injected: yes", 'k1" error="forged'], ids=["non-latin-1", "cr-lf", "quote"]
)
async def test_token_header_content_never_reaches_the_challenge(
    jwks_server: tuple[str, rsa.RSAPrivateKey], kid: str
) -> None:
    url, _ = jwks_server
    identities = [*BASE_CONFIG["identities"], {"id": "alice"}]
    config = make_config(identities=identities, jwt={"jwksUrl": url, "algorithms": ["RS256"]})
    bearer = _unsigned_looking_token(kid)
    async with serve_gateway(config) as gateway, httpx.AsyncClient() as http:
        for path, method in (("/mcp", "POST"), ("/v1/tasks/sessions/current", "GET")):
            response = await http.request(
                method, f"{gateway}{path}", json={}, headers={"Authorization": f"Bearer {bearer}"}
            )
            assert response.status_code == 401, response.text
            assert response.json()["error"] == "unauthorized"
            challenge = response.headers["www-authenticate"]
            assert challenge.isascii() and challenge.isprintable()
            assert "X-Injected" not in challenge and "forged" not in challenge and "ключ" not in challenge
            assert "injected" not in response.text.lower() and "ключ" not in response.text
            assert "forged" not in response.text
