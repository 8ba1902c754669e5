"""One contract, three backends: memory, standalone Redis and Redis Cluster must behave the same way."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import pytest
import redis

from mcp_gateway.errors import StoreUnavailable
from mcp_gateway.store import MemoryStore, RedisStore, Store, open_store
from mcp_gateway.store.base import CountCharge, RateCharge, Refusal, entry_size
from tests.conftest import free_port, start_redis, start_redis_with, stop_redis

# --- values and lifetimes ---


async def test_missing_key_reads_as_none(store: Store) -> None:
    assert await store.get("absent") is None


async def test_set_value_is_read_back(store: Store) -> None:
    await store.set("k", b"\x00binary\xff", 10)
    assert await store.get("k") == b"\x00binary\xff"


async def test_set_replaces_value_and_lifetime(store: Store) -> None:
    await store.set("k", b"old", 0.2)
    await store.set("k", b"new", 10)
    await anyio.sleep(0.35)
    assert await store.get("k") == b"new"


async def test_value_disappears_after_its_ttl(store: Store) -> None:
    await store.set("k", b"v", 0.2)
    assert await store.get("k") == b"v"
    await anyio.sleep(0.35)
    assert await store.get("k") is None


@pytest.mark.parametrize("ttl", [0, -1])
async def test_non_positive_ttl_is_refused(store: Store, ttl: float) -> None:
    with pytest.raises(ValueError, match="positive"):
        await store.set("k", b"v", ttl)
    with pytest.raises(ValueError, match="positive"):
        await store.set_many({"k": b"v"}, ttl)
    with pytest.raises(ValueError, match="positive"):
        await store.get_touch("k", ttl)
    with pytest.raises(ValueError, match="positive"):
        await store.set_if_absent("k", b"v", ttl)


async def test_set_if_absent_stores_only_the_first_value(store: Store) -> None:
    assert await store.set_if_absent("k", b"first", 10) is True
    assert await store.set_if_absent("k", b"second", 10) is False
    assert await store.get("k") == b"first"


async def test_set_if_absent_succeeds_again_once_the_key_expired(store: Store) -> None:
    assert await store.set_if_absent("k", b"old", 0.2) is True
    await anyio.sleep(0.35)
    assert await store.set_if_absent("k", b"new", 10) is True
    assert await store.get("k") == b"new"


async def test_set_many_stores_every_key(store: Store) -> None:
    await store.set_many({"a": b"1", "b": b"2", "c": b"3"}, 10)
    assert [await store.get(k) for k in ("a", "b", "c")] == [b"1", b"2", b"3"]


async def test_set_many_keys_expire_together(store: Store) -> None:
    await store.set_many({"a": b"1", "b": b"2"}, 0.2)
    await anyio.sleep(0.35)
    assert await store.get("a") is None
    assert await store.get("b") is None


async def test_delete_counts_only_keys_that_existed(store: Store) -> None:
    await store.set_many({"a": b"1", "b": b"2"}, 10)
    assert await store.delete("a", "b", "never-set") == 2
    assert await store.get("a") is None
    assert await store.delete("a", "b") == 0


async def test_delete_names_a_key_once_however_often_given(store: Store) -> None:
    await store.set("a", b"1", 10)
    assert await store.delete("a", "a") == 1


async def test_delete_of_nothing_is_zero(store: Store) -> None:
    assert await store.delete() == 0


async def test_durable_delete_removes_keys_of_one_or_several_hash_slots(store: Store) -> None:
    await store.set_many({"{s}record": b"1", "{s}index": b"2", "elsewhere": b"3"}, 10)
    assert await store.delete_durably("{s}record", "{s}index", "elsewhere", "never-set") == 3
    assert [await store.get(key) for key in ("{s}record", "{s}index", "elsewhere")] == [None, None, None]
    assert await store.delete_durably() == 0


async def test_expired_key_does_not_count_as_deleted(store: Store) -> None:
    await store.set("a", b"1", 0.2)
    await anyio.sleep(0.35)
    assert await store.delete("a") == 0


async def test_get_touch_reads_and_extends_a_lifetime(store: Store) -> None:
    await store.set("k", b"v", 0.2)
    assert await store.get_touch("k", 10) == b"v"
    await anyio.sleep(0.35)
    assert await store.get("k") == b"v"


async def test_get_touch_can_shorten_a_lifetime(store: Store) -> None:
    await store.set("k", b"v", 10)
    assert await store.get_touch("k", 0.2) == b"v"
    await anyio.sleep(0.35)
    assert await store.get("k") is None


async def test_get_touch_of_missing_key_is_none(store: Store) -> None:
    assert await store.get_touch("absent", 10) is None


async def test_get_touch_of_expired_key_is_none_and_does_not_revive_it(store: Store) -> None:
    await store.set("k", b"v", 0.2)
    await anyio.sleep(0.35)
    assert await store.get_touch("k", 10) is None
    assert await store.get("k") is None


# --- streams ---


async def test_stream_entries_come_back_oldest_first_with_their_fields(store: Store) -> None:
    ids = [await store.append_stream("log", {"n": str(i), "text": "é ✓"}, maxlen=100) for i in range(3)]
    entries = await store.read_stream("log", count=10)
    assert [e.id for e in entries] == ids
    assert [dict(e.fields) for e in entries] == [{"n": str(i), "text": "é ✓"} for i in range(3)]


async def test_stream_ids_increase(store: Store) -> None:
    ids = [await store.append_stream("log", {"n": str(i)}, maxlen=100) for i in range(50)]
    as_tuples = [tuple(int(part) for part in i.split("-")) for i in ids]
    assert as_tuples == sorted(as_tuples)
    assert len(set(ids)) == 50


async def test_stream_read_without_after_gives_the_newest_entries(store: Store) -> None:
    for i in range(5):
        await store.append_stream("log", {"n": str(i)}, maxlen=100)
    entries = await store.read_stream("log", count=2)
    assert [e.fields["n"] for e in entries] == ["3", "4"]


async def test_stream_is_capped_at_maxlen(store: Store) -> None:
    for i in range(10):
        await store.append_stream("log", {"n": str(i)}, maxlen=4)
    entries = await store.read_stream("log", count=100)
    assert [e.fields["n"] for e in entries] == ["6", "7", "8", "9"]


async def test_stream_is_capped_in_bytes_keeping_the_newest_entries(store: Store) -> None:
    cap = 64 * 1024
    ids = [
        await store.append_stream("log", {"n": str(i), "v": "é" * 2000}, maxlen=1000, max_bytes=cap) for i in range(100)
    ]
    entries = await store.read_stream("log", count=1000)
    assert sum(entry_size(e.fields) for e in entries) <= cap
    assert [e.id for e in entries] == ids[-len(entries) :]
    # Redis trims by its own memory usage estimate, to three quarters of the cap: fewer entries, never none.
    assert len(entries) >= 8


async def test_stream_grown_without_a_byte_cap_is_trimmed_at_the_first_capped_append(store: Store) -> None:
    for i in range(50):
        await store.append_stream("log", {"n": str(i), "v": "x" * 4000}, maxlen=1000)
    last = await store.append_stream("log", {"n": "50", "v": "x" * 4000}, maxlen=1000, max_bytes=40_000)
    entries = await store.read_stream("log", count=1000)
    assert sum(entry_size(e.fields) for e in entries) <= 40_000
    assert entries[-1].id == last


async def test_stream_keeps_its_newest_entry_even_when_it_alone_exceeds_the_byte_cap(store: Store) -> None:
    await store.append_stream("log", {"v": "small"}, maxlen=10, max_bytes=1000)
    newest = await store.append_stream("log", {"v": "x" * 5000}, maxlen=10, max_bytes=1000)
    assert [e.id for e in await store.read_stream("log", count=10)] == [newest]


@pytest.mark.parametrize("max_bytes", [0, -1])
async def test_non_positive_stream_byte_cap_is_refused(store: Store, max_bytes: int) -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        await store.append_stream("log", {"n": "1"}, maxlen=10, max_bytes=max_bytes)


async def test_stream_read_after_an_id_gives_the_following_entries(store: Store) -> None:
    ids = [await store.append_stream("log", {"n": str(i)}, maxlen=100) for i in range(6)]
    entries = await store.read_stream("log", count=2, after=ids[1])
    assert [e.fields["n"] for e in entries] == ["2", "3"]
    assert await store.read_stream("log", count=10, after=ids[-1]) == []


async def test_stream_read_after_zero_starts_at_the_oldest_entry(store: Store) -> None:
    for i in range(3):
        await store.append_stream("log", {"n": str(i)}, maxlen=100)
    entries = await store.read_stream("log", count=10, after="0-0")
    assert [e.fields["n"] for e in entries] == ["0", "1", "2"]


async def test_missing_stream_reads_as_empty(store: Store) -> None:
    assert await store.read_stream("nothing", count=10) == []
    assert await store.read_stream("nothing", count=10, after="0-0") == []


async def test_malformed_after_id_is_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="stream entry id"):
        await store.read_stream("log", count=10, after="yesterday")


async def test_deleted_stream_is_gone(store: Store) -> None:
    await store.append_stream("log", {"n": "0"}, maxlen=100)
    assert await store.delete("log") == 1
    assert await store.read_stream("log", count=10) == []


# --- values without expiry and sorted indexes ---


async def test_put_value_has_no_expiry_and_is_read_back(store: Store) -> None:
    assert await store.put("def", b"v1") is True
    await anyio.sleep(0.05)
    assert await store.get("def") == b"v1"
    assert await store.put("def", b"v2") is True
    assert await store.get("def") == b"v2"


async def test_put_only_if_absent_never_replaces_an_existing_value(store: Store) -> None:
    assert await store.put("def", b"first", only_if_absent=True) is True
    assert await store.put("def", b"second", only_if_absent=True) is False
    assert await store.get("def") == b"first"


async def test_set_gives_a_put_value_a_lifetime(store: Store) -> None:
    await store.put("def", b"v")
    await store.set("def", b"v", 0.05)
    await anyio.sleep(0.1)
    assert await store.get("def") is None


async def test_index_ranges_members_by_score_from_a_minimum(store: Store) -> None:
    await store.index_add("idx", "b", 20)
    await store.index_add("idx", "a", 10)
    await store.index_add("idx", "c", 30)
    assert await store.index_range("idx") == [("a", 10.0), ("b", 20.0), ("c", 30.0)]
    assert await store.index_range("idx", 20) == [("b", 20.0), ("c", 30.0)]


async def test_index_add_moves_an_existing_member(store: Store) -> None:
    await store.index_add("idx", "a", 10)
    await store.index_add("idx", "a", 5.5)
    assert await store.index_range("idx") == [("a", 5.5)]


async def test_index_remove_counts_only_members_present(store: Store) -> None:
    await store.index_add("idx", "a", 1)
    await store.index_add("idx", "b", 2)
    assert await store.index_remove("idx", "a", "a", "zzz") == 1
    assert await store.index_range("idx") == [("b", 2.0)]
    assert await store.index_remove("idx", "b") == 1
    assert await store.index_remove("idx") == 0


async def test_index_prune_removes_members_up_to_a_score_and_counts_them(store: Store) -> None:
    for member, score in (("a", 10), ("b", 20), ("c", 30)):
        await store.index_add("idx", member, score)
    assert await store.index_prune("idx", 20) == 2
    assert await store.index_range("idx") == [("c", 30.0)]
    assert await store.index_prune("idx", 20) == 0
    assert await store.index_prune("nothing", 99) == 0


async def test_missing_index_ranges_as_empty(store: Store) -> None:
    assert await store.index_range("nothing") == []
    assert await store.index_remove("nothing", "a") == 0


async def test_ping_answers(store: Store) -> None:
    await store.ping()


# --- take: rate limits and counters ---

PER_SECOND_BURST_2 = 1_000_000  # one request per second (microseconds apart on average)


async def test_rate_limit_allows_its_burst_then_says_when_to_retry(store: Store) -> None:
    charge = RateCharge("rate:{a}", interval_us=PER_SECOND_BURST_2, burst=2)
    assert await store.take([charge]) is None
    assert await store.take([charge]) is None
    refusal = await store.take([charge])
    assert refusal is not None and refusal.index == 0
    assert refusal.retry_after_ms is not None and 900 < refusal.retry_after_ms <= 1000


async def test_rate_limit_refills_over_time(store: Store) -> None:
    charge = RateCharge("rate:{a}", interval_us=200_000, burst=1)
    assert await store.take([charge]) is None
    assert await store.take([charge]) is not None
    await anyio.sleep(0.25)
    assert await store.take([charge]) is None


async def test_rate_limit_key_expires_once_full_again(store: Store) -> None:
    await store.take([RateCharge("rate:{a}", interval_us=100_000, burst=1)])
    await anyio.sleep(0.25)
    assert await store.delete("rate:{a}") == 0


async def test_counters_count_and_refuse_at_their_limit(store: Store) -> None:
    refund = CountCharge("budget:{s}", "tool:refund", limit=2, ttl_seconds=10)
    assert await store.take([refund]) is None
    assert await store.take([refund]) is None
    assert await store.take([refund]) == Refusal(0, None)
    assert await store.read_counts("budget:{s}") == {"tool:refund": 2}


async def test_counter_without_a_limit_only_counts(store: Store) -> None:
    for _ in range(3):
        assert await store.take([CountCharge("budget:{s}", "total", limit=None, ttl_seconds=10)]) is None
    assert await store.read_counts("budget:{s}") == {"total": 3}


async def test_take_applies_nothing_when_one_charge_is_refused(store: Store) -> None:
    total = CountCharge("budget:{s}", "total", limit=5, ttl_seconds=10)
    refund = CountCharge("budget:{s}", "tool:refund", limit=1, ttl_seconds=10)
    rate = RateCharge("rate:{s}", interval_us=PER_SECOND_BURST_2, burst=1)
    assert await store.take([rate, total, refund]) is None
    assert await store.take([total, refund]) == Refusal(1, None)
    assert await store.read_counts("budget:{s}") == {"total": 1, "tool:refund": 1}
    refusal = await store.take([total, rate])
    assert refusal is not None and refusal.index == 1
    assert await store.read_counts("budget:{s}") == {"total": 1, "tool:refund": 1}


async def test_counters_disappear_after_their_ttl(store: Store) -> None:
    await store.take([CountCharge("budget:{s}", "total", limit=1, ttl_seconds=0.2)])
    await anyio.sleep(0.35)
    assert await store.read_counts("budget:{s}") == {}
    assert await store.take([CountCharge("budget:{s}", "total", limit=1, ttl_seconds=0.2)]) is None


async def test_concurrent_takes_never_pass_a_counter_limit(store: Store) -> None:
    charge = CountCharge("budget:{s}", "total", limit=7, ttl_seconds=10)
    results: list[Refusal | None] = []

    async def spend() -> None:
        results.append(await store.take([charge]))

    async with anyio.create_task_group() as tg:
        for _ in range(30):
            tg.start_soon(spend)
    assert results.count(None) == 7
    assert await store.read_counts("budget:{s}") == {"total": 7}


async def test_take_names_the_refusing_charge_across_hash_slots(store: Store) -> None:
    spent = CountCharge("budget:{b}", "total", limit=1, ttl_seconds=10)
    assert await store.take([spent]) is None
    refusal = await store.take([RateCharge("rate:{a}", interval_us=PER_SECOND_BURST_2, burst=5), spent])
    assert refusal == Refusal(1, None)


async def test_take_of_nothing_is_allowed(store: Store) -> None:
    assert await store.take([]) is None


async def test_missing_counters_read_as_empty(store: Store) -> None:
    assert await store.read_counts("budget:{nobody}") == {}


# --- memory specifics ---


async def test_memory_store_frees_expired_keys_at_the_next_write() -> None:
    store = MemoryStore()
    await store.set_many({f"short-{i}": b"v" for i in range(5000)}, 1)
    for i in range(3000):
        await store.set(f"brief-{i}", b"v", 1)
    await store.set("long", b"v", 60)
    assert len(store) == 8001
    await anyio.sleep(1.1)
    await store.set("next", b"v", 60)
    assert len(store) == 2
    assert await store.get("long") == b"v"


async def test_memory_store_keeps_a_touched_key_past_its_first_deadline() -> None:
    store = MemoryStore()
    await store.set("session", b"v", 0.1)
    for _ in range(3):
        await anyio.sleep(0.06)
        assert await store.get_touch("session", 0.1) == b"v"
        await store.set("other", b"v", 60)  # a write drops what is due, not what was touched
    assert await store.get("session") == b"v"


# --- Redis specifics ---


async def test_redis_keys_carry_the_prefix(redis_store: RedisStore, redis_url: str, key_prefix: str) -> None:
    await redis_store.set("k", b"v", 10)
    raw = redis.Redis.from_url(redis_url)
    try:
        assert raw.get(f"{key_prefix}k") == b"v"
        assert raw.get("k") is None
    finally:
        raw.close()


async def test_stores_with_different_prefixes_do_not_see_each_other(
    redis_store: RedisStore, redis_url: str, key_prefix: str
) -> None:
    other = RedisStore.from_url(redis_url, key_prefix + "other:")
    try:
        await redis_store.set("k", b"v", 10)
        assert await other.get("k") is None
    finally:
        await other.close()


async def test_redis_ttl_has_millisecond_precision(redis_store: RedisStore, redis_url: str, key_prefix: str) -> None:
    await redis_store.set("k", b"v", 1.5)
    raw = redis.Redis.from_url(redis_url)
    try:
        assert 1000 < raw.pttl(f"{key_prefix}k") <= 1500
    finally:
        raw.close()


def test_description_never_shows_a_password() -> None:
    store = RedisStore.from_url("redis://admin:s3cret@cache.internal:6380/2?password=s3cret", "gw:")
    assert "s3cret" not in store.description
    assert "cache.internal:6380/2" in store.description
    assert "'gw:'" in store.description


def test_cluster_description_never_shows_a_password() -> None:
    store = open_store("redis+cluster://:s3cret@node-1.internal:7000", "gw:")
    assert isinstance(store, RedisStore)
    assert "s3cret" not in store.description
    assert store.description.startswith("redis+cluster://node-1.internal:7000")


def test_cluster_url_may_name_several_seeds_and_shows_them_without_the_password() -> None:
    seeds = "node-1.internal:7000,node-2.internal:7001,[::1]:7002"
    store = open_store(f"redis+cluster://:s3cret@{seeds}/0?socket_timeout=3", "gw:")
    assert isinstance(store, RedisStore)
    assert "s3cret" not in store.description
    assert store.description.startswith(f"redis+cluster://{seeds}/0 ")


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("redis+cluster://a:1,b:notaport", "bad port in cluster seed 'b:notaport'"),
        ("redis+cluster://a:1,,b:2", "empty cluster seed"),
        ("redis://a:1,b:2/0", "several hosts need redis\\+cluster://"),
    ],
)
def test_a_bad_seed_list_is_refused_naming_the_seed(url: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        open_store(url, "gw:")


def test_open_store_chooses_by_scheme() -> None:
    assert isinstance(open_store("memory://", "gw:"), MemoryStore)
    assert isinstance(open_store("redis://localhost:6379/0", "gw:"), RedisStore)
    assert isinstance(open_store("unix:///run/redis.sock", "gw:"), RedisStore)
    with pytest.raises(ValueError, match="unsupported store URL 'mongodb://db:27017'"):
        open_store("mongodb://user:pw@db:27017", "gw:")


_OPERATIONS: dict[str, Callable[[RedisStore], Awaitable[object]]] = {
    "ping": lambda s: s.ping(),
    "get": lambda s: s.get("k"),
    "set": lambda s: s.set("k", b"v", 10),
    "set_many": lambda s: s.set_many({"a": b"1", "b": b"2"}, 10),
    "set_if_absent": lambda s: s.set_if_absent("k", b"v", 10),
    "delete": lambda s: s.delete("k"),
    "get_touch": lambda s: s.get_touch("k", 10),
    "append_stream": lambda s: s.append_stream("log", {"n": "1"}, maxlen=10),
    "read_stream": lambda s: s.read_stream("log", count=10),
}


async def test_a_store_that_answered_is_available(store: Store) -> None:
    await store.ping()
    assert store.available


@pytest.mark.parametrize("scheme", ["redis", "redis+cluster"])
async def test_a_store_that_failed_is_unavailable(scheme: str) -> None:
    store = RedisStore.from_url(f"{scheme}://127.0.0.1:{free_port()}/0", "gw:")
    try:
        assert not store.available  # nothing known yet: fail closed
        with pytest.raises(StoreUnavailable):
            await store.get("k")
        assert not store.available
    finally:
        await store.close()


@pytest.mark.parametrize("scheme", ["redis", "redis+cluster"])
@pytest.mark.parametrize("operation", sorted(_OPERATIONS))
async def test_unreachable_redis_raises_store_unavailable_promptly(operation: str, scheme: str) -> None:
    store = RedisStore.from_url(f"{scheme}://127.0.0.1:{free_port()}/0", "gw:")
    started = time.monotonic()
    try:
        with pytest.raises(StoreUnavailable, match="unavailable"):
            await _OPERATIONS[operation](store)
    finally:
        await store.close()
    assert time.monotonic() - started < 3


async def test_silent_redis_raises_store_unavailable_within_the_operation_timeout() -> None:
    """A server that accepts connections but never answers must not hang the caller."""
    with socket_listening_silently() as port:
        store = RedisStore.from_url(f"redis://127.0.0.1:{port}/0", "gw:", socket_timeout=0.3, operation_timeout=1)
        started = time.monotonic()
        try:
            with pytest.raises(StoreUnavailable):
                await store.get("k")
        finally:
            await store.close()
    assert time.monotonic() - started < 2


@contextmanager
def socket_listening_silently() -> Iterator[int]:
    """A TCP listener whose kernel completes handshakes but which never reads or replies."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield int(sock.getsockname()[1])


