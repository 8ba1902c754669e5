"""An HTTP MCP upstream that demands a bearer token from the test authorization server, for the upstream-auth tests.

Usage: python token_checking_upstream.py '{"port": N, "issuer": "...", "jwks": "...", "audience": "..."}'

Every request to /mcp (handshake, lists, calls, the GET stream) must carry a JWT that verifies against the
authorization server's JWKS, with its issuer and this server's own URL as audience; otherwise the answer is 401.
Tools, for the test to see what arrived:
  whoami             the verified token's ``sub``, ``client_id`` and ``jti`` (which token this call carried)
  refuse_my_token    from now on refuse the token this call carried (as if it were revoked): the next call gets a 401
  refuse_my_client   from now on refuse every token of the client this call's token was issued to
"""

from __future__ import annotations

import json
import sys
from typing import Any

import anyio.to_thread
import jwt
import uvicorn
from mcp.server.mcpserver import Context, MCPServer
from starlette.types import ASGIApp, Receive, Scope, Send


def build(options: dict[str, Any]) -> ASGIApp:
    jwks = jwt.PyJWKClient(options["jwks"], cache_keys=False, lifespan=60)
    refused_tokens: set[str] = set()
    refused_clients: set[str] = set()

    async def verify(authorization: str) -> dict[str, Any] | None:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        try:
            key = await anyio.to_thread.run_sync(jwks.get_signing_key_from_jwt, token)
            claims: dict[str, Any] = jwt.decode(
                token, key.key, algorithms=["RS256"], audience=options["audience"], issuer=options["issuer"]
            )
        except jwt.PyJWTError:
            return None
        if claims.get("jti") in refused_tokens or claims.get("client_id") in refused_clients:
            return None
        return claims

    def claims_of(ctx: Context) -> dict[str, Any]:
        token = (ctx.headers or {}).get("authorization", "").partition(" ")[2]
        return jwt.decode(token, options={"verify_signature": False})

    server = MCPServer("token-checker")

    @server.tool()
    def whoami(ctx: Context) -> str:
        """Who the call's token says it is for."""
        claims = claims_of(ctx)
        return json.dumps({key: claims.get(key) for key in ("sub", "client_id", "jti")})

    @server.tool()
    def refuse_my_token(ctx: Context) -> str:
        """Refuse this call's token from now on."""
        refused_tokens.add(claims_of(ctx)["jti"])
        return "refused"

    @server.tool()
    def refuse_my_client(ctx: Context) -> str:
        """Refuse every token of this call's client from now on."""
        refused_clients.add(claims_of(ctx)["client_id"])
        return "refused"

    app = server.streamable_http_app(host="127.0.0.1")

    async def checked(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}
            if await verify(headers.get("authorization", "")) is None:
                body = b'{"error": "invalid_token"}'
                await send(
                    {
                        "type": "http.response.start",
                        "status": 401,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"www-authenticate", b'Bearer error="invalid_token"'),
                            (b"content-length", str(len(body)).encode()),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await app(scope, receive, send)

    return checked


if __name__ == "__main__":
    opts = json.loads(sys.argv[1])
    uvicorn.run(build(opts), host="127.0.0.1", port=opts["port"], log_level="warning")
