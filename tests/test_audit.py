"""Audit records: redacted, logged at once as JSON, and carried to the store stream without slowing the call."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta, timezone

import pytest

from mcp_gateway.audit import REDACTED, AuditLog, AuditRecord, read_recent, redact
from mcp_gateway.config import AuditConfig
from mcp_gateway.policy import Decision
from mcp_gateway.store import MemoryStore, RedisStore, Store
from tests.conftest import free_port

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
    audit = AuditLog(STREAM, store)
    with caplog.at_level(logging.INFO):
        async with audit.running():
            audit.record(record().finish(outcome="ok", latency_ms=1.0))
            audit.record(record().finish(outcome="ok", latency_ms=1.0))
    await store.close()
    assert len(audit_lines(caplog)) == 2
    assert audit.failed == 2
    warnings = [r.getMessage() for r in caplog.records if r.name == "mcp_gateway.audit_writer"]
    assert len(warnings) == 1
    assert "still in the log" in warnings[0]


async def test_records_beyond_the_queue_are_dropped_from_the_stream_but_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = MemoryStore()
    audit = AuditLog(STREAM, store, queue_size=2)
    with caplog.at_level(logging.INFO):
        for n in range(5):
            audit.record(record(n=n).finish(outcome="ok", latency_ms=1.0))
        async with audit.running():
            pass
    assert audit.dropped == 3
    assert len(audit_lines(caplog)) == 5
    assert [r.args["n"] for r in await read_recent(store, "audit-test", 10)] == [0, 1]
    assert any("dropped" in r.getMessage() for r in caplog.records if r.name == "mcp_gateway.audit_writer")


async def test_records_after_shutdown_are_still_logged(caplog: pytest.LogCaptureFixture) -> None:
    audit = AuditLog(STREAM, MemoryStore())
    async with audit.running():
        pass
    with caplog.at_level(logging.INFO):
        audit.record(record().finish(outcome="ok", latency_ms=1.0))
    assert len(audit_lines(caplog)) == 1
    assert audit.dropped == 1