async def test_a_store_known_down_fails_at_once_without_asking_redis() -> None:
    """The circuit breaker: once the background PING saw the store fail, operations do not wait for a timeout."""
    with socket_listening_silently() as port:
        store = RedisStore.from_url(f"redis://127.0.0.1:{port}/0", "gw:", socket_timeout=0.3, operation_timeout=1)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(store.serve)
                with anyio.fail_after(10):
                    while store.available or not store._health.known_down:  # noqa: ASYNC110 - waiting on a flag
                        await anyio.sleep(0.05)
                with pytest.raises(StoreUnavailable, match="did not answer lately"):
                    await store.get("k")
                tg.cancel_scope.cancel()
        finally:
            await store.close()


@pytest.fixture
def redis_with_replica(tmp_path: Path) -> Iterator[tuple[str, str, subprocess.Popen[bytes]]]:
    """A standalone master with one replica in sync: (master URL, replica URL, replica process)."""
    (tmp_path / "master").mkdir()
    (tmp_path / "replica").mkdir()
    master, url = start_redis(tmp_path / "master")
    port = url.rsplit(":", 1)[1].split("/")[0]
    replica, replica_url = start_redis_with(tmp_path / "replica", "--replicaof", "127.0.0.1", port)
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        deadline = time.monotonic() + 10
        while client.info("replication").get("slave0", {}).get("state") != "online":
            assert time.monotonic() < deadline, "the replica did not come online"
            time.sleep(0.05)
        yield url, replica_url, replica
    finally:
        client.close()
        replica.send_signal(signal.SIGCONT)
        stop_redis(replica)
        stop_redis(master)


