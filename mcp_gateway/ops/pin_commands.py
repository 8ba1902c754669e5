"""``mcp-gateway tools diff`` and ``tools approve``: review and approve changed tool definitions from a shell.

They work against the store alone, never the upstreams: what is shown and approved is exactly the definition a
gateway saw and recorded, not whatever an upstream would answer now. That needs a shared store; with ``memory://``
the pins live inside the serving process, out of reach of another one (use ``/v1/tools/pins`` there).
"""

from __future__ import annotations

import getpass
import sys
from collections.abc import Sequence

from mcp_gateway.config import GatewayConfig
from mcp_gateway.core.audit import AuditLog, AuditRecord
from mcp_gateway.core.pins import NothingToApprove, PinChange, PinStore, changes_for, exposed_tool_name
from mcp_gateway.core.policy import Decision
from mcp_gateway.errors import StoreUnavailable
from mcp_gateway.store import open_store

MEMORY_STORE_EXPLANATION = (
    "the store is memory://: pinned tool definitions live inside each gateway process and no other process can read "
    "or approve them; use a redis:// store, or GET /v1/tools/pins and POST /v1/tools/{name}/approve as an admin"
)


def _name(config: GatewayConfig, change: PinChange) -> str:
    upstream = next((u for u in config.upstreams if u.name == change.upstream), None)
    prefixed = upstream is None or upstream.prefix
    return exposed_tool_name(change.upstream, change.tool, prefixed, config.server.tool_separator)


async def diff(config: GatewayConfig, upstream: str | None) -> int:
    """Print each changed definition as a unified diff; exit 1 when there is any (like ``diff``), 0 when none."""
    if config.store_url.startswith("memory://"):
        print(f"error: {MEMORY_STORE_EXPLANATION}", file=sys.stderr)
        return 2
    store = open_store(config.store_url, config.store_prefix)
    try:
        changes = changes_for(await PinStore(store).changes(), upstream)
    except StoreUnavailable as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    finally:
        await store.close()
    if not changes:
        print("no changed tool definitions await approval")
        return 0
    for change in changes:
        print(f"tool {_name(config, change)} (upstream {change.upstream!r}): definition changed")
        print(f"  pinned  sha256 {change.pinned.sha256} at {change.pinned.at}")
        print(f"  current sha256 {change.current.sha256} seen {change.current.at}")
        print(change.diff())
    return 1


async def approve(config: GatewayConfig, names: Sequence[str], every: bool, sha256: str | None) -> int:
    """Pin the changed definitions of ``names`` (exposed names), or of every changed tool with ``every``."""
    if config.store_url.startswith("memory://"):
        print(f"error: {MEMORY_STORE_EXPLANATION}", file=sys.stderr)
        return 2
    by = f"cli:{getpass.getuser()}"
    store = open_store(config.store_url, config.store_prefix)
    audit = AuditLog(config.audit, store)
    failed = 0
    try:
        async with audit.running():
            pins = PinStore(store)
            changes = {_name(config, change): change for change in await pins.changes()}
            chosen = list(changes) if every else list(names)
            if every and not chosen:
                print("no changed tool definitions await approval")
            for name in chosen:
                change = changes.get(name)
                if change is None:
                    print(f"error: no changed definition of tool {name} awaits approval", file=sys.stderr)
                    failed += 1
                    continue
                try:
                    approved = await pins.approve(change.upstream, change.tool, by, sha256)
                except NothingToApprove as exc:
                    print(f"error: {exc}", file=sys.stderr)
                    failed += 1
                    continue
                audit.record(_approval_record(by, name, change.upstream, approved.sha256))
                print(f"approved {name}: sha256 {approved.sha256}")
    except StoreUnavailable as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    finally:
        await store.close()
    return 1 if failed else 0


def _approval_record(by: str, name: str, upstream: str, sha256: str) -> AuditRecord:
    record = AuditRecord.begin(
        identity=by,
        task_session_id=None,
        task_name=None,
        tool=name,
        upstream=upstream,
        args={},
        decision=Decision(allowed=True, reason=f"approved tool definition sha256 {sha256}"),
        method="tools/approve",
    )
    return record.finish(outcome="approved", latency_ms=None)
