"""The console in a real browser: Debian's Chromium, headless, driven by Playwright, against a real gateway on Redis.

Never a downloaded browser: ``/usr/bin/chromium`` (``make test`` installs it when missing). Screenshots of each page
go to a temporary directory, or to ``docs/console/`` with ``CONSOLE_SCREENSHOTS=1`` (how the README's are made).
"""

from __future__ import annotations

import copy
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from tests.api.test_task_definitions_api import ADMIN_KEY, refused
from tests.support.agents_harness import agent_config, create_agent
from tests.support.harness import BASE_CONFIG, DEMO_KEY, make_config, serve_gateway, sha
from tests.support.llm_server import ScriptedModels, answer, serve_models, tool_call

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DOCS = Path(__file__).resolve().parents[2] / "docs" / "console"

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (apt-get install chromium)")


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    if os.environ.get("CONSOLE_SCREENSHOTS") == "1":
        DOCS.mkdir(parents=True, exist_ok=True)
        return DOCS
    return tmp_path


@pytest.fixture
async def gateway(redis_url: str) -> AsyncIterator[str]:
    identities: list[dict[str, Any]] = copy.deepcopy(BASE_CONFIG["identities"])
    identities.append({"id": "ops", "roles": ["admin"], "credentials": [{"sha256": sha(ADMIN_KEY)}]})
    config = make_config(
        store={"url": redis_url, "prefix": f"test:{os.urandom(6).hex()}:"},
        identities=identities,
        console={"secret": os.urandom(32).hex()},
    )
    async with serve_gateway(config) as url:
        yield url


@pytest.fixture
async def agents_gateway(redis_url: str) -> AsyncIterator[tuple[str, ScriptedModels]]:
    """A gateway with Task Agents on the scripted model server, and the console on."""
    async with serve_models() as (model_url, models):
        config = agent_config(
            model_url,
            store={"url": redis_url, "prefix": f"test:{os.urandom(6).hex()}:"},
            console={"secret": os.urandom(32).hex()},
        )
        async with serve_gateway(config) as url:
            yield url, models


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        yield launched
        await launched.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    opened = await context.new_page()
    yield opened
    await context.close()


async def sign_in(page: Page, url: str, key: str = ADMIN_KEY) -> None:
    await page.goto(f"{url}/console/login")
    await page.get_by_label("API key").fill(key)
    await page.get_by_role("button", name="Sign in").click()


