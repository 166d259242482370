"""Tenant Settings > Audit Logs: the events newest first, the filters, paging, and the CSV
download (its rows, its escaping, no key values), and who may open it."""

from __future__ import annotations

import asyncio
import csv
import io
import re
from datetime import timedelta
from pathlib import Path

from playwright.async_api import Page, expect

from keyplane.audit.actions import Action
from keyplane.console.audit import ACTION_LABELS, CSV_HEADER, events_csv
from keyplane.kit.db import transaction
from keyplane.kit.time import utcnow
from keyplane.models import AuditEvent
from tests.console.conftest import LiveServer, log_in, screenshot
from tests.console.helpers import api_key_for, open_tenant_settings

AUDIT_URL = "/tenant/settings/audit-logs"
DASH = "\N{EN DASH}"


async def _rows(page: Page) -> list[str]:
    return [text.strip() for text in await page.locator("table.audit tbody tr").all_inner_texts()]


async def test_events_are_listed_newest_first_and_filtered(
    page: Page, live_server: LiveServer
) -> None:
    world = live_server.world
    await api_key_for(live_server, world.alice, "deploy")
    await api_key_for(live_server, world.bob, "bob-ci")
    await log_in(page, world.admin)
    await open_tenant_settings(page, "Audit Logs")
    await screenshot(page, "audit-logs")

    rows = await _rows(page)
    # Newest first: the admin's own login, then Bob's key, then Alice's.
    assert "Logged in" in rows[0]
    assert "Ada Admin" in rows[0]
    bob_key = next(i for i, row in enumerate(rows) if "API key bob-ci" in row)
    alice_key = next(i for i, row in enumerate(rows) if "API key deploy" in row)
    assert bob_key < alice_key
    assert "API key created" in rows[alice_key]
    assert "Alice Liddell" in rows[alice_key]
    assert "Success" in rows[alice_key]
    assert "User added" in rows[-1] or "Tenant created" in rows[-1]
    await expect(page.get_by_role("navigation", name="Pages")).to_contain_text(
        f"1{DASH}{len(rows)} of {len(rows)}"
    )

    await page.get_by_label("Actor").select_option(label="Alice Liddell (alice@acme.example)")
    await page.get_by_role("button", name="Apply").click()
    rows = await _rows(page)
    assert rows
    assert all("Alice Liddell" in row for row in rows)
    assert any("API key deploy" in row for row in rows)
    await expect(page.get_by_label("Actor")).to_have_value(world.alice.uid)

    await page.get_by_label("Actor").select_option(label="All users")
    await page.get_by_label("Action").select_option(label="API key created")
    await page.get_by_role("button", name="Apply").click()
    rows = await _rows(page)
    assert len(rows) == 2
    assert "bob-ci" in rows[0]
    assert "deploy" in rows[1]

    today = utcnow().strftime("%Y-%m-%d")
    tomorrow = (utcnow() + timedelta(days=1)).strftime("%Y-%m-%d")
    await page.get_by_label("From (UTC)").fill(today)
    await page.get_by_label("To (UTC)").fill(today)
    await page.get_by_role("button", name="Apply").click()
    assert len(await _rows(page)) == 2
    await page.get_by_label("From (UTC)").fill(tomorrow)
    await page.get_by_label("To (UTC)").fill("")
    await page.get_by_role("button", name="Apply").click()
    await expect(page.get_by_text("No audit events match these filters")).to_be_visible()
    await expect(page.get_by_label("Action")).to_have_value("apiKey.create")

    await page.get_by_label("To (UTC)").fill(today)
    await page.get_by_role("button", name="Apply").click()
    await expect(page.locator("#filter-to-error")).to_contain_text("must not be before")
    await expect(page.get_by_label("To (UTC)")).to_have_attribute("aria-invalid", "true")
    await expect(page.get_by_label("From (UTC)")).to_have_value(tomorrow)

    await page.get_by_role("link", name="Clear filters").click()
    await expect(page.get_by_label("Action")).to_have_value("")
    assert len(await _rows(page)) > 2


async def _add_events(live_server: LiveServer, count: int) -> None:
    # Three days ago, from noon: every event on the same day (UTC).
    start = (utcnow() - timedelta(days=3)).replace(hour=12, minute=0, second=0, microsecond=0)
    async with transaction(live_server.runtime.sessionmaker) as session:
        for n in range(count):
            session.add(
                AuditEvent(
                    tenant_uid=live_server.world.admin.tenant_uid,
                    occurred_at=start + timedelta(minutes=n),
                    actor_type="user",
                    actor_user_uid=live_server.world.bob.uid,
                    actor_email="bob@acme.example",
                    actor_name="Bob By",
                    auth_method="session",
                    action="apiKey.update",
                    action_type="update",
                    resource_kind="apiKey",
                    resource_uid="",
                    resource_name=f"key-{n:02d}",
                    outcome="success",
                    client_address="198.51.100.4",
                )
            )


