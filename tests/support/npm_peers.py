"""The pinned npm peers (``package.json``) as test tools: where they are, and running them off the event loop.

The gateway under test usually runs in the test's own event loop (``tests.support.harness.serve_gateway``), so a peer
must be awaited as a subprocess, never run with a blocking ``subprocess.run``: that would stall the gateway it talks to.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest

ROOT = Path(__file__).resolve().parents[2]
NPM_PEERS = ROOT / "node_modules" / "@modelcontextprotocol"
INSPECTOR_CLI = NPM_PEERS / "inspector-cli" / "build" / "index.js"
SDK_CLIENT = Path(__file__).resolve().parent / "peers" / "sdk_client.mjs"
SDK_BACK_CHANNEL_CLIENT = Path(__file__).resolve().parent / "peers" / "sdk_back_channel_client.mjs"
OIDC_PROVIDER = ROOT / "node_modules" / "oidc-provider"
OAUTH_PROVIDER = Path(__file__).resolve().parent / "peers" / "oauth_provider.mjs"


@dataclass(frozen=True)
class NodeRun:
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        assert self.returncode == 0, f"exit {self.returncode}\nstdout: {self.stdout}\nstderr: {self.stderr}"
        return json.loads(self.stdout)


PEER_TIMEOUT = 60.0


async def run_node(args: Sequence[str], *, cwd: Path | None = None) -> NodeRun:
    assert (NPM_PEERS / "sdk").exists(), "npm test peers are not installed: run `npm ci` (make test does)"
    with anyio.fail_after(PEER_TIMEOUT):
        done = await anyio.run_process(["node", *args], cwd=cwd, check=False, stderr=subprocess.PIPE)
    return NodeRun(done.returncode, done.stdout.decode(), done.stderr.decode())


async def inspector_cli(url: str, *args: str, headers: dict[str, str]) -> NodeRun:
    """``@modelcontextprotocol/inspector-cli`` (its CLI mode) against ``url`` with these HTTP headers.

    It runs from its own ``build/`` directory: 1.0.3 checks for its ``package.json`` relative to the working
    directory but imports it relative to the module, so from most other directories it cannot start.
    """
    header_args = ["--header", *(f"{name}: {value}" for name, value in headers.items())]
    return await run_node([str(INSPECTOR_CLI), url, *args, *header_args], cwd=INSPECTOR_CLI.parent)


async def sdk_client(url: str, headers: dict[str, str]) -> NodeRun:
    """``tests/support/peers/sdk_client.mjs``: the TypeScript SDK client's list / call / progress / sampling round."""
    return await run_node([str(SDK_CLIENT), url, json.dumps(headers)], cwd=ROOT)


async def sdk_back_channel_client(
    url: str, headers: dict[str, str], capabilities: dict[str, Any], calls: list[dict[str, Any]]
) -> NodeRun:
    """``tests/support/peers/sdk_back_channel_client.mjs``: a TypeScript SDK client declaring ``capabilities`` makes
    ``calls``, answering the sampling and elicitation requests they bring."""
    args = [str(SDK_BACK_CHANNEL_CLIENT), url, json.dumps(headers), json.dumps(capabilities), json.dumps(calls)]
    return await run_node(args, cwd=ROOT)


@dataclass(frozen=True)
class AuthorizationServer:
    issuer: str
    kid: str

    @property
    def token_endpoint(self) -> str:
        return f"{self.issuer}/token"

    @property
    def jwks_url(self) -> str:
        return f"{self.issuer}/jwks"


@asynccontextmanager
async def oauth_provider(scopes: str, *, port: int = 0, kid: str = "key-1") -> AsyncIterator[AuthorizationServer]:
    """``tests/support/peers/oauth_provider.mjs``: the pinned ``oidc-provider`` as an authorization server, until exit.

    Without the npm peers installed this skips, except under CI (``CI`` set), where it must run.
    """
    if not OIDC_PROVIDER.exists():
        if os.environ.get("CI"):
            raise AssertionError("npm test peers are not installed: run `npm ci` (make test does)")
        pytest.skip("the oidc-provider npm peer is not installed: run `npm ci` in the repository root")
    options = json.dumps({"scopes": scopes, "port": port, "kid": kid})
    # stderr inherited: the provider only writes start-up warnings there, and pytest captures them.
    async with await anyio.open_process(["node", str(OAUTH_PROVIDER), options], cwd=ROOT, stderr=None) as process:
        assert process.stdout is not None
        try:
            with anyio.fail_after(PEER_TIMEOUT):
                buffered = b""
                async for chunk in process.stdout:
                    buffered += chunk
                    if b"\n" in buffered:
                        break
            started = json.loads(buffered.split(b"\n", 1)[0])
            yield AuthorizationServer(started["issuer"], started["kid"])
        finally:
            process.terminate()
            with anyio.move_on_after(5):
                await process.wait()
