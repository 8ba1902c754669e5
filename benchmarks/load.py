"""The load generator: raw JSON-RPC ``tools/call`` over one pooled HTTP client, in either MCP protocol era.

No MCP SDK on this side: each worker sends the exact bytes a client of that era sends, so the time measured is the
server's, not a client library's. ``workers`` coroutines run closed-loop (each sends its next request as soon as the
previous one answered), so ``concurrency`` is the number of requests in flight.

- ``modern`` (2026-07-28): every request is self-contained: the ``_meta`` envelope in the body, and the
  ``MCP-Protocol-Version``/``Mcp-Method``/``Mcp-Name`` headers that must agree with it.
- ``legacy`` (2025-11-25): each worker runs ``initialize`` + ``notifications/initialized`` once, then sends its
  ``Mcp-Session-Id`` and ``MCP-Protocol-Version`` on every call.

Every answer is parsed (JSON, or the ``data:`` lines of an SSE answer) and checked to be a successful tool result; a
failure is counted and its first few texts kept, never silently timed as a success. The pooled client is aiohttp by
default (``--client httpx`` for comparison; see the README for the measured difference).

    python benchmarks/load.py --url http://127.0.0.1:9100/mcp --era modern --concurrency 32 --duration 10
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import aiohttp

Era = Literal["modern", "legacy"]
ClientKind = Literal["aiohttp", "httpx"]

MODERN_VERSION = "2026-07-28"
LEGACY_VERSION = "2025-11-25"
CLIENT_INFO = {"name": "mcp-gateway-bench", "version": "1.0.0"}
ENVELOPE = {
    "io.modelcontextprotocol/protocolVersion": MODERN_VERSION,
    "io.modelcontextprotocol/clientInfo": CLIENT_INFO,
    "io.modelcontextprotocol/clientCapabilities": {},
}
ACCEPT = "application/json, text/event-stream"


class CallFailed(Exception):
    """An answer that was not a successful tool result."""


@dataclass(frozen=True)
class Target:
    """Where the load goes and what it calls."""

    url: str
    tool: str
    arguments: Mapping[str, Any]
    headers: Mapping[str, str] = field(default_factory=dict)
    method: str = "tools/call"
    """``tools/call`` of ``tool``, or ``tools/list`` (the answer must then list ``tool``)."""


@dataclass
class LoadResult:
    era: Era
    concurrency: int
    duration_s: float
    latencies_ns: list[int]
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)

    @property
    def requests(self) -> int:
        return len(self.latencies_ns)

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0

    def percentile_ms(self, q: float) -> float:
        """Nearest-rank percentile, in milliseconds."""
        if not self.latencies_ns:
            return float("nan")
        ordered = sorted(self.latencies_ns)
        rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
        return ordered[rank - 1] / 1e6

    def summary(self) -> dict[str, Any]:
        return {
            "era": self.era,
            "concurrency": self.concurrency,
            "duration_s": round(self.duration_s, 3),
            "requests": self.requests,
            "errors": self.errors,
            "error_samples": self.error_samples,
            "rps": round(self.rps, 1),
            "p50_ms": round(self.percentile_ms(50), 4),
            "p90_ms": round(self.percentile_ms(90), 4),
            "p99_ms": round(self.percentile_ms(99), 4),
            "max_ms": round(max(self.latencies_ns, default=0) / 1e6, 4),
        }


class Http(Protocol):
    """The one thing the workers need from an HTTP client: POST bytes, get status, headers and the whole body."""

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> tuple[int, Mapping[str, str], bytes]:
        """Send one POST and read the whole answer."""
        ...

    async def close(self) -> None:
        """Close the pool."""
        ...


class AiohttpClient:
    def __init__(self, pool: int) -> None:
        connector = aiohttp.TCPConnector(limit=pool, limit_per_host=pool, keepalive_timeout=300, force_close=False)
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=60), skip_auto_headers=("User-Agent",)
        )

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> tuple[int, Mapping[str, str], bytes]:
        async with self._session.post(url, data=body, headers=headers) as response:
            return response.status, response.headers, await response.read()

    async def close(self) -> None:
        await self._session.close()


class HttpxClient:
    def __init__(self, pool: int) -> None:
        import httpx

        limits = httpx.Limits(max_connections=pool, max_keepalive_connections=pool)
        self._client = httpx.AsyncClient(limits=limits, timeout=60)

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> tuple[int, Mapping[str, str], bytes]:
        response = await self._client.post(url, content=body, headers=headers)
        return response.status_code, response.headers, response.content

    async def close(self) -> None:
        await self._client.aclose()


def make_client(kind: ClientKind, pool: int) -> Http:
    return AiohttpClient(pool) if kind == "aiohttp" else HttpxClient(pool)


def decode_answer(headers: Mapping[str, str], body: bytes) -> dict[str, Any]:
    """The JSON-RPC response in a plain JSON or an SSE answer (the last ``data:`` message that has an id)."""
    if headers.get("content-type", "").startswith("text/event-stream"):
        found: dict[str, Any] | None = None
        for line in body.splitlines():
            # A resumable (2025-11-25) stream opens with a priming event whose data is empty.
            if line.startswith(b"data:") and line[5:].strip():
                message = json.loads(line[5:])
                if isinstance(message, dict) and "id" in message:
                    found = message
        if found is None:
            raise CallFailed(f"SSE answer without a response: {body[:200]!r}")
        return found
    message = json.loads(body)
    if not isinstance(message, dict):
        raise CallFailed(f"not a JSON-RPC response: {body[:200]!r}")
    return message


def check_tool_result(status: int, headers: Mapping[str, str], body: bytes, target: Target | None = None) -> None:
    if status != 200:
        raise CallFailed(f"HTTP {status}: {body[:200]!r}")
    message = decode_answer(headers, body)
    result = message.get("result")
    if not isinstance(result, dict):
        raise CallFailed(f"not a result: {json.dumps(message)[:200]}")
    if result.get("isError"):
        raise CallFailed(f"tool error: {json.dumps(result)[:300]}")
    if target is not None and target.method == "tools/list":
        tools = result.get("tools")
        if not isinstance(tools, list) or not any(t.get("name") == target.tool for t in tools):
            raise CallFailed(f"tools/list without {target.tool!r}")


class Caller:
    """One worker's view of the target: how to open a conversation (legacy) and how to frame each call."""

    def __init__(self, http: Http, target: Target, era: Era) -> None:
        self.http = http
        self.target = target
        self.era = era
        self._ids = itertools.count(1)
        self.headers: dict[str, str] = {
            "Content-Type": "application/json",
            "Accept": ACCEPT,
            **target.headers,
        }

    async def open(self) -> None:
        """Legacy: the handshake that yields this worker's ``Mcp-Session-Id``. Modern: nothing to open."""
        if self.era == "modern":
            self.headers.update({"MCP-Protocol-Version": MODERN_VERSION, "Mcp-Method": self.target.method})
            if self.target.method == "tools/call":
                self.headers["Mcp-Name"] = self.target.tool
            return
        self.headers["Mcp-Session-Id"] = await open_legacy_session(self.http, self.target, self.headers)
        self.headers["MCP-Protocol-Version"] = LEGACY_VERSION

    def body(self) -> bytes:
        params: dict[str, Any] = {}
        if self.target.method == "tools/call":
            params = {"name": self.target.tool, "arguments": self.target.arguments}
        if self.era == "modern":
            params["_meta"] = ENVELOPE
        message = {"jsonrpc": "2.0", "id": next(self._ids), "method": self.target.method, "params": params}
        return json.dumps(message, separators=(",", ":")).encode()

    async def call(self) -> None:
        status, headers, body = await self.http.post(self.target.url, self.body(), self.headers)
        check_tool_result(status, headers, body, self.target)


