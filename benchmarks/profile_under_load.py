"""Profile one scenario's process under load with py-spy: where does a proxied call spend its time?

    benchmarks/.venv/bin/python benchmarks/profile_under_load.py --scenario gw-policies --era modern --concurrency 32

Starts the echo upstream and the scenario's process with the same pinning as run.py, drives it with the same load
generator, samples the measured process with ``py-spy record`` (needs ptrace: root, or CAP_SYS_PTRACE), writes a
flame graph (SVG) and the raw stacks next to the logs, and prints the frames with the most samples: by own time
(where the CPU actually goes) and inclusive (which call paths cost the most).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import subprocess
import sys
from pathlib import Path

import uvloop
from load import Era, run_load
from procs import pin_self
from scenarios import SCENARIOS, start_echo, start_redis, start_scenario

BENCH_DIR = Path(__file__).resolve().parent
PY_SPY = Path(sys.executable).with_name("py-spy")


SUBSYSTEMS: dict[str, tuple[str, ...]] = {
    "upstream hop: UpstreamConnection.request (http_hop + aiohttp, or the SDK session for stdio)": (
        "UpstreamConnection.request",
        "mcp_gateway/upstreams/transports/http_calls.py",
        "aiohttp/",
        "mcp/client/streamable_http.py",
        "mcp/shared/jsonrpc_dispatcher.py",
        "httpx2/",
        "httpcore2/",
    ),
    "HTTP server: uvicorn + starlette (own time)": ("uvicorn/", "starlette/"),
    "h11 (own time; absent with httptools)": ("h11/",),
    "CEL policies": ("mcp_gateway/core/policy.py", "mcp_gateway/core/cel.py"),
    "authentication": ("mcp_gateway/identity/authenticator.py",),
    "task session lookup": ("mcp_gateway/tasks/sessions.py",),
    "audit record": ("mcp_gateway/core/audit.py",),
    "logging (the audit line)": ("logging/__init__.py",),
    "anyio primitives: cancel scopes, events, checkpoints (own time)": ("anyio/",),
    "pydantic validation": ("pydantic/",),
}
"""Named slices of the gateway's time; a sample counts towards each slice one of its frames falls in (they overlap).
Slices named "own time" count only the innermost frame: the others run beneath them."""


def _package(frame: str) -> str:
    where = frame.rpartition(" (")[2].rstrip(")")
    path = where.rpartition(":")[0]
    return path.split("/", 1)[0] if "/" in path else path or "?"


def top_frames(raw: Path, limit: int) -> str:
    """Own and inclusive sample shares per frame and per package, from py-spy's collapsed-stack output."""
    total = 0
    own: collections.Counter[str] = collections.Counter()
    own_pkg: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    slices: collections.Counter[str] = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        samples = int(count)
        total += samples
        frames = stack.split(";")
        own[frames[-1]] += samples
        own_pkg[_package(frames[-1])] += samples
        for frame in set(frames):
            inclusive[frame] += samples
        for name, needles in SUBSYSTEMS.items():
            candidates = frames[-1:] if "own time" in name else frames
            if any(needle in frame for frame in candidates for needle in needles):
                slices[name] += samples
    if not total:
        return "no samples"

    def pct(n: int) -> str:
        return f"{100 * n / total:5.1f}%"

    out = [f"{total} samples (busy time only)", "", "slices (inclusive, overlapping):"]
    out += [f"  {pct(n)}  {name}" for name, n in slices.most_common()]
    out += ["", "own time by package:"]
    out += [f"  {pct(n)}  {name}" for name, n in own_pkg.most_common(limit)]
    out += ["", "own time by frame:"]
    out += [f"  {pct(n)}  {frame}" for frame, n in own.most_common(limit)]
    out += ["", "inclusive by frame:"]
    out += [f"  {pct(n)}  {frame}" for frame, n in inclusive.most_common(limit * 3)]
    return "\n".join(out)


async def main_async(args: argparse.Namespace) -> None:
    scenario = SCENARIOS[args.scenario]
    logs = args.out
    pin_self(0)
    echo, upstream = start_echo(logs, 1 if scenario.kind == "direct" else 0)
    procs = [echo]
    try:
        redis_url = None
        if scenario.needs_redis:
            redis, redis_url = start_redis(logs, 0)
            procs.append(redis)
        run = start_scenario(
            scenario, echo=echo, upstream=upstream, logs=logs, core=1, redis_url=redis_url, log_level=args.log_level
        )
        procs.append(run.proc)
        raw = logs / f"profile-{scenario.key}-{args.era}-c{args.concurrency}.txt"
        svg = raw.with_suffix(".svg")
        spy = ["record", "-p", str(run.proc.pid), "-d", str(int(args.duration)), "-r", str(args.rate)]
        load = asyncio.ensure_future(
            run_load(run.target, args.era, args.concurrency, duration=args.duration + 2, warmup=1.0)
        )
        await asyncio.sleep(1.0)
        for fmt, path in (("raw", raw), ("flamegraph", svg)):
            if fmt == "flamegraph":
                # A second, shorter recording for the picture; the numbers come from the first.
                spy[spy.index("-d") + 1] = "1"
            cmd = [str(PY_SPY), *spy, "-f", fmt, "-o", str(path)]
            await asyncio.to_thread(subprocess.run, cmd, check=True, capture_output=True)
        result = await load
        print(f"{scenario.label}, {args.era}, c={args.concurrency}: {result.summary()}")
        print(top_frames(raw, args.top))
        print(f"\nraw stacks: {raw}\nflame graph: {svg}")
    finally:
        for proc in reversed(procs):
            proc.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", default="gw-policies", choices=list(SCENARIOS))
    parser.add_argument("--era", choices=["modern", "legacy"], default="modern")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds py-spy samples")
    parser.add_argument("--rate", type=int, default=250, help="samples per second")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "results" / "logs")
    args = parser.parse_args()
    era: Era = args.era
    args.era = era
    uvloop.run(main_async(args))


if __name__ == "__main__":
    main()
