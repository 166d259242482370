"""The API key pages' restrictions: the Restrictions section of the Add New and Edit
forms (admin-only fields for tenant admins only, errors next to their fields, edits that
send only what changed), the Restricted badge of the key table, and the key's own page;
over HTTP on both databases, and once in a browser."""

from __future__ import annotations

import re
from html import unescape
from typing import Any
from urllib.parse import unquote

import httpx
from playwright.async_api import Page, expect
from sqlalchemy import update

from keyplane.console.session import FLASH_COOKIE, SESSION_COOKIE
from keyplane.kit.db import transaction
from keyplane.kit.invalidation import Invalidation, publish
from keyplane.models import ApiKey
from keyplane.runtime import Runtime
from tests.api_keys.helpers import CreatedKey
from tests.console.conftest import LiveServer, log_in, screenshot
from tests.console.helpers import status_with_key
from tests.helpers import World
from tests.permissions.helpers import make_permission, make_role
from tests.users.helpers import Actor

MY = "/my/api-keys"
TENANT = "/tenant/settings/api-keys"
INFO = "/v1/users/info"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
ADMIN_ONLY_INPUTS = (
    'name="permissions"',
    'name="permission_roles"',
    'name="rate_limit_0_limit"',
    'name="credits_remaining"',
    'name="owner_id"',
    'name="meta"',
)


def _as(actor: Actor) -> dict[str, str]:
    # A console session is a session token in a cookie.
    return {"Cookie": f"{SESSION_COOKIE}={actor.headers['Authorization']}"}


async def _page(client: httpx.AsyncClient, actor: Actor, path: str) -> str:
    response = await client.get(path, headers=_as(actor))
    assert response.status_code == 200, response.text
    return response.text


async def _post(
    client: httpx.AsyncClient, actor: Actor, path: str, form: dict[str, Any]
) -> httpx.Response:
    csrf = _CSRF.search(await _page(client, actor, MY))
    assert csrf is not None
    return await client.post(path, data={"csrf_token": csrf.group(1), **form}, headers=_as(actor))


def _field_error(page: str, field: str) -> str:
    found = re.search(rf'<p class="field-error" id="{field}-error">([^<]*)</p>', page)
    assert found is not None, page
    return unescape(found.group(1))


def _flash(response: httpx.Response) -> str:
    assert response.status_code == 303, response.text
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{FLASH_COOKIE}=")
    return unquote(cookie.split(";")[0].split("=", 1)[1])


async def _keys(client: httpx.AsyncClient, admin: Actor) -> dict[str, dict[str, Any]]:
    """Every key of the tenant by name, as the REST API shows it."""
    response = await client.get("/v1/apiKeys", headers=admin.headers)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return {item["metadata"]["name"]: item for item in items}


