"""``mcp-gateway serve --workers N``: real worker processes on one port, sharing a real Redis.

A task session created through one connection is used through forty others, each a new connection that the kernel
hands to either worker; every call must succeed, both workers must have served some, and ``/metrics`` (answered by
whichever worker takes the scrape) must count all forty.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
from prometheus_client.mmap_dict import MmapedDict

from tests.conftest import free_port
from tests.e2e.test_shutdown import exit_status_within
from tests.eras.test_mcp_endpoint import modern_body, modern_headers
from tests.support.harness import BASE_CONFIG, SUPPORT_KEY, create_task_session
from tests.test_config import REPO

CALLS = 40
TOOL_CALLS_METRIC = "mcp_gateway_tool_calls_total"


def write_config(tmp_path: Path, store: dict[str, Any], port: int) -> Path:
    config: dict[str, Any] = copy.deepcopy(BASE_CONFIG)
    config["server"] = {"host": "127.0.0.1", "port": port}
    config["store"] = store
    path = tmp_path / "gateway.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


@contextmanager
def serve_workers(config: Path, workers: str, env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    log = config.with_suffix(".log")
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "mcp_gateway", "serve", "--config", str(config), "--workers", workers],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO), **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            yield process
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


async def until_workers_serve(process: subprocess.Popen[bytes], log: Path, workers: int) -> None:
    """Until every worker has started (each imports and connects everything: allow for a slow, busy machine); before
    that, the first one up would take every connection."""
    with anyio.fail_after(180):
        while (await anyio.Path(log).read_text()).count("Application startup complete.") < workers:
            assert process.poll() is None, "the gateway exited during start-up"
            await anyio.sleep(0.2)


def calls_counted_per_worker(metrics_dir: Path) -> dict[str, float]:
    """Forwarded tool calls per worker pid, read from the files prometheus_client's multiprocess mode writes."""
    counted: dict[str, float] = {}
    for path in metrics_dir.glob("counter_*.db"):
        pid = path.stem.removeprefix("counter_")
        for key, value, _, _ in MmapedDict.read_all_values_from_file(str(path)):  # type: ignore[no-untyped-call]
            _, name, _, _ = json.loads(key)
            if name == TOOL_CALLS_METRIC:
                counted[pid] = counted.get(pid, 0.0) + value
    return counted


def total_in_exposition(text: str, metric: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(metric + "{"))


async def test_two_workers_share_one_task_session_over_redis_and_one_metrics_view(
    tmp_path: Path, redis_url: str, key_prefix: str
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    config = write_config(tmp_path, {"url": redis_url, "prefix": key_prefix}, port)
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    with serve_workers(config, "2", {"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}) as process:
        await until_workers_serve(process, config.with_suffix(".log"), 2)
        created = await create_task_session(
            base, SUPPORT_KEY, "resolve-ticket", {"ticket_id": "T-1", "customer_id": "C-7"}
        )
        assert created.status_code == 201, created.text
        token = created.json()["taskToken"]

        failures: list[str] = []
        for n in range(CALLS):
            # A new client each time: a new connection, which the kernel may give to either worker.
            async with httpx.AsyncClient(timeout=30) as http:
                response = await http.post(
                    f"{base}/mcp",
                    json=modern_body("tools/call", {"name": "demo__get_customer", "arguments": {"customer_id": "C-7"}}),
                    headers={
                        **modern_headers("tools/call", "demo__get_customer", key=SUPPORT_KEY),
                        "X-Task-Token": token,
                    },
                )
            body = response.json()
            if response.status_code != 200 or "result" not in body or body["result"].get("isError"):
                failures.append(f"call {n}: {response.status_code} {response.text[:200]}")

        async with httpx.AsyncClient() as http:
            exposition = (await http.get(f"{base}/metrics")).text
        per_worker = calls_counted_per_worker(metrics_dir)

        process.terminate()
        status = await exit_status_within(process, 60)

    assert failures == []
    assert len(per_worker) == 2, per_worker  # both workers served calls
    assert sum(per_worker.values()) == CALLS
    assert total_in_exposition(exposition, TOOL_CALLS_METRIC) == CALLS  # whichever worker answered the scrape
    assert status == 0


async def test_memory_store_with_two_workers_is_refused_before_serving(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"url": "memory://"}, free_port())
    with serve_workers(config, "2", {}) as process:
        status = await exit_status_within(process, 60)
    log = config.with_suffix(".log").read_text()
    assert status == 2
    assert "--workers 2 needs a store the workers share: memory://" in log
    assert "redis://" in log