async def open_legacy_session(http: Http, target: Target, base_headers: Mapping[str, str]) -> str:
    """``initialize`` + ``notifications/initialized``, as a 2025-11-25 client opens a session; returns its id."""
    initialize = {
        "jsonrpc": "2.0",
        "id": 0,
        "method": "initialize",
        "params": {"protocolVersion": LEGACY_VERSION, "capabilities": {}, "clientInfo": CLIENT_INFO},
    }
    status, headers, body = await http.post(target.url, json.dumps(initialize).encode(), base_headers)
    session_id = headers.get("mcp-session-id")
    if status != 200 or not session_id:
        raise CallFailed(f"initialize: HTTP {status}, no Mcp-Session-Id: {body[:200]!r}")
    decode_answer(headers, body)
    follow = {**base_headers, "Mcp-Session-Id": session_id, "MCP-Protocol-Version": LEGACY_VERSION}
    initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    status, _, body = await http.post(target.url, json.dumps(initialized).encode(), follow)
    if status not in (200, 202):
        raise CallFailed(f"notifications/initialized: HTTP {status}: {body[:200]!r}")
    return session_id


async def run_load(
    target: Target,
    era: Era,
    concurrency: int,
    *,
    duration: float,
    warmup: float,
    client: ClientKind = "aiohttp",
    max_errors: int | None = 100,
    on_window: tuple[Callable[[], None], Callable[[], None]] | None = None,
) -> LoadResult:
    """Closed-loop load for ``warmup`` + ``duration`` seconds; the calls that finish inside the window count.

    ``on_window`` is called as the measured window opens and as it closes (to meter CPU over exactly that time).
    ``max_errors`` failed calls stop the run with ``CallFailed``; None counts every failure and runs to the end.
    """
    http = make_client(client, concurrency)
    latencies: list[int] = []
    result = LoadResult(era=era, concurrency=concurrency, duration_s=duration, latencies_ns=latencies)
    try:
        callers = [Caller(http, target, era) for _ in range(concurrency)]
        await asyncio.gather(*(caller.open() for caller in callers))
        start = time.perf_counter_ns()
        window_start = start + int(warmup * 1e9)
        window_end = window_start + int(duration * 1e9)

        async def worker(caller: Caller) -> None:
            clock = time.perf_counter_ns
            while True:
                began = clock()
                if began >= window_end:
                    return
                try:
                    await caller.call()
                except (CallFailed, aiohttp.ClientError, OSError, ValueError) as exc:
                    result.errors += 1
                    if len(result.error_samples) < 5:
                        result.error_samples.append(f"{type(exc).__name__}: {exc}"[:300])
                    if max_errors is not None and result.errors >= max_errors:
                        raise CallFailed(f"{result.errors} failed calls; first: {result.error_samples[0]}") from exc
                    continue
                ended = clock()
                # Counted by when it finished: a slow server's calls straddle the window start too.
                if window_start <= ended <= window_end:
                    latencies.append(ended - began)

        async def watch_window() -> None:
            if on_window is None:
                return
            await asyncio.sleep(max(0.0, (window_start - time.perf_counter_ns()) / 1e9))
            on_window[0]()
            await asyncio.sleep(max(0.0, (window_end - time.perf_counter_ns()) / 1e9))
            on_window[1]()

        await asyncio.gather(watch_window(), *(worker(caller) for caller in callers))
    finally:
        await http.close()
    return result