async def test_durable_delete_on_a_master_with_a_replica_waits_for_it(
    redis_with_replica: tuple[str, str, subprocess.Popen[bytes]],
) -> None:
    url, replica_url, _ = redis_with_replica
    store = RedisStore.from_url(url, "gw:")
    replica_client = redis.Redis.from_url(replica_url, socket_timeout=2)
    try:
        await store.set("k", b"v", 60)
        assert await store.delete_durably("k") == 1
        # Acknowledged by the replica before the answer: it already has the deletion.
        assert replica_client.exists("gw:k") == 0
    finally:
        replica_client.close()
        await store.close()


async def test_durable_delete_not_confirmed_by_a_replica_is_a_store_error_but_not_an_outage(
    redis_with_replica: tuple[str, str, subprocess.Popen[bytes]],
) -> None:
    url, _, replica = redis_with_replica
    store = RedisStore.from_url(url, "gw:")
    try:
        await store.ping()
        await store.set("k", b"v", 60)
        replica.send_signal(signal.SIGSTOP)  # connected, but never acknowledges
        with pytest.raises(StoreUnavailable, match="not durable yet"):
            await store.delete_durably("k")
        assert store.available  # the master answered: other requests go on
    finally:
        replica.send_signal(signal.SIGCONT)
        await store.close()
