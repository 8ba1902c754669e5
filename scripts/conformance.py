#!/usr/bin/env python3
"""MCP conformance, side by side: ``server-everything`` directly and through the gateway.

Runs every server scenario of the pinned ``@modelcontextprotocol/conformance`` CLI twice: against the pinned
``@modelcontextprotocol/server-everything`` over streamable HTTP, and against ``mcp-gateway serve`` fronting that
same server (``prefix: false``, so tool, prompt and resource names are unchanged). It prints a Markdown table
``scenario | direct | gateway | first failure`` and exits 1 if any scenario passes directly but fails through the
gateway.

Many scenarios fail even directly: the suite is written for the conformance repository's own test server, whose
``test_*`` tools, prompts and resources ``server-everything`` does not have. A direct failure therefore sets no bar;
the contract is only "the gateway does not lose what the direct server has".

Two workarounds, both forced by the pinned conformance CLI and both confined to this script:

* **Authorization.** The CLI's server runner has no option for request headers (0.1.16 builds its SDK client from
  the bare URL), while every gateway request needs ``Authorization: Bearer``. So the gateway column goes through
  :class:`BearerProxy`, a loopback reverse proxy that adds that one header and changes nothing else: method, path,
  query, body and every other header, ``Host`` and ``Origin`` included, pass through verbatim, and responses
  (SSE too) are streamed back chunk by chunk. A client going away closes the upstream request. The proxy writes
  every exchange it relays (without the credential) to ``gateway-traffic.jsonl`` in the work directory, to
  diagnose a failing scenario. The direct column is really direct.
* **Node 20.** The CLI imports ``fs.globSync`` (Node >= 22) at start-up, for its ``tier-check`` command only; on
  older Node a module-resolution hook hands it an ``fs`` whose ``globSync`` throws, so the server runner starts.

Usage::

    python scripts/conformance.py [--out FILE] [--workdir DIR] [--scenario NAME ...]

Exit status: 0 no regression, 1 a scenario passes directly but not through the gateway, 2 could not run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import uvicorn
from anyio.abc import Process

ROOT = Path(__file__).resolve().parent.parent
NODE_MODULES = ROOT / "node_modules" / "@modelcontextprotocol"
CONFORMANCE = NODE_MODULES / "conformance" / "dist" / "index.js"
EVERYTHING = NODE_MODULES / "server-everything" / "dist" / "index.js"

STARTUP_TIMEOUT = 30.0
SUITE_TIMEOUT = 300.0

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class SetupError(RuntimeError):
    """Something the comparison needs (node, npm peers, a server) is missing or did not start."""


# --------------------------------------------------------------------------------------------- results


@dataclass(frozen=True)
class ScenarioResult:
    """One scenario on one target: passed means at least one SUCCESS check and no FAILURE check.

    ``vacuous`` names why a pass proves nothing. The TypeScript SDK behind server-everything answers a call to a
    tool it does not have with an ``isError`` tool result, and the scenarios that expect an error (or only look
    for text content) accept that. Such a pass is read from the server's actual answer, never from a list of names.
    """

    scenario: str
    passed: bool
    failures: tuple[str, ...] = ()
    missing: bool = False
    vacuous: str | None = None

    @property
    def counts(self) -> bool:
        """A pass that sets a bar for the gateway."""
        return self.passed and self.vacuous is None

    @property
    def label(self) -> str:
        if self.missing:
            return "no result"
        if self.passed:
            return "pass (vacuous)" if self.vacuous else "pass"
        return "fail"


_MISSING_TOOL = re.compile(r"\bTool (\S+) not found\b")


def _missing_tool(checks: list[dict[str, Any]]) -> str | None:
    """The tool name, when a successful check's tool result is the server saying it has no such tool."""
    for check in checks:
        result = (check.get("details") or {}).get("result") or {}
        if check.get("status") == "SUCCESS" and result.get("isError"):
            for item in result.get("content") or []:
                if match := _MISSING_TOOL.search(str(item.get("text", ""))):
                    return match[1]
    return None


