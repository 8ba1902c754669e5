"""A real Redis Cluster for tests: three masters with one replica each, six local ``redis-server`` processes.

Started with ``redis-cli --cluster create`` in a temporary directory on free loopback ports, with a short
``cluster-node-timeout`` so a killed master's replica takes over within a few seconds. Persistence is off: these
nodes live for one test module.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from tests.conftest import free_port

NODE_TIMEOUT_MS = 1000
BUS_PORT_OFFSET = 10000
_START_TIMEOUT = 30.0


@dataclass
class ClusterNodeProcess:
    port: int
    workdir: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        args += ["--cluster-enabled", "yes", "--cluster-config-file", str(self.workdir / "nodes.conf")]
        args += ["--cluster-node-timeout", str(NODE_TIMEOUT_MS), "--dir", str(self.workdir)]
        # A replica's first sync starts at once (the default waits 5 s for more replicas to share it).
        args += ["--logfile", str(self.workdir / "redis.log"), "--repl-diskless-sync-delay", "0"]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2, decode_responses=True)

    def kill(self) -> None:
        """SIGKILL: no goodbye to the cluster, as when a machine dies."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def signal(self, number: signal.Signals) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(number)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


@dataclass
class LocalCluster:
    nodes: list[ClusterNodeProcess] = field(default_factory=list)

    def url(self, seeds: int = 3) -> str:
        """``redis+cluster://`` naming the first ``seeds`` nodes."""
        return "redis+cluster://" + ",".join(node.address for node in self.nodes[:seeds])

    def master_of(self, key: str) -> ClusterNodeProcess:
        """The node serving ``key``'s slot now."""
        with self.any_live().client() as client:
            slot = int(client.cluster("KEYSLOT", key))
            for start, end, master, *_ in client.execute_command("CLUSTER", "SLOTS"):
                if int(start) <= slot <= int(end):
                    port = int(master[1])
                    return next(node for node in self.nodes if node.port == port)
        raise AssertionError(f"no master serves the slot of {key!r}")

    def replica_of(self, master: ClusterNodeProcess) -> ClusterNodeProcess:
        with master.client() as client:
            info = client.info("replication")
        port = int(info["slave0"]["port"])
        return next(node for node in self.nodes if node.port == port)

    def any_live(self) -> ClusterNodeProcess:
        for node in self.nodes:
            if node.process is not None and node.process.poll() is None:
                try:
                    with node.client() as client:
                        client.ping()
                    return node
                except redis.RedisError:
                    continue
        raise AssertionError("no cluster node answers")

    def wait_ok(self, timeout: float = _START_TIMEOUT) -> None:
        """Until every live node reports ``cluster_state:ok``."""
        deadline = time.monotonic() + timeout
        while True:
            states = []
            for node in self.nodes:
                if node.process is None or node.process.poll() is not None:
                    continue
                try:
                    with node.client() as client:
                        states.append(client.cluster("INFO").get("cluster_state"))
                except redis.RedisError:
                    states.append("unreachable")
            if states and all(state == "ok" for state in states):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"the cluster did not reach cluster_state:ok: {states}")
            time.sleep(0.1)

    def heal(self) -> None:
        """Wake and restart every node stopped or killed: each rejoins from its nodes.conf (a killed master as the
        replica of the one that replaced it); until the cluster is ok and every master has a replica in sync."""
        for node in self.nodes:
            node.signal(signal.SIGCONT)
            if node.process is None or node.process.poll() is not None:
                node.start()
                _wait_answering(node)
        self.wait_ok()
        _wait_replicas_in_sync(self)

    def stop(self) -> None:
        for node in self.nodes:
            node.signal(signal.SIGCONT)
            node.kill()


def _free_ports(count: int) -> list[int]:
    """Ports whose cluster bus port (port + 10000) is free too, and clear of each other's bus ports."""
    taken: set[int] = set()
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if {port, port + BUS_PORT_OFFSET} & taken:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port + BUS_PORT_OFFSET))
            except OSError:
                continue
        ports.append(port)
        taken |= {port, port + BUS_PORT_OFFSET}
    return sorted(ports)


def _wait_answering(node: ClusterNodeProcess) -> None:
    deadline = time.monotonic() + _START_TIMEOUT
    while True:
        assert node.process is not None
        if node.process.poll() is not None:
            log = node.workdir / "redis.log"
            pytest.fail(f"redis-server exited: {log.read_text() if log.exists() else ''}")
        try:
            with node.client() as client:
                client.ping()
            return
        except redis.RedisError:
            if time.monotonic() > deadline:
                pytest.fail(f"redis-server on {node.address} did not answer")
            time.sleep(0.05)


@contextmanager
def local_cluster(workdir: Path) -> Iterator[LocalCluster]:
    """Six nodes, three masters and three replicas; stopped (SIGKILL) on exit."""
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        pytest.skip("the Redis Cluster failover test needs redis-server and redis-cli on PATH")
    ports = _free_ports(6)
    cluster = LocalCluster([ClusterNodeProcess(port, workdir / str(port)) for port in ports])
    try:
        for node in cluster.nodes:
            node.start()
        for node in cluster.nodes:
            _wait_answering(node)
        create = ["redis-cli", "--cluster", "create", *(node.address for node in cluster.nodes)]
        subprocess.run(
            [*create, "--cluster-replicas", "1", "--cluster-yes"], check=True, capture_output=True, timeout=60
        )
        cluster.wait_ok()
        _wait_replicas_in_sync(cluster)
        yield cluster
    finally:
        cluster.stop()


def _wait_replicas_in_sync(cluster: LocalCluster) -> None:
    """Until each of the three masters has a replica online, so a failover has one to promote."""
    deadline = time.monotonic() + _START_TIMEOUT
    while sum(min(1, _in_sync_replicas(node)) for node in cluster.nodes) < 3:
        if time.monotonic() > deadline:
            raise AssertionError("the replicas did not finish their sync")
        time.sleep(0.1)


def _in_sync_replicas(node: ClusterNodeProcess) -> int:
    with node.client() as client:
        info = client.info("replication")
    if info.get("role") != "master":
        return 0
    return sum(
        1
        for key, value in info.items()
        if key.startswith("slave") and isinstance(value, dict) and value.get("state") == "online"
    )
