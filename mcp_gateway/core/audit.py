"""Audit: one record per ``tools/call`` decision, and per ``resources/read``, ``prompts/get`` and
``completion/complete`` decision (``method`` says which; ``tool`` stays the tool name, empty for the others).

Each record is written twice, for two readers: as one JSON line on the logger ``mcp_gateway.audit``, and to a capped
store stream (a Redis Stream under ``audit.streamKey``) that ``mcp-gateway audit tail`` and other replicas can read.
Neither write may slow down or fail a call, so the request path only filters the arguments (``audit_args.py``: a walk
that copies containers, never strings) and queues the record; one background writer drains the queue in batches,
hashing long strings (in a worker thread when they are large), encoding each line once (msgspec) and handing the same
text to the log and to the stream. When the queue is full (``queue_size`` records, or 64 Mi characters of strings
waiting to be hashed) the record is written on the request path instead, as all were before the writer existed: that
call is slower, no record is lost, and the count is ``mcp_gateway_audit_queue_full_total``. On shutdown every queued
record is logged; a process that is killed loses what was still queued (at most the queue).

While the store fails, the writer keeps records in a bounded local spool (``audit.spoolSize``) and retries the
oldest once a second, so the stream gets them, in order, once the store is back. When the spool is full its oldest
record gives way (counted in ``overflowed``, logged); records still spooled when the process stops reach only the log.
Nothing here decides a call: a store that fails can delay or drop a stream entry, never let a call through.

Records hold names and ids as plain strings, not references, so they stay readable after the identity or task
definition is deleted. Arguments are redacted and bounded before the record is written anywhere, and a whole record
is capped at ``audit.maxRecordBytes``: recording must never fail, slow down or bloat a call, whatever its arguments
hold.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections import deque
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import anyio
import anyio.to_thread

from mcp_gateway import json_codec
from mcp_gateway.config import AuditConfig
from mcp_gateway.core.audit_args import ArgumentFilter, Digests
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
_BATCH = 64
"""Records the writer logs (and spooled records it writes to the store) before it lets the event loop run others."""
_MAX_WAITING_CHARS = 64 * 1024 * 1024
"""Characters of long strings that queued records may keep alive until the writer hashes them; past it, a record is
written on the request path, so a flood of large arguments cannot hold the queue's worth of them in memory."""
_THREAD_HASH_CHARS = 256 * 1024
"""From this many characters to hash in a batch, the writer hashes in a worker thread (a hop costs ~50 µs)."""


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
    """Takes records on the request path and writes them from one background writer while :meth:`running`."""

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
        self._send, self._receive = anyio.create_memory_object_stream[_Queued](max_buffer_size=queue_size)
        self._spool: deque[str] = deque()
        self._writing = False
        self._stopped = False
        self._waiting_chars = 0
        self._accepted = 0
        self._logged = 0
        self._progress: anyio.Event | None = None
        self.queue_full = 0
        """Records written on the request path because the writer's queue was full (in records or in waiting
        characters): slower for that call, never lost."""
        self.dropped = 0
        """Records made after the writer stopped: in the log, never in the stream."""
        self.failed = 0
        """Writes the store refused or did not answer (each retry of a spooled record counts)."""
        self.overflowed = 0
        """Records that gave way in a full spool: in the log, never in the stream."""
        self._failing = False

    @property
    def spooled(self) -> int:
        """Records not yet in the store stream: queued for the writer, and kept while the store fails."""
        return len(self._spool) + self._send.statistics().current_buffer_used

    def record(self, record: AuditRecord) -> None:
        """Hand the record to the writer; never blocks and never raises.

        Only the arguments are filtered here (redaction and bounds, a walk that copies containers, not strings); the
        writer hashes long strings, encodes the line, logs it and sends it to the stream. Without a running writer,
        or with its queue full, the record is written here instead, so none is ever lost from the log.
        """
        try:
            args, digests = self._args.deferred(record.args)
        # Belt and braces, as in _line: recording must never fail a call.
        except Exception as exc:
            logger.warning("audit record for %s: arguments could not be filtered (%s)", record.tool, describe(exc))
            args, digests = {"truncated": True}, Digests()
        if self._writing:
            if self._waiting_chars + digests.size <= _MAX_WAITING_CHARS:
                try:
                    self._send.send_nowait(_Queued(record, args, digests))
                except anyio.WouldBlock:
                    pass
                else:
                    self._waiting_chars += digests.size
                    self._accepted += 1
                    return
            self._note_queue_full()
        digests.compute()
        self._emit(self._line(record, args))

    async def flushed(self) -> None:
        """Wait until every record handed over so far is in the log (and in the stream's spool)."""
        target = self._accepted
        while self._writing and self._logged < target:
            if self._progress is None:
                self._progress = anyio.Event()
            await self._progress.wait()

    def _emit(self, line: str) -> None:
        """The line to the log, and to the spool the stream is written from."""
        records_logger.info(line)
        if self._store is None:
            return
        if self._stopped:
            self._drop("the audit writer has stopped")
            return
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

    def _line(self, record: AuditRecord, args: Mapping[str, Any]) -> str:
        """The record as it is written, encoded once: valid UTF-8, at most ``maxRecordBytes`` long.

        Over the cap, the arguments give way to ``{"truncated": true, "length": N}`` (N: the bytes they took).
        """
        try:
            line = _encoded(record, args)
            if len(line) > self._config.max_record_bytes:
                args_size = len(line) - len(_encoded(record, {})) + 2
                line = _encoded(record, {"truncated": True, "length": args_size})
            return line.decode()
        # Belt and braces: the filter bounds depth and size, but a record must be written whatever the arguments hold.
        except Exception as exc:
            logger.warning("audit record for %s: arguments could not be encoded (%s)", record.tool, describe(exc))
            return record.to_json({"truncated": True}, ascii_only=True)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[AuditLog]:
        """Run the writer; on exit, every queued record is logged, and the stream gets ``flush_timeout`` to take
        what waits for it."""
        done = anyio.Event()
        try:
            async with anyio.create_task_group() as tg:
                self._writing = True
                tg.start_soon(self._write_all, done)
                try:
                    yield self
                finally:
                    self._writing = False
                    self._send.close()
                    # Shielded so that records queued before a shutdown still get their chance to reach the store.
                    with anyio.move_on_after(self._flush_timeout, shield=True):
                        await done.wait()
                    tg.cancel_scope.cancel()
        finally:
            self._writing = False
            self._stopped = True
            self._log_leftovers()
            self._wake()

    async def _write_all(self, done: anyio.Event) -> None:
        """The writer: log each batch of queued records, then write the spool to the store, oldest first; while the
        store fails, keep logging and retry the oldest spooled record every ``retry_interval``."""
        store = self._store
        retry_at = 0.0
        while True:
            if store is None or not self._spool:
                wait: float | None = None
            else:
                wait = max(0.0, retry_at - anyio.current_time()) if self._failing else 0.0
            batch = await self._next_batch(wait)
            if batch is None:
                break
            await self._log_batch(batch)
            due = store is not None and self._spool and anyio.current_time() >= retry_at
            if due and store is not None and not await self._write_spooled(store, _BATCH):
                retry_at = anyio.current_time() + self._retry_interval
        # The queue is closed (shutting down): the store gets its chances until running() stops waiting.
        while store is not None and self._spool:
            if not await self._write_spooled(store, len(self._spool)):
                await anyio.sleep(self._retry_interval)
        done.set()

    async def _next_batch(self, wait: float | None) -> list[_Queued] | None:
        """Up to ``_BATCH`` queued records, waiting at most ``wait`` seconds for the first (None: as long as it
        takes); None once the queue is closed and empty."""
        batch: list[_Queued] = []
        with anyio.move_on_after(wait if wait is not None else math.inf):
            try:
                batch.append(await self._receive.receive())
            except anyio.EndOfStream:
                return None
        while len(batch) < _BATCH:
            try:
                batch.append(self._receive.receive_nowait())
            except (anyio.WouldBlock, anyio.EndOfStream):
                break
        return batch

    async def _log_batch(self, batch: list[_Queued]) -> None:
        waiting = [queued.digests for queued in batch if queued.digests.pending]
        chars = sum(digests.size for digests in waiting)
        if chars >= _THREAD_HASH_CHARS:
            # hashlib releases the GIL: megabytes hash in a worker thread while the event loop serves requests.
            await anyio.to_thread.run_sync(_compute, waiting)
        else:
            _compute(waiting)
        self._waiting_chars -= chars
        for queued in batch:
            self._emit(self._line(queued.record, queued.args))
        self._logged += len(batch)
        self._wake()

    def _log_leftovers(self) -> None:
        """Records still queued when the writer was stopped (the store hung past ``flush_timeout``): to the log."""
        while True:
            try:
                queued = self._receive.receive_nowait()
            except (anyio.WouldBlock, anyio.EndOfStream):
                break
            queued.digests.compute()
            records_logger.info(self._line(queued.record, queued.args))
            self._logged += 1
        self._receive.close()

    def _wake(self) -> None:
        if self._progress is not None:
            self._progress.set()
            self._progress = None

    def _note_queue_full(self) -> None:
        self.queue_full += 1
        if self.queue_full % _DROP_WARNING_EVERY == 1:
            logger.warning(
                "the audit writer is behind: %d record(s) written on the request path so far (none lost)",
                self.queue_full,
            )

    async def _write_spooled(self, store: Store, count: int) -> bool:
        """Write up to ``count`` spooled records, oldest first; False when the store failed (the record stays)."""
        for _ in range(min(count, len(self._spool))):
            if not await self._write(store, self._spool[0]):
                return False
            self._spool.popleft()
        return True

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


@dataclass(frozen=True, slots=True)
class _Queued:
    """A record waiting for the writer, with its filtered arguments and the hashes they still need."""

    record: AuditRecord
    args: dict[str, Any]
    digests: Digests


def _compute(waiting: list[Digests]) -> None:
    for digests in waiting:
        digests.compute()


def _encoded(record: AuditRecord, args: Mapping[str, Any]) -> bytes:
    """The record's line as UTF-8 JSON; non-ASCII text is escaped only when UTF-8 cannot carry it (a lone
    surrogate)."""
    data = {name: getattr(record, name) for name in _FIELD_NAMES}
    data["args"] = args
    try:
        return json_codec.dumps(data)
    except ValueError:
        return json_codec.dumps(data, ascii_only=True)


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
