"""Run every benchmark scenario side by side, on this machine, in one go; write the report.

    benchmarks/run.sh                 # sets up benchmarks/.venv, then runs this with the defaults
    python benchmarks/run.py --quick  # one short round, to check the harness

Layout on a 2-core machine (pinned with taskset; see procs.py): this process (the load generator) on core 0; the
process being measured (a gateway, a FastMCP proxy, or the echo upstream in the direct scenario) alone on core 1;
in the proxied scenarios the echo upstream and Redis share core 0 with the load generator. The real SDK upstream keeps
core 1 to itself in both of its rows (the gateway in front of it then shares core 0 with the load generator), and
``serve --workers 2`` gets one worker on each core. Every scenario's process is
started once and kept up; the runs are interleaved (round by round, era by era, concurrency by concurrency, scenario
by scenario) so drift in the machine's background load spreads over all scenarios instead of landing on one. Each
row reports the median over rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import report
import uvloop
from load import Era, LoadResult, Target, call_once, open_sessions, run_load
from procs import CAN_PIN, CORES, CpuMeter, Proc, pin_self
from scenarios import (
    DEFAULT_SCENARIOS,
    REPO,
    SCENARIOS,
    Running,
    Scenario,
    start_echo,
    start_redis,
    start_scenario,
    worker_processes,
)

LOADGEN_CORE = 0
SUT_CORE = 1 if CORES > 1 else 0
BENCH_DIR = Path(__file__).resolve().parent


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenarios", default=",".join(DEFAULT_SCENARIOS), help=f"any of {', '.join(SCENARIOS)}")
    parser.add_argument("--eras", default="modern,legacy")
    parser.add_argument("--concurrency", default="1,32")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved repetitions; rows report the median")
    parser.add_argument("--duration", type=float, default=6.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before each run")
    parser.add_argument("--idle-sessions", type=int, default=10_000, help="0 skips the idle-session memory test")
    parser.add_argument("--idle-targets", default="gw,gw-redis,fastmcp", help="gw, gw-redis, fastmcp")
    parser.add_argument(
        "--idle-sessions-fastmcp",
        type=int,
        default=1_000,
        help="FastMCP opens ~25 sessions/s here, so it gets fewer (per-session cost is what is compared)",
    )
    parser.add_argument("--redis-url", default=None, help="use this Redis instead of a throwaway redis-server")
    parser.add_argument("--gateway-log-level", default="INFO", help="mcp-gateway serve --log-level (default: its own)")
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "results")
    parser.add_argument("--name", default="latest", help="basename of the report files in --out")
    parser.add_argument("--from-json", type=Path, default=None, help="only rewrite the report from a saved .json")
    parser.add_argument("--quick", action="store_true", help="1 round of 2 s, 1,000 idle sessions: a harness check")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.duration, args.warmup = 1, 2.0, 0.5
        args.idle_sessions = min(args.idle_sessions, 1000)
        args.idle_sessions_fastmcp = min(args.idle_sessions_fastmcp, 200)
    return args


def machine() -> dict[str, Any]:
    model = platform.processor() or ""
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass

    def git(*cmd: str) -> str:
        done = subprocess.run(["git", "-C", str(REPO), *cmd], capture_output=True, text=True, check=False)
        return done.stdout.strip()

    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "cpu": model,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "gateway_commit": git("rev-parse", "--short", "HEAD")
        + (" (dirty tree)" if git("status", "--porcelain") else ""),
        "pinning": CAN_PIN,
        "versions": report.versions(),
    }


async def preflight(running: dict[str, Running], eras: list[Era]) -> list[str]:
    """Before timing anything: every scenario answers a real tool call in every era, and policies really judge."""
    notes: list[str] = []
    for key, run in running.items():
        run_eras = [era for era in eras if era in run.scenario.eras]
        for era in run_eras:
            answer = await call_once(run.target, era)
            result = answer.get("result")
            if not isinstance(result, dict) or result.get("isError"):
                raise RuntimeError(f"pre-flight: {key} ({era}) did not answer the echo call: {answer}")
            if run.scenario.policies and run.scenario.policy_count:
                arguments = {**run.target.arguments, "customer_id": "someone-else"}
                other = Target(run.target.url, run.target.tool, arguments, run.target.headers)
                denied = (await call_once(other, era)).get("result") or {}
                text = json.dumps(denied)
                if not denied.get("isError") or "same-customer" not in text:
                    raise RuntimeError(f"pre-flight: {key} ({era}) let another customer's call through: {text}")
        note = f"{key}: {run.target.method} answered in {' and '.join(run_eras)} era"
        if run.scenario.policies and run.scenario.policy_count:
            note += "; policy denial verified"
        if run.scenario.kind == "gateway":
            note += f"; {upstream_protocol(run.proc)}"
        if run.scenario.workers > 1:
            workers = worker_processes(run.proc)
            where = ", ".join(f"pid {w.pid} on cores {w.cpu_affinity()}" for w in workers)
            note += f"; {len(workers)} worker processes: {where}"
        notes.append(note)
    return notes


def upstream_protocol(proc: Proc) -> str:
    """What the gateway's log says it negotiated with the echo upstream."""
    connected = [line for line in proc.log.read_text().splitlines() if "connected (protocol" in line]
    return connected[-1].split(": ", 1)[-1] if connected else "no 'connected' line in its log"


