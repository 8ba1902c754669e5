"""CPU per ``tools/call`` of the gateway's own steps (resolve → decide → record → charge → forward), in-process.

Run from the repository root: ``PYTHONPATH=$PWD .venv/bin/python benchmarks/tool_call_steps.py``. A 2026-07-28 call
as ``http/modern.py`` makes it: the tool resolved for its ``Mcp-Param-*`` header check, then ``Proxy.call_tool``, with
two CEL policies on every call and no limits. Two paths: ``denied`` (a third policy denies: the call ends after the
audit record) and ``forwarded`` (allowed, forwarded to an upstream that was never started, so the forward step runs
to its audit record and metrics without any I/O); each for a caller who sees every tool and one with three
``allowedTools`` globs. Prints the process's own CPU time (``time.process_time``) per call, best of 5 repeats. No
network, no upstream process: only the steps' own cost, so before/after a change of the pipeline can be compared on a
busy machine (the end-to-end scenarios of ``run.py`` include HTTP and the upstream).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from dataclasses import replace
from typing import Any

from mcp_gateway.config import AuditConfig, Identity, PolicyConfig, StdioTransport, UpstreamConfig
from mcp_gateway.core.audit import AuditLog
from mcp_gateway.core.policy import PolicyEngine
from mcp_gateway.core.proxy import Caller, Proxy
from mcp_gateway.errors import RpcError
from mcp_gateway.ops.metrics import Metrics
from mcp_gateway.upstreams.catalog import Catalog, Entry
from mcp_gateway.upstreams.connection import UpstreamConnection

ECHO = UpstreamConnection(UpstreamConfig(name="echo", transport=StdioTransport(command=sys.executable)))
DEFINITION = {
    "name": "echo__echo",
    "inputSchema": {"type": "object", "properties": {"customer_id": {"type": "string"}}},
}
CATALOG = Catalog(version=1, _tools={"echo__echo": Entry("echo__echo", "echo", ECHO, DEFINITION)})
BENCH = Identity(id="bench-agent", name="bench-agent", labels={"team": "bench"})
ALLOWED_TOOLS = ("files__*", "crm__*", "echo__*")
POLICIES = [
    PolicyConfig(name="same-customer", effect="allow", condition="request.tool.args.customer_id == 'c-1'"),
    PolicyConfig(
        name="bench-team",
        effect="allow",
        condition="identity.labels.team == 'bench' && request.tool.upstream == 'echo'",
    ),
]
DENY = PolicyConfig(name="closed", effect="deny", condition="true")
PARAMS = {"name": "echo__echo", "arguments": {"customer_id": "c-1"}}


async def modern_call(proxy: Proxy, caller: Caller) -> dict[str, Any]:
    """What ``ModernEra.request`` asks of the proxy for one ``tools/call`` (before and after issue 13 item 2)."""
    if hasattr(proxy, "find_tool"):
        tool = proxy.find_tool(caller, PARAMS)
        assert tool is not None and tool.param_header_schema is None
        return await proxy.call_tool(caller, PARAMS, tool=tool)
    assert proxy.param_header_schema(caller, "echo__echo") is None  # type: ignore[attr-defined]
    return await proxy.call_tool(caller, PARAMS)


async def per_call_us(proxy: Proxy, caller: Caller, calls: int, forwarded: bool) -> float:
    best = float("inf")
    for _ in range(5):
        cpu = time.process_time()
        for _ in range(calls):
            try:
                result = await modern_call(proxy, caller)
                assert not forwarded and result["isError"] is True
            except RpcError:
                assert forwarded
        best = min(best, (time.process_time() - cpu) / calls * 1e6)
    return best


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=3000)
    args = parser.parse_args()
    logging.getLogger("mcp_gateway").setLevel(logging.ERROR)
    every_tool, three_globs = Caller(identity=BENCH), Caller(identity=replace(BENCH, allowed_tools=ALLOWED_TOOLS))
    for name, policies, forwarded in (("denied", [*POLICIES, DENY], False), ("forwarded", POLICIES, True)):
        for caller in (every_tool, three_globs):
            proxy = Proxy(lambda: CATALOG, PolicyEngine.compile(policies), AuditLog(AuditConfig()), Metrics())
            cpu = await per_call_us(proxy, caller, args.calls, forwarded)
            tools = "every tool" if caller.patterns is None else f"{len(ALLOWED_TOOLS)} allowedTools globs"
            print(f"{name:10s} {tools:22s} CPU {cpu:8.1f} µs/call")


if __name__ == "__main__":
    asyncio.run(main())
