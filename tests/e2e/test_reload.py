"""``mcp-gateway serve`` reloading its config file on SIGHUP (and with ``server.watchConfig``, on a change): a real
process, its config file edited, real streams and a real slow call.

Identities, policies and upstreams change without a restart; sessions, streams and calls in flight survive; a client
listening hears ``list_changed`` only when its own lists changed; a bad config is refused whole, with every problem
logged, and the running one keeps serving.
"""

from __future__ import annotations

import copy
import json
import re
import signal
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx

from tests.api.test_task_definitions_api import ADMIN_KEY
from tests.conftest import free_port
from tests.console.test_console_http import SECRET, signed_in
from tests.e2e.test_shutdown import AUTH, count_slowly, initialize, serving_process, sse, until_serving
from tests.eras.test_mcp_endpoint import modern_body, modern_headers
from tests.support.harness import BASE_CONFIG, DEMO_KEY, DEMO_UPSTREAM, OTHER_KEY, sha

NEW_KEY = "mgw_test_reload_new_key_33333333333333333"
_OUTCOME = re.compile(r"config reload(ed| refused)")


@dataclass
class Gateway:
    process: subprocess.Popen[bytes]
    base: str
    config_path: Path
    log_path: Path
    config: dict[str, Any]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def write(self, config: dict[str, Any]) -> None:
        self.config = config
        self.config_path.write_text(json.dumps(config))  # JSON is YAML

    async def reloaded(self, config: dict[str, Any]) -> str:
        """Write ``config``, send SIGHUP, and return the log line saying how the reload ended (with what follows)."""
        self.write(config)
        return await self.next_outcome(lambda: self.process.send_signal(signal.SIGHUP))

    async def next_outcome(self, trigger: Any) -> str:
        seen = len(_OUTCOME.findall(self.log()))
        trigger()
        with anyio.fail_after(60):
            while len(_OUTCOME.findall(self.log())) == seen:
                assert self.process.poll() is None, "the gateway exited"
                await anyio.sleep(0.1)
        return self.log()[[m.start() for m in _OUTCOME.finditer(self.log())][seen] :]


def base_config(port: int) -> dict[str, Any]:
    config: dict[str, Any] = copy.deepcopy(BASE_CONFIG)
    config["server"] = {"host": "127.0.0.1", "port": port, "maxBodyBytes": 65536}
    config["identities"].append({"id": "ops", "roles": ["admin"], "credentials": [{"sha256": sha(ADMIN_KEY)}]})
    return config


@contextmanager
def gateway_process(tmp_path: Path, edit: Any = None) -> Iterator[Gateway]:
    """``python -m mcp_gateway serve`` on a free port with the demo upstream; killed if the test leaves it running."""
    config = base_config(free_port())
    if edit is not None:
        edit(config)
    config_path, log_path = tmp_path / "gateway.yaml", tmp_path / "gateway.log"
    with serving_process(config, config_path, log_path) as process:
        yield Gateway(process, f"http://127.0.0.1:{config['server']['port']}", config_path, log_path, config)


async def call(http: httpx.AsyncClient, base: str, key: str, tool: str, arguments: dict[str, Any]) -> httpx.Response:
    body = modern_body("tools/call", {"name": tool, "arguments": arguments})
    return await http.post(f"{base}/mcp", json=body, headers=modern_headers("tools/call", tool, key))


async def tool_names(http: httpx.AsyncClient, base: str, key: str = DEMO_KEY) -> list[str]:
    response = await http.post(f"{base}/mcp", json=modern_body("tools/list"), headers=modern_headers("tools/list"))
    assert response.status_code == 200, response.text
    return [tool["name"] for tool in response.json()["result"]["tools"]]


def listen(http: httpx.AsyncClient, base: str, key: str, **kinds: bool) -> Any:
    body = modern_body("subscriptions/listen", {"notifications": kinds})
    return sse(http, "POST", f"{base}/mcp", json=body, headers=modern_headers("subscriptions/listen", key=key))


async def next_message(stream: AsyncIterator[str]) -> dict[str, Any]:
    with anyio.fail_after(30):
        message: dict[str, Any] = json.loads(await anext(stream))
    return message