def read_result(scenario: str, checks: list[dict[str, Any]]) -> ScenarioResult:
    statuses = [check.get("status") for check in checks]
    failures = tuple(
        f"{check.get('id')}: {check.get('errorMessage') or check.get('description') or 'failed'}"
        for check in checks
        if check.get("status") == "FAILURE"
    )
    passed = "SUCCESS" in statuses and not failures
    tool = _missing_tool(checks) if passed else None
    vacuous = f"the server has no tool `{tool}`; its isError answer satisfied the scenario" if tool else None
    return ScenarioResult(scenario, passed=passed, failures=failures, vacuous=vacuous)


_RESULT_DIR = re.compile(r"^server-(?P<scenario>.+)-\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}-\d{3}Z$")


def read_results(output_dir: Path, scenarios: Sequence[str]) -> dict[str, ScenarioResult]:
    """Parse ``server-<scenario>-<timestamp>/checks.json`` dirs; a scenario without one is ``missing``."""
    results = {name: ScenarioResult(name, passed=False, missing=True) for name in scenarios}
    for checks_file in sorted(output_dir.glob("server-*/checks.json")):
        match = _RESULT_DIR.match(checks_file.parent.name)
        if match and match["scenario"] in results:
            name = match["scenario"]
            results[name] = read_result(name, json.loads(checks_file.read_text()))
    return results


@dataclass(frozen=True)
class Comparison:
    """Every scenario's result directly and through the gateway."""

    scenarios: tuple[str, ...]
    direct: dict[str, ScenarioResult]
    gateway: dict[str, ScenarioResult]
    workdir: Path

    def passing(self, side: dict[str, ScenarioResult]) -> list[str]:
        return [name for name in self.scenarios if side[name].counts]

    def regressions(self) -> list[str]:
        """Scenarios the direct server really passes and the gateway does not: each one is a gateway bug."""
        return [name for name in self.scenarios if self.direct[name].counts and not self.gateway[name].passed]

    def markdown(self) -> str:
        lines = [
            "| scenario | direct | gateway | first failure |",
            "|---|---|---|---|",
        ]
        regressions = set(self.regressions())
        for name in self.scenarios:
            direct, gateway = self.direct[name], self.gateway[name]
            gateway_label = f"**{gateway.label} (regression)**" if name in regressions else gateway.label
            lines.append(f"| `{name}` | {direct.label} | {gateway_label} | {_note(direct, gateway)} |")
        total = len(self.scenarios)
        lines.append("")
        lines.append(
            f"Direct: {len(self.passing(self.direct))}/{total} pass (not counting vacuous passes). "
            f"Gateway: {len(self.passing(self.gateway))}/{total} pass. "
            + (
                f"Regressions: {', '.join(sorted(regressions))}."
                if regressions
                else "Every scenario the direct server passes also passes through the gateway."
            )
        )
        return "\n".join(lines) + "\n"

    def details(self) -> str:
        """The failure messages of every scenario that passes on one target and not on the other."""
        out: list[str] = []
        for name in self.scenarios:
            direct, gateway = self.direct[name], self.gateway[name]
            if direct.passed == gateway.passed:
                continue
            out.append(f"{name}: direct {direct.label}, gateway {gateway.label}")
            out += [f"  direct:  {direct.vacuous}"] if direct.vacuous else []
            out += [f"  direct:  {failure}" for failure in direct.failures]
            out += [f"  gateway: {failure}" for failure in gateway.failures]
        return "\n".join(out) + ("\n" if out else "")


def _note(direct: ScenarioResult, gateway: ScenarioResult) -> str:
    if gateway.failures:
        return "gateway: " + _cell(gateway.failures[0])
    if direct.vacuous:
        return "direct: " + _cell(direct.vacuous)
    if direct.failures:
        return "direct: " + _cell(direct.failures[0])
    return ""


def _cell(text: str, limit: int = 110) -> str:
    text = " ".join(text.split()).replace("|", "\\|")
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --------------------------------------------------------------------------------------------- the auth proxy

# Hop-by-hop headers (RFC 9110 7.6.1) belong to one connection and are never relayed; content-length is
# recomputed by the HTTP client for the forwarded request body.
_HOP_BY_HOP = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"transfer-encoding", b"upgrade"}
)
_LOGGED_HEADERS = ("host", "origin", "accept", "content-type", "mcp-session-id", "mcp-protocol-version")
_LOG_BODY_LIMIT = 4000


