"""Task sessions on every store backend: creation, validation, resolution, expiry and revocation."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import pytest
import redis

from mcp_gateway.config import Identity, TaskDefinition
from mcp_gateway.errors import (
    Forbidden,
    InvalidTaskToken,
    NotFound,
    StoreUnavailable,
    TaskNotPermitted,
    ValidationFailed,
)
from mcp_gateway.ops.metrics import Metrics
from mcp_gateway.store import RedisStore, Store
from mcp_gateway.tasks.definitions import TaskDefinitions
from mcp_gateway.tasks.sessions import CACHED_KEY_PREFIXES, TaskSession, TaskSessions
from tests.conftest import StoreFactory, free_port


def task_sessions(store: Store, tasks: list[TaskDefinition], **kwargs: Any) -> TaskSessions:
    """Sessions of the given config tasks on ``store``."""
    return TaskSessions(store, TaskDefinitions(store, tasks), **kwargs)


TICKET = TaskDefinition(
    id="resolve-ticket",
    name="Resolve a support ticket",
    labels={"team": "support"},
    context_schema={
        "type": "object",
        "required": ["ticket_id", "customer_id"],
        "properties": {
            "ticket_id": {"type": "string"},
            "customer_id": {"type": "string", "pattern": "^C[0-9]+$"},
            "priority": {"type": "integer", "minimum": 1, "maximum": 5},
            "contact": {"type": "string", "format": "email"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "a/b": {"type": "string"},
        },
        "additionalProperties": False,
    },
)
CONTEXT = {"ticket_id": "T-1", "customer_id": "C42"}
ALICE = "alice"
BOB = "bob"
ALICE_AGENT = Identity(id=ALICE, name="Alice")


@pytest.fixture
def sessions(store: Store) -> TaskSessions:
    return task_sessions(store, [TICKET])


# --- creation and resolution ---


async def test_created_session_resolves_for_its_owner(sessions: TaskSessions) -> None:
    token, created = await sessions.create(ALICE_AGENT, "resolve-ticket", CONTEXT)
    resolved = await sessions.resolve(token, ALICE)
    assert resolved == created
    assert resolved.identity_id == ALICE
    assert resolved.task_id == "resolve-ticket"
    assert resolved.task_name == "Resolve a support ticket"
    assert resolved.context == CONTEXT


async def test_token_is_prefixed_and_carries_at_least_256_random_bits(sessions: TaskSessions) -> None:
    token, session = await sessions.create(ALICE_AGENT, "resolve-ticket", CONTEXT)
    other, _ = await sessions.create(ALICE_AGENT, "resolve-ticket", CONTEXT)
    assert re.fullmatch(r"mgt_[A-Za-z0-9_-]{43,}", token)
    assert token != other
    assert re.fullmatch(r"ts_[0-9a-f]{32}", session.token_id)


async def test_session_lifetime_defaults_to_one_hour(sessions: TaskSessions) -> None:
    _, session = await sessions.create(ALICE_AGENT, "resolve-ticket", CONTEXT)
    assert session.expires_at - session.created_at == timedelta(seconds=3600)
    assert session.created_at.tzinfo is not None


async def test_public_description_never_contains_the_token(sessions: TaskSessions) -> None:
    token, session = await sessions.create(ALICE_AGENT, "resolve-ticket", CONTEXT, ttl=600)
    public = (await sessions.get(session.token_id, ALICE)).to_public_dict()
    assert set(public) == {
        "tokenId",
        "taskId",
        "taskVersion",
        "taskName",
        "identityId",
        "context",
        "createdAt",
        "expiresAt",
        "ttl",
    }
    assert public["tokenId"] == session.token_id
    assert public["context"] == CONTEXT
    assert public["expiresAt"].endswith("Z")
    assert 599 <= public["ttl"] <= 600
    assert token not in json.dumps(public)


async def test_context_is_returned_exactly_as_given(sessions: TaskSessions) -> None:
    context = {**CONTEXT, "tags": ["vip", "ünïcode"], "priority": 2}
    token, _ = await sessions.create(ALICE_AGENT, "resolve-ticket", context)
    assert (await sessions.resolve(token, ALICE)).context == context


async def test_unknown_task_is_not_found(sessions: TaskSessions) -> None:
    with pytest.raises(NotFound, match="unknown task 'no-such-task'"):
        await sessions.create(ALICE_AGENT, "no-such-task", CONTEXT)


async def test_start_permission_is_judged_again_for_an_identity_rebuilt_with_other_lists(store: Store) -> None:
    sessions = task_sessions(store, [replace(TICKET, allowed_tools=("demo__get_customer",))])
    await sessions.create(Identity(id=ALICE, name="Alice", allowed_tools=("demo__*",)), "resolve-ticket", CONTEXT)
    narrowed = Identity(id=ALICE, name="Alice", allowed_tools=("demo__echo",))
    with pytest.raises(TaskNotPermitted, match="may not start task 'resolve-ticket'"):
        await sessions.create(narrowed, "resolve-ticket", CONTEXT)


# --- validation ---


async def test_every_schema_violation_is_listed_with_its_pointer(sessions: TaskSessions) -> None:
    bad = {"ticket_id": 7, "priority": 9, "contact": "nobody", "tags": ["ok", 3], "a/b": 1, "extra": True}
    with pytest.raises(ValidationFailed) as caught:
        await sessions.create(ALICE_AGENT, "resolve-ticket", bad)
    details = caught.value.details
    assert [d["pointer"] for d in details] == [
        "",
        "/a~1b",
        "/contact",
        "/customer_id",
        "/priority",
        "/tags/1",
        "/ticket_id",
    ]
    assert all(d["message"] for d in details)
    assert "7 violations" in caught.value.message


async def test_formats_are_checked(sessions: TaskSessions) -> None:
    with pytest.raises(ValidationFailed) as caught:
        await sessions.create(ALICE_AGENT, "resolve-ticket", {**CONTEXT, "contact": "not-an-address"})
    assert caught.value.details == [{"pointer": "/contact", "message": "'not-an-address' is not a 'email'"}]


@pytest.mark.parametrize("context", [["T-1"], "T-1", None, 3])
async def test_context_must_be_a_json_object(sessions: TaskSessions, context: Any) -> None:
    with pytest.raises(ValidationFailed, match="context must be a JSON object") as caught:
        await sessions.create(ALICE_AGENT, "resolve-ticket", context)
    assert caught.value.details[0]["pointer"] == ""


@pytest.mark.parametrize("ttl", [0, -1, 86401, 1.5, "60", True, [60]])
async def test_ttl_outside_one_to_86400_whole_seconds_is_refused(sessions: TaskSessions, ttl: object) -> None:
    with pytest.raises(ValidationFailed, match="ttl must be an integer"):
        await sessions.create(ALICE_AGENT, "resolve-ticket", CONTEXT, ttl=ttl)


@pytest.mark.parametrize(("ttl", "seconds"), [(1, 1), (86400, 86400), (60.0, 60), (None, 3600)])
async def test_ttl_within_bounds_is_the_session_lifetime(sessions: TaskSessions, ttl: object, seconds: int) -> None:
    token, session = await sessions.create(ALICE_AGENT, "resolve-ticket", CONTEXT, ttl=ttl)
    assert session.expires_at - session.created_at == timedelta(seconds=seconds)
    assert (await sessions.resolve(token, ALICE)).remaining_seconds(session.created_at) == seconds


# --- expiry ---


async def test_session_is_rejected_after_its_ttl(sessions: TaskSessions) -> None:
    token, session = await sessions.create(ALICE_AGENT, "resolve-ticket", CONTEXT, ttl=1)
    await sessions.resolve(token, ALICE)
    await anyio.sleep(1.2)
    with pytest.raises(InvalidTaskToken, match="unknown, expired or revoked"):
        await sessions.resolve(token, ALICE)
    with pytest.raises(NotFound):
        await sessions.get(session.token_id, ALICE)


async def test_expiry_is_checked_against_expires_at_not_only_the_store_ttl(store: Store) -> None:
    token, session = await task_sessions(store, [TICKET]).create(ALICE_AGENT, "resolve-ticket", CONTEXT, ttl=60)
    later = task_sessions(store, [TICKET], clock=lambda: datetime.now(UTC) + timedelta(seconds=61))
    with pytest.raises(InvalidTaskToken):
        await later.resolve(token, ALICE)
    with pytest.raises(NotFound):
        await later.get(session.token_id, ALICE)


def test_remaining_seconds_never_goes_below_zero() -> None:
    now = datetime.now(UTC)
    session = TaskSession("ts_x", "t", "T", ALICE, {}, now - timedelta(seconds=10), now - timedelta(seconds=5))
    assert session.remaining_seconds(now) == 0
    assert session.to_public_dict(now)["ttl"] == 0


# --- revocation ---


async def test_revoked_session_token_is_rejected(sessions: TaskSessions) -> None:
    token, session = await sessions.create(ALICE_AGENT, "resolve-ticket", CONTEXT)
    await sessions.revoke(session.token_id, ALICE)
    with pytest.raises(InvalidTaskToken):
        await sessions.resolve(token, ALICE)
    with pytest.raises(NotFound):
        await sessions.get(session.token_id, ALICE)
    with pytest.raises(NotFound):
        await sessions.revoke(session.token_id, ALICE)


async def test_revoking_one_session_leaves_the_others(sessions: TaskSessions) -> None:
    first, first_session = await sessions.create(ALICE_AGENT, "resolve-ticket", CONTEXT)
    second, _ = await sessions.create(ALICE_AGENT, "resolve-ticket", CONTEXT)
    await sessions.revoke(first_session.token_id, ALICE)
    with pytest.raises(InvalidTaskToken):
        await sessions.resolve(first, ALICE)
    assert (await sessions.resolve(second, ALICE)).identity_id == ALICE


async def test_unknown_session_id_is_not_found(sessions: TaskSessions) -> None:
    for token_id in ("ts_" + "0" * 32, "not-a-session-id"):
        with pytest.raises(NotFound, match="not found"):
            await sessions.get(token_id, ALICE)
        with pytest.raises(NotFound):
            await sessions.revoke(token_id, ALICE)


@pytest.mark.parametrize("token", ["", "garbage", "mgt_" + "A" * 43, "mgt_" + "A" * 1000])
async def test_token_that_was_never_issued_is_rejected(sessions: TaskSessions, token: str) -> None:
    with pytest.raises(InvalidTaskToken, match="unknown, expired or revoked"):
        await sessions.resolve(token, ALICE)


# --- ownership ---


async def test_token_of_another_identity_is_forbidden(sessions: TaskSessions) -> None:
    token, session = await sessions.create(ALICE_AGENT, "resolve-ticket", CONTEXT)
    with pytest.raises(Forbidden, match="another identity"):
        await sessions.resolve(token, BOB)
    with pytest.raises(Forbidden):
        await sessions.get(session.token_id, BOB)
    with pytest.raises(Forbidden):
        await sessions.revoke(session.token_id, BOB)
    assert (await sessions.resolve(token, ALICE)).token_id == session.token_id


async def test_session_of_a_task_no_longer_configured_is_rejected(store: Store) -> None:
    token, session = await task_sessions(store, [TICKET]).create(ALICE_AGENT, "resolve-ticket", CONTEXT)
    reconfigured = task_sessions(store, [])
    with pytest.raises(InvalidTaskToken, match="no longer configured"):
        await reconfigured.resolve(token, ALICE)
    await reconfigured.revoke(session.token_id, ALICE)


# --- Redis: storage layout, replicas, outages ---


async def test_raw_token_is_never_stored(redis_store: RedisStore, redis_url: str, key_prefix: str) -> None:
    token, session = await task_sessions(redis_store, [TICKET]).create(ALICE_AGENT, "resolve-ticket", CONTEXT, ttl=120)
    digest = hashlib.sha256(token.encode()).hexdigest()
    raw = redis.Redis.from_url(redis_url)
    try:
        keys = sorted(raw.scan_iter(match=f"{key_prefix}tasksession*:*"))
        # One hash tag, the digest's first four hex digits, which the tokenId also starts with: one Cluster slot.
        tag = "{" + digest[:4] + "}"
        assert session.token_id.startswith("ts_" + digest[:4])
        assert keys == sorted(
            [
                f"{key_prefix}tasksession:{tag}{digest}".encode(),
                f"{key_prefix}tasksession-id:{tag}{session.token_id}".encode(),
            ]
        )
        # The listing index holds the digest, scored by expiry, never the token.
        assert raw.zrange(f"{key_prefix}tasksessions", 0, -1) == [digest.encode()]
        secret = token.encode()
        secret_body = token.removeprefix("mgt_").encode()
        for key in keys:
            value = raw.get(key)
            assert value is not None
            assert secret_body not in key and secret_body not in value and secret not in value
            assert 115_000 < raw.pttl(key) <= 120_000
        assert raw.get(f"{key_prefix}tasksession-id:{tag}{session.token_id}") == digest.encode()
    finally:
        raw.close()


async def test_a_session_stored_by_an_older_version_still_works_and_is_revoked(
    redis_store: RedisStore, redis_url: str, key_prefix: str
) -> None:
    """Before the hash tag, the record and its index had untagged keys: an upgrade must not end those sessions."""
    sessions = task_sessions(redis_store, [TICKET])
    token, session = await sessions.create(ALICE_AGENT, "resolve-ticket", CONTEXT, ttl=120)
    digest = hashlib.sha256(token.encode()).hexdigest()
    old_id = "ts_" + "f" * 32
    raw = redis.Redis.from_url(redis_url)
    try:
        tag = "{" + digest[:4] + "}"
        record = json.loads(raw.get(f"{key_prefix}tasksession:{tag}{digest}") or b"")
        raw.delete(f"{key_prefix}tasksession:{tag}{digest}", f"{key_prefix}tasksession-id:{tag}{session.token_id}")
        raw.set(f"{key_prefix}tasksession:{digest}", json.dumps({**record, "tokenId": old_id}), px=120_000)
        raw.set(f"{key_prefix}tasksession-id:{old_id}", digest, px=120_000)
        assert (await sessions.resolve(token, ALICE)).token_id == old_id
        assert (await sessions.get(old_id, ALICE)).token_id == old_id
        await sessions.revoke(old_id, ALICE)
        assert not raw.exists(f"{key_prefix}tasksession:{digest}", f"{key_prefix}tasksession-id:{old_id}")
        with pytest.raises(InvalidTaskToken):
            await sessions.resolve(token, ALICE)
    finally:
        raw.close()


async def test_revocation_is_seen_at_once_by_a_second_replica(redis_stores: StoreFactory) -> None:
    first = task_sessions(redis_stores(), [TICKET])
    second = task_sessions(redis_stores(), [TICKET])
    token, session = await first.create(ALICE_AGENT, "resolve-ticket", CONTEXT)
    assert (await second.resolve(token, ALICE)).token_id == session.token_id
    await second.revoke(session.token_id, ALICE)
    with pytest.raises(InvalidTaskToken):
        await first.resolve(token, ALICE)
    with pytest.raises(NotFound):
        await first.get(session.token_id, ALICE)


async def test_redis_down_fails_closed_with_store_unavailable() -> None:
    store = RedisStore.from_url(f"redis://127.0.0.1:{free_port()}/0", "gw:")
    sessions = task_sessions(store, [TICKET])
    try:
        with pytest.raises(StoreUnavailable):
            await sessions.create(ALICE_AGENT, "resolve-ticket", CONTEXT)
        with pytest.raises(StoreUnavailable):
            await sessions.resolve("mgt_" + "A" * 43, ALICE)
        with pytest.raises(StoreUnavailable):
            await sessions.get("ts_" + "0" * 32, ALICE)
        with pytest.raises(StoreUnavailable):
            await sessions.revoke("ts_" + "0" * 32, ALICE)
    finally:
        await store.close()


# --- Redis: task-session records cached locally, kept coherent by RESP3 client tracking ---


@asynccontextmanager
async def tracking_replica(redis_stores: StoreFactory) -> AsyncIterator[tuple[RedisStore, TaskSessions]]:
    """A replica's store as the gateway opens it: task-session records cached, the invalidation listener running."""
    store = RedisStore.from_url(redis_stores.url, redis_stores.prefix, cached_prefixes=CACHED_KEY_PREFIXES)
    redis_stores.opened.append(store)
    async with anyio.create_task_group() as tg:
        tg.start_soon(store.serve)
        await until(lambda: store.tracking)
        yield store, task_sessions(store, [TICKET])
        tg.cancel_scope.cancel()


