"""CPU per call of charging rate limits and a task budget (``Limiter.charge_call``), limits on vs off.

Run from the repository root: ``PYTHONPATH=$PWD .venv/bin/python benchmarks/limits_charge.py [--redis-url URL]``.
Charges one task-session call against every kind of limit (per identity, per identity and tool, per task session,
per upstream) and a budget, all set far above what the run reaches, so every call is charged and none refused, on
``memory://`` and on Redis (one ``EVALSHA`` per call, keys under a throwaway prefix removed afterwards); "off" is
the same call with no ``limits`` and no budgets (no store call). Prints the gateway process's own CPU time
(``time.process_time``) and the wall time per call, best of 5 repeats, so a busy machine shows less noise: the
scenarios ``gw-limits`` / ``gw-limits-redis`` of ``run.py`` show the same cost end to end.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import time
from datetime import UTC, datetime, timedelta

import redis

from mcp_gateway.config import AuditConfig, Identity, TaskBudgets, TaskDefinition, parse_config
from mcp_gateway.core.audit import AuditLog
from mcp_gateway.core.limits import Limiter
from mcp_gateway.ops.metrics import Metrics
from mcp_gateway.store import MemoryStore, RedisStore
from mcp_gateway.store.base import Store
from mcp_gateway.tasks.sessions import TaskSession

NEVER_REACHED = {"rate": 1_000_000, "per": 1}
LIMITS = {
    "perIdentity": NEVER_REACHED,
    "perIdentityTool": [{"tools": ["echo__*"], **NEVER_REACHED}],
    "perTaskSession": NEVER_REACHED,
    "perUpstream": {"echo": NEVER_REACHED},
}
IDENTITY = Identity(id="bench-agent", name="bench-agent")
NOW = datetime.now(UTC)
SESSION = TaskSession("ts_bench", "bench-task", "Bench", "bench-agent", {}, NOW, NOW + timedelta(hours=1))


def limiter(store: Store, on: bool) -> tuple[Limiter, TaskDefinition]:
    raw = {"upstreams": [{"name": "echo", "transport": "stdio", "command": "x"}], "limits": LIMITS if on else {}}
    budgets = TaskBudgets(tools={"echo__echo": 10**12}, total_calls=10**12) if on else None
    task = TaskDefinition(id="bench-task", name="Bench", context_schema={}, budgets=budgets)
    config = parse_config(raw)
    return Limiter(config.limits, store, AuditLog(AuditConfig()), Metrics()), task


async def per_call_us(store: Store, on: bool, calls: int) -> tuple[float, float]:
    """(CPU µs, wall µs) per call, best of 5 repeats."""
    charger, task = limiter(store, on)
    best_cpu = best_wall = float("inf")
    for _ in range(5):
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(calls):
            refusal = await charger.charge_call(IDENTITY, SESSION, task, "echo__echo", "echo")
            assert refusal is None, refusal
        best_cpu = min(best_cpu, (time.process_time() - cpu) / calls * 1e6)
        best_wall = min(best_wall, (time.perf_counter() - wall) / calls * 1e6)
    return best_cpu, best_wall


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    prefix = f"mcpgw-bench-limits-{secrets.token_hex(4)}:"
    redis_store = RedisStore.from_url(args.redis_url, prefix)
    try:
        for name, store, on in (
            ("off", MemoryStore(), False),
            ("memory://", MemoryStore(), True),
            ("redis://", redis_store, True),
        ):
            cpu, wall = await per_call_us(store, on, args.calls)
            print(f"{name:10s} CPU {cpu:8.1f} µs/call   wall {wall:8.1f} µs/call")
    finally:
        await redis_store.close()
        client = redis.Redis.from_url(args.redis_url)
        for key in client.scan_iter(match=f"{prefix}*"):
            client.unlink(key)
        client.close()


if __name__ == "__main__":
    asyncio.run(main())
