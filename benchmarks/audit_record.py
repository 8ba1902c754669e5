"""Microseconds per audit record on the tools/call path, for a typical argument set and a 1 MB argument.

Run from the repository root: ``PYTHONPATH=$PWD .venv/bin/python benchmarks/audit_record.py``. Prints, per case, the
argument pass (redaction and bounds with hashing, ``ArgumentFilter``), ``AuditLog.record`` on the request path while
the writer runs (filter without hashing, then queue), the same record written inline (what a call pays when the
writer's queue is full: hash, encode, log line to a handler on /dev/null, no store), and the stdio transport's
pre-encoding of the forwarded request (``upstreams/encoding.py``). Best of 5 repeats, so a busy machine shows less
noise.
"""

from __future__ import annotations

import logging
import os
import time
import timeit
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import anyio
import mcp_types as types

from mcp_gateway.config import AuditConfig
from mcp_gateway.core.audit import AuditLog, AuditRecord
from mcp_gateway.core.audit_args import ArgumentFilter
from mcp_gateway.core.policy import Decision

TYPICAL: dict[str, Any] = {
    "customer_id": "c-42",
    "ticket_id": "T-1001",
    "text": "Please reset the customer's shipping address to the one on file and reply with a summary.",
    "priority": 2,
    "tags": ["billing", "urgent"],
    "api_key": "sk-xxxxxxxx",
}
BIG: dict[str, Any] = {"customer_id": "c-42", "blob": "x" * (1024 * 1024)}


def best_us(fn: Callable[[], object], number: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e6


async def queued_us(record: AuditRecord, number: int) -> float:
    """``AuditLog.record`` as a call pays it while the writer runs; the writer catches up between repeats."""
    audit = AuditLog(AuditConfig(), queue_size=number)
    best = float("inf")
    async with audit.running():
        for _ in range(5):
            started = time.perf_counter()
            for _ in range(number):
                audit.record(record)
            best = min(best, time.perf_counter() - started)
            await audit.flushed()
    return best / number * 1e6


def main() -> None:
    records = logging.getLogger("mcp_gateway.audit")
    records.setLevel(logging.INFO)
    records.propagate = False
    records.addHandler(logging.StreamHandler(open(os.devnull, "w")))  # noqa: SIM115 - lives as long as the run
    config = AuditConfig()
    audit = AuditLog(config)
    args_filter = ArgumentFilter(config.redact_keys, config.max_arg_bytes, config.max_record_bytes)
    for name, args, number in (("typical", TYPICAL, 5_000), ("1 MB", BIG, 50)):
        record = AuditRecord.begin(
            identity="alice",
            task_session_id="tok",
            task_name="Support ticket",
            tool="crm__get_customer",
            upstream="crm",
            args=args,
            decision=Decision(allowed=True, reason="allow policies hold: same-customer"),
            now=datetime(2030, 1, 1, tzinfo=UTC),
        ).finish(outcome="ok", latency_ms=1.0)
        request = types.JSONRPCRequest(
            jsonrpc="2.0", id=1, method="tools/call", params={"name": "get_customer", "arguments": args}
        )
        filtered = best_us(lambda a=args: args_filter(a), number)  # type: ignore[misc]
        queued = anyio.run(queued_us, record, number)
        inline = best_us(lambda r=record: audit.record(r), number)  # type: ignore[misc]
        encoded = best_us(lambda q=request: q.model_dump_json(by_alias=True, exclude_unset=True), number)  # type: ignore[misc]
        print(
            f"{name:8s} ArgumentFilter {filtered:9.2f} µs   AuditLog.record: queued {queued:8.2f} µs,"
            f" inline {inline:9.2f} µs   stdio pre-encode {encoded:9.2f} µs"
        )


if __name__ == "__main__":
    main()
