"""Tenant Settings > Permissions: the tenant's permission names and roles, adding and
deleting them, editing a role, with errors next to the fields, over HTTP; and one walk
through it in a browser."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote

import httpx
import pytest
from playwright.async_api import Page, expect

from keyplane.console.session import FLASH_COOKIE, SESSION_COOKIE
from tests.console.conftest import LiveServer, log_in, screenshot
from tests.console.helpers import open_tenant_settings
from tests.helpers import World
from tests.permissions.helpers import make_permission, make_role
from tests.users.helpers import Actor

BASE = "/tenant/settings/permissions"
ROLES = f"{BASE}/roles"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def _as(actor: Actor) -> dict[str, str]:
    # A console session is a session token in a cookie.
    return {"Cookie": f"{SESSION_COOKIE}={actor.headers['Authorization']}"}


async def _page(client: httpx.AsyncClient, actor: Actor, path: str = BASE) -> str:
    response = await client.get(path, headers=_as(actor))
    assert response.status_code == 200, response.text
    return response.text


async def _post(
    client: httpx.AsyncClient, actor: Actor, path: str, form: dict[str, Any]
) -> httpx.Response:
    csrf = _CSRF.search(await _page(client, actor, BASE))
    assert csrf is not None
    return await client.post(path, data={"csrf_token": csrf.group(1), **form}, headers=_as(actor))


def _flash(response: httpx.Response) -> str:
    assert response.status_code == 303, response.text
    assert response.headers["location"] == BASE
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{FLASH_COOKIE}=")
    return unquote(cookie.split(";")[0].split("=", 1)[1])


def _field_error(page: str, field: str) -> str:
    found = re.search(rf'<p class="field-error" id="{field}-error">([^<]*)</p>', page)
    assert found is not None, page
    return found.group(1)


async def _rest_names(client: httpx.AsyncClient, admin: Actor, path: str) -> dict[str, Any]:
    response = await client.get(path, headers=admin.headers)
    assert response.status_code == 200, response.text
    return {
        item["metadata"]["name"]: item.get("spec", {}).get("permissions")
        for item in response.json()["items"]
    }


async def test_the_page_lists_permissions_and_roles_under_tenant_settings(
    client: httpx.AsyncClient, world: World
) -> None:
    admin = world.admin
    empty = await _page(client, admin)
    assert "No permissions yet." in empty
    assert "No roles yet." in empty
    assert '<a href="/tenant/settings/permissions" aria-current="page">Permissions</a>' in empty
    assert 'href="/tenant/settings/permissions"' in await _page(client, admin, "/tenant/settings")

    await make_permission(client, admin, "invoices.read", "Read <invoices>.")
    await make_permission(client, admin, "invoices.write")
    await make_role(client, admin, "billing", ["invoices.read", "invoices.write"], "All.")
    await make_role(client, admin, "nobody")
    page = await _page(client, admin)
    assert "<code>invoices.read</code>" in page
    # Escaped, as everything a tenant admin types.
    assert "Read &lt;invoices&gt;." in page
    assert "<code>invoices.read</code>, <code>invoices.write</code>" in page
    assert page.index("<code>billing</code>") < page.index("<code>nobody</code>")
    assert "Delete permission invoices.read" in page
    assert "2 of at most 1000 permissions." in page
    assert "2 of at most 200 roles." in page
    # Another tenant's admin sees only their own.
    other = await _page(client, world.other_admin)
    assert "data-permission-uid" not in other
    assert "data-role-uid" not in other
    assert "No permissions yet." in other


async def test_adding_a_permission_with_errors_next_to_the_field(
    client: httpx.AsyncClient, world: World
) -> None:
    admin = world.admin
    form = await _page(client, admin, f"{BASE}/new?name=typed&description=kept")
    assert 'value="typed"' in form
    assert ">kept</textarea>" in form

    for name, status, problem in (
        ("has space", 400, "not a valid permission name"),
        ("or", 400, "reserved"),
        ("", 400, "not a valid permission name"),
    ):
        response = await _post(client, admin, f"{BASE}/new", {"name": name, "description": "D"})
        assert response.status_code == status, response.text
        assert problem in _field_error(response.text, "name")
        assert f'value="{name}"' in response.text
        assert 'aria-invalid="true"' in response.text
        assert ">D</textarea>" in response.text

    response = await _post(
        client, admin, f"{BASE}/new", {"name": "invoices.read", "description": "Read."}
    )
    assert _flash(response) == "ok:Permission invoices.read added."
    response = await _post(client, admin, f"{BASE}/new", {"name": "invoices.read"})
    assert response.status_code == 409, response.text
    assert "already has a permission named invoices.read" in _field_error(response.text, "name")
    response = await _post(client, admin, f"{BASE}/new", {"name": "x", "description": "bell\a"})
    assert response.status_code == 400, response.text
    assert _field_error(response.text, "description").startswith("Description ")
    assert await _rest_names(client, admin, "/v1/permissions") == {"invoices.read": None}


async def test_adding_editing_and_deleting_a_role(client: httpx.AsyncClient, world: World) -> None:
    admin = world.admin
    for name in ("invoices.read", "invoices.write", "reports.read"):
        await make_permission(client, admin, name)
    form = await _page(client, admin, f"{ROLES}/new")
    assert form.count('type="checkbox" name="permission"') == 3
    assert "checked" not in form

    response = await _post(
        client,
        admin,
        f"{ROLES}/new",
        {
            "name": "billing",
            "description": "Bills.",
            "permission": ["invoices.write", "invoices.read"],
        },
    )
    assert _flash(response) == "ok:Role billing added."
    assert await _rest_names(client, admin, "/v1/permissionRoles") == {
        "billing": ["invoices.read", "invoices.write"]
    }
    response = await _post(client, admin, f"{ROLES}/new", {"name": "billing"})
    assert response.status_code == 409, response.text
    assert "already has a permission role named billing" in _field_error(response.text, "name")

    uid = (await client.get("/v1/permissionRoles", headers=admin.headers)).json()["items"][0][
        "metadata"
    ]["uid"]
    edit = await _page(client, admin, f"{ROLES}/{uid}/edit")
    assert 'value="billing"' in edit
    assert re.search(r'value="invoices\.read"\s+checked', edit)
    assert re.search(r'value="invoices\.write"\s+checked', edit)
    assert not re.search(r'value="reports\.read"\s+checked', edit)

    # A permission deleted while the form was open: named, and still shown to uncheck.
    response = await _post(
        client,
        admin,
        f"{ROLES}/{uid}/edit",
        {"name": "reporting", "permission": ["reports.read", "gone.now"]},
    )
    assert response.status_code == 400, response.text
    assert "gone.now" in _field_error(response.text, "permissions")
    assert re.search(r'value="gone\.now"\s+checked', response.text)
    assert 'value="reporting"' in response.text
    assert await _rest_names(client, admin, "/v1/permissionRoles") == {
        "billing": ["invoices.read", "invoices.write"]
    }

    response = await _post(
        client, admin, f"{ROLES}/{uid}/edit", {"name": "reporting", "permission": "reports.read"}
    )
    assert _flash(response) == "ok:Role reporting saved."
    assert await _rest_names(client, admin, "/v1/permissionRoles") == {
        "reporting": ["reports.read"]
    }
    # No box checked: a role without permissions.
    response = await _post(client, admin, f"{ROLES}/{uid}/edit", {"name": "reporting"})
    assert _flash(response) == "ok:Role reporting saved."
    assert await _rest_names(client, admin, "/v1/permissionRoles") == {"reporting": []}

    confirm = await _page(client, admin, f"{ROLES}/{uid}/delete")
    assert "Delete role reporting?" in confirm
    assert f'action="{ROLES}/{uid}/delete"' in confirm
    response = await _post(client, admin, f"{ROLES}/{uid}/delete", {})
    assert _flash(response) == "ok:Role reporting deleted."
    assert await _rest_names(client, admin, "/v1/permissionRoles") == {}


async def test_deleting_a_permission_after_a_confirmation_that_names_its_roles(
    client: httpx.AsyncClient, world: World
) -> None:
    admin = world.admin
    uid = await make_permission(client, admin, "invoices.read")
    await make_permission(client, admin, "invoices.write")
    await make_role(client, admin, "billing", ["invoices.read", "invoices.write"])
    await make_role(client, admin, "writer", ["invoices.write"])
    confirm = await _page(client, admin, f"{BASE}/{uid}/delete")
    assert "Delete permission invoices.read?" in confirm
    assert "<code>billing</code>" in confirm
    assert "<code>writer</code>" not in confirm
    # Showing the confirmation changes nothing.
    assert "invoices.read" in await _rest_names(client, admin, "/v1/permissions")

    response = await _post(client, admin, f"{BASE}/{uid}/delete", {})
    assert _flash(response) == "ok:Permission invoices.read deleted."
    assert await _rest_names(client, admin, "/v1/permissionRoles") == {
        "billing": ["invoices.write"],
        "writer": ["invoices.write"],
    }
    response = await client.get(f"{BASE}/{uid}/delete", headers=_as(admin))
    assert response.status_code == 404
    assert "No such permission." in response.text
    # The audit log shows what happened.
    audit_log = await _page(client, admin, "/tenant/settings/audit-logs")
    assert "invoices.read" in audit_log


async def test_forms_without_a_valid_csrf_token_change_nothing(
    client: httpx.AsyncClient, world: World
) -> None:
    admin = world.admin
    uid = await make_permission(client, admin, "invoices.read")
    role = await make_role(client, admin, "billing", ["invoices.read"])
    for path, form in (
        (f"{BASE}/new", {"name": "forged"}),
        (f"{BASE}/{uid}/delete", {}),
        (f"{ROLES}/new", {"name": "forged"}),
        (f"{ROLES}/{role}/edit", {"name": "forged"}),
        (f"{ROLES}/{role}/delete", {}),
    ):
        for token in ("forged", None):
            data = form if token is None else {**form, "csrf_token": token}
            response = await client.post(path, data=data, headers=_as(admin))
            assert response.status_code == 403, path
            assert "This form has expired" in response.text
    assert await _rest_names(client, admin, "/v1/permissions") == {"invoices.read": None}
    assert await _rest_names(client, admin, "/v1/permissionRoles") == {"billing": ["invoices.read"]}


@pytest.mark.parametrize("who", ["alice", "other_admin"])
async def test_others_are_refused(who: str, client: httpx.AsyncClient, world: World) -> None:
    admin = world.admin
    uid = await make_permission(client, admin, "invoices.read")
    role = await make_role(client, admin, "billing", ["invoices.read"])
    actor: Actor = getattr(world, who)
    expected = 403 if who == "alice" else 404
    for path in (f"{BASE}/{uid}/delete", f"{ROLES}/{role}/edit", f"{ROLES}/{role}/delete"):
        response = await client.get(path, headers=_as(actor))
        assert response.status_code == expected, path
    if who == "alice":
        for path in (BASE, f"{BASE}/new", f"{ROLES}/new"):
            response = await client.get(path, headers=_as(actor))
            assert response.status_code == 403, path
            assert "Only tenant admins" in response.text
    assert await _rest_names(client, admin, "/v1/permissions") == {"invoices.read": None}


async def test_an_admin_defines_a_permission_and_a_role_in_the_browser(
    page: Page, live_server: LiveServer
) -> None:
    await log_in(page, live_server.world.admin)
    await open_tenant_settings(page, "Permissions")
    await expect(page.get_by_text("No permissions yet.")).to_be_visible()
    for name in ("invoices.read", "invoices.write"):
        await page.get_by_role("link", name="Add permission").click()
        await page.get_by_label("Permission name").fill(name)
        await page.get_by_role("button", name="Add permission").click()
        await expect(page.get_by_role("status")).to_contain_text(f"Permission {name} added.")

    await page.get_by_role("link", name="Add role").click()
    await page.get_by_label("Role name").fill("not valid")
    await page.get_by_label("invoices.read").check()
    await page.get_by_role("button", name="Add role").click()
    await expect(page.get_by_label("Role name")).to_have_attribute("aria-invalid", "true")
    await expect(page.locator("#name-error")).to_contain_text("not a valid permission role name")
    await expect(page.get_by_label("invoices.read")).to_be_checked()
    await screenshot(page, "permission-role-errors")
    await page.get_by_label("Role name").fill("billing")
    await page.get_by_role("button", name="Add role").click()
    await expect(page.get_by_role("status")).to_contain_text("Role billing added.")
    row = page.get_by_role("row").filter(has_text="billing")
    await expect(row).to_contain_text("invoices.read")
    await screenshot(page, "permissions")

    await page.get_by_label("Delete permission invoices.read").click()
    await expect(page.get_by_role("heading")).to_contain_text("Delete permission invoices.read?")
    await page.get_by_role("button", name="Delete").click()
    await expect(page.get_by_role("status")).to_contain_text("Permission invoices.read deleted.")
    await expect(page.get_by_role("row").filter(has_text="billing")).to_contain_text("None")
