"""Rate limits and task budgets: what each call is charged in the store, and what a refusal tells the caller.

A ``tools/call`` that visibility and policies allowed is charged, just before it is forwarded, against every limit
that applies to it (``limits:`` in config: per identity, per identity and tool, per task session, per upstream) and,
in a task session, against the session's call counters, which its task's ``budgets`` cap. All of one call's charges
go to the store in one ``Store.take``: one atomic script on Redis, so replicas sharing a store share the limits and
two of them can never both spend a budget's last unit. A call is charged when it is forwarded, whatever the upstream
then answers: the gateway cannot know whether a call that failed or timed out had its effect.

Keys (before the store's prefix) carry hash tags so that Redis Cluster keeps what is charged together in one slot::

    rate:{i:<identity>}                    perIdentity (also charged by POST /v1/tasks/sessions)
    rate:{i:<identity>}:tool<n>:<tool>     perIdentityTool[n], one bucket per tool its globs match
    rate:{u:<upstream>}                    perUpstream.<upstream>
    rate:{ts:<tokenId>}                    perTaskSession
    calls:{ts:<tokenId>}                   the session's counters: "total" and "tool:<name>"; expire with the session

A store that fails while a call is being charged refuses the call: never allowed because Redis is down. With no
limit configured, no budget on any task and no policy reading ``session``, nothing here touches the store.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from mcp_types import INTERNAL_ERROR

from mcp_gateway.config import Identity, LimitsConfig, RateLimit, TaskDefinition
from mcp_gateway.core.audit import AuditLog, AuditRecord
from mcp_gateway.core.policy import Decision, SessionUsage
from mcp_gateway.errors import BUDGET_EXHAUSTED, RATE_LIMITED, RateLimited, RpcError, StoreUnavailable
from mcp_gateway.ops.metrics import Metrics
from mcp_gateway.store.base import Charge, CountCharge, RateCharge, Store
from mcp_gateway.tasks.sessions import TaskSession

_TOTAL = "total"
_TOOL = "tool:"
_CACHE_LIMIT = 4096
SESSION_START = "tasks/sessions/create"
"""The audit record's ``method`` for a ``POST /v1/tasks/sessions`` refused by ``perIdentity``."""


@dataclass(frozen=True)
class LimitRefusal:
    """A call that was not forwarded because a limit or budget refused it, or because the store could not say."""

    outcome: Literal["rate_limited", "budget_exhausted", "store_unavailable"]
    limit: str
    """What refused: ``perIdentity``, ``perIdentityTool``, ``perTaskSession``, ``perUpstream``, ``totalCalls``,
    ``tools.<name>``, or ``store``."""
    message: str
    code: int
    data: dict[str, Any]

    def rpc_error(self) -> RpcError:
        return RpcError(self.code, self.message, self.data)


@dataclass(frozen=True)
class _Charged:
    """One charge and what to say when it refuses."""

    charge: Charge
    limit: str
    rate: RateLimit | None = None
    cap: int | None = None


def _rate_message(name: str, rate: RateLimit, retry_after_ms: int) -> str:
    return f"rate limit {name} exceeded ({rate.rate:g} calls per {rate.per:g}s); retry in {retry_after_ms} ms"


