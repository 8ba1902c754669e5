"""Profile one scenario's process under load with py-spy: where does a proxied call spend its time?

    benchmarks/.venv/bin/python benchmarks/profile_under_load.py --scenario gw-policies --era modern --concurrency 32

Starts the echo upstream and the scenario's process with the same pinning as run.py, drives it with the same load
generator, samples the measured process with ``py-spy record`` (needs ptrace: root, or CAP_SYS_PTRACE), writes a
flame graph (SVG) and the raw stacks next to the logs, and prints the frames with the most samples: by own time
(where the CPU actually goes) and inclusive (which call paths cost the most). Last, it prints a Markdown table of the
call's stages (``STAGES``: each a set of files, matched by a sample's innermost gateway frame), each with its share of
the busy samples and that share of the gateway's CPU time per call, metered over the same load: the table that
``benchmarks/README.md`` keeps for issue 13, before and after.

On this machine (root, CAP_SYS_PTRACE, no Yama ptrace restriction) py-spy attaches and pauses the process for each
sample; where ptrace is refused, run as root or grant CAP_SYS_PTRACE; ``--nonblocking`` samples without pausing.
``$MCP_GATEWAY_BIN`` runs another build of the gateway, as in run.py.
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
from procs import CpuMeter, pin_self
from scenarios import REPO, SCENARIOS, start_echo, start_redis, start_scenario

BENCH_DIR = Path(__file__).resolve().parent
PY_SPY = Path(sys.executable).with_name("py-spy")


STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("HTTP front door: origin, credential gate, body (`http/`)", ("mcp_gateway/http/",)),
    ("authentication (`identity/`)", ("mcp_gateway/identity/",)),
    ("task session lookup (`tasks/`)", ("mcp_gateway/tasks/",)),
    ("era: envelope, headers, answer framing (`eras/`)", ("mcp_gateway/eras/",)),
    ("CEL policies (`core/policy.py`, `core/cel.py`)", ("mcp_gateway/core/policy.py", "mcp_gateway/core/cel.py")),
    ("audit record and its log line (`core/audit*.py`)", ("mcp_gateway/core/audit",)),
    ("tools/call pipeline, visibility, limits (rest of `core/`)", ("mcp_gateway/core/",)),
    (
        "upstream hop (`upstreams/`: `connection.py`, `transports/http_calls.py`; aiohttp)",
        ("mcp_gateway/upstreams/", "aiohttp/"),
    ),
    ("store (`store/`)", ("mcp_gateway/store/",)),
    ("metrics, tracing (`ops/`)", ("mcp_gateway/ops/",)),
    ("JSON codec (`json_codec.py`)", ("mcp_gateway/json_codec.py",)),
    ("app wiring (`app.py`, `gateway.py`, `serving.py`, ...)", ("mcp_gateway/",)),
    ("HTTP server: uvicorn, httptools, starlette (no gateway frame)", ("uvicorn/", "starlette/", "httptools/")),
    ("event loop: uvloop's own C code, asyncio (no gateway frame)", ("asyncio/", "uvloop/")),
)
"""The stages of one call, each named by the files that do it, in the order a sample is matched: a sample belongs
to the stage of its innermost gateway frame (so a library call counts where the gateway made it: the audit's log
line to the audit, aiohttp's request to the upstream hop); a sample with no gateway frame goes by its innermost
library frame that names a stage (aiohttp reading an answer: the upstream hop; uvicorn parsing a request: the HTTP
server), else to "other". The stages add up to 100 %."""
LOOP = STAGES[-1][0]
"""A sample with no Python frame above ``Runner.run``: the loop's own C code (uvloop: polling, socket I/O)."""
OTHER = "other (interpreter, GC, libraries outside any stage)"

SLICES: dict[str, tuple[str, ...]] = {
    "anyio primitives: cancel scopes, events, checkpoints (own time)": ("anyio/",),
    "logging (own time)": ("logging/__init__.py",),
    "pydantic validation": ("pydantic/",),
}
"""Cross-cutting slices, reported beside the stages (overlapping them); "own time" counts only the innermost frame."""


def _file(frame: str) -> str:
    """``func (path/file.py:12)`` → ``path/file.py``."""
    where = frame.rpartition(" (")[2].rstrip(")")
    return where.rpartition(":")[0]


def stage_of(frames: list[str]) -> str:
    files = [_file(frame) for frame in frames]
    # Below the event loop's ``Runner.run`` sit the process's start-up frames (``cli.py``, ``serving.py``, or a
    # worker's ``spawn_main``): every sample has them, so only what runs on the loop decides the stage.
    loop = max((i for i, path in enumerate(files) if path == "asyncio/runners.py"), default=-1)
    files = files[loop + 1 :][::-1]  # innermost first
    if not files:
        return LOOP
    for path in files:
        if path.startswith("mcp_gateway/"):
            return next(name for name, prefixes in STAGES if any(path.startswith(p) for p in prefixes))
    for path in files:
        for name, prefixes in STAGES:
            if any(path.startswith(p) for p in prefixes if not p.startswith("mcp_gateway/")):
                return name
    return OTHER


def stage_table(raw: Path, cpu_us_per_call: float | None) -> str:
    """The Markdown table of stages: share of the busy samples and, with the process's CPU per call, µs per call."""
    total = 0
    stages: collections.Counter[str] = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        total += int(count)
        stages[stage_of(stack.split(";"))] += int(count)
    if not total:
        return "no samples"
    lines = ["| stage | share of busy samples | ≈ µs CPU per call |", "|---|--:|--:|"]
    order = [name for name, _ in STAGES] + [OTHER]
    for name in order:
        share = stages.get(name, 0) / total
        us = "-" if cpu_us_per_call is None else f"{share * cpu_us_per_call:,.0f}"
        lines.append(f"| {name} | {100 * share:.1f} % | {us} |")
    whole = "-" if cpu_us_per_call is None else f"{cpu_us_per_call:,.0f}"
    lines.append(f"| **all** ({total} samples) | 100 % | {whole} |")
    return "\n".join(lines)


def commit() -> str:
    """The last commit of this checkout that changed the gateway's own code (benchmark commits do not count), and
    whether its ``mcp_gateway/`` has changes not yet committed."""

    def git(*argv: str) -> str:
        return subprocess.run(["git", "-C", str(REPO), *argv], capture_output=True, text=True).stdout.strip()

    last = git("log", "-1", "--format=%h", "--", "mcp_gateway") or "?"
    return last + (" (dirty mcp_gateway/)" if git("status", "--porcelain", "--", "mcp_gateway") else "")


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
        for name, needles in SLICES.items():
            candidates = frames[-1:] if "own time" in name else frames
            if any(needle in frame for frame in candidates for needle in needles):
                slices[name] += samples
    if not total:
        return "no samples"

    def pct(n: int) -> str:
        return f"{100 * n / total:5.1f}%"

    out = [f"{total} samples (busy time only)", "", "cross-cutting slices (overlapping the stages):"]
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
        if scenario.workers > 1:
            spy.append("--subprocesses")
        if args.nonblocking:
            spy.append("--nonblocking")
        if args.native:
            spy.append("--native")
        meter = CpuMeter({"gateway": run.measured()})
        cpu: dict[str, float] = {}
        load = asyncio.ensure_future(
            run_load(
                run.target,
                args.era,
                args.concurrency,
                duration=args.duration + 2,
                warmup=1.0,
                on_window=(meter.start, lambda: cpu.update(meter.stop())),
            )
        )
        await asyncio.sleep(1.0)
        for fmt, path in (("raw", raw), ("flamegraph", svg)):
            if fmt == "flamegraph":
                # A second, shorter recording for the picture; the numbers come from the first.
                spy[spy.index("-d") + 1] = "1"
            cmd = [str(PY_SPY), *spy, "-f", fmt, "-o", str(path)]
            done = await asyncio.to_thread(subprocess.run, cmd, capture_output=True, text=True)
            if done.returncode:
                raise SystemExit(f"py-spy failed ({' '.join(cmd)}):\n{done.stderr}")
        result = await load
        summary = result.summary()
        us_per_call = cpu["gateway"] / 100 / result.rps * 1e6 if result.rps and "gateway" in cpu else None
        if not args.table:
            print(f"{scenario.label}, {args.era}, c={args.concurrency}: {summary}")
            print(top_frames(raw, args.top))
            print(f"\nraw stacks: {raw}\nflame graph: {svg}\n")
        print(
            f"**{scenario.key}** ({scenario.label}), {args.era} era, c={args.concurrency}, gateway commit "
            f"{commit()}: {summary['rps']:,.0f} req/s under py-spy at {args.rate} Hz, "
            f"{'-' if us_per_call is None else f'{us_per_call:,.0f}'} µs of gateway CPU per call; "
            f"{summary['errors']} errors.\n"
        )
        print(stage_table(raw, us_per_call))
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
    parser.add_argument("--native", action="store_true", help="py-spy also samples C frames (GC, C extensions)")
    parser.add_argument("--table", action="store_true", help="print only the Markdown stage table (and its heading)")
    parser.add_argument(
        "--nonblocking", action="store_true", help="py-spy samples without pausing the process (less exact)"
    )
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "results" / "logs")
    args = parser.parse_args()
    era: Era = args.era
    args.era = era
    uvloop.run(main_async(args))


if __name__ == "__main__":
    main()
