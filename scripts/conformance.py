#!/usr/bin/env python3
"""MCP conformance, side by side: our fixture server directly and through the gateway, in both spec versions.

Runs the server scenarios of the pinned ``@modelcontextprotocol/conformance`` CLI (``--suite all``) for each spec
version in :data:`ERAS` against every target in :data:`TARGETS`: the fixture server
``mcp_gateway.examples.conformance_server`` over streamable HTTP directly, and ``mcp-gateway serve`` in front of that
same fixture (``prefix: false``, so tool, prompt and resource names are unchanged) with the upstream over HTTP
(``protocol: auto``, ``legacy``, ``2026-07-28``) and over stdio. The fixture implements every fixture the suite
calls, so directly it passes every scenario: a direct failure is a bug of the fixture, and a scenario that passes
directly but fails through the gateway is a gateway regression. It prints one Markdown table per spec version
(``scenario | direct | gateway settings...``) and exits 1 on any direct failure or regression.

The suite needs Node >= 22: the pinned npm package ``node`` provides it in ``node_modules/.bin/node``.

One workaround, forced by the CLI and confined to this script: its server runner has no option for request
headers, while every gateway request needs ``Authorization: Bearer``. So the gateway columns go through
:class:`BearerProxy`, a loopback reverse proxy that adds that one header and changes nothing else: method, path,
query, body and every other header, ``Host`` and ``Origin`` included, pass through verbatim, and responses (SSE
too) are streamed back chunk by chunk. A client going away closes the upstream request. The proxy writes every
exchange it relays (without the credential) to ``<era>/<target>/traffic.jsonl`` in the work directory, to diagnose
a failing scenario. The direct column is really direct.

Usage::

    python scripts/conformance.py [--out FILE] [--workdir DIR] [--era ERA ...] [--target NAME ...] [--scenario NAME ...]

Exit status: 0 no regression, 1 a direct failure or a regression, 2 could not run.
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
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import httpx
import uvicorn
import yarl
from anyio.abc import Process
from multidict import CIMultiDict

ROOT = Path(__file__).resolve().parent.parent
NODE = ROOT / "node_modules" / ".bin" / "node"
CONFORMANCE = ROOT / "node_modules" / "@modelcontextprotocol" / "conformance" / "dist" / "index.js"
FIXTURE_MODULE = "mcp_gateway.examples.conformance_server"

ERAS = ("2025-11-25", "2026-07-28")
DIRECT = "direct"


@dataclass(frozen=True)
class Target:
    """One column: the fixture directly, or the gateway in front of it with one upstream setting."""

    name: str
    transport: str = "streamable-http"
    protocol: str = "auto"

    @property
    def through_gateway(self) -> bool:
        return self.name != DIRECT


TARGETS = (
    Target(DIRECT),
    Target("http auto", protocol="auto"),
    Target("http legacy", protocol="legacy"),
    Target("http 2026-07-28", protocol="2026-07-28"),
    Target("stdio auto", transport="stdio", protocol="auto"),
)
TARGETS_BY_NAME = {target.name: target for target in TARGETS}

STARTUP_TIMEOUT = 90.0  # generous: CI machines are shared, and a stdio upstream starts a Python process
SUITE_TIMEOUT = 600.0

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class SetupError(RuntimeError):
    """Something the comparison needs (node, npm peers, a server) is missing or did not start."""


# --------------------------------------------------------------------------------------------- results


@dataclass(frozen=True)
class ScenarioResult:
    """One scenario on one target in one era: passed means at least one SUCCESS check and no FAILURE check."""

    scenario: str
    passed: bool
    failures: tuple[str, ...] = ()
    missing: bool = False

    @property
    def label(self) -> str:
        if self.missing:
            return "no result"
        return "pass" if self.passed else "fail"


def read_result(scenario: str, checks: list[dict[str, Any]]) -> ScenarioResult:
    statuses = [check.get("status") for check in checks]
    failures = tuple(
        f"{check.get('id')}: {check.get('errorMessage') or check.get('description') or 'failed'}"
        for check in checks
        if check.get("status") == "FAILURE"
    )
    return ScenarioResult(scenario, passed="SUCCESS" in statuses and not failures, failures=failures)


_RESULT_DIR = re.compile(r"^server-(?P<scenario>.+)-\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}-\d{3}Z$")


def read_results(output_dir: Path, scenarios: Sequence[str] | None = None) -> dict[str, ScenarioResult]:
    """Parse ``server-<scenario>-<timestamp>/checks.json`` dirs; a named scenario without one is ``missing``."""
    results = {name: ScenarioResult(name, passed=False, missing=True) for name in scenarios or ()}
    for checks_file in sorted(output_dir.glob("server-*/checks.json")):
        match = _RESULT_DIR.match(checks_file.parent.name)
        if match and (scenarios is None or match["scenario"] in results):
            name = match["scenario"]
            results[name] = read_result(name, json.loads(checks_file.read_text()))
    return results


@dataclass(frozen=True)
class EraResults:
    """Every target's results in one spec version; the scenarios are the ones the direct run reported."""

    era: str
    targets: tuple[str, ...]
    results: dict[str, dict[str, ScenarioResult]]

    @property
    def scenarios(self) -> list[str]:
        return list(self.results[DIRECT])

    def result(self, target: str, scenario: str) -> ScenarioResult:
        return self.results[target].get(scenario) or ScenarioResult(scenario, passed=False, missing=True)

    def direct_failures(self) -> list[str]:
        """Scenarios our own fixture fails directly: each one is a bug of the fixture (or of the suite pin)."""
        return [name for name in self.scenarios if not self.result(DIRECT, name).passed]

    def regressions(self) -> list[tuple[str, str]]:
        """``(scenario, target)`` pairs passing directly and failing through the gateway: each one a gateway bug."""
        return [
            (name, target)
            for name in self.scenarios
            if self.result(DIRECT, name).passed
            for target in self.targets
            if target != DIRECT and not self.result(target, name).passed
        ]

    def markdown(self) -> str:
        gateway = [target for target in self.targets if target != DIRECT]
        header = [f"{self.era} scenario", "direct", *(f"gateway, {target}" for target in gateway)]
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        regressions = set(self.regressions())
        for name in self.scenarios:
            cells = [self.result(DIRECT, name).label]
            for target in gateway:
                label = self.result(target, name).label
                cells.append(f"**{label}**" if (name, target) in regressions else label)
            lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
        lines.append("")
        total = len(self.scenarios)
        passing = total - len(self.direct_failures())
        lines.append(
            f"{self.era}: direct {passing}/{total} pass. "
            + "".join(
                f"{target} {sum(self.result(target, name).passed for name in self.scenarios)}/{total}; "
                for target in gateway
            )
            + (f"{len(regressions)} regressions (bold)." if regressions else "No regression through the gateway.")
        )
        return "\n".join(lines) + "\n"

    def details(self) -> str:
        """The failure messages behind every direct failure and every regression."""
        out: list[str] = []
        for name in self.direct_failures():
            out += [f"{self.era} {name}: direct fails"] + [f"  {f}" for f in self.result(DIRECT, name).failures]
        for name, target in self.regressions():
            result = self.result(target, name)
            out += [f"{self.era} {name}: {target} {result.label}"] + [f"  {f}" for f in result.failures]
        return "\n".join(out) + ("\n" if out else "")