async def until(predicate: Callable[[], bool], within: float = 5.0) -> None:
    with anyio.fail_after(within):
        while not predicate():  # noqa: ASYNC110 - the listener's state has no event to wait on
            await anyio.sleep(0.01)


def paused_redis(redis_url: str, millis: int) -> None:
    """Make Redis hold every client's commands for a while: only a local copy can answer meanwhile."""
    raw = redis.Redis.from_url(redis_url)
    try:
        raw.execute_command("CLIENT", "PAUSE", millis, "ALL")  # type: ignore[no-untyped-call]
    finally:
        raw.close()


async def test_a_cached_session_is_served_locally_and_a_revocation_elsewhere_evicts_it(
    redis_stores: StoreFactory, redis_url: str
) -> None:
    first = task_sessions(redis_stores(), [TICKET])
    async with tracking_replica(redis_stores) as (_, second):
        token, session = await first.create(ALICE_AGENT, "resolve-ticket", CONTEXT)
        assert (await second.resolve(token, ALICE)).token_id == session.token_id
        paused_redis(redis_url, 1500)
        with anyio.fail_after(0.5):  # a read from Redis would wait out the pause
            assert (await second.resolve(token, ALICE)).context == CONTEXT
        await first.revoke(session.token_id, ALICE)  # waits for the pause to end
        revoked = False
        with anyio.fail_after(2):
            while not revoked:
                try:
                    await second.resolve(token, ALICE)
                    await anyio.sleep(0.001)
                except InvalidTaskToken:
                    revoked = True


