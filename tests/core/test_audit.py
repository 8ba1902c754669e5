"""Audit records: redacted, bounded, logged at once as JSON, and carried to the store stream without slowing the
call; on a running gateway, written for every call whatever its arguments hold."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest

from mcp_gateway.config import AuditConfig, parse_config
from mcp_gateway.core.audit import AuditLog, AuditRecord, RunTag, read_recent
from mcp_gateway.core.audit_args import MAX_DEPTH, REDACTED, ArgumentFilter
from mcp_gateway.core.policy import Decision
from mcp_gateway.core.proxy import Caller
from mcp_gateway.errors import RpcError
from mcp_gateway.gateway import running_gateway
from mcp_gateway.store import MemoryStore, RedisStore, Store
from tests.conftest import free_port, start_redis, stop_redis
from tests.support.harness import BASE_CONFIG, DEMO_UPSTREAM, make_config
from tests.upstreams.test_upstreams import demo_http_server, nested

STREAM = AuditConfig(stream_key="audit-test", stream_maxlen=100)
DENIED = Decision(allowed=False, reason="allow policy 'same-customer' does not hold", policy="same-customer")
ALLOWED = Decision(allowed=True, reason="allow policies hold: same-customer")


def audit_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "mcp_gateway.audit"]


def record(decision: Decision = ALLOWED, **args: object) -> AuditRecord:
    return AuditRecord.begin(
        identity="alice",
        task_session_id="tok-1",
        task_name="Support ticket",
        tool="crm__get_customer",
        upstream="crm",
        args=args,
        decision=decision,
        now=datetime(2030, 1, 2, 3, 4, 5, 678000, tzinfo=UTC),
    )


def redact(args: Mapping[str, Any], patterns: Sequence[str]) -> dict[str, Any]:
    return ArgumentFilter(patterns, AuditConfig().max_arg_bytes, AuditConfig().max_record_bytes)(args)


def test_redaction_replaces_matching_keys_at_any_depth() -> None:
    args = {
        "query": "x",
        "password": "hunter2",
        "nested": {"auth": {"apiToken": "t"}, "rows": [{"secret_value": 1, "id": 2}, "plain"]},
    }
    assert redact(args, ("*password*", "*token*", "*secret*")) == {
        "query": "x",
        "password": REDACTED,
        "nested": {"auth": {"apiToken": REDACTED}, "rows": [{"secret_value": REDACTED, "id": 2}, "plain"]},
    }


def test_redaction_matches_keys_case_insensitively() -> None:
    assert redact({"Authorization": "Bearer x", "X-API-KEY": "k"}, ("authorization", "*api-key*")) == {
        "Authorization": REDACTED,
        "X-API-KEY": REDACTED,
    }


def test_redaction_replaces_whole_subtrees_and_leaves_the_input_untouched() -> None:
    args = {"credentials": {"user": "u", "pass": "p"}}
    assert redact(args, ("credentials",)) == {"credentials": REDACTED}
    assert args == {"credentials": {"user": "u", "pass": "p"}}


def test_record_is_logged_as_one_json_line_with_redacted_args(caplog: pytest.LogCaptureFixture) -> None:
    audit = AuditLog(AuditConfig())
    with caplog.at_level(logging.INFO, logger="mcp_gateway.audit"):
        audit.record(record(customer_id="c-42", api_key="k").finish(outcome="ok", latency_ms=12.5))
    [line] = audit_lines(caplog)
    assert json.loads(line) == {
        "time": "2030-01-02T03:04:05.678Z",
        "identity": "alice",
        "task_session_id": "tok-1",
        "task_name": "Support ticket",
        "tool": "crm__get_customer",
        "upstream": "crm",
        "decision": "allow",
        "policy": None,
        "reason": "allow policies hold: same-customer",
        "latency_ms": 12.5,
        "outcome": "ok",
        "args": {"customer_id": "c-42", "api_key": REDACTED},
        "method": "tools/call",
        "resource": None,
        "prompt": None,
        "run_id": None,
        "agent_id": None,
        "agent_revision": None,
        "trace_id": None,
    }


def test_denied_record_names_the_deciding_policy_and_has_no_latency() -> None:
    denied = record(DENIED).finish(outcome="denied", latency_ms=None)
    assert (denied.decision, denied.policy, denied.outcome, denied.latency_ms) == (
        "deny",
        "same-customer",
        "denied",
        None,
    )
    assert denied.reason == DENIED.reason


def test_record_time_is_utc_whatever_zone_it_was_taken_in() -> None:
    paris = timezone(timedelta(hours=1))
    taken = AuditRecord.begin(
        identity="a",
        task_session_id=None,
        task_name=None,
        tool="t",
        upstream=None,
        args={},
        decision=ALLOWED,
        now=datetime(2030, 1, 1, 1, 30, tzinfo=paris),
    )
    assert taken.time == "2030-01-01T00:30:00.000Z"


def test_record_round_trips_through_json_and_ignores_unknown_fields() -> None:
    original = record(customer_id="c-1").finish(outcome="tool_error", latency_ms=3.0)
    data = json.loads(original.to_json()) | {"added_later": True}
    assert AuditRecord.from_json(json.dumps(data)) == original


def test_a_record_written_before_methods_were_audited_reads_back_as_a_tool_call() -> None:
    old = json.loads(record(customer_id="c-1").finish(outcome="ok", latency_ms=1.0).to_json())
    for added in ("method", "resource", "prompt"):
        del old[added]
    parsed = AuditRecord.from_json(json.dumps(old))
    assert parsed.method == "tools/call"
    assert (parsed.tool, parsed.resource, parsed.prompt) == ("crm__get_customer", None, None)


def test_a_record_written_before_agent_runs_were_audited_reads_back_without_a_run() -> None:
    old = json.loads(record(customer_id="c-1").finish(outcome="ok", latency_ms=1.0).to_json())
    for added in ("run_id", "agent_id", "agent_revision"):
        del old[added]
    parsed = AuditRecord.from_json(json.dumps(old))
    assert (parsed.run_id, parsed.agent_id, parsed.agent_revision) == (None, None, None)


def test_a_call_made_by_an_agent_run_names_the_run_and_revision() -> None:
    made = AuditRecord.begin(
        identity="alice",
        task_session_id=None,
        task_name=None,
        tool="crm__get_customer",
        upstream="crm",
        args={},
        decision=ALLOWED,
        run=RunTag("run_1", "ag_1", 3),
    ).finish(outcome="ok", latency_ms=1.0)
    data = json.loads(made.to_json())
    assert (data["run_id"], data["agent_id"], data["agent_revision"]) == ("run_1", "ag_1", 3)
    assert AuditRecord.from_json(made.to_json()) == made


def test_a_record_written_before_tracing_reads_back_without_a_trace_id() -> None:
    old = json.loads(record(customer_id="c-1").finish(outcome="ok", latency_ms=1.0).to_json())
    del old["trace_id"]
    assert AuditRecord.from_json(json.dumps(old)).trace_id is None


def test_a_resource_read_record_names_method_and_uri_and_leaves_tool_empty() -> None:
    read = AuditRecord.begin(
        identity="alice",
        task_session_id=None,
        task_name=None,
        tool="",
        upstream="docs",
        args={},
        decision=DENIED,
        method="resources/read",
        resource="docs://secret",
    ).finish(outcome="denied", latency_ms=None)
    data = json.loads(read.to_json())
    assert (data["method"], data["resource"], data["prompt"], data["tool"]) == (
        "resources/read",
        "docs://secret",
        None,
        "",
    )
    assert AuditRecord.from_json(read.to_json()) == read


def test_text_that_is_not_a_record_is_rejected() -> None:
    with pytest.raises(ValueError):
        AuditRecord.from_json('{"identity": "alice"}')
    with pytest.raises(ValueError):
        AuditRecord.from_json("[1, 2]")


async def test_audit_log_without_store_only_logs(caplog: pytest.LogCaptureFixture) -> None:
    audit = AuditLog(AuditConfig())
    with caplog.at_level(logging.INFO, logger="mcp_gateway.audit"):
        async with audit.running():
            audit.record(record())
    assert len(audit_lines(caplog)) == 1
    assert audit.dropped == 0


async def test_records_reach_the_store_stream_redacted_and_in_order(store: Store) -> None:
    audit = AuditLog(STREAM, store)
    async with audit.running():
        audit.record(record(customer_id="c-1", password="p").finish(outcome="ok", latency_ms=4.2))
        audit.record(record(DENIED, customer_id="c-7").finish(outcome="denied", latency_ms=None))
    first, second = await read_recent(store, "audit-test", 10)
    assert (first.outcome, first.latency_ms, first.args) == ("ok", 4.2, {"customer_id": "c-1", "password": REDACTED})
    assert (second.decision, second.policy, second.outcome) == ("deny", "same-customer", "denied")


async def test_stream_keeps_the_newest_records_up_to_its_cap(store: Store) -> None:
    audit = AuditLog(AuditConfig(stream_key="audit-capped", stream_maxlen=3), store)
    async with audit.running():
        for n in range(5):
            audit.record(record(n=n).finish(outcome="ok", latency_ms=1.0))
    assert [r.args["n"] for r in await read_recent(store, "audit-capped", 10)] == [2, 3, 4]


async def test_reading_after_an_entry_returns_only_newer_records() -> None:
    store = MemoryStore()
    audit = AuditLog(STREAM, store)
    async with audit.running():
        audit.record(record(n=1).finish(outcome="ok", latency_ms=1.0))
    [entry] = await store.read_stream("audit-test", 1)
    async with AuditLog(STREAM, store).running() as later:
        later.record(record(n=2).finish(outcome="ok", latency_ms=1.0))
    assert [r.args["n"] for r in await read_recent(store, "audit-test", 10, after=entry.id)] == [2]


async def test_unreachable_store_is_logged_and_never_breaks_recording(caplog: pytest.LogCaptureFixture) -> None:
    store = RedisStore.from_url(f"redis://127.0.0.1:{free_port()}/0", "audit:", socket_timeout=0.5)
    audit = AuditLog(STREAM, store, flush_timeout=1, retry_interval=0.2)
    with caplog.at_level(logging.INFO):
        async with audit.running():
            audit.record(record().finish(outcome="ok", latency_ms=1.0))
            audit.record(record().finish(outcome="ok", latency_ms=1.0))
    await store.close()
    assert len(audit_lines(caplog)) == 2
    assert audit.failed >= 1
    assert audit.spooled == 2  # never written, never lost from the spool while the process ran
    warnings = [r.getMessage() for r in caplog.records if r.name == "mcp_gateway.audit_writer"]
    assert len(warnings) == 1
    assert "they are in the log, and spooled here" in warnings[0]


async def test_records_written_while_the_store_is_down_reach_the_stream_in_order_once_it_is_back(
    tmp_path: Path,
) -> None:
    process, url = start_redis(tmp_path)
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    store = RedisStore.from_url(url, "audit-spool:", socket_timeout=0.5)
    audit = AuditLog(AuditConfig(stream_key="audit-spool", spool_size=4), store, retry_interval=0.1)
    try:
        async with audit.running():
            audit.record(record(n=0).finish(outcome="ok", latency_ms=1.0))
            await until(lambda: audit.spooled == 0)
            stop_redis(process)
            for n in range(1, 7):
                audit.record(record(n=n).finish(outcome="ok", latency_ms=1.0))
            await until(lambda: audit.overflowed >= 2)
            process, _ = start_redis(tmp_path, port)
            await until(lambda: audit.spooled == 0)
        # The spool kept the newest four; the two oldest gave way (counted), the rest arrived in order (the restarted
        # Redis, persistence off, lost record 0 with the rest of its data).
        assert [r.args["n"] for r in await read_recent(store, "audit-spool", 10)] == [3, 4, 5, 6]
        assert audit.overflowed == 2
    finally:
        await store.close()
        stop_redis(process)


async def until(condition: Callable[[], bool], seconds: float = 10) -> None:
    with anyio.fail_after(seconds):
        while not condition():  # noqa: ASYNC110 - the writer runs in the background
            await anyio.sleep(0.02)


async def test_records_beyond_the_writers_queue_are_written_on_the_request_path_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = MemoryStore()
    audit = AuditLog(STREAM, store, queue_size=2)
    with caplog.at_level(logging.INFO):
        async with audit.running():
            # No checkpoint between the records: the writer cannot take any before the queue is full.
            for n in range(5):
                audit.record(record(n=n).finish(outcome="ok", latency_ms=1.0))
            assert len(audit_lines(caplog)) == 3
            await audit.flushed()
            assert len(audit_lines(caplog)) == 5
    assert (audit.queue_full, audit.dropped) == (3, 0)
    assert sorted(r.args["n"] for r in await read_recent(store, "audit-test", 10)) == [0, 1, 2, 3, 4]
    assert any("written on the request path" in r.getMessage() for r in caplog.records)


async def test_the_request_path_only_queues_and_the_writer_logs_in_the_background(
    caplog: pytest.LogCaptureFixture,
) -> None:
    audit = AuditLog(AuditConfig())
    blob = "x" * 300_000
    with caplog.at_level(logging.INFO, logger="mcp_gateway.audit"):
        async with audit.running():
            audit.record(record(blob=blob).finish(outcome="ok", latency_ms=1.0))
            assert audit_lines(caplog) == []
            await audit.flushed()
            [line] = audit_lines(caplog)
    assert json.loads(line)["args"] == {"blob": summary_of(blob)}


async def test_records_still_queued_when_a_hung_store_outlasts_the_flush_are_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A store that accepts the connection and never answers: the writer hangs on its first stream write while most
    # records still wait in the queue, and shutdown stops waiting for it after flush_timeout.
    async def hang(stream: anyio.abc.SocketStream) -> None:
        await anyio.sleep_forever()

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    store = RedisStore.from_url(f"redis://127.0.0.1:{port}/0", "audit:", socket_timeout=30)
    audit = AuditLog(STREAM, store, write_timeout=30, flush_timeout=0.2)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, hang)
            with caplog.at_level(logging.INFO, logger="mcp_gateway.audit"):
                async with audit.running():
                    for n in range(200):
                        audit.record(record(n=n).finish(outcome="ok", latency_ms=1.0))
            tg.cancel_scope.cancel()
    finally:
        await store.close()
    assert sorted(json.loads(line)["args"]["n"] for line in audit_lines(caplog)) == list(range(200))


async def test_records_after_shutdown_are_still_logged(caplog: pytest.LogCaptureFixture) -> None:
    audit = AuditLog(STREAM, MemoryStore())
    async with audit.running():
        pass
    with caplog.at_level(logging.INFO):
        audit.record(record().finish(outcome="ok", latency_ms=1.0))
    assert len(audit_lines(caplog)) == 1
    assert audit.dropped == 1


# --- bounded records ---


def summary_of(text: str) -> dict[str, Any]:
    data = text.encode()
    return {"truncated": True, "length": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def logged(caplog: pytest.LogCaptureFixture, audit: AuditLog, **args: Any) -> tuple[str, dict[str, Any]]:
    with caplog.at_level(logging.INFO, logger="mcp_gateway.audit"):
        audit.record(record(**args).finish(outcome="ok", latency_ms=1.0))
    line = audit_lines(caplog)[-1]
    return line, json.loads(line)


def test_megabyte_argument_is_recorded_as_its_length_and_sha256(caplog: pytest.LogCaptureFixture) -> None:
    blob = "é" + "x" * (1024 * 1024)
    line, data = logged(caplog, AuditLog(AuditConfig()), blob=blob, password="hunter2", customer_id="c-42")
    assert len(line.encode()) < AuditConfig().max_record_bytes
    assert data["args"] == {"blob": summary_of(blob), "password": REDACTED, "customer_id": "c-42"}


def test_argument_within_the_byte_budget_is_kept_whole() -> None:
    limit = AuditConfig().max_arg_bytes
    assert redact({"a": "x" * limit, "b": "é" * (limit // 2)}, ()) == {"a": "x" * limit, "b": "é" * (limit // 2)}
    assert redact({"a": "é" * (limit // 2 + 1)}, ()) == {"a": summary_of("é" * (limit // 2 + 1))}


@pytest.mark.parametrize("depth", [300, 1000, 5000])
def test_arguments_nested_deeper_than_the_limit_are_summarised(caplog: pytest.LogCaptureFixture, depth: int) -> None:
    _, data = logged(caplog, AuditLog(AuditConfig()), deep=nested(depth), token="t")
    assert data["args"]["token"] == REDACTED
    kept = data["args"]["deep"]
    for _ in range(MAX_DEPTH - 1):
        kept = kept["a"]
    assert kept["truncated"] is True
    assert set(kept) <= {"truncated", "length", "sha256"}


def test_arguments_with_more_items_than_a_record_can_show_stop_the_walk(caplog: pytest.LogCaptureFixture) -> None:
    wide = {"rows": [{"id": n} for n in range(100_000)]}
    assert redact(wide, ()) == {"truncated": True}
    line, data = logged(caplog, AuditLog(AuditConfig()), **wide)
    assert data["args"] == {"truncated": True}
    assert len(line) < 1024


def test_long_keys_are_recorded_as_their_length_and_sha256() -> None:
    key = "k" * 5000
    digest = hashlib.sha256(key.encode()).hexdigest()
    assert redact({key: 1}, ()) == {f"truncated:5000:{digest}": 1}


def test_record_over_its_cap_keeps_only_the_size_of_its_arguments(caplog: pytest.LogCaptureFixture) -> None:
    config = AuditConfig(max_record_bytes=4096)
    line, data = logged(caplog, AuditLog(config), **{f"arg{n}": "x" * 1000 for n in range(20)})
    assert len(line) <= config.max_record_bytes
    assert data["args"]["truncated"] is True
    assert data["args"]["length"] > 20 * 1000
    assert data["outcome"] == "ok"


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no text for you")


def test_odd_values_never_break_a_record(caplog: pytest.LogCaptureFixture) -> None:
    odd = {"surrogate": "\ud800", "huge": 10**5000, "bytes": b"\x00", "set": {1}, "object": Unprintable()}
    line, data = logged(caplog, AuditLog(AuditConfig()), **odd, keys={1: "one", None: "none"})
    line.encode()  # valid UTF-8: a lone surrogate is escaped, not written raw
    assert data["args"]["surrogate"] == "\ud800"
    assert data["args"]["huge"] == {"truncated": True}
    assert data["args"]["object"] == {"truncated": True}
    assert data["args"]["keys"] == {"1": "one", "None": "none"}


async def test_stream_stays_under_its_byte_cap_after_many_large_records(store: Store) -> None:
    config = AuditConfig(stream_key="audit-bytes", max_arg_bytes=4000, stream_max_bytes=64 * 1024)
    audit = AuditLog(config, store)
    async with audit.running():
        for n in range(200):
            audit.record(record(n=n, blob="x" * 3999).finish(outcome="ok", latency_ms=1.0))
    entries = await store.read_stream("audit-bytes", 1000)
    assert sum(len(entry.fields["record"]) + len("record") for entry in entries) <= config.stream_max_bytes
    kept = [AuditRecord.from_json(entry.fields["record"]).args["n"] for entry in entries]
    assert kept[-1] == 199
    assert len(kept) >= 8


def test_audit_limits_are_read_from_config() -> None:
    raw = {**BASE_CONFIG, "audit": {"maxArgBytes": 64, "maxRecordBytes": 2048, "streamMaxBytes": 1 << 20}}
    config = parse_config(raw).audit
    assert (config.max_arg_bytes, config.max_record_bytes, config.stream_max_bytes) == (64, 2048, 1 << 20)


# --- on a running gateway ---


def caller_of(config: Any) -> Caller:
    return Caller(identity=next(i for i in config.identities if i.id == "demo-agent"))


async def test_call_with_arguments_600_levels_deep_to_an_http_upstream_is_audited(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with demo_http_server(free_port()) as url:
        config = make_config(upstreams=[{"name": "web", "url": url}])
        async with running_gateway(config) as gateway:
            with caplog.at_level(logging.INFO, logger="mcp_gateway.audit"):
                params = {"name": "web__echo", "arguments": {"text": "deep", "deep": nested(600)}}
                result = await gateway.proxy.call_tool(caller_of(config), params)
                await gateway.audit.flushed()
    assert result["content"][0]["text"] == "deep"
    [line] = audit_lines(caplog)
    data = json.loads(line)
    assert (data["tool"], data["outcome"], data["args"]["text"]) == ("web__echo", "ok", "deep")


@pytest.mark.parametrize("depth", [300, 1000])
async def test_deep_arguments_to_a_stdio_upstream_fail_alone_and_are_audited(
    caplog: pytest.LogCaptureFixture, depth: int
) -> None:
    config = make_config(upstreams=[DEMO_UPSTREAM])
    async with running_gateway(config) as gateway:
        [connection] = gateway.connections
        with caplog.at_level(logging.INFO, logger="mcp_gateway.audit"):
            params = {"name": "demo__echo", "arguments": {"text": "deep", "deep": nested(depth)}}
            with pytest.raises(RpcError, match="nest too deeply") as caught:
                await gateway.proxy.call_tool(caller_of(config), params)
            result = await gateway.proxy.call_tool(
                caller_of(config), {"name": "demo__echo", "arguments": {"text": "ok"}}
            )
            await gateway.audit.flushed()
        assert (connection.ready, connection.generation) == (True, 1)
    assert caught.value.code == -32602
    assert result["content"][0]["text"] == "ok"
    assert [json.loads(line)["outcome"] for line in audit_lines(caplog)] == ["invalid_params", "ok"]


async def test_arguments_too_deep_for_policies_are_denied_and_audited(caplog: pytest.LogCaptureFixture) -> None:
    config = make_config(upstreams=[DEMO_UPSTREAM])
    async with running_gateway(config) as gateway:
        with caplog.at_level(logging.INFO, logger="mcp_gateway.audit"):
            # The policy reads customer_id, so that is what must become a CEL value (an unread argument is not).
            params = {"name": "demo__get_customer", "arguments": {"customer_id": nested(2000)}}
            result = await gateway.proxy.call_tool(caller_of(config), params)
            await gateway.audit.flushed()
    assert result["isError"] is True
    assert "nest too deeply to evaluate policies" in result["content"][0]["text"]
    [line] = audit_lines(caplog)
    assert (json.loads(line)["decision"], json.loads(line)["outcome"]) == ("deny", "denied")
