"""The API key pages beyond the seed procedures: creating (the value shown once), editing,
errors next to their fields, who sees what, CSRF, expired sessions, the keyboard."""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta

import httpx
from playwright.async_api import Page, expect
from sqlalchemy import update

from keyplane.kit.db import transaction
from keyplane.kit.keys import is_well_formed_api_key
from keyplane.kit.time import utcnow
from keyplane.models import ApiKey, AuthSession
from tests.api_keys.helpers import CreatedKey, backdate_expiry
from tests.console.conftest import LiveServer, log_in, screenshot
from tests.console.helpers import (
    active_column,
    api_key_for,
    choose_from_row_menu,
    key_row,
    open_my_api_keys,
    open_tenant_api_keys,
    open_tenant_settings,
    status_with_key,
)


async def test_generate_shows_the_key_once(page: Page, live_server: LiveServer) -> None:
    await log_in(page, live_server.world.alice)
    await screenshot(page, "my-api-keys-empty")
    await page.get_by_role("link", name="Add New API key").click()
    await page.get_by_label("API Key Name").fill("deploy")
    await page.get_by_label("Description").fill("CI deploys to staging")
    await page.get_by_label("60 days").check()
    await screenshot(page, "add-new-api-key")
    await page.get_by_role("button", name="Generate").click()

    shown = page.get_by_label("API key “deploy”")
    value = await shown.input_value()
    assert is_well_formed_api_key(value)
    await expect(page.get_by_role("alert")).to_contain_text("cannot be viewed again")
    # How lists will name it: the prefix and its last 4 characters.
    await expect(page.locator("code.key-hint")).to_have_text(f"kp_…{value[-4:]}")
    await screenshot(page, "api-key-created")
    assert await status_with_key(live_server, CreatedKey(uid="", value=value)) == 200

    await page.reload()
    assert value not in await page.content()
    await page.go_back()
    assert value not in await page.content()
    await open_my_api_keys(page)
    assert value not in await page.content()
    row = key_row(page, "deploy")
    await expect(row).to_contain_text("CI deploys to staging")
    await expect(row).to_contain_text((utcnow() + timedelta(days=60)).strftime("%Y-%m-%d"))
    await expect(row.locator("td.key-hint")).to_have_text(f"kp_…{value[-4:]}")
    assert value[:-4] not in await page.content()
    await screenshot(page, "my-api-keys")


async def test_tenant_admin_creates_a_key_for_a_user_with_a_custom_date(
    page: Page, live_server: LiveServer
) -> None:
    await log_in(page, live_server.world.admin)
    await open_tenant_api_keys(page)
    await page.get_by_role("link", name="Add New API key").click()
    await page.get_by_label("API Key Name").fill("for-bob")
    await page.get_by_label("User Name").select_option(label="Bob By (bob@acme.example)")
    await page.get_by_label("Custom", exact=True).check()
    day = (utcnow() + timedelta(days=45)).strftime("%Y-%m-%d")
    await page.get_by_label("Custom date").fill(day)
    await page.get_by_role("button", name="Generate").click()
    await expect(page.get_by_label("API key “for-bob” for Bob By")).to_have_value(
        re.compile("^kp_")
    )
    await page.get_by_role("link", name="Done").click()
    row = key_row(page, "for-bob")
    await expect(row).to_contain_text("Bob By")
    await expect(row).to_contain_text(day)
    await screenshot(page, "tenant-api-keys")


async def test_errors_are_shown_next_to_the_field_and_nothing_typed_is_lost(
    page: Page, live_server: LiveServer
) -> None:
    await log_in(page, live_server.world.alice)
    await page.get_by_role("link", name="Add New API key").click()
    await page.get_by_label("Description").fill("typed with care")
    await page.get_by_role("button", name="Generate").click()
    name = page.get_by_label("API Key Name")
    await expect(name).to_have_attribute("aria-invalid", "true")
    await expect(page.locator("#name-error")).to_be_visible()
    await expect(page.get_by_label("Description")).to_have_value("typed with care")

    await name.fill("deploy")
    await page.get_by_label("Custom", exact=True).check()
    await page.get_by_label("Custom date").fill("2001-01-01")
    await page.get_by_role("button", name="Generate").click()
    await expect(page.locator("#expiry-error")).to_contain_text("future")
    await expect(page.get_by_label("API Key Name")).to_have_value("deploy")