class BearerProxy:
    """ASGI app relaying every request to ``target`` with ``Authorization: Bearer <key>`` added.

    It exists because the conformance CLI cannot send headers (see the module docstring). Everything else passes
    through unchanged, ``Host`` included, so Host/Origin checks see what the client sent. Responses are streamed
    chunk by chunk (SSE included), and a client disconnect closes the upstream request, as a direct connection
    would.
    """

    def __init__(self, target: str, key: str) -> None:
        self.target = target.rstrip("/")
        self._authorization = f"Bearer {key}".encode()
        # No read timeout: a legacy-era GET stream stays open, idle, for as long as the client wants it.
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(10.0, read=None))
        self.traffic: list[dict[str, Any]] = []
        """Every relayed exchange, without the credential, for diagnosing a failing scenario."""

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = [
            (name, value)
            for name, value in scope["headers"]
            if name not in _HOP_BY_HOP and name not in (b"authorization", b"content-length")
        ]
        headers.append((b"authorization", self._authorization))
        url = self.target + scope["raw_path"].decode("latin-1")
        if scope["query_string"]:
            url += "?" + scope["query_string"].decode("latin-1")
        request = self._client.build_request(scope["method"], url, headers=headers, content=bytes(body))
        record: dict[str, Any] = {
            "time": time.time(),
            "method": scope["method"],
            "path": scope["raw_path"].decode("latin-1"),
            "request_headers": {name: request.headers[name] for name in _LOGGED_HEADERS if name in request.headers},
            "request_body": body[:_LOG_BODY_LIMIT].decode("utf-8", "replace"),
        }
        self.traffic.append(record)
        async with anyio.create_task_group() as group:

            async def close_on_disconnect() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass
                if not record.get("complete"):
                    record["client_disconnected"] = True
                group.cancel_scope.cancel()

            group.start_soon(close_on_disconnect)
            await self._relay(request, send, record)
            group.cancel_scope.cancel()

    async def _relay(self, request: httpx.Request, send: Send, record: dict[str, Any]) -> None:
        try:
            response = await self._client.send(request, stream=True)
        except httpx.HTTPError as exc:
            record["error"] = repr(exc)
            await send({"type": "http.response.start", "status": 502, "headers": [(b"content-type", b"text/plain")]})
            await send({"type": "http.response.body", "body": f"proxy: {exc!r}".encode()})
            return
        logged = bytearray()
        try:
            record["status"] = response.status_code
            record["response_headers"] = dict(response.headers)
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status_code,
                    "headers": [(k, v) for k, v in response.headers.raw if k.lower() not in _HOP_BY_HOP],
                }
            )
            async for chunk in response.aiter_raw():
                if len(logged) < _LOG_BODY_LIMIT:
                    logged += chunk[: _LOG_BODY_LIMIT - len(logged)]
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            record["complete"] = True
            await send({"type": "http.response.body", "body": b""})
        finally:
            record["response_body"] = logged.decode("utf-8", "replace")
            await response.aclose()


@contextlib.asynccontextmanager
async def serve_asgi(app: Any) -> AsyncIterator[int]:
    """Run an ASGI app under uvicorn on a free loopback port; yield the port."""
    # No Server/Date headers of its own: the relayed response keeps exactly the gateway's headers.
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_level="warning", lifespan="off", server_header=False, date_header=False
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
                raise SetupError("the auth proxy exited during start-up")
            await anyio.sleep(0.02)
        yield int(server.servers[0].sockets[0].getsockname()[1])
    finally:
        server.should_exit = True
        await task


# --------------------------------------------------------------------------------------------- processes


