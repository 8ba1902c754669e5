"""The pinned npm peers (``package.json``) as test tools: where they are, and running them off the event loop.

The gateway under test usually runs in the test's own event loop (``tests.harness.serve_gateway``), so a peer must
be awaited as a subprocess, never run with a blocking ``subprocess.run``: that would stall the gateway it talks to.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

ROOT = Path(__file__).resolve().parent.parent
NPM_PEERS = ROOT / "node_modules" / "@modelcontextprotocol"
INSPECTOR_CLI = NPM_PEERS / "inspector-cli" / "build" / "index.js"
SDK_CLIENT = Path(__file__).resolve().parent / "peers" / "sdk_client.mjs"


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
    """``tests/peers/sdk_client.mjs``: the TypeScript SDK client's list / call / progress / sampling round."""
    return await run_node([str(SDK_CLIENT), url, json.dumps(headers)], cwd=ROOT)