async def measure(
    running: dict[str, Running],
    echo: Proc,
    redis: Proc | None,
    eras: list[Era],
    levels: list[int],
    args: argparse.Namespace,
) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = []
    total = args.rounds * len(levels) * sum(1 for run in running.values() for era in eras if era in run.scenario.eras)
    done = 0
    for round_no in range(args.rounds):
        for era in eras:
            for concurrency in levels:
                for key, run in running.items():
                    if era not in run.scenario.eras:
                        continue
                    direct = run.scenario.kind == "direct"
                    if run.upstream is None:
                        echo.pin(SUT_CORE if direct else LOADGEN_CORE)
                    upstream = run.upstream or echo
                    procs: dict[str, psutil.Process | list[psutil.Process]] = {
                        "loadgen": psutil.Process(),
                        "upstream": upstream.process,
                    }
                    if not direct:
                        # The gateway and every worker of ``serve --workers``: their CPU counts as one.
                        procs["proxy"] = run.measured()
                    if redis is not None and run.scenario.needs_redis:
                        procs["redis"] = redis.process
                    meter = CpuMeter(procs)
                    cpu: dict[str, float] = {}
                    result: LoadResult = await run_load(
                        run.target,
                        era,
                        concurrency,
                        duration=args.duration,
                        warmup=args.warmup,
                        # Pre-flight proved every scenario answers; a failure now is a finding for the report (a
                        # row with errors), not a reason to throw away the rest of a 20-minute run.
                        max_errors=None,
                        on_window=(meter.start, lambda meter=meter, cpu=cpu: cpu.update(meter.stop())),
                    )
                    run.proc.check_alive()
                    done += 1
                    row = {"scenario": key, "round": round_no, **result.summary(), "cpu": cpu}
                    row["peak_rss"] = run.proc.peak_rss()
                    runs.append(row)
                    print(
                        f"[{done}/{total}] {key:18} {era:6} c={concurrency:<3} {row['rps']:>9.1f} req/s  "
                        f"p50 {row['p50_ms']:8.3f} ms  p99 {row['p99_ms']:8.3f} ms  errors {row['errors']}  cpu {cpu}",
                        flush=True,
                    )
                    if row["errors"]:
                        print(f"    errors: {row['error_samples']}", flush=True)
    return runs


def summarize(runs: list[dict[str, Any]], order: list[str]) -> list[dict[str, Any]]:
    groups: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for row in runs:
        groups.setdefault((row["scenario"], row["era"], row["concurrency"]), []).append(row)
    rows: list[dict[str, Any]] = []
    for (key, era, concurrency), group in groups.items():
        cpu_keys = sorted({k for r in group for k in r["cpu"]})
        rows.append(
            {
                "scenario": key,
                "label": SCENARIOS[key].label,
                "era": era,
                "concurrency": concurrency,
                "rounds": len(group),
                "requests": sum(r["requests"] for r in group),
                "errors": sum(r["errors"] for r in group),
                "rps": statistics.median(r["rps"] for r in group),
                "rps_min": min(r["rps"] for r in group),
                "rps_max": max(r["rps"] for r in group),
                "p50_ms": statistics.median(r["p50_ms"] for r in group),
                "p99_ms": statistics.median(r["p99_ms"] for r in group),
                "cpu": {k: statistics.median(r["cpu"].get(k, 0.0) for r in group) for k in cpu_keys},
                "peak_rss": max(r["peak_rss"] for r in group),
            }
        )
    by = {(r["scenario"], r["era"], r["concurrency"]): r for r in rows}
    for row in rows:
        # A size scenario compares with the upstream answering the same call directly (gw-1mb-arg: direct-1mb-arg).
        baseline = "direct-" + row["scenario"].removeprefix("gw-")
        if baseline not in {key for key, _, _ in by}:
            baseline = "direct"
        direct = by.get((baseline, row["era"], row["concurrency"]))
        fastmcp = by.get(("fastmcp", row["era"], row["concurrency"]))
        if direct is not None and direct is not row:
            row["added_p50_ms"] = row["p50_ms"] - direct["p50_ms"]
            row["added_p99_ms"] = row["p99_ms"] - direct["p99_ms"]
            row["pct_of_direct"] = 100 * row["rps"] / direct["rps"] if direct["rps"] else None
        if fastmcp is not None and fastmcp["rps"]:
            row["x_fastmcp"] = row["rps"] / fastmcp["rps"]
    rank = {key: i for i, key in enumerate(order)}
    rows.sort(key=lambda r: (r["era"] != "modern", r["concurrency"], rank.get(r["scenario"], 99)))
    return rows


