"""Two gateway replicas over one Redis: an agent defined on one runs on the other, and a run is read and
cancelled from either."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest

from tests.support.agents_harness import ADMIN_KEY, agent_body, agent_config, auth, create_agent
from tests.support.harness import DEMO_KEY, serve_gateway
from tests.support.llm_server import Hold, ScriptedModels, answer, serve_models, tool_call


@pytest.fixture
async def replicas(redis_url: str, key_prefix: str) -> AsyncIterator[tuple[str, str, ScriptedModels]]:
    async with serve_models() as (model_url, models):
        config = agent_config(model_url, store={"url": redis_url, "prefix": key_prefix})
        async with serve_gateway(config) as first, serve_gateway(config) as second:
            yield first, second, models


async def test_agent_created_on_one_replica_runs_on_another(replicas: tuple[str, str, ScriptedModels]) -> None:
    first, second, models = replicas
    models.script("primary-model", tool_call("demo__echo", text="hi"), answer("echoed hi"))
    async with httpx.AsyncClient(timeout=30) as http:
        agent = await create_agent(http, first)
        listed = await http.get(f"{second}/v1/agents", headers=auth(DEMO_KEY))
        ran = await http.post(
            f"{second}/v1/agents/{agent['id']}/runs?wait=true", json={"input": "x"}, headers=auth(DEMO_KEY)
        )
        read_on_first = await http.get(f"{first}/v1/runs/{ran.json()['id']}", headers=auth(DEMO_KEY))
        taken_on_second = await http.post(f"{second}/v1/agents", json=agent_body(), headers=auth(ADMIN_KEY))
    assert [a["id"] for a in listed.json()["agents"]] == [agent["id"]]
    assert ran.status_code == 200 and ran.json()["output"] == "echoed hi"
    assert read_on_first.json() == ran.json()
    assert taken_on_second.status_code == 409


async def test_run_is_cancelled_from_another_replica(replicas: tuple[str, str, ScriptedModels]) -> None:
    first, second, models = replicas
    hold = Hold(then=tool_call("demo__echo", text="one"))
    models.script("primary-model", hold, answer("never asked"))
    async with httpx.AsyncClient(timeout=30) as http:
        agent = await create_agent(http, first)
        started = await http.post(f"{second}/v1/agents/{agent['id']}/runs", json={"input": "x"}, headers=auth(DEMO_KEY))
        run_id = started.json()["id"]
        with anyio.fail_after(10):
            await hold.reached.wait()
        cancelled = await http.delete(f"{first}/v1/runs/{run_id}", headers=auth(DEMO_KEY))
        hold.release.set()
        record: dict[str, Any] = {}
        with anyio.fail_after(10):
            while not record or record["status"] == "running":
                await anyio.sleep(0.05)
                record = (await http.get(f"{first}/v1/runs/{run_id}", headers=auth(DEMO_KEY))).json()
    assert cancelled.status_code == 202
    # The replica running it saw the request at the end of the turn in flight and asked the model no more.
    assert record["status"] == "cancelled"
    assert len(models.requests) == 1


async def test_run_in_flight_when_its_replica_stops_is_recorded_as_cancelled(redis_url: str, key_prefix: str) -> None:
    async with serve_models() as (model_url, models):
        config = agent_config(model_url, store={"url": redis_url, "prefix": key_prefix})
        hold = Hold(then=answer("too late"))
        models.script("primary-model", hold)
        async with serve_gateway(config) as first, httpx.AsyncClient(timeout=30) as http:
            agent = await create_agent(http, first)
            async with serve_gateway(config) as second:
                started = await http.post(
                    f"{second}/v1/agents/{agent['id']}/runs", json={"input": "x"}, headers=auth(DEMO_KEY)
                )
                with anyio.fail_after(10):
                    await hold.reached.wait()
            record = (await http.get(f"{first}/v1/runs/{started.json()['id']}", headers=auth(DEMO_KEY))).json()
    assert record["status"] == "cancelled"
    assert record["endedAt"] is not None
