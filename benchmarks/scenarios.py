"""What is measured: the echo upstream alone, and the three proxies in front of it, each as a running process.

Every scenario ends up as a ``load.Target`` (URL, tool name, arguments, headers) that the same load generator drives.

- ``direct``: the echo upstream itself, the limit.
- ``gw-policies``: mcp-gateway with a task session (``X-Task-Token``) and two CEL allow policies on every call: one
  compares the task context with the call's arguments, one reads the identity's labels. ``-redis`` keeps task
  sessions, legacy sessions and audit in Redis instead of the embedded ``memory://`` store.
- ``gw-limits``, ``gw-limits-redis``: ``gw-policies`` plus a rate limit of every kind (per identity, per identity and
  tool, per task session, per upstream) and a task budget, all set far above the load, so every call is charged in
  the store and none is refused: the cost of limits per call, against ``gw-policies`` / ``gw-policies-redis``.
- ``gw``: mcp-gateway with no task, no policies (authentication and the proxy path only).
- ``gw-legacy-up``: like ``gw`` but speaking the handshake era to the upstream (``protocol: legacy``).
- ``fastmcp``: FastMCP's proxy with defaults; ``fastmcp-shared``: sharing one connected backend session.
- Growth and size (off by default): ``gw-task`` (a task session, no policy), ``gw-policies-10`` and ``gw-policies-100``
  (that many applicable policies); ``direct-1mb-result`` / ``gw-1mb-result`` (a 1 MB tool result),
  ``direct-1mb-arg`` / ``gw-1mb-arg`` (a 1 MB argument); ``gw-list-10k`` (``tools/list`` of an upstream with 10,000
  tools, from the gateway's warm cache).
- ``direct-sdk``, ``gw-sdk``: a real SDK upstream (``sdk_server.py``: the ``mcp`` SDK's ``MCPServer``, stateless, JSON
  answers) directly, and behind the gateway with the task session and the two policies of ``gw-policies``: what share
  of a real upstream's throughput the gateway keeps. 2026-07-28 era only (a stateless server has no handshake). The
  SDK upstream keeps core 1 to itself in both rows; the gateway shares core 0 with the load generator.
- ``gw-policies-redis-w2``: ``gw-policies-redis`` served by ``mcp-gateway serve --workers 2``, each worker pinned to
  a core of its own (one of them the load generator's): the 1-worker row on the same config is the comparison.
- ``floor``, ``floor-fast``: not a product, a calibration: the thinnest Python proxy (``floor_proxy.py``), on the
  gateway's server stack and on uvloop + httptools. Off by default.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import sys
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import psutil
from load import Era, Target
from procs import CAN_PIN, CORES, Proc, free_port

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent

CUSTOMER = "cust-42"
ARGUMENTS = {"text": "hello from the benchmark", "customer_id": CUSTOMER}
TASK_ID = "bench-task"


MEGABYTE = 1_000_000
BIG_RESULT: dict[str, Any] = {"tool": "blob", "arguments": {"bytes": MEGABYTE}}
BIG_ARGUMENT: dict[str, Any] = {"tool": "sink", "arguments": {"text": "x" * MEGABYTE}}


@dataclass(frozen=True)
class Scenario:
    key: str
    label: str
    kind: Literal["direct", "gateway", "fastmcp", "floor"]
    policies: bool = False
    store: Literal["memory", "redis"] = "memory"
    upstream_protocol: Literal["auto", "legacy"] = "auto"
    reuse_session: bool = False
    fast: bool = False
    limits: bool = False
    policy_count: int = 2
    """With ``policies``: the two standard policies, then allow policies that always hold, up to this many."""
    tool: str = "echo"
    arguments: Mapping[str, Any] = field(default_factory=lambda: ARGUMENTS)
    method: str = "tools/call"
    upstream_tools: int = 0
    """More than 0: the scenario gets its own echo upstream listing this many more tools."""
    upstream: Literal["echo", "sdk"] = "echo"
    """``sdk``: the scenario gets its own ``sdk_server.py`` (the SDK's ``MCPServer``) instead of the echo server."""
    workers: int = 1
    """``mcp-gateway serve --workers``."""
    eras: tuple[Era, ...] = ("modern", "legacy")
    """The protocol eras this scenario can be driven in."""

    @property
    def needs_redis(self) -> bool:
        return self.store == "redis"


SCENARIOS: dict[str, Scenario] = {
    s.key: s
    for s in (
        Scenario("direct", "(a) upstream directly", "direct"),
        Scenario("gw-policies", "(b) mcp-gateway, task + 2 CEL policies, memory://", "gateway", policies=True),
        Scenario(
            "gw-policies-redis", "(b) mcp-gateway, task + 2 CEL policies, redis://", "gateway", True, store="redis"
        ),
        Scenario(
            "gw-limits",
            "(b) mcp-gateway, task + 2 CEL policies + limits + budget, memory://",
            "gateway",
            True,
            limits=True,
        ),
        Scenario(
            "gw-limits-redis",
            "(b) mcp-gateway, task + 2 CEL policies + limits + budget, redis://",
            "gateway",
            True,
            store="redis",
            limits=True,
        ),
        Scenario("gw", "(c) mcp-gateway, no policies, memory://", "gateway"),
        Scenario(
            "gw-legacy-up", "(c) mcp-gateway, no policies, legacy-era upstream", "gateway", upstream_protocol="legacy"
        ),
        Scenario("fastmcp", "(d) FastMCP proxy, defaults", "fastmcp"),
        Scenario("fastmcp-shared", "(d) FastMCP proxy, one shared backend session", "fastmcp", reuse_session=True),
        Scenario("gw-task", "(e) mcp-gateway, task, no policy, memory://", "gateway", True, policy_count=0),
        Scenario("gw-policies-10", "(e) mcp-gateway, task + 10 CEL policies", "gateway", True, policy_count=10),
        Scenario("gw-policies-100", "(e) mcp-gateway, task + 100 CEL policies", "gateway", True, policy_count=100),
        Scenario("direct-1mb-result", "(f) upstream directly, 1 MB result", "direct", **BIG_RESULT),
        Scenario("gw-1mb-result", "(f) mcp-gateway, no policies, 1 MB result", "gateway", **BIG_RESULT),
        Scenario("direct-1mb-arg", "(f) upstream directly, 1 MB argument", "direct", **BIG_ARGUMENT),
        Scenario("gw-1mb-arg", "(f) mcp-gateway, no policies, 1 MB argument", "gateway", **BIG_ARGUMENT),
        Scenario(
            "gw-list-10k",
            "(f) mcp-gateway, tools/list of 10,000 tools",
            "gateway",
            method="tools/list",
            upstream_tools=10_000,
        ),
        Scenario("direct-sdk", "(g) SDK upstream directly", "direct", upstream="sdk", eras=("modern",)),
        Scenario(
            "gw-sdk",
            "(g) mcp-gateway, task + 2 CEL policies, SDK upstream",
            "gateway",
            True,
            upstream="sdk",
            eras=("modern",),
        ),
        Scenario(
            "gw-policies-redis-w2",
            "(h) mcp-gateway, task + 2 CEL policies, redis://, --workers 2",
            "gateway",
            True,
            store="redis",
            workers=2,
        ),
        Scenario("floor", "(ref) thinnest Python proxy, asyncio + h11", "floor"),
        Scenario("floor-fast", "(ref) thinnest Python proxy, uvloop + httptools", "floor", fast=True),
    )
}
DEFAULT_SCENARIOS = (
    "direct",
    "gw-policies",
    "gw-policies-redis",
    "gw-policies-redis-w2",
    "gw",
    "fastmcp",
    "fastmcp-shared",
    "direct-sdk",
    "gw-sdk",
)


@dataclass
class Running:
    """A scenario whose process is up, with the target the load generator drives."""

    scenario: Scenario
    proc: Proc
    target: Target
    store_prefix: str | None = None
    helpers: list[Proc] = field(default_factory=list)
    """Processes started for this scenario alone (its own upstream), stopped with it."""
    upstream: Proc | None = None
    """The scenario's own upstream, when it is not the shared echo server."""

    def measured(self) -> list[psutil.Process]:
        """The measured process and its descendants (the workers of ``serve --workers``), whose CPU counts as one."""
        root = self.proc.process
        return [root, *root.children(recursive=True)]


def gateway_bin() -> str:
    """``$MCP_GATEWAY_BIN`` if set (to try another environment), else the project's own ``mcp-gateway`` (its .venv, as
    ``make run`` uses it), else whatever is on PATH."""
    if override := os.environ.get("MCP_GATEWAY_BIN"):
        return override
    local = REPO / ".venv" / "bin" / "mcp-gateway"
    return str(local) if local.exists() else "mcp-gateway"


def gateway_config(
    scenario: Scenario, *, port: int, upstream: str, key_sha256: str, redis_url: str | None, prefix: str
) -> dict[str, Any]:
    store: dict[str, Any] = {"url": "memory://"}
    if scenario.store == "redis":
        if redis_url is None:
            raise ValueError(f"scenario {scenario.key} needs Redis")
        store = {"url": redis_url, "prefix": prefix}
    config: dict[str, Any] = {
        "server": {"host": "127.0.0.1", "port": port},
        "store": store,
        "upstreams": [
            {
                "name": "echo",
                "transport": "streamable-http",
                "url": upstream,
                "protocol": scenario.upstream_protocol,
                "timeout": 30,
            }
        ],
        "identities": [
            {"id": "bench-agent", "labels": {"team": "bench"}, "credentials": [{"sha256": key_sha256}]},
        ],
    }
    if scenario.policies:
        config["tasks"] = [
            {
                "id": TASK_ID,
                "name": "Benchmark task",
                "labels": {"kind": "bench"},
                "contextSchema": {
                    "type": "object",
                    "required": ["customer_id"],
                    "properties": {"customer_id": {"type": "string", "minLength": 1}},
                },
            }
        ]
        standard = [
            {
                "name": "same-customer",
                "effect": "allow",
                "tools": ["echo__*"],
                "condition": "task.context.customer_id == request.tool.args.customer_id",
                "message": "this task may only touch its own customer",
            },
            {
                "name": "bench-team-only",
                "effect": "allow",
                "condition": "identity.labels.team == 'bench' && request.tool.upstream == 'echo'",
                "message": "only the bench team may call the echo upstream",
            },
        ]
        always = [
            {
                "name": f"always-{i}",
                "effect": "allow",
                "tools": ["echo__*"],
                "condition": f"request.tool.args.customer_id != 'nobody-{i}'",
            }
            for i in range(max(0, scenario.policy_count - len(standard)))
        ]
        config["policies"] = (standard + always)[: scenario.policy_count]
    if scenario.limits:
        config["limits"] = BENCH_LIMITS
        config["tasks"][0]["budgets"] = {"tools": {"echo__echo": 10**12}, "totalCalls": 10**12}
    return config


# Far above what the load reaches: every call is charged, none refused.
_NEVER_REACHED = {"rate": 1_000_000, "per": 1}
BENCH_LIMITS: dict[str, Any] = {
    "perIdentity": _NEVER_REACHED,
    "perIdentityTool": [{"tools": ["echo__*"], **_NEVER_REACHED}],
    "perTaskSession": _NEVER_REACHED,
    "perUpstream": {"echo": _NEVER_REACHED},
}


def start_echo(logs: Path, core: int, tools: int = 0, name: str = "echo") -> tuple[Proc, str]:
    port = free_port()
    argv = [sys.executable, str(BENCH_DIR / "echo_server.py"), "--port", str(port), "--tools", str(tools)]
    proc = Proc(name, argv, logs / f"{name}.log", core)
    proc.start().wait_port(port)
    return proc, f"http://127.0.0.1:{port}/mcp"


def start_sdk(logs: Path, core: int, name: str = "sdk") -> tuple[Proc, str]:
    port = free_port()
    argv = [sys.executable, str(BENCH_DIR / "sdk_server.py"), "--port", str(port)]
    proc = Proc(name, argv, logs / f"{name}.log", core)
    proc.start().wait_port(port)
    return proc, f"http://127.0.0.1:{port}/mcp"


def start_redis(logs: Path, core: int) -> tuple[Proc, str]:
    """A throwaway Redis (no persistence) so its memory and latency are ours alone."""
    port = free_port()
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    proc = Proc("redis", argv, logs / "redis.log", core)
    proc.start().wait_port(port)
    return proc, f"redis://127.0.0.1:{port}/0"


def start_scenario(
    scenario: Scenario,
    *,
    echo: Proc,
    upstream: str,
    logs: Path,
    core: int,
    redis_url: str | None,
    log_level: str,
    echo_core: int = 0,
) -> Running:
    """Start the process the scenario measures and return its target (the echo process itself for ``direct``).

    A scenario with the SDK upstream starts its own, on ``core`` in both its direct and its proxied form (the slow
    upstream keeps the same core to itself, so both rows have the same limit); the gateway in front of it then runs
    on ``echo_core``, beside the load generator."""
    helpers: list[Proc] = []
    own_upstream: Proc | None = None
    if scenario.upstream == "sdk":
        own_upstream, upstream = start_sdk(logs, core, name=f"sdk-{scenario.key}")
        helpers.append(own_upstream)
        if scenario.kind == "direct":
            target = Target(upstream, scenario.tool, scenario.arguments, method=scenario.method)
            return Running(scenario, own_upstream, target, helpers=helpers, upstream=own_upstream)
        core = echo_core
    if scenario.kind == "direct":
        return Running(scenario, echo, Target(upstream, scenario.tool, scenario.arguments, method=scenario.method))
    if scenario.upstream_tools:
        own, upstream = start_echo(logs, echo_core, scenario.upstream_tools, name=f"echo-{scenario.key}")
        helpers.append(own)
    port = free_port()
    if scenario.kind in ("fastmcp", "floor"):
        script = "fastmcp_proxy.py" if scenario.kind == "fastmcp" else "floor_proxy.py"
        argv = [sys.executable, str(BENCH_DIR / script), "--upstream", upstream, "--port", str(port)]
        if scenario.reuse_session:
            argv.append("--reuse-session")
        if scenario.fast:
            argv.append("--fast")
        proc = Proc(scenario.key, argv, logs / f"{scenario.key}.log", core).start()
        proc.wait_port(port, timeout=60)
        return Running(scenario, proc, Target(url=f"http://127.0.0.1:{port}/mcp", tool="echo", arguments=ARGUMENTS))

    key = "mgw_bench_" + secrets.token_hex(16)
    prefix = f"mcpgw-bench-{secrets.token_hex(4)}:"
    config = gateway_config(
        scenario,
        port=port,
        upstream=upstream,
        key_sha256=hashlib.sha256(key.encode()).hexdigest(),
        redis_url=redis_url,
        prefix=prefix,
    )
    config_path = logs / f"{scenario.key}.yaml"
    config_path.parent.mkdir(parents=True, exist_ok=True)
    config_path.write_text(json.dumps(config, indent=2))  # JSON is YAML
    argv = [gateway_bin(), "--log-level", log_level, "serve", "--config", str(config_path)]
    if scenario.workers > 1:
        argv += ["--workers", str(scenario.workers)]
    proc = Proc(scenario.key, argv, logs / f"{scenario.key}.log", core).start()
    base = f"http://127.0.0.1:{port}"
    proc.wait_port(port, timeout=60)
    wait_ready(proc, base)
    if scenario.workers > 1:
        spread_workers(proc, scenario.workers, core)
    headers = {"Authorization": f"Bearer {key}"}
    if scenario.policies:
        headers["X-Task-Token"] = create_task_session(base, key)
    target = Target(f"{base}/mcp", f"echo__{scenario.tool}", scenario.arguments, headers, scenario.method)
    store_prefix = prefix if scenario.needs_redis else None
    return Running(scenario, proc, target, store_prefix=store_prefix, helpers=helpers, upstream=own_upstream)


def worker_processes(proc: Proc) -> list[psutil.Process]:
    """The workers of ``serve --workers`` (multiprocessing's spawned children, not its resource tracker)."""
    return [child for child in proc.process.children() if "spawn_main" in " ".join(child.cmdline())]


def spread_workers(proc: Proc, count: int, first_core: int, timeout: float = 30.0) -> list[int]:
    """Pin each worker of ``serve --workers`` to a core of its own, ``first_core`` first, then the others in turn;
    returns the cores given. ``taskset`` pinned the parent, and so every worker it spawned, to ``first_core``: N
    workers on one core would measure nothing but the cost of having N. The parent only supervises (it wakes twice a
    second), so it stays where it is."""
    deadline = time.monotonic() + timeout
    workers: list[psutil.Process] = []
    while time.monotonic() < deadline:
        workers = worker_processes(proc)
        if len(workers) >= count:
            break
        time.sleep(0.1)
    if len(workers) < count:
        raise RuntimeError(f"{proc.name}: {len(workers)} of {count} workers running (see {proc.log})")
    if not CAN_PIN:
        return []
    order = [first_core, *sorted(set(range(CORES)) - {first_core})]
    given = [order[i % len(order)] for i in range(len(workers))]
    for worker, core in zip(workers, given, strict=True):
        worker.cpu_affinity([core])
    return given


def wait_ready(proc: Proc, base: str, timeout: float = 30.0) -> None:
    """``/readyz`` says the store is reachable and the upstream connected."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        proc.check_alive()
        try:
            with urllib.request.urlopen(f"{base}/readyz", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError as exc:
            last = str(exc)
        time.sleep(0.1)
    raise TimeoutError(f"{proc.name} not ready within {timeout:g}s: {last} (see {proc.log})")


def create_task_session(base: str, key: str) -> str:
    body = json.dumps({"taskId": TASK_ID, "context": {"customer_id": CUSTOMER}, "ttl": 7200}).encode()
    request = urllib.request.Request(
        f"{base}/v1/tasks/sessions",
        data=body,
        method="POST",
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        token: str = json.loads(response.read())["taskToken"]
        return token