async def idle_sessions(
    kind: str,
    count: int,
    *,
    upstream: str,
    echo: Proc,
    logs: Path,
    redis: Proc | None,
    redis_url: str | None,
    log_level: str,
) -> dict[str, Any]:
    """RSS (and Redis memory) growth for ``count`` legacy sessions opened and left idle, on a fresh process."""
    scenario = {"gw": SCENARIOS["gw"], "fastmcp": SCENARIOS["fastmcp"]}.get(kind)
    if kind == "gw-redis":
        scenario = Scenario("gw-idle-redis", "(c) mcp-gateway, no policies, redis://", "gateway", store="redis")
    if scenario is None:
        raise ValueError(f"unknown idle-session target {kind!r}")
    echo.pin(LOADGEN_CORE)
    run = start_scenario(
        scenario,
        echo=echo,
        upstream=upstream,
        logs=logs / "idle",
        core=SUT_CORE,
        redis_url=redis_url,
        log_level=log_level,
    )
    redis_client = None
    if redis_url is not None and scenario.needs_redis:
        import redis as redis_lib

        redis_client = redis_lib.Redis.from_url(redis_url)
    try:
        await open_sessions(run.target, 200)  # first-use costs (imports, caches, pools) out of the measurement
        await asyncio.sleep(0.5)
        before = run.proc.rss()
        redis_before = int(redis_client.info("memory")["used_memory"]) if redis_client else 0
        started = time.monotonic()
        ids = await open_sessions(run.target, count)
        elapsed = time.monotonic() - started
        await asyncio.sleep(1.0)
        after = run.proc.rss()
        row: dict[str, Any] = {
            "target": kind,
            "label": scenario.label,
            "sessions": len(ids),
            "open_rate": len(ids) / elapsed,
            "rss_before": before,
            "rss_after": after,
            "per_session_process": (after - before) / len(ids),
        }
        if redis_client is not None and run.store_prefix is not None:
            redis_after = int(redis_client.info("memory")["used_memory"])
            keys = list(redis_client.scan_iter(match=f"{run.store_prefix}mcpsession:*", count=1000))
            sampled = keys[:: max(1, len(keys) // 2000)]
            usage = [int(redis_client.memory_usage(k) or 0) for k in sampled]
            row.update(
                redis_keys=len(keys),
                redis_per_key=statistics.mean(usage) if usage else None,
                redis_used_delta_per_session=(redis_after - redis_before) / len(ids),
            )
        print(f"idle sessions {kind}: {json.dumps(row)}", flush=True)
        return row
    finally:
        if redis_client is not None:
            redis_client.close()
        run.proc.stop()


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    keys = [k.strip() for k in args.scenarios.split(",") if k.strip()]
    unknown = [k for k in keys if k not in SCENARIOS]
    if unknown:
        raise SystemExit(f"unknown scenario(s): {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    eras: list[Era] = [e for e in ("modern", "legacy") if e in args.eras.split(",")]  # type: ignore[misc]
    levels = [int(c) for c in args.concurrency.split(",")]
    idle_targets = [t.strip() for t in args.idle_targets.split(",") if t.strip()] if args.idle_sessions else []
    logs = args.out / "logs"
    pin_self(LOADGEN_CORE)
    info = machine()
    print(f"machine: {json.dumps(info)}", flush=True)

    procs: list[Proc] = []
    try:
        echo, upstream = start_echo(logs, SUT_CORE)
        procs.append(echo)
        redis: Proc | None = None
        redis_url = args.redis_url
        if redis_url is None and (any(SCENARIOS[k].needs_redis for k in keys) or "gw-redis" in idle_targets):
            redis, redis_url = start_redis(logs, LOADGEN_CORE)
            procs.append(redis)
        running: dict[str, Running] = {}
        for key in keys:
            run = start_scenario(
                SCENARIOS[key],
                echo=echo,
                upstream=upstream,
                logs=logs,
                core=SUT_CORE,
                redis_url=redis_url,
                log_level=args.gateway_log_level,
            )
            running[key] = run
            procs.extend(run.helpers)
            if run.proc is not echo:
                procs.append(run.proc)
        start_rss = {key: run.proc.rss() for key, run in running.items()}
        notes = await preflight(running, eras)
        if "gw-legacy-up" not in running:
            notes.append(await check_legacy_upstream(echo, upstream, logs, eras))
        for note in notes:
            print(f"pre-flight: {note}", flush=True)
        runs = await measure(running, echo, redis, eras, levels, args)
        peak = {key: run.proc.peak_rss() for key, run in running.items()}
        for run in running.values():
            if run.proc is not echo:
                run.proc.stop()
        idle = [
            await idle_sessions(
                t,
                args.idle_sessions_fastmcp if t == "fastmcp" else args.idle_sessions,
                upstream=upstream,
                echo=echo,
                logs=logs,
                redis=redis,
                redis_url=redis_url,
                log_level=args.gateway_log_level,
            )
            for t in idle_targets
        ]
    finally:
        for proc in reversed(procs):
            proc.stop()
    return {
        "machine": info,
        "settings": {
            "rounds": args.rounds,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "eras": eras,
            "concurrency": levels,
            "gateway_log_level": args.gateway_log_level,
            "layout": layout(),
        },
        "preflight": notes,
        "runs": runs,
        "summary": summarize(runs, keys),
        "start_rss": start_rss,
        "peak_rss": peak,
        "idle_sessions": idle,
    }


async def check_legacy_upstream(echo: Proc, upstream: str, logs: Path, eras: list[Era]) -> str:
    """The gateway must also reach the echo server as a handshake-era upstream (``protocol: legacy``)."""
    run = start_scenario(
        SCENARIOS["gw-legacy-up"],
        echo=echo,
        upstream=upstream,
        logs=logs,
        core=SUT_CORE,
        redis_url=None,
        log_level="INFO",
    )
    try:
        return (await preflight({"gw-legacy-up": run}, eras))[0]
    finally:
        run.proc.stop()


def layout() -> str:
    if not CAN_PIN:
        return f"not pinned ({CORES} core(s) or no taskset): all processes float"
    return (
        f"core {LOADGEN_CORE}: load generator (+ echo upstream and Redis when a proxy is measured); "
        f"core {SUT_CORE}: the measured process alone (gateway / FastMCP proxy, or the echo upstream for 'direct'); "
        f"with the SDK upstream, the SDK server alone on core {SUT_CORE} in both rows and the gateway beside the load "
        f"generator on core {LOADGEN_CORE}; with --workers 2, one worker on each core (the parent, which only "
        f"supervises, on core {SUT_CORE})"
    )


def main() -> None:
    args = parse_args()
    # --from-json: the numbers of an earlier run, reported again (after a change to the report itself).
    results = json.loads(args.from_json.read_text()) if args.from_json else uvloop.run(main_async(args))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(results, indent=2))
    markdown = report.markdown(results)
    (args.out / f"{args.name}.md").write_text(markdown)
    report.chart(results, args.out / f"{args.name}.png")
    print()
    print(markdown)
    print(f"wrote {args.out / args.name}.md, .png and .json", file=sys.stderr)
    default_place = args.name == "latest" and args.out.resolve() == (BENCH_DIR / "results").resolve()
    if default_place and report.update_readme(BENCH_DIR / "README.md", markdown, f"results/{args.name}.png"):
        print(f"updated {BENCH_DIR / 'README.md'}", file=sys.stderr)
    project_readme = BENCH_DIR.parent / "README.md"
    if default_place and report.update_readme(
        project_readme, report.summary(results), f"benchmarks/results/{args.name}.png"
    ):
        print(f"updated {project_readme}", file=sys.stderr)


if __name__ == "__main__":
    main()