async def call_once(target: Target, era: Era) -> dict[str, Any]:
    """One call, answered or not: the decoded JSON-RPC response (for the pre-flight checks)."""
    http = make_client("aiohttp", 1)
    try:
        caller = Caller(http, target, era)
        await caller.open()
        status, headers, body = await http.post(target.url, caller.body(), caller.headers)
        if status != 200:
            raise CallFailed(f"HTTP {status}: {body[:300]!r}")
        return decode_answer(headers, body)
    finally:
        await http.close()


async def open_sessions(target: Target, count: int, concurrency: int = 32) -> list[str]:
    """Open ``count`` legacy sessions (and leave them idle); returns their ids."""
    http = make_client("aiohttp", concurrency)
    headers = {"Content-Type": "application/json", "Accept": ACCEPT, **target.headers}
    ids: list[str] = []
    remaining = iter(range(count))
    try:

        async def opener() -> None:
            for _ in remaining:
                ids.append(await open_legacy_session(http, target, headers))

        await asyncio.gather(*(opener() for _ in range(concurrency)))
    finally:
        await http.close()
    return ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True)
    parser.add_argument("--era", choices=["modern", "legacy"], default="modern")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--tool", default="echo")
    parser.add_argument("--arguments", default='{"text": "hello"}', help="JSON object")
    parser.add_argument("--header", action="append", default=[], help="extra header, 'Name: value' (repeatable)")
    parser.add_argument("--client", choices=["aiohttp", "httpx"], default="aiohttp")
    parser.add_argument("--uvloop", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args()
    headers = dict(h.split(":", 1) for h in args.header)
    target = Target(
        url=args.url,
        tool=args.tool,
        arguments=json.loads(args.arguments),
        headers={k.strip(): v.strip() for k, v in headers.items()},
    )
    coro = run_load(target, args.era, args.concurrency, duration=args.duration, warmup=args.warmup, client=args.client)
    if args.uvloop:
        import uvloop

        result = uvloop.run(coro)
    else:
        result = asyncio.run(coro)
    print(json.dumps(result.summary(), indent=2))


if __name__ == "__main__":
    main()
