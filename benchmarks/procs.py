"""The processes a benchmark runs: start them pinned to a core, wait until they answer, measure them, stop them.

Pinning matters on a small machine: the load generator competes with what it measures. ``taskset`` (Linux) pins a
process from its first instruction; where it is missing or there is only one core, processes float and the report
says so.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

TASKSET = shutil.which("taskset")
CORES = os.cpu_count() or 1
CAN_PIN = TASKSET is not None and CORES >= 2 and hasattr(os, "sched_setaffinity")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def pin_self(core: int) -> None:
    if CAN_PIN:
        os.sched_setaffinity(0, {core})


@dataclass
class Proc:
    """One child process, its log file, and the core it is pinned to (if pinning is possible)."""

    name: str
    argv: Sequence[str]
    log: Path
    core: int | None = None
    env: dict[str, str] = field(default_factory=dict)
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> Proc:
        argv = list(self.argv)
        if CAN_PIN and self.core is not None and TASKSET is not None:
            argv = [TASKSET, "-c", str(self.core), *argv]
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("wb") as out:
            self.popen = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env={**os.environ, **self.env}
            )
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None, f"{self.name} was never started"
        return self.popen.pid

    @property
    def process(self) -> psutil.Process:
        return psutil.Process(self.pid)

    def pin(self, core: int) -> None:
        """Move a running process to another core (the echo upstream moves between scenarios)."""
        self.core = core
        if CAN_PIN:
            self.process.cpu_affinity([core])

    def check_alive(self) -> None:
        if self.popen is None or self.popen.poll() is not None:
            tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{self.name} is not running (see {self.log}):\n{tail}")

    def wait_port(self, port: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise TimeoutError(f"{self.name} did not listen on port {port} within {timeout:g}s (see {self.log})")

    def rss(self) -> int:
        return int(self.process.memory_info().rss)

    def peak_rss(self) -> int:
        """The kernel's high-water mark of resident memory since the process started (``VmHWM``)."""
        status = Path(f"/proc/{self.pid}/status")
        if status.exists():
            for line in status.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        return self.rss()

    def cpu_seconds(self) -> float:
        times = self.process.cpu_times()
        return float(times.user + times.system)

    def stop(self) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        self.popen.terminate()
        try:
            self.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout=10)


class CpuMeter:
    """CPU used over one measured window: by each named process (or group of processes, such as a gateway's parent
    and its workers, summed), by the rest of the machine, by the kernel's interrupt handling (loopback TCP is
    processed there, so much of it is our own traffic), and stolen by the hypervisor (on a VM)."""

    def __init__(self, procs: Mapping[str, psutil.Process | Sequence[psutil.Process]]) -> None:
        self._procs = {name: [p] if isinstance(p, psutil.Process) else list(p) for name, p in procs.items()}
        self._start: dict[str, float] = {}
        self._machine_start: dict[str, float] = {}
        self._wall_start = 0.0

    @staticmethod
    def _machine() -> dict[str, float]:
        times = psutil.cpu_times()
        get = lambda name: float(getattr(times, name, 0.0))  # noqa: E731 - fields vary by platform
        return {
            "busy": get("user") + get("nice") + get("system"),
            "irq": get("irq") + get("softirq"),
            "steal": get("steal"),
        }

    @staticmethod
    def _cpu(procs: Sequence[psutil.Process]) -> float:
        total = 0.0
        for proc in procs:
            times = proc.cpu_times()
            total += float(times.user + times.system)
        return total

    def start(self) -> None:
        self._start = {name: self._cpu(procs) for name, procs in self._procs.items()}
        self._machine_start = self._machine()
        self._wall_start = time.monotonic()

    def stop(self) -> dict[str, float]:
        """Percent of one core for each process (group), ``other`` processes, ``irq`` and ``steal``."""
        wall = time.monotonic() - self._wall_start
        used = {name: self._cpu(procs) - self._start[name] for name, procs in self._procs.items()}
        machine = {key: value - self._machine_start[key] for key, value in self._machine().items()}
        shares = {name: round(100 * seconds / wall, 1) for name, seconds in used.items()}
        shares["other"] = round(100 * max(0.0, machine["busy"] - sum(used.values())) / wall, 1)
        shares["irq"] = round(100 * machine["irq"] / wall, 1)
        shares["steal"] = round(100 * machine["steal"] / wall, 1)
        return shares