@dataclass(frozen=True)
class Comparison:
    """The results of every era, and where their artifacts are."""

    eras: tuple[EraResults, ...]
    workdir: Path

    def era(self, name: str) -> EraResults:
        return next(era for era in self.eras if era.era == name)

    def failed(self) -> bool:
        return any(era.direct_failures() or era.regressions() for era in self.eras)

    def markdown(self) -> str:
        return "\n".join(era.markdown() for era in self.eras)

    def details(self) -> str:
        return "".join(era.details() for era in self.eras)


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
        self._authorization = f"Bearer {key}"
        # aiohttp, not httpx: h11 refuses to send a header value with trailing whitespace, and the suite sends one
        # on purpose (a padded Mcp-Name). No read timeout: a legacy-era GET stream stays open, idle, for as long
        # as the client wants it. No automatic decompression or redirects: bytes and statuses pass as they are.
        self._client = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, connect=10.0, sock_read=None), auto_decompress=False
        )
        self.traffic: list[dict[str, Any]] = []
        """Every relayed exchange, without the credential, for diagnosing a failing scenario."""

    async def aclose(self) -> None:
        await self._client.close()

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
        headers = CIMultiDict(
            (name.decode("latin-1"), value.decode("latin-1"))
            for name, value in scope["headers"]
            if name not in _HOP_BY_HOP and name not in (b"authorization", b"content-length")
        )
        headers["authorization"] = self._authorization
        url = self.target + scope["raw_path"].decode("latin-1")
        if scope["query_string"]:
            url += "?" + scope["query_string"].decode("latin-1")
        request = _Request(scope["method"], url, headers, bytes(body))
        record: dict[str, Any] = {
            "time": time.time(),
            "method": scope["method"],
            "path": scope["raw_path"].decode("latin-1"),
            "request_headers": {name: headers[name] for name in _LOGGED_HEADERS if name in headers},
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

    async def _relay(self, request: _Request, send: Send, record: dict[str, Any]) -> None:
        try:
            response = await self._client.request(
                request.method,
                yarl.URL(request.url, encoded=True),
                headers=request.headers,
                data=request.body,
                allow_redirects=False,
                skip_auto_headers=("Accept", "Accept-Encoding", "User-Agent", "Content-Type"),
            )
        except (aiohttp.ClientError, OSError) as exc:
            record["error"] = repr(exc)
            await send({"type": "http.response.start", "status": 502, "headers": [(b"content-type", b"text/plain")]})
            await send({"type": "http.response.body", "body": f"proxy: {exc!r}".encode()})
            return
        logged = bytearray()
        try:
            record["status"] = response.status
            record["response_headers"] = {name.lower(): value for name, value in response.headers.items()}
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status,
                    "headers": [(k, v) for k, v in response.raw_headers if k.lower() not in _HOP_BY_HOP],
                }
            )
            async for chunk in response.content.iter_any():
                if len(logged) < _LOG_BODY_LIMIT:
                    logged += chunk[: _LOG_BODY_LIMIT - len(logged)]
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            record["complete"] = True
            await send({"type": "http.response.body", "body": b""})
        finally:
            record["response_body"] = logged.decode("utf-8", "replace")
            response.release()