async def test_admin_signs_in_and_sees_the_tasks(gateway: str, page: Page, shots: Path) -> None:
    await sign_in(page, gateway)
    await expect(page).to_have_url(f"{gateway}/console/tasks")
    await expect(page.get_by_role("heading", name="Tasks")).to_be_visible()
    await expect(page.get_by_role("link", name="resolve-ticket")).to_be_visible()
    cookie = next(c for c in await page.context.cookies() if c["name"] == "mcpgw_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    await page.screenshot(path=str(shots / "tasks.png"), full_page=True)


async def test_non_admin_key_is_refused(gateway: str, page: Page, shots: Path) -> None:
    await sign_in(page, gateway, DEMO_KEY)
    await expect(page.get_by_role("alert")).to_contain_text("does not have the admin role")
    await page.screenshot(path=str(shots / "sign-in-refused.png"))
    await page.goto(f"{gateway}/console/tasks")
    await expect(page).to_have_url(f"{gateway}/console/login")


async def test_bad_schema_is_shown_inline_and_the_fixed_task_is_saved(gateway: str, page: Page, shots: Path) -> None:
    await sign_in(page, gateway)
    await page.get_by_role("link", name="New task").click()
    await page.get_by_label("Id", exact=True).fill("triage")
    await page.get_by_label("Name", exact=True).fill("Triage a ticket")
    await page.get_by_label("Allowed tools").fill("demo__echo\ndemo__get_customer")
    schema = page.get_by_label("Context schema (JSON Schema)")
    await schema.fill('{"type": "object", "properties": {"ticket": {"type": "text"}}}')
    await page.get_by_role("button", name="Create task").click()
    await expect(schema).to_have_attribute("aria-invalid", "true")
    await expect(page.locator("#schema-errors")).to_contain_text("/contextSchema/properties/ticket/type")
    await page.screenshot(path=str(shots / "task-schema-error.png"), full_page=True)

    await schema.fill('{"type": "object", "properties": {"ticket": {"type": "string"}}}')
    await page.get_by_role("button", name="Create task").click()
    await expect(page.get_by_role("status").first).to_contain_text("Saved as version 1")
    await page.get_by_label("Name", exact=True).fill("Triage a support ticket")
    await page.get_by_role("button", name="Save new version").click()
    await expect(page.get_by_role("status").first).to_contain_text("Saved as version 2")
    await expect(page.get_by_role("table")).to_contain_text("Triage a support ticket")
    await page.screenshot(path=str(shots / "task-history.png"), full_page=True)
    async with httpx.AsyncClient() as http:
        stored = await http.get(f"{gateway}/v1/tasks/triage", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    assert stored.json()["version"] == 2


async def test_session_created_over_the_api_appears_and_revoking_it_ends_it(
    gateway: str, page: Page, shots: Path
) -> None:
    async with httpx.AsyncClient() as http:
        created = await http.post(
            f"{gateway}/v1/tasks/sessions",
            json={"taskId": "resolve-ticket", "context": {"ticket_id": "T-9", "customer_id": "cust-001"}},
            headers={"Authorization": f"Bearer {DEMO_KEY}"},
        )
    session = created.json()
    await sign_in(page, gateway)
    await page.get_by_role("link", name="Task sessions").click()
    row = page.locator(f'tr[data-token-id="{session["tokenId"]}"]')
    await expect(row).to_contain_text("demo-agent")
    await expect(row).to_contain_text("T-9")
    await page.screenshot(path=str(shots / "sessions.png"), full_page=True)
    assert not await refused(gateway, session["taskToken"])
    await row.get_by_role("button", name=f"Revoke session {session['tokenId']}").click()
    await expect(row).to_have_count(0)
    assert await refused(gateway, session["taskToken"])


async def test_playground_shows_the_seed_policy_deny(gateway: str, page: Page, shots: Path) -> None:
    await sign_in(page, gateway)
    await page.get_by_role("link", name="Policy playground").click()
    await page.get_by_label("Identity").select_option("demo-agent")
    await page.get_by_label("Task", exact=True).select_option("resolve-ticket")
    await page.get_by_label("Task context (JSON)").fill('{"ticket_id": "T-1", "customer_id": "cust-001"}')
    await page.get_by_label("Tool").fill("demo__get_customer")
    await page.get_by_label("Arguments (JSON)").fill('{"customer_id": "cust-002"}')
    await page.get_by_role("button", name="Explain").click()
    await expect(page.locator("#decision")).to_have_text("DENY")
    await expect(page.locator("#report")).to_contain_text("same-customer")
    await page.screenshot(path=str(shots / "playground.png"), full_page=True)


async def test_overview_and_audit_show_a_denied_call(gateway: str, page: Page, shots: Path) -> None:
    from tests.support.harness import mcp_client

    async with httpx.AsyncClient() as http:
        created = await http.post(
            f"{gateway}/v1/tasks/sessions",
            json={"taskId": "resolve-ticket", "context": {"ticket_id": "T-1", "customer_id": "cust-001"}},
            headers={"Authorization": f"Bearer {DEMO_KEY}"},
        )
    async with mcp_client(gateway, DEMO_KEY, task_token=created.json()["taskToken"]) as client:
        result = await client.call_tool("demo__get_customer", {"customer_id": "cust-002"})
        assert result.is_error
    await sign_in(page, gateway)
    await page.get_by_role("link", name="Overview").click()
    await expect(page.get_by_role("table").first).to_contain_text("connected")
    await expect(page.locator(".counters")).to_contain_text("Denials")
    await page.screenshot(path=str(shots / "overview.png"), full_page=True)
    await page.get_by_role("link", name="Audit").click()
    await expect(page.locator("#audit tbody")).to_contain_text("same-customer")
    await page.screenshot(path=str(shots / "audit.png"), full_page=True)


async def test_agent_its_revision_and_a_runs_turns_and_tool_calls_are_shown(
    agents_gateway: tuple[str, ScriptedModels], page: Page, shots: Path
) -> None:
    gateway, models = agents_gateway
    models.script(
        "primary-model",
        tool_call("demo__get_customer", customer_id="cust-002"),
        tool_call("demo__get_customer", customer_id="cust-001"),
        answer("Ada Lovelace is a gold customer."),
    )
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    context = {"ticket_id": "T-7", "customer_id": "cust-001"}
    async with httpx.AsyncClient(timeout=30) as http:
        agent = await create_agent(http, gateway, name="ticket-helper", maxTurns=6)
        started = await http.post(
            f"{gateway}/v1/agents/{agent['id']}/runs?wait=true",
            json={"input": "Who is the customer of T-7?", "taskId": "resolve-ticket", "context": context},
            headers=headers,
        )
    run = started.json()
    assert run["status"] == "completed", run

    await sign_in(page, gateway)
    await page.get_by_role("link", name="Agents", exact=True).click()
    await expect(page.get_by_role("heading", name="Agents", exact=True)).to_be_visible()
    row = page.locator(f'tr[data-agent-id="{agent["id"]}"]')
    await expect(row).to_contain_text("primary")
    # Keyboard only: focus the agent's link and follow it with Enter.
    await row.get_by_role("link", name="ticket-helper").focus()
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", name="Agent ticket-helper")).to_be_visible()
    revision = page.locator('tr[data-revision="1"]')
    await expect(revision).to_contain_text("You help by echoing.")
    await expect(revision).to_contain_text("demo: echo, get_customer")
    await expect(revision).to_contain_text("(active)")
    await expect(revision.get_by_role("cell").nth(5)).to_have_text("6")
    await expect(page.locator(f'tr[data-run-id="{run["id"]}"]')).to_contain_text("completed")
    await page.screenshot(path=str(shots / "agents.png"), full_page=True)

    await page.get_by_role("link", name=run["id"]).click()
    await expect(page.locator("#run-status")).to_have_text("completed")
    await expect(page.locator("#run-output")).to_have_text("Ada Lovelace is a gold customer.")
    await expect(page.get_by_role("heading", name="Turn 3 · primary")).to_be_visible()
    denied = page.locator(f'tr[data-call-id="{run["turns"][0]["toolCalls"][0]["id"]}"]')
    await expect(denied).to_contain_text("demo__get_customer")
    await expect(denied.get_by_role("cell").nth(2)).to_have_text("denied")
    await expect(denied.get_by_role("cell").nth(3)).to_have_text("same-customer")
    allowed = page.locator(f'tr[data-call-id="{run["turns"][1]["toolCalls"][0]["id"]}"]')
    await expect(allowed.get_by_role("cell").nth(4)).to_have_text("ok")
    await page.screenshot(path=str(shots / "agent-run.png"), full_page=True)
