"""Shared fixtures: a real Redis (and a one-node Redis Cluster) for the store and the task sessions.

Set ``REDIS_URL`` (and ``REDIS_CLUSTER_URL``) to use servers you already run; otherwise a throwaway ``redis-server``
is started on a free loopback port, with persistence off, and stopped at the end of the run. Every test gets its own
key prefix, and its keys are deleted afterwards, so runs against a shared Redis never collide.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis

from mcp_gateway.store import MemoryStore, RedisStore, Store

_STARTUP_TIMEOUT = 10.0


def free_port() -> int:
    """A loopback port nothing listens on (at the moment of asking).

    Kept at or below 55535: a Redis Cluster node also binds its bus on port + 10000.
    """
    for _ in range(100):
        port = random.randint(20000, 55535)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free loopback port found")


def _start_redis(workdir: Path, *extra: str, port: int | None = None) -> tuple[subprocess.Popen[bytes], str]:
    port = port or free_port()
    log = workdir / "redis.log"
    args = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    args += ["--dir", str(workdir), "--logfile", str(log), *extra]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
    deadline = time.monotonic() + _STARTUP_TIMEOUT
    try:
        while True:
            if process.poll() is not None:
                detail = log.read_text() if log.exists() else ""
                pytest.fail(f"redis-server exited with status {process.returncode}:\n{detail}")
            try:
                client.ping()
                return process, url
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    _stop(process)
                    pytest.fail(f"redis-server did not answer on port {port} within {_STARTUP_TIMEOUT} s")
                time.sleep(0.05)
    finally:
        client.close()


def start_redis(workdir: Path, port: int | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """A throwaway standalone ``redis-server`` (on ``port``: to bring one back after an outage); see ``stop_redis``."""
    return _start_redis(workdir, port=port)


def start_redis_with(workdir: Path, *options: str) -> tuple[subprocess.Popen[bytes], str]:
    """``start_redis`` with more ``redis-server`` options (``--replicaof host port``)."""
    return _start_redis(workdir, *options)


def stop_redis(process: subprocess.Popen[bytes]) -> None:
    _stop(process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A standalone Redis: ``REDIS_URL``, or a ``redis-server`` started for this run."""
    if url := os.environ.get("REDIS_URL"):
        yield url
        return
    if shutil.which("redis-server") is None:
        pytest.fail("these tests need Redis: set REDIS_URL=redis://host:port/db, or put redis-server on PATH")
    process, url = _start_redis(tmp_path_factory.mktemp("redis"))
    yield url
    _stop(process)


@pytest.fixture(scope="session")
def redis_cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Redis Cluster: ``REDIS_CLUSTER_URL``, or one ``redis-server`` in cluster mode owning every slot."""
    if url := os.environ.get("REDIS_CLUSTER_URL"):
        yield url
        return
    if shutil.which("redis-server") is None:
        pytest.skip("Redis Cluster tests need REDIS_CLUSTER_URL=redis://host:port or redis-server on PATH")
    workdir = tmp_path_factory.mktemp("redis-cluster")
    process, url = _start_redis(
        workdir, "--cluster-enabled", "yes", "--cluster-config-file", str(workdir / "nodes.conf")
    )
    client = redis.Redis.from_url(url, socket_timeout=1, decode_responses=True)
    try:
        client.cluster("ADDSLOTSRANGE", "0", "16383")
        deadline = time.monotonic() + _STARTUP_TIMEOUT
        while client.cluster("INFO").get("cluster_state") != "ok":
            if time.monotonic() > deadline:
                _stop(process)
                pytest.fail("the one-node Redis Cluster did not reach cluster_state:ok")
            time.sleep(0.05)
    finally:
        client.close()
    yield url.removesuffix("/0")
    _stop(process)


def _delete_prefixed(url: str, prefix: str) -> None:
    """Delete one key at a time: in cluster mode a multi-key DEL across slots is refused even on one node."""
    client = redis.Redis.from_url(url.replace("+cluster", ""), socket_timeout=5)
    try:
        for key in client.scan_iter(match=f"{prefix}*", count=500):
            client.unlink(key)
    finally:
        client.close()


@pytest.fixture
def key_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix no other test (or run) uses; its keys are removed afterwards."""
    prefix = f"test:{uuid.uuid4().hex}:"
    yield prefix
    _delete_prefixed(redis_url, prefix)


class StoreFactory:
    """Opens RedisStores on one Redis and prefix, as separate gateway replicas would."""

    def __init__(self, url: str, prefix: str) -> None:
        self.url = url
        self.prefix = prefix
        self.opened: list[RedisStore] = []

    def __call__(self) -> RedisStore:
        store = RedisStore.from_url(self.url, self.prefix)
        self.opened.append(store)
        return store


@pytest.fixture
async def redis_stores(redis_url: str, key_prefix: str) -> AsyncIterator[StoreFactory]:
    """Call it for each replica's store; they are all closed afterwards."""
    factory = StoreFactory(redis_url, key_prefix)
    yield factory
    for opened in factory.opened:
        await opened.close()


@pytest.fixture
def redis_store(redis_stores: StoreFactory) -> RedisStore:
    return redis_stores()


@pytest.fixture
async def redis_cluster_store(redis_cluster_url: str) -> AsyncIterator[RedisStore]:
    prefix = f"test:{uuid.uuid4().hex}:"
    store = RedisStore.from_url(redis_cluster_url.replace("redis://", "redis+cluster://", 1), prefix)
    yield store
    await store.close()
    _delete_prefixed(redis_cluster_url, prefix)


@pytest.fixture(params=["memory", "redis", "redis-cluster"])
def store(request: pytest.FixtureRequest) -> Store:
    """Each backend in turn, so one suite holds them all to the same contract."""
    if request.param == "memory":
        return MemoryStore()
    fixture = "redis_store" if request.param == "redis" else "redis_cluster_store"
    backend: Store = request.getfixturevalue(fixture)
    return backend
