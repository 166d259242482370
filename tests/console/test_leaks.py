"""Leaked keys in the console: the "Leaked" badge on both key lists, where the key was seen
on its page, and a re-activation that only a tenant admin may make, after confirming."""

from __future__ import annotations

import httpx
from sqlalchemy import select

from keyplane.console.session import SESSION_COOKIE, csrf_token_for
from keyplane.kit.db import transaction
from keyplane.models import AuthSession
from keyplane.runtime import Runtime
from tests.api_keys.helpers import make_api_key
from tests.helpers import World
from tests.users.helpers import Actor

URL = "https://gist.github.com/someone/feedc0de"


def _cookie(actor: Actor) -> dict[str, str]:
    return {"Cookie": f"{SESSION_COOKIE}={actor.headers['Authorization']}"}


async def _csrf(runtime: Runtime, actor: Actor) -> str:
    token = actor.headers["Authorization"]
    async with transaction(runtime.sessionmaker, writes=False) as session:
        auth_session = (
            await session.execute(
                select(AuthSession).where(
                    AuthSession.token_hash == runtime.secret_hasher.hash(token)
                )
            )
        ).scalar_one()
    return csrf_token_for(runtime, auth_session.uid)


async def test_a_leaked_key_is_shown_and_only_a_confirming_admin_reactivates_it(
    client: httpx.AsyncClient, runtime: Runtime, world: World
) -> None:
    key = await make_api_key(client, world.alice, "deploy")
    other = await make_api_key(client, world.alice, "nightly")
    reported = await client.post(
        "/v1/apiKeys/leaks", json={"leaks": [{"value": key.value, "url": URL, "source": "gist"}]}
    )
    assert reported.status_code == 202

    for actor, base in ((world.alice, "/my/api-keys"), (world.admin, "/tenant/settings/api-keys")):
        listed = await client.get(base, headers=_cookie(actor))
        assert listed.status_code == 200, listed.text
        assert listed.text.count("badge-leaked") == 1
        assert f'href="{base}/{other.uid}">nightly</a> <span class="badge badge-leaked"' not in (
            listed.text
        )
        page = await client.get(f"{base}/{key.uid}", headers=_cookie(actor))
        assert page.status_code == 200
        assert "Reported leaks" in page.text
        assert URL in page.text
        assert "gist" in page.text
        assert "Reported leaked" in page.text  # why Keyplane revoked it
        assert key.value not in listed.text + page.text

    # Alice may not put it back to work: told why, nothing changed.
    alice_csrf = await _csrf(runtime, world.alice)
    refused = await client.post(
        f"/my/api-keys/{key.uid}/reactivate",
        headers=_cookie(world.alice),
        data={"csrf_token": alice_csrf, "confirm_leaked": "yes"},
    )
    assert refused.status_code == 303
    assert (await client.get("/v1/users/info", headers=key.headers)).status_code == 401

    # The admin is asked first; confirming re-activates it.
    admin_csrf = await _csrf(runtime, world.admin)
    base = "/tenant/settings/api-keys"
    asked = await client.post(
        f"{base}/{key.uid}/reactivate",
        headers=_cookie(world.admin),
        data={"csrf_token": admin_csrf},
    )
    assert asked.status_code == 409
    assert "was reported leaked at" in asked.text
    assert "Re-activate anyway?" in asked.text
    assert 'name="confirm_leaked" value="yes"' in asked.text
    assert (await client.get("/v1/users/info", headers=key.headers)).status_code == 401
    confirmed = await client.post(
        f"{base}/{key.uid}/reactivate",
        headers=_cookie(world.admin),
        data={"csrf_token": admin_csrf, "confirm_leaked": "yes"},
    )
    assert confirmed.status_code == 303
    assert (await client.get("/v1/users/info", headers=key.headers)).status_code == 200
    page = await client.get(f"{base}/{key.uid}", headers=_cookie(world.admin))
    # No longer flagged; where it was seen stays on its page.
    assert "badge-leaked" not in page.text
    assert URL in page.text


async def test_the_policy_page_sets_what_a_leak_does(
    client: httpx.AsyncClient, runtime: Runtime, world: World
) -> None:
    path = "/tenant/settings/api-key-policy"
    page = await client.get(path, headers=_cookie(world.admin))
    assert 'id="leak_action"' in page.text
    assert '<option value="revoke" selected>' in page.text
    saved = await client.post(
        path,
        headers=_cookie(world.admin),
        data={
            "csrf_token": await _csrf(runtime, world.admin),
            "expiry_notice_days": "7, 1",
            "leak_action": "flag",
        },
    )
    assert saved.status_code == 303, saved.text
    policy = await client.get(
        f"/v1/tenants/{world.admin.tenant_uid}/apiKeyPolicy", headers=world.admin.headers
    )
    assert policy.json()["leakAction"] == "flag"
    page = await client.get(path, headers=_cookie(world.admin))
    assert '<option value="flag" selected>' in page.text