async def test_edit_changes_name_description_and_expiry(
    page: Page, live_server: LiveServer
) -> None:
    alice = live_server.world.alice
    key = await api_key_for(live_server, alice, "deploy")
    await log_in(page, alice)
    await choose_from_row_menu(page, "deploy", "Edit")
    await expect(page.get_by_label("API Key Name")).to_have_value("deploy")
    await page.get_by_label("API Key Name").fill("deploy-prod")
    await page.get_by_label("Description").fill("production")
    await page.get_by_label("90 days").check()
    await screenshot(page, "edit-api-key")
    await page.get_by_role("button", name="Save").click()
    await page.wait_for_url("**/my/api-keys")
    row = key_row(page, "deploy-prod")
    await expect(row).to_contain_text("production")
    await expect(row).to_contain_text((utcnow() + timedelta(days=90)).strftime("%Y-%m-%d"))
    assert await status_with_key(live_server, key) == 200


async def test_expired_key_shows_one_state_and_reactivation_explains_why_not(
    page: Page, live_server: LiveServer
) -> None:
    alice = live_server.world.alice
    lapsed = await api_key_for(live_server, alice, "lapsed")
    await backdate_expiry(live_server.runtime, lapsed.uid)
    key = await api_key_for(live_server, alice, "old")
    await backdate_expiry(live_server.runtime, key.uid, is_active=False)
    await log_in(page, alice)
    # Expired wins over active; revoked (Inactive) wins over expired. One state each.
    assert await active_column(page, "lapsed") == "Expired"
    assert await active_column(page, "old") == "Inactive"
    row = key_row(page, "old")
    await row.get_by_label("three-dot Menu for old").click()
    await expect(row.get_by_role("menuitem", name="Re-activate")).to_have_count(0)

    response = await page.request.post(
        f"/my/api-keys/{key.uid}/reactivate",
        form={"csrf_token": await _csrf(page)},
    )
    assert response.ok
    await page.goto("/my/api-keys")
    assert await active_column(page, "old") == "Inactive"
    assert await active_column(page, "lapsed") == "Expired"


async def test_the_state_filter_matches_the_one_state_shown(
    page: Page, live_server: LiveServer
) -> None:
    world = live_server.world
    await api_key_for(live_server, world.alice, "fresh")
    lapsed = await api_key_for(live_server, world.alice, "lapsed")
    await backdate_expiry(live_server.runtime, lapsed.uid)
    gone = await api_key_for(live_server, world.bob, "revoked-and-lapsed")
    await backdate_expiry(live_server.runtime, gone.uid, is_active=False)
    await api_key_for(live_server, world.bob, "pulled")
    await log_in(page, world.admin)
    await open_tenant_api_keys(page)
    await choose_from_row_menu(page, "pulled", "Revoke")
    await expect(page.get_by_role("status")).to_contain_text("revoked")

    expected = {
        "Active": ["fresh"],
        "Inactive": ["pulled", "revoked-and-lapsed"],
        "Expired": ["lapsed"],
    }
    for state, names in expected.items():
        await page.get_by_label("State").select_option(label=state)
        await page.get_by_role("button", name="Apply").click()
        await expect(page.get_by_label("State")).to_have_value(state.lower())
        shown = await page.locator("table.keys tbody td.name").all_inner_texts()
        assert sorted(shown) == names, state
        for name in names:
            assert await active_column(page, name) == state


async def test_newest_keys_come_first_each_named_by_its_last_four_characters(
    page: Page, live_server: LiveServer
) -> None:
    alice = live_server.world.alice
    keys = [await api_key_for(live_server, alice, name) for name in ("first", "second", "third")]
    # A key from before Keyplane kept the last characters: it has none to show.
    async with transaction(live_server.runtime.sessionmaker) as session:
        await session.execute(update(ApiKey).where(ApiKey.uid == keys[0].uid).values(key_hint=None))
    await log_in(page, alice)
    assert await page.locator("table.keys tbody td.name").all_inner_texts() == [
        "third",
        "second",
        "first",
    ]
    await expect(page.get_by_role("link", name="Created")).to_have_attribute(
        "aria-sort", "descending"
    )
    for name, key in (("second", keys[1]), ("third", keys[2])):
        await expect(key_row(page, name).locator("td.key-hint")).to_have_text(
            f"kp_…{key.value[-4:]}"
        )
    await expect(key_row(page, "first").locator("td.key-hint")).to_have_text("—")
    content = await page.content()
    for key in keys:
        assert key.value[:-4] not in content
        assert key.value[-5:] not in content

    # Sorting the other way still works.
    await page.get_by_role("link", name="Created").click()
    await expect(page.get_by_role("link", name="Created")).to_have_attribute(
        "aria-sort", "ascending"
    )
    assert await page.locator("table.keys tbody td.name").all_inner_texts() == [
        "first",
        "second",
        "third",
    ]