async def test_sighup_adds_and_removes_identities_keeping_sessions_and_ending_the_removed_ones_streams(
    tmp_path: Path,
) -> None:
    with gateway_process(tmp_path) as gateway:
        await until_serving(gateway.process, gateway.base)
        async with httpx.AsyncClient(timeout=30) as http:
            assert (await call(http, gateway.base, NEW_KEY, "demo__echo", {"text": "hi"})).status_code == 401
            assert (await call(http, gateway.base, OTHER_KEY, "demo__echo", {"text": "hi"})).status_code == 200
            session = await initialize(http, gateway.base)
            async with listen(http, gateway.base, OTHER_KEY, toolsListChanged=True) as removed_stream:
                await next_message(removed_stream)  # the acknowledgment
                config = copy.deepcopy(gateway.config)
                config["identities"] = [i for i in config["identities"] if i["id"] != "other-agent"]
                config["identities"].append({"id": "newcomer", "credentials": [{"sha256": sha(NEW_KEY)}]})
                outcome = await gateway.reloaded(config)
                with anyio.fail_after(10):
                    after_removal = [message async for message in removed_stream]

            added = await call(http, gateway.base, NEW_KEY, "demo__echo", {"text": "hi"})
            removed = await call(http, gateway.base, OTHER_KEY, "demo__echo", {"text": "hi"})
            listed = await http.post(
                f"{gateway.base}/mcp",
                json={"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
                headers={**AUTH, "mcp-session-id": session},
            )

    assert outcome.startswith("config reloaded: identities +newcomer -other-agent; 1 stream(s) told")
    assert after_removal == []  # the stream ended, cleanly
    assert added.status_code == 200, added.text
    assert added.json()["result"]["content"] == [{"type": "text", "text": "hi"}]
    assert removed.status_code == 401
    assert removed.json()["error"] == "unauthorized"
    assert listed.status_code == 200, listed.text  # the legacy session opened before the reload
    assert "demo__echo" in [tool["name"] for tool in listed.json()["result"]["tools"]]


async def test_sighup_applies_a_changed_policy_and_keeps_settings_that_need_a_restart(tmp_path: Path) -> None:
    with gateway_process(tmp_path) as gateway:
        await until_serving(gateway.process, gateway.base)
        async with httpx.AsyncClient(timeout=30) as http:
            before = await call(http, gateway.base, DEMO_KEY, "demo__echo", {"text": "x" * 2000})
            assert before.json()["result"].get("isError") is not True

            config = copy.deepcopy(gateway.config)
            config["server"]["maxBodyBytes"] = 1024
            config["policies"].append(
                {
                    "name": "no-long-echoes",
                    "effect": "deny",
                    "tools": ["demo__echo"],
                    "condition": "size(request.tool.args.text) > 100",
                    "message": "keep it short",
                }
            )
            outcome = await gateway.reloaded(config)
            long_echo = await call(http, gateway.base, DEMO_KEY, "demo__echo", {"text": "x" * 2000})
            short_echo = await call(http, gateway.base, DEMO_KEY, "demo__echo", {"text": "short"})
            again = await gateway.reloaded(config)

    assert outcome.startswith("config reloaded: policies +no-long-echoes")
    assert "needs restart (running value kept): server.maxBodyBytes" in outcome.splitlines()[0]
    # Said again on every reload until the restart: the running value is the one compared with.
    assert again.startswith("config reloaded: nothing changed; 0 stream(s) told; needs restart (running value kept): ")
    assert "server.maxBodyBytes" in again.splitlines()[0]
    # The 2000-character body is over the new maxBodyBytes but not the running one: it reached the policy.
    assert long_echo.status_code == 200, long_echo.text
    result = long_echo.json()["result"]
    assert result["isError"] is True
    assert "no-long-echoes" in result["content"][0]["text"]
    assert "keep it short" in result["content"][0]["text"]
    assert short_echo.json()["result"]["content"] == [{"type": "text", "text": "short"}]


async def test_sighup_adds_an_upstream_and_tells_the_clients_whose_lists_changed(tmp_path: Path) -> None:
    def demo_prompts_only(config: dict[str, Any]) -> None:
        other = next(i for i in config["identities"] if i["id"] == "other-agent")
        other["allowedPrompts"] = ["demo__*"]

    with gateway_process(tmp_path, demo_prompts_only) as gateway:
        await until_serving(gateway.process, gateway.base)
        async with httpx.AsyncClient(timeout=30) as http:
            session = await initialize(http, gateway.base)
            async with (
                sse(http, "GET", f"{gateway.base}/mcp", headers={**AUTH, "mcp-session-id": session}) as legacy_stream,
                listen(http, gateway.base, DEMO_KEY, toolsListChanged=True) as modern_stream,
                # other-agent sees only demo__e* tools and demo__* prompts: the new upstream's are none of its business.
                listen(
                    http, gateway.base, OTHER_KEY, toolsListChanged=True, promptsListChanged=True
                ) as unconcerned_stream,
            ):
                await next_message(modern_stream)  # the acknowledgment
                await next_message(unconcerned_stream)
                assert "extra__echo" not in await tool_names(http, gateway.base)

                config = copy.deepcopy(gateway.config)
                config["upstreams"].append({**DEMO_UPSTREAM, "name": "extra"})
                outcome = await gateway.reloaded(config)
                legacy_note = await next_message(legacy_stream)
                modern_note = await next_message(modern_stream)

                # A second reload that changes only other-agent's prompts: the first thing its stream hears.
                config = copy.deepcopy(config)
                other = next(i for i in config["identities"] if i["id"] == "other-agent")
                other["allowedPrompts"] = []
                await gateway.reloaded(config)
                unconcerned_note = await next_message(unconcerned_stream)
                echoed = await call(http, gateway.base, DEMO_KEY, "extra__echo", {"text": "from extra"})
                names = await tool_names(http, gateway.base)

    assert outcome.startswith("config reloaded: upstreams +extra; 2 stream(s) told")
    assert legacy_note["method"] == "notifications/tools/list_changed"
    assert modern_note["method"] == "notifications/tools/list_changed"
    assert unconcerned_note["method"] == "notifications/prompts/list_changed"
    assert "extra__echo" in names
    assert echoed.json()["result"]["content"] == [{"type": "text", "text": "from extra"}]


async def test_a_bad_config_is_refused_whole_and_the_running_one_keeps_serving(tmp_path: Path) -> None:
    with gateway_process(tmp_path) as gateway:
        await until_serving(gateway.process, gateway.base)
        config = copy.deepcopy(gateway.config)
        config["identities"] = [{"id": "newcomer", "credentials": [{"sha256": sha(NEW_KEY)}]}]
        config["upstreams"][0]["timeout"] = "soon"
        config["bogus"] = True
        outcome = await gateway.reloaded(config)
        async with httpx.AsyncClient(timeout=30) as http:
            kept = await call(http, gateway.base, DEMO_KEY, "demo__echo", {"text": "still here"})
            refused = await call(http, gateway.base, NEW_KEY, "demo__echo", {"text": "not yet"})

    assert outcome.startswith("config reload refused")
    # Every problem is logged, each on its own line.
    assert "upstreams[0].timeout" in outcome
    assert "config.bogus" in outcome
    assert kept.json()["result"]["content"] == [{"type": "text", "text": "still here"}]
    assert refused.status_code == 401


async def test_upstreams_whose_names_clash_are_refused_and_closed(tmp_path: Path) -> None:
    with gateway_process(tmp_path) as gateway:
        await until_serving(gateway.process, gateway.base)
        config = copy.deepcopy(gateway.config)
        config["upstreams"] += [{**DEMO_UPSTREAM, "name": name, "prefix": False} for name in ("left", "right")]
        outcome = await gateway.reloaded(config)
        async with httpx.AsyncClient(timeout=30) as http:
            kept = await call(http, gateway.base, DEMO_KEY, "demo__echo", {"text": "still here"})
            names = await tool_names(http, gateway.base)

    assert outcome.startswith("config reload refused")
    assert "tool name 'echo' is exposed by both upstreams 'left' ('echo') and 'right'" in outcome
    assert kept.json()["result"]["content"] == [{"type": "text", "text": "still here"}]
    assert "echo" not in names


async def test_a_policy_that_does_not_compile_is_refused_with_its_name(tmp_path: Path) -> None:
    with gateway_process(tmp_path) as gateway:
        await until_serving(gateway.process, gateway.base)
        config = copy.deepcopy(gateway.config)
        config["identities"].append({"id": "newcomer", "credentials": [{"sha256": sha(NEW_KEY)}]})
        config["policies"].append({"name": "broken", "effect": "deny", "condition": "request.tool.name =="})
        outcome = await gateway.reloaded(config)
        async with httpx.AsyncClient(timeout=30) as http:
            refused = await call(http, gateway.base, NEW_KEY, "demo__echo", {"text": "not yet"})

    assert outcome.startswith("config reload refused")
    assert "broken" in outcome
    assert refused.status_code == 401


async def test_a_call_in_flight_finishes_when_a_reload_removes_its_upstream(tmp_path: Path) -> None:
    with gateway_process(tmp_path) as gateway:
        await until_serving(gateway.process, gateway.base)
        async with httpx.AsyncClient(timeout=30) as http:
            session = await initialize(http, gateway.base)
            legacy = {**AUTH, "mcp-session-id": session}
            async with sse(http, "POST", f"{gateway.base}/mcp", json=count_slowly(8, 0.75), headers=legacy) as call_:
                first = json.loads(await anext(call_))
                assert first["method"] == "notifications/progress"  # the call is running upstream
                config = copy.deepcopy(gateway.config)
                config["upstreams"] = [{**DEMO_UPSTREAM, "name": "extra"}]
                outcome = await gateway.reloaded(config)
                rest = [json.loads(message) async for message in call_]
            gone = await call(http, gateway.base, DEMO_KEY, "demo__echo", {"text": "hi"})
            with anyio.fail_after(30):
                while "upstream 'demo' (old configuration) closed" not in gateway.log():  # noqa: ASYNC110 - a log file
                    await anyio.sleep(0.1)

    assert outcome.startswith("config reloaded: upstreams +extra -demo")
    assert rest[-1]["id"] == 7
    # Six seconds upstream, well past the reload: its upstream stayed open until the call was done.
    assert rest[-1]["result"]["content"] == [{"type": "text", "text": "counted to 8"}]
    assert gone.json()["error"]["message"] == "Unknown tool: demo__echo"


async def test_admins_reload_over_http_and_read_the_problems(tmp_path: Path) -> None:
    with gateway_process(tmp_path) as gateway:
        await until_serving(gateway.process, gateway.base)
        url = f"{gateway.base}/v1/config/reload"
        async with httpx.AsyncClient(timeout=60) as http:
            not_admin = await http.post(url, headers={"Authorization": f"Bearer {DEMO_KEY}"})
            config = copy.deepcopy(gateway.config)
            config["identities"].append({"id": "newcomer", "credentials": [{"sha256": sha(NEW_KEY)}]})
            config["server"]["bogus"] = 1
            gateway.write(config)
            bad = await http.post(url, headers={"Authorization": f"Bearer {ADMIN_KEY}"})
            del config["server"]["bogus"]
            gateway.write(config)
            good = await http.post(url, headers={"Authorization": f"Bearer {ADMIN_KEY}"})
            newcomer = await call(http, gateway.base, NEW_KEY, "demo__echo", {"text": "hi"})

    assert not_admin.status_code == 403
    assert bad.status_code == 422
    assert bad.json()["error"] == "config_refused"
    assert any("server.bogus" in problem for problem in bad.json()["problems"])
    assert good.status_code == 200
    assert good.json()["applied"] is True
    assert good.json()["summary"].startswith("config reloaded: identities +newcomer")
    assert newcomer.status_code == 200


async def test_watch_config_reloads_when_the_file_changes(tmp_path: Path) -> None:
    def watch(config: dict[str, Any]) -> None:
        config["server"]["watchConfig"] = True

    with gateway_process(tmp_path, watch) as gateway:
        await until_serving(gateway.process, gateway.base)
        config = copy.deepcopy(gateway.config)
        config["identities"].append({"id": "newcomer", "credentials": [{"sha256": sha(NEW_KEY)}]})
        outcome = await gateway.next_outcome(lambda: gateway.write(config))
        async with httpx.AsyncClient(timeout=30) as http:
            newcomer = await call(http, gateway.base, NEW_KEY, "demo__echo", {"text": "hi"})

    assert outcome.startswith("config reloaded: identities +newcomer")
    assert newcomer.status_code == 200


async def test_a_console_session_ends_when_a_reload_removes_its_admin(tmp_path: Path) -> None:
    def console(config: dict[str, Any]) -> None:
        config["console"] = {"secret": SECRET}

    with gateway_process(tmp_path, console) as gateway:
        await until_serving(gateway.process, gateway.base)
        async with httpx.AsyncClient(base_url=gateway.base, timeout=30) as http:
            await signed_in(http)
            config = copy.deepcopy(gateway.config)
            config["identities"] = [i for i in config["identities"] if i["id"] != "ops"]
            await gateway.reloaded(config)
            page = await http.get("/console/tasks")

    assert page.status_code == 303
    assert page.headers["location"] == "/console/login"
