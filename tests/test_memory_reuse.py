"""``memory_reuse``: on glibc the serving process keeps freed memory for the next large answer instead of faulting it
in again; elsewhere nothing is changed."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

# A request's worth of large buffers alive together (read body, result, encoded answer), freed, and made again; prints
# the page faults the repetitions took. Run in a process of its own: the thresholds are process-wide.
REQUESTS = """
import resource, sys
from mcp_gateway.memory_reuse import reuse_freed_memory
if sys.argv[1] == "reuse":
    assert reuse_freed_memory()
def request():
    buffers = [bytearray(1024 * 1024) for _ in range(3)]
    del buffers
request()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    request()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def faults(mode: str) -> int:
    run = subprocess.run([sys.executable, "-c", REQUESTS, mode], capture_output=True, text=True, check=True)
    return int(run.stdout)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the thresholds are glibc's")
def test_large_buffers_made_again_reuse_the_memory_instead_of_faulting_it_in() -> None:
    # Without: glibc trims the freed megabytes after each request, and the next one faults ~768 pages in again.
    assert faults("default") > 20 * 256
    assert faults("reuse") < 256


@pytest.mark.parametrize(
    "setting", [{"MALLOC_TRIM_THRESHOLD_": "0"}, {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=0"}]
)
def test_an_operators_own_malloc_tuning_is_left_alone(setting: dict[str, str]) -> None:
    code = "from mcp_gateway.memory_reuse import reuse_freed_memory; print(reuse_freed_memory())"
    env = {**os.environ, **setting}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert run.stdout.strip() == "False"
