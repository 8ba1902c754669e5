"""Reviewing a rebuilt catalog against the pinned tool definitions (``pins.py``), per upstream ``pinning`` mode.

Runs when the catalog is rebuilt (an upstream connected or said its list changed) and while changes await approval,
never per call: a call only looks its tool up in the reviewed snapshot.

- ``off``: not looked at, nothing pinned.
- ``warn`` (default): a tool seen for the first time is pinned; a changed definition is logged once, audited,
  counted in ``mcp_gateway_tool_definition_changes_total`` and recorded for ``tools diff``, and the tool stays
  usable with its new definition.
- ``enforce``: as ``warn``, and the changed tool is withheld (hidden from ``tools/list``, calls refused) until an
  admin approves the new definition. A store that cannot be read withholds every tool of the upstream (fail
  closed); under ``warn`` that is only logged.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from mcp_gateway.core.audit import AuditLog, AuditRecord
from mcp_gateway.core.pins import PinMode, PinnedDefinition, PinStore, pinned_definition
from mcp_gateway.core.policy import Decision
from mcp_gateway.errors import StoreUnavailable
from mcp_gateway.ops.metrics import Metrics
from mcp_gateway.upstreams.catalog import Catalog, Entry, Review

logger = logging.getLogger(__name__)

GATEWAY_IDENTITY = "mcp-gateway"
"""The identity on audit records of what the gateway noticed by itself (a changed definition)."""


class ToolPins:
    def __init__(self, pins: PinStore, modes: Mapping[str, PinMode], audit: AuditLog, metrics: Metrics) -> None:
        self._pins = pins
        self._modes = modes
        self._audit = audit
        self._metrics = metrics
        # (upstream, tool, sha256) of changes already logged and audited by this process: once each, not per review.
        self._reported: set[tuple[str, str, str]] = set()

    def set_modes(self, modes: Mapping[str, PinMode]) -> None:
        """A config reload: the upstreams' ``pinning`` from the next review on (the reload's own, before its swap)."""
        self._modes = modes

    async def review(self, catalog: Catalog) -> Review:
        entries = [entry for entry in catalog.all_tools() if self._modes.get(entry.upstream_name, "warn") != "off"]
        if not entries:
            return Review()
        if not self._pins.available:
            return self._counted(entries, self._store_failed(entries, "the store is unavailable"))
        try:
            awaiting = await self._pins.awaiting()
        except StoreUnavailable as exc:
            return self._counted(entries, self._store_failed(entries, exc.message))
        withheld: set[str] = set()
        unsettled = False
        for i, entry in enumerate(entries):
            try:
                changed = await self._check(entry, awaiting)
            except StoreUnavailable as exc:
                # The rest are not tried: against a store that hangs, each would wait for its own timeout.
                failed = self._store_failed(entries[i:], exc.message)
                return self._counted(entries, Review(frozenset(withheld) | failed.withheld, unsettled=True))
            except ValueError as exc:
                # Something else sits under the pin's key: nothing to compare against, so this tool fails closed.
                logger.error("tool %r: cannot check its pinned definition: %s", entry.name, exc)
                unsettled = True
                if self._modes.get(entry.upstream_name) == "enforce":
                    withheld.add(entry.name)
                continue
            unsettled = unsettled or changed
            if changed and self._modes.get(entry.upstream_name) == "enforce":
                withheld.add(entry.name)
        return self._counted(entries, Review(frozenset(withheld), unsettled))

    def _counted(self, entries: list[Entry], review: Review) -> Review:
        for upstream in {entry.upstream_name for entry in entries}:
            count = sum(1 for entry in entries if entry.upstream_name == upstream and entry.name in review.withheld)
            self._metrics.tools_withheld.labels(upstream).set(count)
        return review

    async def _check(self, entry: Entry, awaiting: frozenset[tuple[str, str]]) -> bool:
        """Pin a tool on first sight, or compare it with its pin; return whether its definition changed."""
        upstream, tool = entry.upstream_name, entry.original_name
        current = PinnedDefinition.of(pinned_definition(entry.definition, tool))
        pinned = await self._pins.pinned(upstream, tool)
        if pinned is None:
            pinned = await self._pins.pin_first_sight(upstream, tool, current)
            if pinned is current:
                logger.info("pinned the definition of tool %r on first sight (sha256 %s)", entry.name, current.sha256)
        if pinned.sha256 == current.sha256:
            if (upstream, tool) in awaiting:
                # Reverted upstream, or approved elsewhere: nothing awaits approval any more.
                await self._pins.clear_change(upstream, tool)
            return False
        if (upstream, tool) not in awaiting:
            await self._pins.record_change(upstream, tool, current)
        if (upstream, tool, current.sha256) not in self._reported:
            self._reported.add((upstream, tool, current.sha256))
            self._report(entry, pinned, current)
        return True

    def _report(self, entry: Entry, pinned: PinnedDefinition, current: PinnedDefinition) -> None:
        mode = self._modes.get(entry.upstream_name, "warn")
        consequence = "withheld until an admin approves it" if mode == "enforce" else "still served (pinning: warn)"
        logger.warning(
            "upstream %r changed the definition of tool %r (pinned sha256 %s, now %s): %s; see `mcp-gateway tools "
            "diff`",
            entry.upstream_name,
            entry.name,
            pinned.sha256,
            current.sha256,
            consequence,
        )
        self._metrics.tool_definition_changes.labels(entry.upstream_name, mode).inc()
        reason = f"tool definition changed: pinned sha256 {pinned.sha256}, now {current.sha256}; {consequence}"
        record = AuditRecord.begin(
            identity=GATEWAY_IDENTITY,
            task_session_id=None,
            task_name=None,
            tool=entry.name,
            upstream=entry.upstream_name,
            args={},
            decision=Decision(allowed=mode != "enforce", reason=reason),
            method="tools/pin",
        )
        self._audit.record(record.finish(outcome="definition_changed", latency_ms=None))

    def _store_failed(self, entries: list[Entry], reason: str) -> Review:
        enforced = frozenset(e.name for e in entries if self._modes.get(e.upstream_name) == "enforce")
        if enforced:
            logger.error(
                "cannot check pinned tool definitions (%s): withholding %d tool(s) of upstreams with pinning: enforce "
                "until the store answers",
                reason,
                len(enforced),
            )
        else:
            logger.warning("cannot check pinned tool definitions (%s); tools stay served (pinning: warn)", reason)
        return Review(enforced, unsettled=True)