@dataclass(frozen=True)
class _Request:
    method: str
    url: str
    headers: CIMultiDict[str]
    body: bytes


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


def conformance_command() -> list[str]:
    """``node conformance/dist/index.js``, both from the pinned npm packages (the suite needs Node >= 22)."""
    if not CONFORMANCE.exists() or not NODE.exists():
        raise SetupError("the npm test peers are not installed: run `npm ci` in the repository root")
    return [str(NODE), str(CONFORMANCE)]


async def run_suite(
    command: Sequence[str], url: str, output_dir: Path, era: str, scenarios: Sequence[str] | None = None
) -> dict[str, ScenarioResult]:
    """Run the suite for spec version ``era`` against ``url``: all of it in one CLI process, or the named scenarios.

    ``--suite all`` includes the CLI's pending scenarios; ``--spec-version`` keeps those that apply to ``era``.
    Output goes to ``<output_dir>/cli.log``. A CLI run that outlives ``SUITE_TIMEOUT`` is killed; the scenarios it
    did not finish are reported as ``no result``.
    """
    await anyio.Path(output_dir).mkdir(parents=True)
    selections = [["--scenario", name] for name in scenarios] if scenarios else [["--suite", "all"]]
    async with await anyio.open_file(output_dir / "cli.log", "wb") as log:
        for selection in selections:
            args = [*command, "server", "--url", url, "--spec-version", era, "-o", str(output_dir), *selection]
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
async def fixture_server(workdir: Path) -> AsyncIterator[str]:
    """The conformance fixture over streamable HTTP on a free loopback port; yields its ``/mcp`` URL."""
    port = free_port()
    log = workdir / "fixture.log"
    args = [sys.executable, "-m", FIXTURE_MODULE, "--http", "--port", str(port)]
    async with background(args, log) as process:
        url = f"http://127.0.0.1:{port}/mcp"

        async def ready() -> bool:
            return await http_status(url) is not None  # a GET without a session answers 4xx: it is listening

        await wait_until(ready, process, "the conformance fixture", log)
        yield url


def upstream_config(target: Target, fixture_url: str) -> dict[str, Any]:
    """The fixture as the gateway's one upstream, unprefixed, over ``target``'s transport and protocol."""
    common = {"name": "conformance", "prefix": False, "protocol": target.protocol, "timeout": 60}
    if target.transport == "stdio":
        return {**common, "transport": "stdio", "command": sys.executable, "args": ["-m", FIXTURE_MODULE]} | {
            "cwd": str(ROOT)
        }
    return {**common, "transport": "streamable-http", "url": fixture_url}


def gateway_config(upstream: dict[str, Any], key: str, port: int) -> str:
    """The gateway config: one upstream, one identity holding ``key``, memory store."""
    config = {
        "server": {"host": "127.0.0.1", "port": port},
        "store": {"url": "memory://"},
        "upstreams": [upstream],
        "identities": [
            {"id": "conformance", "credentials": [{"sha256": hashlib.sha256(key.encode()).hexdigest()}]},
        ],
    }
    return json.dumps(config, indent=2) + "\n"  # JSON is YAML


