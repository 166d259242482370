"""Console errors are pages: a refusal drawn in the scope of the person refused."""

from __future__ import annotations

import httpx
import pytest

from keyplane.console.session import SESSION_COOKIE
from tests.helpers import World
from tests.users.helpers import Actor

TENANT_SETTINGS_PAGES = [
    "/tenant/settings",
    "/tenant/settings/api-keys",
    "/tenant/settings/api-keys/new",
    "/tenant/settings/users",
    "/tenant/settings/resource-limits",
    "/tenant/settings/audit-logs",
]


def _as(actor: Actor) -> dict[str, str]:
    # A console session is a session token in a cookie.
    return {"Cookie": f"{SESSION_COOKIE}={actor.headers['Authorization']}"}


@pytest.mark.parametrize("path", TENANT_SETTINGS_PAGES)
async def test_a_plain_user_refused_tenant_settings_sees_no_tenant_admin_navigation(
    client: httpx.AsyncClient, world: World, path: str
) -> None:
    response = await client.get(path, headers=_as(world.alice))
    assert response.status_code == 403
    page = response.text
    assert "Not allowed" in page
    assert "/tenant/settings" not in page
    assert 'aria-label="Tenant Settings Menu"' not in page
    assert 'aria-label="Main Menu"' not in page
    assert "Tenant Admin" not in page
    # Their own way back is still there.
    assert 'href="/my/api-keys"' in page


async def test_a_tenant_admin_keeps_the_tenant_settings_navigation_on_errors(
    client: httpx.AsyncClient, world: World
) -> None:
    response = await client.get(
        "/tenant/settings/api-keys/no-such-key/edit", headers=_as(world.admin)
    )
    assert response.status_code == 404
    assert 'aria-label="Tenant Settings Menu"' in response.text
    assert 'href="/tenant/settings/audit-logs"' in response.text
    assert "Tenant Admin" in response.text