async def test_a_revocation_on_the_same_replica_evicts_the_copy_at_once(redis_stores: StoreFactory) -> None:
    async with tracking_replica(redis_stores) as (_, sessions):
        token, session = await sessions.create(ALICE_AGENT, "resolve-ticket", CONTEXT)
        await sessions.resolve(token, ALICE)
        await sessions.revoke(session.token_id, ALICE)
        with pytest.raises(InvalidTaskToken):
            await sessions.resolve(token, ALICE)


async def test_without_the_listener_nothing_is_served_from_the_cache(
    redis_stores: StoreFactory, redis_url: str
) -> None:
    first = task_sessions(redis_stores(), [TICKET])
    async with tracking_replica(redis_stores) as (store, second):
        token, session = await first.create(ALICE_AGENT, "resolve-ticket", CONTEXT)
        await second.resolve(token, ALICE)
        raw = redis.Redis.from_url(redis_url)
        try:
            # Kill the listener (the one connection in tracking mode): the copies must go with it.
            listeners = [c["id"] for c in raw.client_list() if "t" in c["flags"] and c["flags"] != "N"]
            assert listeners
            for client_id in listeners:
                raw.client_kill_filter(_id=client_id)
        finally:
            raw.close()
        await until(lambda: not store.tracking)
        await first.revoke(session.token_id, ALICE)  # no listener hears of this
        with pytest.raises(InvalidTaskToken):
            await second.resolve(token, ALICE)
        await until(lambda: store.tracking)  # and it comes back, with no copy from before
        with pytest.raises(InvalidTaskToken):
            await second.resolve(token, ALICE)
        token, _ = await first.create(ALICE_AGENT, "resolve-ticket", CONTEXT)
        assert (await second.resolve(token, ALICE)).context == CONTEXT