async def _read(client: httpx.AsyncClient, actor: Actor, uid: str) -> dict[str, Any]:
    response = await client.get(f"/v1/apiKeys/{uid}", headers=actor.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def _api_key(
    client: httpx.AsyncClient, actor: Actor, name: str, description: str = "", **spec: Any
) -> CreatedKey:
    """A key made through the REST API, with the restrictions of ``spec``."""
    metadata = {"name": name, "annotations": {"description": description}}
    response = await client.post(
        "/v1/apiKeys", json={"metadata": metadata, "spec": spec}, headers=actor.headers
    )
    assert response.status_code == 201, response.text
    return CreatedKey(uid=response.json()["uid"], value=response.json()["apiKey"])


# The hidden fields that say the form had the Restrictions section and its admin-only part.
SECTION = {"restrictions_shown": "1"}
ADMIN_SECTION = {**SECTION, "restrictions_admin_shown": "1"}


def _new_key(name: str, **restrictions: Any) -> dict[str, Any]:
    return {"name": name, "description": "", "expiry": "30", **ADMIN_SECTION, **restrictions}


async def test_an_admin_creates_a_restricted_key_and_the_api_shows_it(
    client: httpx.AsyncClient, world: World
) -> None:
    admin = world.admin
    await make_permission(client, admin, "invoices.read", "Read invoices.")
    await make_permission(client, admin, "invoices.write")
    await make_role(client, admin, "billing", ["invoices.read", "invoices.write"])
    form = await _page(client, admin, f"{TENANT}/new")
    assert '<details class="restrictions" >' in form  # closed until asked for
    assert re.search(r'value="all"\s+checked> All that the owner may do', form)
    for name in ("users:write", "audit:read", "verify"):
        assert f'value="{name}"' in form
    assert 'name="permissions" value="invoices.read"' in form
    assert 'name="permission_roles" value="billing"' in form
    assert "checked> <code>" not in form
    assert '<option value="86400" >per day</option>' in form

    response = await _post(
        client,
        admin,
        f"{TENANT}/new",
        _new_key(
            "billing-sync",
            user=world.alice.uid,
            scopes_mode="some",
            scopes=["users:read", "apiKeys:read"],
            allowed_cidrs="10.0.0.0/8\n 2001:db8::/32\n\n",
            permissions=["invoices.read"],
            permission_roles=["billing"],
            rate_limit_rows="3",
            rate_limit_0_limit="10",
            rate_limit_0_window="1",
            rate_limit_1_limit="1000",
            rate_limit_1_window="86400",
            rate_limit_1_name="daily",
            rate_limit_2_limit="",
            rate_limit_2_window="60",
            credits_remaining="500",
            credits_refill="monthly",
            credits_refill_amount="1000",
            credits_refill_day="15",
            owner_id=" cust_42 ",
            meta='{"plan": "pro", "note": "<b>bold</b>"}',
        ),
    )
    assert response.status_code == 201, response.text
    assert "API key “billing-sync” for Alice Liddell" in response.text

    key = (await _keys(client, admin))["billing-sync"]
    assert key["status"]["restricted"] is True
    spec = (await _read(client, admin, key["metadata"]["uid"]))["spec"]
    assert spec["user"]["emailId"] == "alice@acme.example"
    assert spec["scopes"] == ["apiKeys:read", "users:read"]
    assert spec["allowedCidrs"] == ["10.0.0.0/8", "2001:db8::/32"]
    assert spec["permissions"] == ["invoices.read"]
    assert spec["permissionRoles"] == ["billing"]
    assert spec["rateLimits"] == [
        {"name": "10/1s", "limit": 10, "windowSeconds": 1},
        {"name": "daily", "limit": 1000, "windowSeconds": 86400},
    ]
    assert spec["credits"]["remaining"] == 500
    assert spec["credits"]["refill"] == {"interval": "monthly", "amount": 1000, "day": 15}
    assert spec["credits"]["nextRefillAt"]
    assert spec["ownerId"] == "cust_42"
    assert spec["meta"] == {"plan": "pro", "note": "<b>bold</b>"}

    # The Edit form shows them all again.
    edit = await _page(client, admin, f"{TENANT}/{key['metadata']['uid']}/edit")
    assert re.search(r'value="some"\s+checked', edit)
    assert re.search(r'value="apiKeys:read"\s+checked', edit)
    assert not re.search(r'value="users:write"\s+checked', edit)  # not Alice's to have
    assert ">10.0.0.0/8\n2001:db8::/32</textarea>" in edit
    assert re.search(r'name="permissions" value="invoices\.read"\s+checked', edit)
    assert (
        'name="rate_limit_1_name" type="text" maxlength="64" autocomplete="off" value="daily"'
        in edit
    )
    assert 'name="credits_shown" value="500"' in edit
    assert 'value="cust_42"' in edit
    assert "&lt;b&gt;bold&lt;/b&gt;" in edit
    assert "<b>bold</b>" not in edit


async def test_bad_ranges_and_metadata_are_shown_next_to_their_fields_and_nothing_is_stored(
    client: httpx.AsyncClient, world: World
) -> None:
    admin = world.admin
    cases = [
        ({"allowed_cidrs": "10.0.0.1/8"}, "allowed_cidrs", "did you mean 10.0.0.0/8?"),
        ({"allowed_cidrs": "not-a-range"}, "allowed_cidrs", "'not-a-range' is not an address"),
        ({"meta": '{"plan": "pro",}'}, "meta", "Metadata is not valid JSON"),
        ({"meta": '["pro"]'}, "meta", "Metadata must be a JSON object"),
        ({"meta": '{"ratio": NaN}'}, "meta", "NaN is not a JSON value"),
        ({"meta": '{"big": "' + "x" * 5000 + '"}'}, "meta", "at most 4096 are kept"),
        ({"owner_id": "x" * 300}, "owner_id", "Owner id must be at most 256 characters"),
        ({"scopes_mode": "some"}, "scopes", "Check at least one scope"),
        ({"scopes": "apiKeys:read"}, "scopes", "“All that the owner may do” is chosen"),
        ({"rate_limit_0_limit": "0"}, "rate_limits", "Rate limit 1: limit must be at least 1"),
        (
            {"rate_limit_1_limit": "5", "rate_limit_1_name": "has space"},
            "rate_limits",
            "Rate limit 2: name contains characters that are not allowed",
        ),
        ({"credits_refill": "daily"}, "credits", "Give the remaining uses"),
        (
            {"credits_remaining": "5", "credits_refill": "daily"},
            "credits",
            "Give the refill amount",
        ),
        ({"permissions": "never.defined"}, "permissions", "never.defined"),
    ]
    for fields, field, problem in cases:
        response = await _post(client, admin, f"{MY}/new", _new_key("refused", **fields))
        assert response.status_code == 400, (fields, response.text)
        assert problem in _field_error(response.text, field), fields
        assert '<details class="restrictions" open>' in response.text
        assert 'aria-invalid="true"' in response.text
        assert 'value="refused"' in response.text  # what was typed stays

    # Both problems of one submission at once, and what was typed kept.
    response = await _post(
        client, admin, f"{MY}/new", _new_key("", meta="{oops", allowed_cidrs="10.0.0.0/8")
    )
    assert response.status_code == 400
    assert "Metadata is not valid JSON: Expecting property name" in _field_error(
        response.text, "meta"
    )
    assert _field_error(response.text, "name")
    assert ">{oops</textarea>" in response.text
    assert ">10.0.0.0/8</textarea>" in response.text
    assert await _keys(client, admin) == {}


async def test_a_plain_user_restricts_a_key_with_scopes_and_ranges_only(
    client: httpx.AsyncClient, world: World
) -> None:
    alice = world.alice
    form = await _page(client, alice, f"{MY}/new")
    assert 'name="scopes" value="apiKeys:read"' in form
    assert 'name="scopes" value="users:read"' in form
    assert 'value="users:write"' not in form  # not a user's to give
    assert 'name="allowed_cidrs"' in form
    assert "203.0.113.0/24" in form  # the help text's example
    for admin_only in ADMIN_ONLY_INPUTS:
        assert admin_only not in form
    assert "Set by tenant admins" not in form

    response = await _post(
        client,
        alice,
        f"{MY}/new",
        _new_key(
            "reader",
            scopes_mode="some",
            scopes=["apiKeys:read"],
            allowed_cidrs="203.0.113.0/24",
            # Not on the form a user sees: never sent to the service.
            owner_id="someone-else",
            rate_limit_0_limit="1000000",
        ),
    )
    assert response.status_code == 201, response.text
    key = (await _keys(client, world.admin))["reader"]
    spec = (await _read(client, alice, key["metadata"]["uid"]))["spec"]
    assert spec["scopes"] == ["apiKeys:read"]
    assert spec["allowedCidrs"] == ["203.0.113.0/24"]
    assert (spec["ownerId"], spec["rateLimits"]) == (None, [])

    # A scope the owner's role lacks is refused next to the scopes.
    response = await _post(
        client, alice, f"{MY}/new", _new_key("writer", scopes_mode="some", scopes="users:write")
    )
    assert response.status_code == 400, response.text
    assert "does not hold the scope users:write" in _field_error(response.text, "scopes")


async def test_a_plain_user_renames_a_key_an_admin_restricted(
    client: httpx.AsyncClient, world: World
) -> None:
    alice, admin = world.alice, world.admin
    key = await _api_key(
        client,
        admin,
        "metered",
        userUid=alice.uid,
        scopes=["apiKeys:read"],
        rateLimits=[{"limit": 5, "windowSeconds": 60}],
        credits={"remaining": 10, "refill": {"interval": "daily", "amount": 10}},
        ownerId="cust_7",
        meta={"plan": "free"},
    )
    before = (await _read(client, admin, key.uid))["spec"]
    edit = await _page(client, alice, f"{MY}/{key.uid}/edit")
    for admin_only in ADMIN_ONLY_INPUTS:
        assert admin_only not in edit
    # What the browser sends: the fields on the form, the name changed.
    response = await _post(
        client,
        alice,
        f"{MY}/{key.uid}/edit",
        {
            "name": "metered-renamed",
            "description": "",
            "expiry": "keep",
            **SECTION,
            "scopes_mode": "some",
            "scopes": "apiKeys:read",
            "allowed_cidrs": "",
        },
    )
    assert _flash(response) == "ok:API key “metered-renamed” saved."
    after = (await _read(client, admin, key.uid))["spec"]
    assert (await _read(client, admin, key.uid))["metadata"]["name"] == "metered-renamed"
    assert after == before
    # A form without the section (opened before it existed) changes none of them either.
    response = await _post(
        client, alice, f"{MY}/{key.uid}/edit", {"name": "metered-again", "expiry": "keep"}
    )
    assert _flash(response) == "ok:API key “metered-again” saved."
    assert (await _read(client, admin, key.uid))["spec"] == before

    # Narrowing the scopes is the owner's to do.
    response = await _post(
        client,
        alice,
        f"{MY}/{key.uid}/edit",
        {"name": "metered-renamed", "expiry": "keep", **SECTION, "scopes_mode": "some"},
    )
    assert response.status_code == 400
    response = await _post(
        client,
        alice,
        f"{MY}/{key.uid}/edit",
        {"name": "metered-renamed", "expiry": "keep", **SECTION, "scopes_mode": "all"},
    )
    assert _flash(response).startswith("ok:")
    after = (await _read(client, admin, key.uid))["spec"]
    assert after["scopes"] is None
    assert after["rateLimits"] == before["rateLimits"]


async def test_an_admin_saving_a_name_keeps_the_credits_spent_meanwhile(
    client: httpx.AsyncClient, world: World, runtime: Runtime
) -> None:
    admin = world.admin
    key = await _api_key(
        client,
        admin,
        "metered",
        credits={"remaining": 10},
        rateLimits=[{"limit": 5, "windowSeconds": 7}],
    )
    edit = await _page(client, admin, f"{TENANT}/{key.uid}/edit")
    assert 'name="credits_shown" value="10"' in edit
    assert '<option value="7" selected>per 7 seconds</option>' in edit
    # Spent while the form is open.
    async with transaction(runtime.sessionmaker) as session:
        await session.execute(
            update(ApiKey).where(ApiKey.uid == key.uid).values(credits_remaining=4)
        )
        await publish(session, Invalidation.key(key.uid))
    form = {
        "name": "renamed",
        "expiry": "keep",
        **ADMIN_SECTION,
        "scopes_mode": "all",
        "rate_limit_rows": "3",
        "rate_limit_0_limit": "5",
        "rate_limit_0_window": "7",
        "rate_limit_0_name": "5/7s",
        "credits_remaining": "10",
        "credits_refill": "none",
        "credits_shown": "10",
    }
    response = await _post(client, admin, f"{TENANT}/{key.uid}/edit", form)
    assert _flash(response) == "ok:API key “renamed” saved."
    spec = (await _read(client, admin, key.uid))["spec"]
    assert spec["credits"]["remaining"] == 4
    assert spec["rateLimits"] == [{"name": "5/7s", "limit": 5, "windowSeconds": 7}]

    # Changed on the form: set; cleared: removed.
    response = await _post(
        client,
        admin,
        f"{TENANT}/{key.uid}/edit",
        {**form, "credits_remaining": "50", "owner_id": "cust_1", "meta": '{"a": 1}'},
    )
    assert _flash(response).startswith("ok:")
    spec = (await _read(client, admin, key.uid))["spec"]
    assert (spec["credits"]["remaining"], spec["ownerId"], spec["meta"]) == (50, "cust_1", {"a": 1})
    response = await _post(
        client,
        admin,
        f"{TENANT}/{key.uid}/edit",
        {**form, "credits_remaining": "", "credits_shown": "50", "rate_limit_0_limit": ""},
    )
    assert _flash(response).startswith("ok:")
    spec = (await _read(client, admin, key.uid))["spec"]
    assert (spec["credits"], spec["rateLimits"], spec["ownerId"], spec["meta"]) == (
        None,
        [],
        None,
        None,
    )


async def test_the_key_table_marks_restricted_keys(client: httpx.AsyncClient, world: World) -> None:
    alice, admin = world.alice, world.admin
    restricted = await _api_key(
        client,
        admin,
        "limited",
        userUid=alice.uid,
        scopes=["apiKeys:read", "users:read"],
        allowedCidrs=["10.0.0.0/8"],
        rateLimits=[{"limit": 10, "windowSeconds": 1}],
        credits={"remaining": 42},
    )
    plain = await _api_key(client, alice, "plain")
    labelled = await _api_key(client, admin, "labelled", userUid=alice.uid, ownerId="cust_1")
    for actor, base in ((alice, MY), (admin, TENANT)):
        table = await _page(client, actor, base)
        assert f'<a href="{base}/{restricted.uid}">limited</a>' in table
        assert f'<a href="{base}/{plain.uid}">plain</a></td>' in table
        # An owner id is a label, not a restriction.
        assert f'<a href="{base}/{labelled.uid}">labelled</a></td>' in table
        badge = re.search(
            rf'<a href="{base}/{restricted.uid}">limited</a> <span class="badge badge-restricted" '
            r'title="([^"]*)">Restricted',
            table,
        )
        assert badge is not None, table
        assert badge.group(1) == (
            "Restricted: 2 scopes; 1 address range; rate limited to 10 per second; 42 credits left"
        )
        assert table.count(">Restricted<") == 1


async def test_the_key_page_shows_everything_and_the_refusals(
    client: httpx.AsyncClient, world: World
) -> None:
    alice, admin = world.alice, world.admin
    await make_permission(client, admin, "invoices.read")
    await make_role(client, admin, "billing", ["invoices.read"])
    key = await _api_key(
        client,
        admin,
        "metered",
        userUid=alice.uid,
        description="for <the> export",
        scopes=["apiKeys:read"],
        permissions=["invoices.read"],
        permissionRoles=["billing"],
        allowedCidrs=["203.0.113.0/24"],
        rateLimits=[{"name": "per-minute", "limit": 1, "windowSeconds": 60}],
        credits={"remaining": 3, "refill": {"interval": "monthly", "amount": 7, "day": 15}},
        ownerId="cust_<9>",
        meta={"plan": "pro", "html": "<script>alert(1)</script>"},
    )
    assert (await client.get(INFO, headers=key.headers)).status_code == 200
    for _ in range(2):
        assert (await client.get(INFO, headers=key.headers)).status_code == 429

    for actor, base in ((alice, MY), (admin, TENANT)):
        page = await _page(client, actor, f"{base}/{key.uid}")
        assert "API key “metered”" in page
        assert "Alice Liddell (alice@acme.example)" in page
        assert "for &lt;the&gt; export" in page
        assert '<span class="badge badge-active">Active</span>' in page
        assert "<code>apiKeys:read</code>: List and read API keys." in page
        assert "<code>invoices.read</code>" in page
        assert "<code>billing</code>" in page
        assert "<code>203.0.113.0/24</code>" in page
        assert '1 per minute <span class="hint-inline">(per-minute)</span>' in page
        assert "Rate-limit refusals in the last 24 hours: 2" in page
        assert "Remaining: 3" in page
        assert "Refill to 7 on day 15 of every month" in page
        assert "next refill 20" in page
        assert "<code>cust_&lt;9&gt;</code>" in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
        assert "<script>alert" not in page
        assert '"plan": "pro"' in unescape(page)
        assert f'href="{base}/{key.uid}/edit"' in page
        assert f'action="{base}/{key.uid}/revoke"' in page
        assert f'href="{base}/{key.uid}/delete"' in page

    unrestricted = await _page(client, alice, f"{MY}/{(await _api_key(client, alice, 'x')).uid}")
    assert "All that the owner may do" in unrestricted
    assert "Anywhere" in unrestricted
    assert "Unlimited" in unrestricted
    assert "Rate-limit refusals in the last 24 hours: 0" in unrestricted

    # Someone else's key is not there for a plain user.
    response = await client.get(f"{MY}/{key.uid}", headers=_as(world.bob))
    assert response.status_code == 404
    assert "metered" not in response.text


async def test_the_browser_opens_restrictions_and_gives_a_key_one_scope(
    page: Page, live_server: LiveServer
) -> None:
    alice = live_server.world.alice
    await log_in(page, alice)
    await page.get_by_role("link", name="Add New API key").click()
    await page.get_by_label("API Key Name").fill("reader")
    scope = page.get_by_label("apiKeys:read")
    await expect(scope).to_be_hidden()  # the section starts closed
    await page.locator("summary", has_text="Restrictions").click()
    await page.get_by_label("Only the scopes checked").check()
    await scope.check()
    await expect(page.get_by_label("Owner id")).to_have_count(0)  # tenant admins only
    await screenshot(page, "add-new-api-key-restrictions")
    await page.get_by_role("button", name="Generate").click()
    value = await page.get_by_label("API key “reader”").input_value()
    key = CreatedKey(uid="", value=value)
    assert await status_with_key(live_server, key) == 200
    async with httpx.AsyncClient(base_url=live_server.url) as http:
        assert (await http.get("/v1/apiKeys", headers=key.headers)).status_code == 200
        assert (await http.get("/v1/users", headers=key.headers)).status_code == 403

    await page.get_by_role("link", name="Done").click()
    row = page.get_by_role("row").filter(has=page.get_by_role("link", name="reader", exact=True))
    await expect(row.locator(".badge-restricted")).to_have_attribute("title", "Restricted: 1 scope")
    await row.get_by_role("link", name="reader", exact=True).click()
    await expect(page.locator("td.scopes")).to_contain_text("apiKeys:read")
    await screenshot(page, "api-key-detail")