async def _line_counts(page: Page, selector: str) -> list[float]:
    """How many lines each matching cell's content takes: its height over its line height."""
    counts: list[float] = await page.locator(selector).evaluate_all(
        """cells => cells.map(cell => {
            const range = document.createRange();
            range.selectNodeContents(cell);
            const style = getComputedStyle(cell);
            const lineHeight = parseFloat(style.lineHeight) || parseFloat(style.fontSize) * 1.2;
            return range.getBoundingClientRect().height / lineHeight;
        })"""
    )
    return counts


async def test_the_tenant_key_table_stays_readable_at_1280_pixels(
    page: Page, live_server: LiveServer
) -> None:
    """At 1280x800 (the fixture's viewport): dates and keys on one line, no sideways
    scrolling, and the settings menus as wide on every Tenant Settings page."""
    assert page.viewport_size == {"width": 1280, "height": 800}
    world = live_server.world
    used = await api_key_for(live_server, world.alice, "deployment-pipeline-production")
    assert await status_with_key(live_server, used) == 200
    for actor, name in (
        (world.bob, "nightly-export-to-the-data-warehouse"),
        (world.admin, "terraform"),
        (world.alice, "ci"),
    ):
        await api_key_for(live_server, actor, name)
    await asyncio.sleep(0.5)  # the last-used time is written within 0.2 s
    await log_in(page, world.admin)
    await open_tenant_api_keys(page)
    await expect(key_row(page, "deployment-pipeline-production")).not_to_contain_text("Never")

    dates = await _line_counts(page, "table.keys tbody td.time")
    assert len(dates) == 12
    assert all(lines < 1.5 for lines in dates), dates
    hints = await _line_counts(page, "table.keys tbody td.key-hint")
    assert all(lines < 1.5 for lines in hints), hints
    overflow = await page.evaluate(
        "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert overflow[0] <= overflow[1], overflow

    widths: dict[str, tuple[float, float]] = {}
    for item in ("API Keys", "Users", "Resource Limits", "Audit Logs"):
        await open_tenant_settings(page, item)
        settings_menu = await page.get_by_role(
            "navigation", name="Tenant Settings Menu"
        ).bounding_box()
        main_menu = await page.get_by_role("navigation", name="Main Menu").bounding_box()
        assert settings_menu is not None
        assert main_menu is not None
        widths[item] = (main_menu["width"], settings_menu["width"])
    assert len(set(widths.values())) == 1, widths


async def _csrf(page: Page) -> str:
    value = await page.locator("input[name=csrf_token]").first.get_attribute("value")
    assert value
    return value


async def test_a_user_sees_only_their_keys_and_no_tenant_scope(
    page: Page, live_server: LiveServer
) -> None:
    world = live_server.world
    await api_key_for(live_server, world.bob, "bobs-secret-project")
    await api_key_for(live_server, world.alice, "alices")
    await log_in(page, world.alice)
    await expect(key_row(page, "alices")).to_have_count(1)
    assert "bobs-secret-project" not in await page.content()
    await expect(page.get_by_role("link", name="Tenant Admin")).to_have_count(0)

    response = await page.goto("/tenant/settings/api-keys")
    assert response is not None
    assert response.status == 403
    assert "bobs-secret-project" not in await page.content()


async def test_forms_without_a_valid_csrf_token_change_nothing(
    page: Page, live_server: LiveServer
) -> None:
    alice = live_server.world.alice
    key = await api_key_for(live_server, alice, "deploy")
    await log_in(page, alice)
    for token in ("", "forged"):
        response = await page.request.post(
            f"/my/api-keys/{key.uid}/revoke", form={"csrf_token": token}
        )
        assert response.status == 403
    assert await status_with_key(live_server, key) == 200
    await page.goto("/my/api-keys")
    assert await active_column(page, "deploy") == "Active"


async def test_cross_site_post_without_the_cookie_is_sent_to_login(
    live_server: LiveServer,
) -> None:
    key = await api_key_for(live_server, live_server.world.alice, "deploy")
    async with httpx.AsyncClient(base_url=live_server.url) as http:
        response = await http.post(f"/my/api-keys/{key.uid}/delete", data={"csrf_token": "x"})
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login")
    assert await status_with_key(live_server, key) == 200


async def test_an_expired_session_leads_back_to_login_with_a_message(
    page: Page, live_server: LiveServer
) -> None:
    alice = live_server.world.alice
    await log_in(page, alice)
    async with transaction(live_server.runtime.sessionmaker) as session:
        await session.execute(
            update(AuthSession)
            .where(AuthSession.user_uid == alice.uid)
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    await page.goto("/my/api-keys/new")
    await page.wait_for_url(re.compile(r"/login\?next="))
    await expect(page.get_by_role("alert")).to_contain_text("session has expired")
    await page.get_by_label("Email").fill(alice.email)
    await page.get_by_label("Organization").fill("acme")
    await page.get_by_label("Password").fill(alice.password)
    await page.get_by_role("button", name="Log in").click()
    await page.wait_for_url("**/my/api-keys/new")


async def test_wrong_password_is_explained_and_the_email_kept(
    page: Page, live_server: LiveServer
) -> None:
    await page.goto("/login")
    await page.get_by_label("Email").fill("alice@acme.example")
    await page.get_by_label("Organization").fill("acme")
    await page.get_by_label("Password").fill("not the password")
    await page.get_by_role("button", name="Log in").click()
    await expect(page.get_by_role("alert")).to_contain_text("not right")
    await expect(page.get_by_label("Email")).to_have_value("alice@acme.example")
    await screenshot(page, "login-error")


async def test_three_dot_menu_works_from_the_keyboard(page: Page, live_server: LiveServer) -> None:
    alice = live_server.world.alice
    key = await api_key_for(live_server, alice, "deploy")
    await log_in(page, alice)
    menu = page.get_by_label("three-dot Menu for deploy")
    await menu.focus()
    await page.keyboard.press("Enter")
    revoke = key_row(page, "deploy").get_by_role("menuitem", name="Revoke")
    await expect(revoke).to_be_visible()
    await page.keyboard.press("Escape")
    await expect(revoke).to_be_hidden()
    await expect(menu).to_be_focused()
    await page.keyboard.press("Enter")
    await revoke.focus()
    await page.keyboard.press("Enter")
    # The form posts and comes back to the same page: wait for what the post changed.
    await expect(key_row(page, "deploy").locator("td.state .badge").first).to_have_text("Inactive")
    assert await status_with_key(live_server, key) == 401


async def test_logout_ends_the_session(page: Page, live_server: LiveServer) -> None:
    await log_in(page, live_server.world.alice)
    await page.get_by_label("User Menu").click()
    await page.get_by_role("menuitem", name="Log out").click()
    await page.wait_for_url("**/login")
    await page.goto("/my/api-keys")
    await page.wait_for_url(re.compile(r"/login"))


async def test_a_form_posted_after_the_session_expired_is_kept(
    page: Page, live_server: LiveServer
) -> None:
    alice = live_server.world.alice
    await log_in(page, alice)
    await page.get_by_role("link", name="Add New API key").click()
    await page.get_by_label("API Key Name").fill("nightly")
    await page.get_by_label("Description").fill("nightly export job")
    await page.get_by_label("7 days").check()
    async with transaction(live_server.runtime.sessionmaker) as session:
        await session.execute(
            update(AuthSession)
            .where(AuthSession.user_uid == alice.uid)
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    await page.get_by_role("button", name="Generate").click()
    await page.wait_for_url(re.compile(r"/login\?next="))
    await expect(page.get_by_role("alert")).to_contain_text("session has expired")
    await page.get_by_label("Email").fill(alice.email)
    await page.get_by_label("Organization").fill("acme")
    await page.get_by_label("Password").fill(alice.password)
    await page.get_by_role("button", name="Log in").click()
    await page.wait_for_url(re.compile(r"/my/api-keys/new\?"))
    await expect(page.get_by_label("API Key Name")).to_have_value("nightly")
    await expect(page.get_by_label("Description")).to_have_value("nightly export job")
    await expect(page.get_by_label("7 days")).to_be_checked()
    await page.get_by_role("button", name="Generate").click()
    await expect(page.get_by_label("API key “nightly”")).to_have_value(re.compile("^kp_"))


async def test_a_refused_edit_saves_nothing(page: Page, live_server: LiveServer) -> None:
    """The form shows the error, and the name typed with it is not stored behind its back."""
    alice = live_server.world.alice
    await api_key_for(live_server, alice, "deploy")
    await log_in(page, alice)
    await choose_from_row_menu(page, "deploy", "Edit")
    await page.get_by_label("API Key Name").fill("renamed")
    await page.get_by_label("Custom", exact=True).check()
    await page.get_by_label("Custom date").fill("2001-01-01")
    await page.get_by_role("button", name="Save").click()
    await expect(page.locator("#expiry-error")).to_contain_text("future")
    await open_my_api_keys(page)
    await expect(key_row(page, "deploy")).to_have_count(1)
    await expect(key_row(page, "renamed")).to_have_count(0)