@contextlib.asynccontextmanager
async def gateway_server(workdir: Path, upstream: dict[str, Any], key: str) -> AsyncIterator[str]:
    """``mcp-gateway serve`` (this interpreter's) in front of ``upstream``; yields its base URL once ready."""
    port = free_port()
    await anyio.Path(workdir).mkdir(parents=True, exist_ok=True)
    config = workdir / "gateway.yaml"
    await anyio.Path(config).write_text(gateway_config(upstream, key, port))
    log = workdir / "gateway.log"
    args = [sys.executable, "-m", "mcp_gateway", "serve", "--config", str(config)]
    async with background(args, log) as process:
        base = f"http://127.0.0.1:{port}"

        async def ready() -> bool:
            return await http_status(f"{base}/readyz") == 200

        await wait_until(ready, process, "mcp-gateway serve", log)
        yield base


# --------------------------------------------------------------------------------------------- the comparison


async def run_target(
    command: Sequence[str],
    target: Target,
    fixture_url: str,
    workdir: Path,
    eras: Sequence[str],
    scenarios: Sequence[str] | None,
    proxy_key: str | None,
) -> dict[str, dict[str, ScenarioResult]]:
    """One target's results per era: directly against the fixture, or through a gateway started for it."""
    if not target.through_gateway:
        results = {era: await run_suite(command, fixture_url, workdir / era / DIRECT, era, scenarios) for era in eras}
        # A named scenario the CLI does not run in an era (not part of that spec version) leaves no result there.
        return {era: {name: r for name, r in by_name.items() if not r.missing} for era, by_name in results.items()}
    slug = target.name.replace(" ", "-")
    key = "mgw_conformance_" + secrets.token_urlsafe(24)
    results = {}
    async with gateway_server(workdir / slug, upstream_config(target, fixture_url), key) as gateway:
        for era in eras:
            proxy = BearerProxy(gateway, proxy_key or key)
            try:
                async with serve_asgi(proxy) as port:
                    url = f"http://127.0.0.1:{port}/mcp"
                    results[era] = await run_suite(command, url, workdir / era / slug, era, scenarios)
            finally:
                await proxy.aclose()
                traffic = "".join(json.dumps(record) + "\n" for record in proxy.traffic)
                await anyio.Path(workdir / era / slug / "traffic.jsonl").write_text(traffic)
    return results


async def run_comparison(
    workdir: Path,
    *,
    eras: Sequence[str] = ERAS,
    targets: Sequence[str] | None = None,
    scenarios: Sequence[str] | None = None,
    proxy_key: str | None = None,
) -> Comparison:
    """Start the fixture, run the suite against it directly and through a gateway per target, collect the results.

    The direct column always runs (it sets the bar). ``proxy_key`` overrides the key the auth proxy sends (the
    gateway only accepts its own generated key); the tests use it to show that a broken gateway path is reported
    as a regression.
    """
    await anyio.Path(workdir).mkdir(parents=True, exist_ok=True)
    command = conformance_command()
    chosen = [DIRECT, *[name for name in targets or TARGETS_BY_NAME if name != DIRECT]]
    results: dict[str, dict[str, dict[str, ScenarioResult]]] = {era: {} for era in eras}
    async with fixture_server(workdir) as fixture_url:
        for name in chosen:
            by_era = await run_target(command, TARGETS_BY_NAME[name], fixture_url, workdir, eras, scenarios, proxy_key)
            for era in eras:
                results[era][name] = by_era[era]
    return Comparison(tuple(EraResults(era, tuple(chosen), results[era]) for era in eras), workdir)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, help="also write the Markdown tables to this file")
    parser.add_argument("--workdir", type=Path, help="keep configs, logs and checks.json here (default: a temp dir)")
    parser.add_argument("--era", action="append", choices=ERAS, help="run only this spec version (repeatable)")
    parser.add_argument("--target", action="append", choices=list(TARGETS_BY_NAME), help="gateway setting (repeatable)")
    parser.add_argument("--scenario", action="append", help="run only this scenario (repeatable)")
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="mcp-gateway-conformance-"))
    started = time.monotonic()
    try:
        comparison = anyio.run(
            lambda: run_comparison(workdir, eras=args.era or ERAS, targets=args.target, scenarios=args.scenario)
        )
    except (SetupError, subprocess.CalledProcessError, TimeoutError) as exc:
        print(f"conformance: could not run: {exc}", file=sys.stderr)
        return 2
    table = comparison.markdown()
    print(table)
    if details := comparison.details():
        print("Direct failures and regressions:\n" + details)
    print(f"Artifacts (configs, logs, checks.json, traffic.jsonl): {workdir}")
    print(f"Runtime: {time.monotonic() - started:.1f} s")
    if args.out:
        args.out.write_text(table)
    return 1 if comparison.failed() else 0


if __name__ == "__main__":
    sys.exit(main())