class Limiter:
    """Charges calls against the configured limits and the task budgets; precomputed per config."""

    def __init__(
        self,
        limits: LimitsConfig,
        store: Store,
        audit: AuditLog,
        metrics: Metrics,
        *,
        count_sessions: bool = False,
    ) -> None:
        self._store = store
        self._audit = audit
        self._metrics = metrics
        self.reconfigure(limits, count_sessions=count_sessions)

    def reconfigure(self, limits: LimitsConfig, *, count_sessions: bool) -> None:
        """Precompute the charges of ``limits``; also a config reload's swap (synchronous, so no charge in progress
        sees half of it). The counters live in the store, so a limit kept across a reload keeps its state."""
        self._limits = limits
        # Counting every call of every task session costs a write per call: only when a budget or a policy needs it.
        self._count_sessions = count_sessions
        self._tool_rules = tuple(
            (index, re.compile("|".join(fnmatch.translate(glob) for glob in rule.tools)), rule.limit)
            for index, rule in enumerate(limits.per_identity_tool)
        )
        self._upstream_charges = {
            name: _Charged(RateCharge(f"rate:{{u:{name}}}", rate.interval_us, rate.burst), "perUpstream", rate)
            for name, rate in limits.per_upstream.items()
        }
        self._identity_charges: dict[tuple[str, str], tuple[_Charged, ...]] = {}
        self.active = (
            bool(limits.per_identity or self._tool_rules or limits.per_task_session or limits.per_upstream)
            or count_sessions
        )
        """Whether every call may be charged; when not, ``charge_call`` returns at once unless the call's task (from
        config or ``/v1/tasks``) sets ``budgets``."""

    async def charge_call(
        self,
        identity: Identity,
        session: TaskSession | None,
        task: TaskDefinition | None,
        tool: str,
        upstream: str,
    ) -> LimitRefusal | None:
        """Charge one call about to be forwarded; None when it may go, else why not (nothing was charged then)."""
        if not self.active and (session is None or task is None or task.budgets is None):
            return None
        charged = [*self._identity_tool_charges(identity.id, tool)]
        if (by_upstream := self._upstream_charges.get(upstream)) is not None:
            charged.append(by_upstream)
        if session is not None:
            # Last: in Cluster the session's slot is charged after the others, so a budget is spent only by a call
            # every rate limit let through.
            charged.extend(self._session_charges(session, task, tool))
        if not charged:
            return None
        try:
            refusal = await self._store.take([c.charge for c in charged])
        except StoreUnavailable:
            self._metrics.limit_refusals.labels("store").inc()
            return LimitRefusal(
                "store_unavailable",
                "store",
                "the store is unreachable, so the call's limits could not be checked; the call was refused",
                INTERNAL_ERROR,
                {"limit": "store"},
            )
        if refusal is None:
            return None
        refused = charged[refusal.index]
        self._metrics.limit_refusals.labels(refused.limit.partition(".")[0]).inc()
        if refused.rate is not None and refusal.retry_after_ms is not None:
            retry = refusal.retry_after_ms
            message = _rate_message(refused.limit, refused.rate, retry)
            return LimitRefusal(
                "rate_limited", refused.limit, message, RATE_LIMITED, {"limit": refused.limit, "retryAfterMs": retry}
            )
        units = "call" if refused.cap == 1 else "calls"
        message = f"task session budget exhausted: {refused.limit} allows {refused.cap} {units} per session"
        data = {"budget": refused.limit, "limit": refused.cap}
        return LimitRefusal("budget_exhausted", refused.limit, message, BUDGET_EXHAUSTED, data)

    def _identity_tool_charges(self, identity_id: str, tool: str) -> tuple[_Charged, ...]:
        """The identity's own charges for a call of ``tool``, built once per (identity, tool)."""
        key = (identity_id, tool)
        found = self._identity_charges.get(key)
        if found is None:
            charges: list[_Charged] = []
            if (rate := self._limits.per_identity) is not None:
                charges.append(
                    _Charged(RateCharge(f"rate:{{i:{identity_id}}}", rate.interval_us, rate.burst), "perIdentity", rate)
                )
            for index, selector, rate in self._tool_rules:
                if selector.match(tool):
                    charge = RateCharge(f"rate:{{i:{identity_id}}}:tool{index}:{tool}", rate.interval_us, rate.burst)
                    charges.append(_Charged(charge, "perIdentityTool", rate))
            if len(self._identity_charges) >= _CACHE_LIMIT:
                self._identity_charges.clear()
            found = self._identity_charges[key] = tuple(charges)
        return found

    def _session_charges(self, session: TaskSession, task: TaskDefinition | None, tool: str) -> list[_Charged]:
        charges: list[_Charged] = []
        tag = f"{{ts:{session.token_id}}}"
        if (rate := self._limits.per_task_session) is not None:
            charges.append(_Charged(RateCharge(f"rate:{tag}", rate.interval_us, rate.burst), "perTaskSession", rate))
        budgets = task.budgets if task is not None else None
        if budgets is None and not self._count_sessions:
            return charges
        # The counters live as long as the session (at least a second, so a charge never outlives it by much).
        ttl = max(1, session.remaining_seconds(datetime.now(UTC)))
        total = budgets.total_calls if budgets is not None else None
        cap = budgets.tools.get(tool) if budgets is not None else None
        charges.append(_Charged(CountCharge(f"calls:{tag}", _TOTAL, total, ttl), "totalCalls", cap=total))
        charges.append(_Charged(CountCharge(f"calls:{tag}", _TOOL + tool, cap, ttl), f"tools.{tool}", cap=cap))
        return charges

    async def usage(self, session: TaskSession) -> SessionUsage:
        """The session's forwarded calls so far, for policies that read ``session``; raises ``StoreUnavailable``."""
        counts = await self._store.read_counts(f"calls:{{ts:{session.token_id}}}")
        calls = {field.removeprefix(_TOOL): n for field, n in counts.items() if field.startswith(_TOOL)}
        return SessionUsage(calls=calls, total_calls=counts.get(_TOTAL, 0))

    async def charge_session_start(self, identity: Identity) -> None:
        """``POST /v1/tasks/sessions`` spends from the identity's ``perIdentity`` limit; over it, ``RateLimited``
        (429 with ``Retry-After``), audited. A store failure raises ``StoreUnavailable`` (503)."""
        rate = self._limits.per_identity
        if rate is None:
            return
        refusal = await self._store.take([RateCharge(f"rate:{{i:{identity.id}}}", rate.interval_us, rate.burst)])
        if refusal is None:
            return
        retry_after_ms = refusal.retry_after_ms or 1
        self._metrics.limit_refusals.labels("perIdentity").inc()
        message = _rate_message("perIdentity", rate, retry_after_ms)
        decision = Decision(allowed=False, reason=message)
        record = AuditRecord.begin(
            identity=identity.id,
            task_session_id=None,
            task_name=None,
            tool="",
            upstream=None,
            args={},
            decision=decision,
            method=SESSION_START,
        )
        self._audit.record(record.finish(outcome="rate_limited", latency_ms=None))
        raise RateLimited(message, retry_after_ms=retry_after_ms)
