"""``serve --workers N``: N gateway processes accepting connections on one port, sharing the Redis store.

One gateway process runs on one core (one event loop, and the GIL). To use more, the parent binds the listening socket
once and hands it to N worker processes; the kernel gives each new connection to one of them. Every worker is a whole
gateway built from the same config file: its own event loop, upstream connections (a stdio upstream runs once per
worker), store connections and catalog. Between workers the gateway shares exactly what it already shares between
replicas, through the store: task sessions and their revocation, legacy MCP sessions, task definitions, budgets, rate
limits, pinned tool definitions, the audit stream. So ``memory://``, which lives in one process, is refused with more
than one worker: a task session created through one worker would be unknown to the next.

What stays in the worker that holds it is listed in the README (subscriptions, open streams, parked ``input_required``
calls, a legacy call's mid-call requests); those need the client's next request to reach the same process, as with
replicas behind a load balancer.

The parent serves nothing itself. It restarts a worker that dies, stops everything when a worker fails to start (a
broken config, a port in use: every restart would fail the same way), and on SIGTERM/SIGINT passes SIGTERM on and waits
while each worker drains as a lone gateway does (``serving.py``).

Metrics: each worker counts in its own process. Unless ``PROMETHEUS_MULTIPROC_DIR`` names a directory already, the
parent makes a private one and passes it down; prometheus_client's multiprocess mode keeps every worker's values in
files there, and whichever worker answers ``/metrics`` sums them all (``metrics.py``), so one scrape of the one port
sees the whole server.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import signal
import socket
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import FrameType

import uvicorn
from prometheus_client.multiprocess import mark_process_dead

from mcp_gateway.ops.metrics import MULTIPROCESS_DIR_ENV
from mcp_gateway.serving import STARTUP_FAILURE

logger = logging.getLogger(__name__)

AUTO = "auto"
_POLL_SECONDS = 0.5


def worker_count(value: str) -> int:
    """``--workers``: a positive number, or ``auto`` for as many as the cores this process may run on."""
    if value == AUTO:
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        count = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number or {AUTO!r}, got {value!r}") from None
    if count < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number or {AUTO!r}, got {value!r}")
    return count


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker needs to build its gateway; picklable, because a spawned process receives it."""

    config_path: str
    log_level: str
    access_log: bool


def run_workers(spec: WorkerSpec, count: int, host: str, port: int) -> int:
    """Serve with ``count`` workers until SIGTERM/SIGINT; the exit status (0 after a clean stop)."""
    with _shared_metrics_dir() as metrics_dir:
        listening = uvicorn.Config("mcp_gateway.app:create_app", host=host, port=port).bind_socket()
        supervisor = _Supervisor(spec, listening, metrics_dir)
        try:
            return supervisor.run(count)
        finally:
            listening.close()


class _Supervisor:
    def __init__(self, spec: WorkerSpec, listening: socket.socket, metrics_dir: str) -> None:
        self._spec = spec
        self._socket = listening
        self._metrics_dir = metrics_dir
        self._stop = threading.Event()
        self._workers: list[BaseProcess] = []
        # spawn, not fork: a worker starts from a clean interpreter, with no event loop or thread of the parent's.
        self._context = multiprocessing.get_context("spawn")

    def run(self, count: int) -> int:
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        workers = [self._start() for _ in range(count)]
        self._workers = workers
        # A config reload is each worker's own (``reload.py``): SIGHUP to the parent reaches every worker.
        previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, self._on_reload)
        logger.info("serving with %d workers (pids %s)", count, ", ".join(str(w.pid) for w in workers))
        status = 0
        try:
            while not self._stop.wait(_POLL_SECONDS):
                for slot, worker in enumerate(workers):
                    if worker.exitcode is None:
                        continue
                    self._forget(worker)
                    if worker.exitcode == STARTUP_FAILURE:
                        logger.error("worker %s failed to start: stopping the other workers", worker.pid)
                        status = STARTUP_FAILURE
                        self._stop.set()
                        break
                    logger.warning("worker %s exited with status %s: starting another", worker.pid, worker.exitcode)
                    workers[slot] = self._start()
        finally:
            for worker in workers:
                if worker.exitcode is None and worker.pid is not None:
                    os.kill(worker.pid, signal.SIGTERM)
            for worker in workers:
                worker.join()
                self._forget(worker)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return status

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._stop.set()

    def _on_reload(self, signum: int, frame: FrameType | None) -> None:
        for worker in self._workers:
            if worker.exitcode is None and worker.pid is not None:
                os.kill(worker.pid, signal.SIGHUP)

    def _start(self) -> BaseProcess:
        worker = self._context.Process(target=_worker, args=(self._spec, self._socket), daemon=False)
        worker.start()
        return worker

    def _forget(self, worker: BaseProcess) -> None:
        """A worker that has exited no longer counts in the ``live*`` gauges of ``/metrics``."""
        if worker.pid is not None:
            mark_process_dead(worker.pid, self._metrics_dir)  # type: ignore[no-untyped-call]


def _worker(spec: WorkerSpec, listening: socket.socket) -> None:
    """One worker: the gateway that ``serve`` runs alone, on the parent's socket."""
    from mcp_gateway.app import create_app, end_streams
    from mcp_gateway.config import load_config
    from mcp_gateway.errors import ConfigError
    from mcp_gateway.serving import configure_logging, serve, server_config

    configure_logging(spec.log_level)
    try:
        config = load_config(spec.config_path)
        app = create_app(config, spec.config_path)
    except ConfigError as exc:
        logger.error("%s: %s", spec.config_path, exc)
        raise SystemExit(STARTUP_FAILURE) from exc
    uvicorn_config = server_config(
        app,
        host=config.server.host,
        port=config.server.port,
        log_level=spec.log_level,
        access_log=spec.access_log,
        shutdown_grace=config.server.shutdown_grace,
    )
    raise SystemExit(serve(uvicorn_config, lambda: end_streams(app), [listening]))


@contextmanager
def _shared_metrics_dir() -> Iterator[str]:
    """The directory the workers' metric values live in: the operator's, emptied of a previous run's, or a private
    one removed at exit."""
    configured = os.environ.get(MULTIPROCESS_DIR_ENV)
    if configured:
        # prometheus_client's rule: values left by an earlier run's processes would be summed into this one's.
        for stale in Path(configured).glob("*.db"):
            stale.unlink()
        yield configured
        return
    with tempfile.TemporaryDirectory(prefix="mcp-gateway-metrics-") as private:
        os.environ[MULTIPROCESS_DIR_ENV] = private
        try:
            yield private
        finally:
            del os.environ[MULTIPROCESS_DIR_ENV]