def free_port() -> int:
    """A loopback port nothing listens on at the moment of asking (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def node_major() -> int:
    if shutil.which("node") is None:
        raise SetupError("node is not on PATH (Node >= 20 is needed for the npm peers)")
    version = (await anyio.run_process(["node", "--version"])).stdout.decode()
    return int(version.strip().lstrip("v").split(".")[0])


_FS_WITH_GLOBSYNC = """\
export * from "node:fs";
import fs from "node:fs";
export default fs;
export const globSync = fs.globSync ?? (() => { throw new Error("fs.globSync needs Node >= 22"); });
"""
_HOOKS = """\
const conformance = "/@modelcontextprotocol/conformance/";
export async function resolve(specifier, context, next) {
  if ((specifier === "fs" || specifier === "node:fs") && context.parentURL?.includes(conformance)) {
    return { url: new URL("./fs-with-globsync.mjs", import.meta.url).href, shortCircuit: true };
  }
  return next(specifier, context);
}
"""
_REGISTER = """\
import { register } from "node:module";
register("./hooks.mjs", import.meta.url);
"""


async def conformance_command(workdir: Path) -> list[str]:
    """``node [--import shim] conformance/dist/index.js``; the shim only on Node < 22 (see module docstring)."""
    if not CONFORMANCE.exists() or not EVERYTHING.exists():
        raise SetupError("the npm test peers are not installed: run `npm ci` in the repository root")
    if await node_major() >= 22:
        return ["node", str(CONFORMANCE)]
    shim = anyio.Path(workdir / "node20-shim")
    await shim.mkdir(parents=True, exist_ok=True)
    await (shim / "fs-with-globsync.mjs").write_text(_FS_WITH_GLOBSYNC)
    await (shim / "hooks.mjs").write_text(_HOOKS)
    await (shim / "register.mjs").write_text(_REGISTER)
    return ["node", "--import", (workdir / "node20-shim" / "register.mjs").as_uri(), str(CONFORMANCE)]


async def list_server_scenarios(command: Sequence[str]) -> list[str]:
    """Every server scenario the pinned CLI knows, in its order (``list --server``)."""
    with anyio.fail_after(60):
        listing = (await anyio.run_process([*command, "list", "--server"])).stdout.decode()
    names = re.findall(r"^\s*-\s+(\S+)", listing, flags=re.MULTILINE)
    if not names:
        raise SetupError(f"`conformance list --server` printed no scenarios:\n{listing}")
    return names


async def run_suite(
    command: Sequence[str], url: str, output_dir: Path, scenarios: Sequence[str], *, whole_suite: bool
) -> dict[str, ScenarioResult]:
    """Run the scenarios against ``url``: the whole suite in one CLI process, or one process per scenario.

    ``--suite all`` includes the CLI's pending scenarios too. Output goes to ``<output_dir>/cli.log``. A CLI run that
    outlives ``SUITE_TIMEOUT`` is killed; the scenarios it did not finish are reported as ``no result``.
    """
    await anyio.Path(output_dir).mkdir(parents=True)
    selections = [["--suite", "all"]] if whole_suite else [["--scenario", name] for name in scenarios]
    async with await anyio.open_file(output_dir / "cli.log", "wb") as log:
        for selection in selections:
            args = [*command, "server", "--url", url, "-o", str(output_dir), *selection]
            process = await anyio.open_process(args, stdout=log.wrapped, stderr=log.wrapped)
            with anyio.move_on_after(SUITE_TIMEOUT):
                await process.wait()
            if process.returncode is None:
                process.kill()
                await process.wait()
    return await anyio.to_thread.run_sync(read_results, output_dir, scenarios)


@contextlib.asynccontextmanager
async def background(args: Sequence[str], log: Path, env: dict[str, str] | None = None) -> AsyncIterator[Process]:
    """A long-running child process, logging to ``log``, terminated (then killed) on exit."""
    async with await anyio.open_file(log, "wb") as out:
        process = await anyio.open_process(
            args, stdout=out.wrapped, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}, cwd=ROOT
        )
        try:
            yield process
        finally:
            if process.returncode is None:
                process.terminate()
                with anyio.move_on_after(10, shield=True):
                    await process.wait()
                if process.returncode is None:
                    process.kill()
                    await process.wait()
            await process.aclose()


async def wait_until(ready: Callable[[], Awaitable[bool]], process: Process, what: str, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while not await ready():
        if process.returncode is not None or time.monotonic() > deadline:
            state = f"exited with status {process.returncode}" if process.returncode is not None else "not ready"
            tail = (await anyio.Path(log).read_text())[-4000:]
            raise SetupError(f"{what} {state} within {STARTUP_TIMEOUT} s; its log ends:\n{tail}")
        await anyio.sleep(0.1)


async def http_status(url: str) -> int | None:
    try:
        async with httpx.AsyncClient(timeout=2) as client:
            return (await client.get(url)).status_code
    except httpx.HTTPError:
        return None


@contextlib.asynccontextmanager
async def everything_server(workdir: Path) -> AsyncIterator[str]:
    """``server-everything streamableHttp`` on a free port (it binds every interface; we use loopback)."""
    port = free_port()
    log = workdir / "server-everything.log"
    async with background(["node", str(EVERYTHING), "streamableHttp"], log, env={"PORT": str(port)}) as process:
        url = f"http://127.0.0.1:{port}/mcp"

        async def ready() -> bool:
            return await http_status(url) is not None  # a GET without a session answers 400: it is listening

        await wait_until(ready, process, "server-everything", log)
        yield url


def gateway_config(upstream_url: str, key: str, port: int) -> str:
    """The gateway config: server-everything unprefixed, one identity holding ``key``, memory store."""
    config = {
        "server": {"host": "127.0.0.1", "port": port},
        "store": {"url": "memory://"},
        "upstreams": [
            {"name": "everything", "transport": "streamable-http", "url": upstream_url, "prefix": False, "timeout": 60}
        ],
        "identities": [
            {"id": "conformance", "credentials": [{"sha256": hashlib.sha256(key.encode()).hexdigest()}]},
        ],
    }
    return json.dumps(config, indent=2) + "\n"  # JSON is YAML


@contextlib.asynccontextmanager
async def gateway_server(workdir: Path, upstream_url: str, key: str) -> AsyncIterator[str]:
    """``mcp-gateway serve`` (this interpreter's) in front of ``upstream_url``; yields its base URL once ready."""
    port = free_port()
    config = workdir / "gateway.yaml"
    await anyio.Path(config).write_text(gateway_config(upstream_url, key, port))
    log = workdir / "gateway.log"
    args = [sys.executable, "-m", "mcp_gateway", "serve", "--config", str(config)]
    async with background(args, log) as process:
        base = f"http://127.0.0.1:{port}"

        async def ready() -> bool:
            return await http_status(f"{base}/readyz") == 200

        await wait_until(ready, process, "mcp-gateway serve", log)
        yield base


# --------------------------------------------------------------------------------------------- the comparison


async def run_comparison(
    workdir: Path, scenarios: Sequence[str] | None = None, *, proxy_key: str | None = None
) -> Comparison:
    """Start server-everything and the gateway, run the scenarios against both, return the results.

    ``proxy_key`` overrides the key the auth proxy sends (the gateway only accepts its own generated key); the
    tests use it to show that a broken gateway path is reported as a regression.
    """
    await anyio.Path(workdir).mkdir(parents=True, exist_ok=True)
    command = await conformance_command(workdir)
    whole_suite = not scenarios
    names = await list_server_scenarios(command) if whole_suite else list(scenarios or ())
    key = "mgw_conformance_" + secrets.token_urlsafe(24)
    async with everything_server(workdir) as direct_url, gateway_server(workdir, direct_url, key) as gateway:
        direct = await run_suite(command, direct_url, workdir / "direct", names, whole_suite=whole_suite)
        proxy = BearerProxy(gateway, proxy_key or key)
        try:
            async with serve_asgi(proxy) as port:
                url = f"http://127.0.0.1:{port}/mcp"
                through = await run_suite(command, url, workdir / "gateway", names, whole_suite=whole_suite)
        finally:
            await proxy.aclose()
            traffic = "".join(json.dumps(record) + "\n" for record in proxy.traffic)
            await anyio.Path(workdir / "gateway-traffic.jsonl").write_text(traffic)
    return Comparison(tuple(names), direct, through, workdir)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, help="also write the Markdown table to this file")
    parser.add_argument("--workdir", type=Path, help="keep configs, logs and checks.json here (default: a temp dir)")
    parser.add_argument("--scenario", action="append", help="run only this scenario (repeatable)")
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="mcp-gateway-conformance-"))
    started = time.monotonic()
    try:
        comparison = anyio.run(run_comparison, workdir, args.scenario)
    except (SetupError, subprocess.CalledProcessError, TimeoutError) as exc:
        print(f"conformance: could not run: {exc}", file=sys.stderr)
        return 2
    table = comparison.markdown()
    print(table)
    if details := comparison.details():
        print("Scenarios that pass on one side only:\n" + details)
    print(f"Artifacts (configs, logs, checks.json, gateway-traffic.jsonl): {workdir}")
    print(f"Runtime: {time.monotonic() - started:.1f} s")
    if args.out:
        args.out.write_text(table)
    return 1 if comparison.regressions() else 0


if __name__ == "__main__":
    sys.exit(main())