async def test_events_are_paged_25_at_a_time(page: Page, live_server: LiveServer) -> None:
    await _add_events(live_server, 30)
    await log_in(page, live_server.world.admin)
    await open_tenant_settings(page, "Audit Logs")
    await page.get_by_label("Action").select_option(label="API key edited")
    await page.get_by_role("button", name="Apply").click()
    pages = page.get_by_role("navigation", name="Pages")
    await expect(pages).to_contain_text(f"1{DASH}25 of 30")
    rows = await _rows(page)
    assert len(rows) == 25
    assert "key-29" in rows[0]
    assert "198.51.100.4" in rows[0]
    await expect(pages.get_by_role("link", name="Previous")).to_have_count(0)

    await pages.get_by_role("link", name="Next").click()
    await expect(pages).to_contain_text(f"26{DASH}30 of 30")
    rows = await _rows(page)
    assert [row.split("key-")[1][:2] for row in rows] == ["04", "03", "02", "01", "00"]
    await expect(page.get_by_label("Action")).to_have_value("apiKey.update")
    await expect(pages.get_by_role("link", name="Next")).to_have_count(0)
    await pages.get_by_role("link", name="Previous").click()
    await expect(pages).to_contain_text(f"1{DASH}25 of 30")


async def test_csv_download_has_the_filtered_rows_escaped_and_no_key_values(
    page: Page, live_server: LiveServer
) -> None:
    world = live_server.world
    formula = await api_key_for(live_server, world.alice, '=HYPERLINK("http://x.example")')
    plain = await api_key_for(live_server, world.alice, "deploy, prod")
    minus = await api_key_for(live_server, world.bob, "-2+3")
    await log_in(page, world.admin)
    await open_tenant_settings(page, "Audit Logs")
    await page.get_by_label("Action").select_option(label="API key created")
    await page.get_by_role("button", name="Apply").click()
    assert len(await _rows(page)) == 3

    async with page.expect_download() as info:
        await page.get_by_role("link", name="Download CSV").click()
    download = await info.value
    assert re.fullmatch(r"keyplane-audit-acme-\d{8}T\d{6}Z\.csv", download.suggested_filename)
    path = await download.path()
    content = await asyncio.to_thread(Path(path).read_text, encoding="utf-8")
    for key in (formula, plain, minus):
        assert key.value not in content

    table = list(csv.reader(io.StringIO(content)))
    assert table[0] == CSV_HEADER
    assert len(table) == 4
    column = {name: index for index, name in enumerate(CSV_HEADER)}
    names = [row[column["Resource name"]] for row in table[1:]]
    # Newest first, and what a spreadsheet would run as a formula is kept as text.
    assert names == ["'-2+3", "deploy, prod", '\'=HYPERLINK("http://x.example")']
    assert {row[column["Action"]] for row in table[1:]} == {"apiKey.create"}
    assert table[3][column["Actor email"]] == "alice@acme.example"
    assert table[3][column["Outcome"]] == "success"

    response = await page.request.get(
        f"/tenant/settings/audit-logs.csv?user={world.bob.uid}&action=apiKey.create"
    )
    assert response.ok
    assert response.headers["content-type"].startswith("text/csv")
    assert response.headers["content-disposition"].startswith("attachment; filename=")
    assert response.headers["cache-control"] == "no-store"
    rows = list(csv.reader(io.StringIO(await response.text())))
    assert len(rows) == 2
    assert rows[1][column["Resource name"]] == "'-2+3"


async def test_csv_download_keeps_the_date_filter(page: Page, live_server: LiveServer) -> None:
    await _add_events(live_server, 3)
    await log_in(page, live_server.world.admin)
    await open_tenant_settings(page, "Audit Logs")
    day = (utcnow() - timedelta(days=3)).strftime("%Y-%m-%d")
    await page.get_by_label("From (UTC)").fill(day)
    await page.get_by_label("To (UTC)").fill(day)
    await page.get_by_role("button", name="Apply").click()
    link = page.get_by_role("link", name="Download CSV")
    href = await link.get_attribute("href")
    assert href is not None
    assert f"from={day}" in href
    assert f"to={day}" in href
    response = await page.request.get(href)
    rows = list(csv.reader(io.StringIO(await response.text())))
    assert len(rows) == 1 + len(await _rows(page))
    assert all(row[0].startswith(day) for row in rows[1:])


async def test_a_plain_user_gets_403_on_the_audit_logs(page: Page, live_server: LiveServer) -> None:
    await log_in(page, live_server.world.alice)
    for path in (AUDIT_URL, "/tenant/settings/audit-logs.csv"):
        response = await page.goto(path)
        assert response is not None
        assert response.status == 403, path
        await expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
        assert "admin@acme.example" not in await page.content()


def test_every_action_has_a_label() -> None:
    assert set(ACTION_LABELS) == set(Action)


def test_csv_cells_never_start_a_formula() -> None:
    names = ["=1+2", "+1", "-1", "@SUM(A1)", "\tx", "\rx", 'a,b "c"', "plain", ""]
    events = [
        AuditEvent(
            occurred_at=utcnow(),
            actor_type="user",
            actor_name="=cmd|' /C calc'!A0",
            actor_email="eve@acme.example",
            auth_method="session",
            action="apiKey.create",
            action_type="create",
            resource_kind="apiKey",
            resource_uid="",
            resource_name=name,
            outcome="success",
            client_address="",
            message="",
        )
        for name in names
    ]
    table = list(csv.reader(io.StringIO(events_csv(events))))
    assert table[0] == CSV_HEADER
    column = CSV_HEADER.index("Resource name")
    assert [row[column] for row in table[1:]] == [
        "'=1+2",
        "'+1",
        "'-1",
        "'@SUM(A1)",
        "'\tx",
        "'\rx",
        'a,b "c"',
        "plain",
        "",
    ]
    assert {row[CSV_HEADER.index("Actor")] for row in table[1:]} == {"'=cmd|' /C calc'!A0"}
