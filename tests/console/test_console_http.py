"""The console's guards over plain HTTP, on a real gateway (memory store: the console works on both stores; the
browser tests use Redis): off without a secret, CSRF and Origin checks, forged cookies, revoked keys."""

from __future__ import annotations

import copy
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.api.test_task_definitions_api import ADMIN_KEY
from tests.support.harness import BASE_CONFIG, make_config, serve_gateway, sha

SECRET = "s3cret-" * 6


def console_config(**console: Any) -> Any:
    identities: list[dict[str, Any]] = copy.deepcopy(BASE_CONFIG["identities"])
    identities.append({"id": "ops", "roles": ["admin"], "credentials": [{"sha256": sha(ADMIN_KEY)}]})
    return make_config(identities=identities, console=console)


@pytest.fixture(scope="module")
async def gateway() -> AsyncIterator[str]:
    async with serve_gateway(console_config(secret=SECRET)) as url:
        yield url


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None, html
    return found.group(1)


async def signed_in(http: httpx.AsyncClient) -> str:
    """Sign in as the admin; the CSRF token of the signed-in session."""
    login = await http.get("/console/login")
    answer = await http.post("/console/login", data={"csrf": csrf_of(login.text), "key": ADMIN_KEY})
    assert answer.status_code == 303 and answer.headers["location"] == "/console/tasks"
    return csrf_of((await http.get("/console/tasks")).text)


async def test_console_is_off_without_a_secret() -> None:
    async with serve_gateway(console_config()) as url, httpx.AsyncClient(base_url=url) as http:
        answer = await http.get("/console/login")
    assert answer.status_code == 404
    assert answer.json()["error"] == "not_found" and "console.secret" in answer.json()["message"]


@pytest.mark.parametrize(
    "path", ["/console/sessions", "/console/agents", "/console/agents/ag_1", "/console/runs/run_1"]
)
async def test_pages_redirect_to_sign_in_without_a_session(gateway: str, path: str) -> None:
    async with httpx.AsyncClient(base_url=gateway) as http:
        answer = await http.get(path)
    assert answer.status_code == 303 and answer.headers["location"] == "/console/login"


async def test_agent_pages_on_the_memory_store_list_nothing_and_unknown_ones_are_404(gateway: str) -> None:
    async with httpx.AsyncClient(base_url=gateway) as http:
        await signed_in(http)
        listing = await http.get("/console/agents")
        agent = await http.get("/console/agents/ag_0000000000000000")
        run = await http.get("/console/runs/run_0000")
    assert listing.status_code == 200 and "No agents yet." in listing.text
    assert agent.status_code == 404 and "not found" in agent.text
    assert run.status_code == 404 and "not found" in run.text


async def test_sign_in_sets_a_signed_httponly_strict_cookie_and_security_headers(gateway: str) -> None:
    async with httpx.AsyncClient(base_url=gateway) as http:
        await signed_in(http)
        page = await http.get("/console/tasks")
    assert page.status_code == 200
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    cookie = page.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/console" in cookie
    assert ADMIN_KEY.lower() not in cookie


async def test_a_form_without_the_sessions_csrf_token_is_refused(gateway: str) -> None:
    async with httpx.AsyncClient(base_url=gateway) as http:
        await signed_in(http)
        answer = await http.post("/console/tasks/new", data={"csrf": "forged", "id": "x", "name": "x"})
        assert answer.status_code == 403
        listed = await http.get("/v1/tasks", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    assert [t["id"] for t in listed.json()["tasks"]] == ["resolve-ticket"]


async def test_a_cross_origin_form_post_is_refused(gateway: str) -> None:
    async with httpx.AsyncClient(base_url=gateway) as http:
        csrf = await signed_in(http)
        answer = await http.post(
            "/console/tasks/new",
            data={"csrf": csrf, "id": "x", "name": "x"},
            headers={"Origin": "https://evil.example"},
        )
    assert answer.status_code == 403
    assert "cross-origin" in answer.text


async def test_a_cookie_signed_with_another_secret_is_not_a_session(gateway: str) -> None:
    other_console = serve_gateway(console_config(secret="another-secret-" * 3))
    async with other_console as other, httpx.AsyncClient(base_url=other) as http:
        await signed_in(http)
        forged = http.cookies["mcpgw_console"]
    async with httpx.AsyncClient(base_url=gateway, cookies={"mcpgw_console": forged}) as http:
        answer = await http.get("/console/tasks")
    assert answer.status_code == 303 and answer.headers["location"] == "/console/login"


async def test_an_unknown_key_is_refused_at_sign_in(gateway: str) -> None:
    async with httpx.AsyncClient(base_url=gateway) as http:
        login = await http.get("/console/login")
        answer = await http.post("/console/login", data={"csrf": csrf_of(login.text), "key": "mgw_nope"})
    assert answer.status_code == 401
    assert "unknown or expired API key" in answer.text


async def test_tasks_written_in_the_console_on_the_memory_store_are_served_by_the_api(gateway: str) -> None:
    async with httpx.AsyncClient(base_url=gateway) as http:
        csrf = await signed_in(http)
        form = {"csrf": csrf, "id": "mem-task", "name": "On memory", "allowedTools": "demo__echo"}
        saved = await http.post("/console/tasks/new", data={**form, "contextSchema": '{"type": "object"}'})
        assert saved.status_code == 200 and "Saved as version 1" in saved.text
        task = await http.get("/v1/tasks/mem-task", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    assert task.json()["allowedTools"] == ["demo__echo"]


async def test_the_rest_api_page_lists_every_operation_of_the_openapi_document(gateway: str) -> None:
    async with httpx.AsyncClient(base_url=gateway) as http:
        await signed_in(http)
        page = await http.get("/console/api")
        document = (await http.get("/openapi.json")).json()
    assert page.status_code == 200
    for path, item in document["paths"].items():
        for method in item.keys() - {"parameters"}:
            assert f"<code>{method.upper()}</code></td><td><code>{path}</code>" in page.text