async def test_a_session_decoded_once_still_expires_and_is_still_revoked(store: Store) -> None:
    """Records are decoded once per replica (by their bytes); expiry and revocation must still hold on the next call."""
    now = [datetime.now(UTC)]
    sessions = task_sessions(store, [TICKET], clock=lambda: now[0])
    token, _ = await sessions.create(ALICE_AGENT, "resolve-ticket", CONTEXT, ttl=60)
    first = await sessions.resolve(token, ALICE)
    assert await sessions.resolve(token, ALICE) is first
    now[0] += timedelta(seconds=61)
    with pytest.raises(InvalidTaskToken):
        await sessions.resolve(token, ALICE)
    now[0] -= timedelta(seconds=61)
    other, session = await sessions.create(ALICE_AGENT, "resolve-ticket", CONTEXT, ttl=60)
    await sessions.resolve(other, ALICE)
    await sessions.revoke(session.token_id, ALICE)
    with pytest.raises(InvalidTaskToken):
        await sessions.resolve(other, ALICE)


async def test_expired_sessions_leave_the_live_index_and_are_counted_without_a_listing(store: Store) -> None:
    """The background prune (every 30 s while serving) counts each expired session once, across replicas."""
    now = [datetime.now(UTC)]
    metrics, other_replica = Metrics(), Metrics()
    sessions = task_sessions(store, [TICKET], clock=lambda: now[0], metrics=metrics)
    replica = task_sessions(store, [TICKET], clock=lambda: now[0], metrics=other_replica)
    await sessions.create(ALICE_AGENT, "resolve-ticket", CONTEXT, ttl=60)
    await sessions.create(ALICE_AGENT, "resolve-ticket", CONTEXT, ttl=600)
    assert await sessions.prune_expired() == 0
    now[0] += timedelta(seconds=61)
    assert await replica.prune_expired() == 1
    assert await sessions.prune_expired() == 0
    assert other_replica.sessions["expired"]._value.get() == 1
    assert metrics.sessions["expired"]._value.get() == 0
    assert len(await sessions.live()) == 1
