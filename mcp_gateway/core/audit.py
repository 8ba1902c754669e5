"""Audit: one record per ``tools/call`` decision, and per ``resources/read``, ``prompts/get`` and
``completion/complete`` decision (``method`` says which; ``tool`` stays the tool name, empty for the others).

Each record is written twice, for two readers. First, synchronously, as one JSON line on the logger
``mcp_gateway.core.audit``: that copy exists before the call returns, whatever happens to the store. Second, to a capped
store stream (a Redis Stream under ``audit.streamKey``) that ``mcp-gateway audit tail`` and other replicas can read.
The stream write must never slow down or fail a call, so records go through a bounded in-memory queue drained by a
background task; when the queue is full a record is dropped from the stream (never from the log) and counted.

While the store fails, the writer keeps records in a bounded local spool (``audit.spoolSize``) and retries the
oldest once a second, so the stream gets them, in order, once the store is back. When the spool is full its oldest
record gives way (counted in ``overflowed``, logged); records still spooled when the process stops reach only the log.

Records hold names and ids as plain strings, not references, so they stay readable after the identity or task
definition is deleted. Arguments are redacted and bounded (``audit_args.py``) before the record is written anywhere,
and a whole record is capped at ``audit.maxRecordBytes``: recording must never fail, slow down or bloat a call,
whatever its arguments hold.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections import deque
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import anyio

from mcp_gateway.config import AuditConfig
from mcp_gateway.core.audit_args import ArgumentFilter
from mcp_gateway.core.policy import Decision
from mcp_gateway.errors import StoreUnavailable, describe
from mcp_gateway.ops import tracing
from mcp_gateway.store.base import Store

if TYPE_CHECKING:
    from mcp_gateway.config import GatewayConfig

# Records go to "mcp_gateway.audit" and nothing else does, so operators can route that logger to its own sink.
records_logger = logging.getLogger("mcp_gateway.audit")
logger = logging.getLogger("mcp_gateway.audit_writer")

_DROP_WARNING_EVERY = 1000
RETRY_INTERVAL = 1.0
"""How often a spooled record is offered to a failing store again (its health PING runs as often)."""


@dataclass(frozen=True)
class RunTag:
    """The Task Agent run a call is made for: which run, of which agent, on which revision."""

    run_id: str
    agent_id: str
    revision: int


@dataclass(frozen=True)
class AuditRecord:
    """One decision. ``outcome`` is "denied", "ok", "tool_error", "input_required", "upstream_error",
    "upstream_unavailable", "invalid_params" (the arguments could not be encoded for the upstream, so nothing was
    sent), "timeout" or "cancelled"; ``latency_ms`` is the upstream's, None when the call was not
    forwarded.

    ``method``, ``resource`` and ``prompt`` came after the first records were written, so they have defaults: an old
    record reads back as a ``tools/call``. ``tool`` is "" on a record of another method, so readers that select by
    tool name keep seeing only tool calls; ``resource`` holds the URI (``resources/read``, ``ref/resource``
    completions), ``prompt`` the exposed prompt name (``prompts/get``, ``ref/prompt`` completions).

    ``run_id``, ``agent_id`` and ``agent_revision`` (later still, so also defaulted) name the Task Agent run that made
    the call, or that the call of an ``agents__{name}`` tool started; None for a call no run made.
    """

    time: str
    identity: str
    task_session_id: str | None
    task_name: str | None
    tool: str
    upstream: str | None
    decision: Literal["allow", "deny"]
    policy: str | None
    reason: str
    latency_ms: float | None
    outcome: str
    args: Mapping[str, Any]
    method: str = "tools/call"
    resource: str | None = None
    prompt: str | None = None
    run_id: str | None = None
    agent_id: str | None = None
    agent_revision: int | None = None
    trace_id: str | None = None
    """The OpenTelemetry trace id (32 hex digits) of the request that made the decision; None when it was not
    traced, and in records written before tracing existed."""

    @classmethod
    def begin(
        cls,
        *,
        identity: str,
        task_session_id: str | None,
        task_name: str | None,
        tool: str,
        upstream: str | None,
        args: Mapping[str, Any],
        decision: Decision,
        method: str = "tools/call",
        resource: str | None = None,
        prompt: str | None = None,
        run: RunTag | None = None,
        now: datetime | None = None,
    ) -> AuditRecord:
        """A record stamped at decision time; :meth:`finish` fills in what forwarding the call showed."""
        return cls(
            time=_iso_utc(now or datetime.now(UTC)),
            identity=identity,
            task_session_id=task_session_id,
            task_name=task_name,
            tool=tool,
            upstream=upstream,
            decision="allow" if decision.allowed else "deny",
            policy=decision.policy,
            reason=decision.reason,
            latency_ms=None,
            outcome="pending",
            args=args,
            method=method,
            resource=resource,
            prompt=prompt,
            run_id=run.run_id if run else None,
            agent_id=run.agent_id if run else None,
            agent_revision=run.revision if run else None,
            trace_id=tracing.current_trace_id(),
        )

    def finish(self, *, outcome: str, latency_ms: float | None, run: RunTag | None = None) -> AuditRecord:
        """The record with what forwarding showed; ``run``: the run the call started (an agent tool's call)."""
        if run is not None:
            return dataclasses.replace(
                self,
                outcome=outcome,
                latency_ms=latency_ms,
                run_id=run.run_id,
                agent_id=run.agent_id,
                agent_revision=run.revision,
            )
        return dataclasses.replace(self, outcome=outcome, latency_ms=latency_ms)

    def to_json(self, args: Mapping[str, Any] | None = None, *, ascii_only: bool = False) -> str:
        """The record as one JSON line, with ``args`` in place of the record's own when given (redacted ones).

        Built field by field: ``dataclasses.asdict`` deep-copies the arguments first, which showed in profiles.
        ``ascii_only`` escapes every non-ASCII character, lone surrogates included, which UTF-8 cannot carry.
        """
        data = {name: getattr(self, name) for name in _FIELD_NAMES}
        if args is not None:
            data["args"] = args
        # default=str: arguments come from JSON, but a record must never fail to serialise over an odd value.
        return json.dumps(data, separators=(",", ":"), ensure_ascii=ascii_only, default=str)

    @classmethod
    def from_json(cls, text: str) -> AuditRecord:
        """Parse a record; fields added by newer versions are ignored, missing ones are a ValueError."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("an audit record must be a JSON object")
        try:
            return cls(**{key: value for key, value in data.items() if key in _FIELD_NAMES})
        except TypeError as exc:
            raise ValueError(f"not an audit record: {exc}") from None


_FIELD_NAMES = tuple(field.name for field in dataclasses.fields(AuditRecord))


class AuditLog:
    """Writes records to the log at once and to the store stream in the background while :meth:`running`."""

    def __init__(
        self,
        config: AuditConfig,
        store: Store | None = None,
        *,
        queue_size: int = 10_000,
        write_timeout: float = 5.0,
        flush_timeout: float = 5.0,
        retry_interval: float = RETRY_INTERVAL,
    ) -> None:
        self._config = config
        self._args = ArgumentFilter(config.redact_keys, config.max_arg_bytes, config.max_record_bytes)
        self._store = store
        self._write_timeout = write_timeout
        self._flush_timeout = flush_timeout
        self._retry_interval = retry_interval
        self._send, self._receive = anyio.create_memory_object_stream[str](max_buffer_size=queue_size)
        self._spool: deque[str] = deque()
        self.dropped = 0
        self.failed = 0
        """Writes the store refused or did not answer (each retry of a spooled record counts)."""
        self.overflowed = 0
        """Records that gave way in a full spool: in the log, never in the stream."""
        self._failing = False

    @property
    def spooled(self) -> int:
        """Records waiting for the store: queued, being written, and kept while it fails."""
        return len(self._spool) + self._send.statistics().current_buffer_used

    def record(self, record: AuditRecord) -> None:
        """Log the record now and queue it for the store; never blocks and never raises."""
        line = self._line(record)
        records_logger.info(line)
        if self._store is None:
            return
        try:
            self._send.send_nowait(line)
        except anyio.WouldBlock:
            self._drop("the audit queue is full")
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._drop("the audit writer has stopped")

    def _line(self, record: AuditRecord) -> str:
        """The record as it is written: arguments filtered, valid UTF-8, at most ``maxRecordBytes`` long.

        Over the cap, the arguments give way to ``{"truncated": true, "length": N}`` (N: the bytes they took).
        """
        try:
            args = self._args(record.args)
            line, size = _encodable(record, args)
            if size > self._config.max_record_bytes:
                args_size = size - _encodable(record, {})[1] + 2
                line = _encodable(record, {"truncated": True, "length": args_size})[0]
            return line
        # Belt and braces: the filter bounds depth and size, but a record must be written whatever the arguments hold.
        except Exception as exc:
            logger.warning("audit record for %s: arguments could not be encoded (%s)", record.tool, describe(exc))
            return record.to_json({"truncated": True}, ascii_only=True)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[AuditLog]:
        """Drain the queue into the store; on exit, flush what is queued (bounded by ``flush_timeout``)."""
        if self._store is None:
            yield self
            return
        drained = anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._drain, self._store, drained)
            try:
                yield self
            finally:
                self._send.close()
                # Shielded so that records queued before a shutdown still get their chance to reach the store.
                with anyio.move_on_after(self._flush_timeout, shield=True):
                    await drained.wait()
                tg.cancel_scope.cancel()

    async def _drain(self, store: Store, drained: anyio.Event) -> None:
        """Write records oldest first; while the store fails, spool what arrives and retry the oldest."""
        async with self._receive:
            while True:
                if not self._spool:
                    try:
                        self._spool.append(await self._receive.receive())
                    except anyio.EndOfStream:
                        break
                if await self._write(store, self._spool[0]):
                    self._spool.popleft()
                else:
                    await self._spool_for(self._retry_interval)
        drained.set()

    async def _spool_for(self, seconds: float) -> None:
        """Move what arrives into the spool for ``seconds`` (newer records always queue behind older ones)."""
        with anyio.move_on_after(seconds):
            async for line in self._receive:
                if len(self._spool) >= self._config.spool_size:
                    self._spool.popleft()
                    self.overflowed += 1
                    if self.overflowed % _DROP_WARNING_EVERY == 1:
                        logger.warning(
                            "the audit spool is full (audit.spoolSize %d): %d record(s) dropped from the store "
                            "stream so far, oldest first (they are still in the log)",
                            self._config.spool_size,
                            self.overflowed,
                        )
                self._spool.append(line)
            # The queue is closed (shutting down): nothing more will come, but the store gets its retry interval.
            await anyio.sleep(seconds)

    async def _write(self, store: Store, line: str) -> bool:
        try:
            with anyio.fail_after(self._write_timeout):
                await store.append_stream(
                    self._config.stream_key,
                    {"record": line},
                    self._config.stream_maxlen,
                    max_bytes=self._config.stream_max_bytes,
                )
        # Whatever the store raises, the record is already in the log and the writer must keep going.
        except Exception as exc:
            self.failed += 1
            if not self._failing:
                self._failing = True
                logger.warning(
                    "audit records are not reaching %s (%s); they are in the log, and spooled here until it is back",
                    store.description,
                    exc,
                )
            return False
        if self._failing:
            self._failing = False
            logger.warning(
                "audit records reach %s again (%d write(s) failed meanwhile; writing %d spooled record(s))",
                store.description,
                self.failed,
                len(self._spool) - 1,
            )
        return True

    def _drop(self, why: str) -> None:
        self.dropped += 1
        if self.dropped % _DROP_WARNING_EVERY == 1:
            logger.warning(
                "%s: %d audit record(s) dropped from the store stream so far (they are still in the log)",
                why,
                self.dropped,
            )


def _encodable(record: AuditRecord, args: Mapping[str, Any]) -> tuple[str, int]:
    """The record's line and its size in UTF-8 bytes; non-ASCII text is escaped only when UTF-8 cannot carry it."""
    line = record.to_json(args)
    if line.isascii():
        return line, len(line)
    try:
        return line, len(line.encode())
    except UnicodeEncodeError:
        line = record.to_json(args, ascii_only=True)
        return line, len(line)


def _iso_utc(moment: datetime) -> str:
    """ISO 8601 in UTC with milliseconds and a ``Z``, so records sort as text and compare across replicas."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def read_recent(store: Store, stream_key: str, count: int, after: str | None = None) -> list[AuditRecord]:
    """The newest ``count`` records oldest-first, or the records after the stream id ``after``."""
    return [record for _, record in await _read(store, stream_key, count, after)]


async def _read(store: Store, stream_key: str, count: int, after: str | None) -> list[tuple[str, AuditRecord]]:
    records: list[tuple[str, AuditRecord]] = []
    for entry in await store.read_stream(stream_key, count, after):
        try:
            records.append((entry.id, AuditRecord.from_json(entry.fields.get("record", ""))))
        except ValueError as exc:
            logger.warning("skipping audit stream entry %s: %s", entry.id, exc)
    return records


async def tail(config: GatewayConfig, count: int, follow: bool, poll_interval: float = 1.0) -> int:
    """``mcp-gateway audit tail``: print recent records as JSON lines, then new ones as they arrive."""
    from mcp_gateway.store import open_store

    if config.store_url.startswith("memory://"):
        print("audit tail needs a shared store (redis://): memory:// records live only in the serving process")
        return 2
    store = open_store(config.store_url, config.store_prefix)
    last: str | None = None
    try:
        while True:
            for entry_id, record in await _read(store, config.audit.stream_key, count if last is None else 1000, last):
                print(record.to_json(), flush=True)
                last = entry_id
            if not follow:
                return 0
            await anyio.sleep(poll_interval)
    except StoreUnavailable as exc:
        print(f"error: {exc.message}")
        return 1
    finally:
        await store.close()
