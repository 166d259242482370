"""Login lockout per account: a few wrong passwords in a row lock the email for a while,
on every instance, and an email without an account behaves exactly the same."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select, update

from keyplane.kit.db import transaction
from keyplane.kit.time import utcnow
from keyplane.models import LoginLockout
from keyplane.runtime import Runtime
from tests.auth.helpers import audit_events, instance
from tests.tenants.helpers import make_tenant
from tests.users.helpers import Actor, make_user

THRESHOLD = 3
# Generous per-address limits: these tests are about the per-account one.
LIMITS: dict[str, Any] = {
    "login_lockout_threshold": THRESHOLD,
    "auth_failure_burst": 1000,
    "auth_failure_rate_per_second": 100.0,
}
PASSWORD = "the right password!"
WRONG = "not the password!!"


async def _login(
    client: httpx.AsyncClient, email: str, password: str, org: str | None = "acme"
) -> httpx.Response:
    body: dict[str, str] = {"emailId": email, "password": password}
    if org is not None:
        body["org"] = org
    return await client.post("/v1/auth/authenticate", json=body)


async def _alice(runtime: Runtime, *, with_admin: bool = False) -> Actor:
    acme = await make_tenant(runtime, "acme")
    if with_admin:
        await make_user(runtime, acme, "admin@acme.example", role="tenant-admin", password=PASSWORD)
    return await make_user(runtime, acme, "alice@acme.example", password=PASSWORD)


def _assert_locked(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 429, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"code", "message", "details", "ref"}
    assert body["code"] == "AccountLocked"
    assert "temporarily locked" in body["message"]
    assert "UTC" in body["message"]
    retry_after = int(response.headers["Retry-After"])
    assert 14 * 60 < retry_after <= 15 * 60
    assert body["details"]["retryAfterSeconds"] == retry_after
    return body


async def test_wrong_passwords_lock_the_account_even_for_the_right_password(
    database_url: str, tmp_path: Path
) -> None:
    async with instance(database_url, tmp_path, **LIMITS) as (client, runtime):
        alice = await _alice(runtime)
        codes = [(await _login(client, alice.email, WRONG)).status_code for _ in range(THRESHOLD)]
        assert codes == [401] * (THRESHOLD - 1) + [429]
        body = _assert_locked(await _login(client, alice.email, PASSWORD))
        # Also without the org, and in another spelling of the email.
        _assert_locked(await _login(client, alice.email.upper(), PASSWORD, org=None))
        assert PASSWORD not in str(body)
        assert WRONG not in str(body)

        locks = await audit_events(runtime, "auth.lockout")
        assert len(locks) == 1
        assert (locks[0].resource_uid, locks[0].tenant_uid) == (alice.uid, alice.tenant_uid)
        assert locks[0].outcome == "failure"
        assert locks[0].client_address == "198.51.100.9"
        assert "locked until" in locks[0].message


async def test_an_unknown_email_locks_exactly_like_a_known_one(
    database_url: str, tmp_path: Path
) -> None:
    async with instance(database_url, tmp_path, **LIMITS) as (client, runtime):
        alice = await _alice(runtime)
        known = [await _login(client, alice.email, WRONG) for _ in range(THRESHOLD + 1)]
        unknown = [await _login(client, "nobody@acme.example", WRONG) for _ in range(THRESHOLD + 1)]
        for one, other in zip(known, unknown, strict=True):
            assert one.status_code == other.status_code
            assert one.json()["code"] == other.json()["code"]
            assert one.json()["message"] == other.json()["message"]
            assert set(one.headers) == set(other.headers)
        assert [response.json()["code"] for response in known] == [
            "InvalidCredentials",
            "InvalidCredentials",
            "AccountLocked",
            "AccountLocked",
        ]
        # Nothing in the table says which emails were tried.
        async with transaction(runtime.sessionmaker, writes=False) as session:
            stored = list((await session.execute(select(LoginLockout))).scalars())
        assert len(stored) == 2
        assert all("@" not in row.subject_hash for row in stored)


async def test_a_successful_login_starts_the_count_over(database_url: str, tmp_path: Path) -> None:
    async with instance(database_url, tmp_path, **LIMITS) as (client, runtime):
        alice = await _alice(runtime)
        for _ in range(3):
            for _ in range(THRESHOLD - 1):
                assert (await _login(client, alice.email, WRONG)).status_code == 401
            assert (await _login(client, alice.email, PASSWORD)).status_code == 200
        async with transaction(runtime.sessionmaker, writes=False) as session:
            assert await session.scalar(select(func.count()).select_from(LoginLockout)) == 0


async def test_failures_further_apart_than_the_window_do_not_add_up(
    database_url: str, tmp_path: Path
) -> None:
    async with instance(database_url, tmp_path, **LIMITS) as (client, runtime):
        alice = await _alice(runtime)
        for _ in range(THRESHOLD - 1):
            assert (await _login(client, alice.email, WRONG)).status_code == 401
        # Time passes beyond the window: the run of failures is forgotten.
        async with transaction(runtime.sessionmaker) as session:
            await session.execute(
                update(LoginLockout).values(last_failed_at=utcnow() - timedelta(hours=1))
            )
        for _ in range(THRESHOLD - 1):
            assert (await _login(client, alice.email, WRONG)).status_code == 401
        assert (await _login(client, alice.email, PASSWORD)).status_code == 200


async def _unlock(runtime: Runtime) -> None:
    """The cooldown passing, as time would."""
    async with transaction(runtime.sessionmaker) as session:
        await session.execute(
            update(LoginLockout).values(locked_until=utcnow() - timedelta(seconds=1))
        )


async def test_the_lock_ends_after_the_cooldown(database_url: str, tmp_path: Path) -> None:
    async with instance(database_url, tmp_path, **LIMITS) as (client, runtime):
        alice = await _alice(runtime)
        for _ in range(THRESHOLD):
            await _login(client, alice.email, WRONG)
        _assert_locked(await _login(client, alice.email, PASSWORD))
        await _unlock(runtime)
        assert (await _login(client, alice.email, PASSWORD)).status_code == 200


async def test_the_lock_holds_on_every_instance(database_url: str, tmp_path: Path) -> None:
    async with (
        instance(database_url, tmp_path, "198.51.100.1", **LIMITS) as (first, runtime),
        instance(database_url, tmp_path, "198.51.100.2", **LIMITS) as (second, _),
    ):
        alice = await _alice(runtime)
        # Failures spread over both instances (and addresses) add up to one count.
        assert (await _login(first, alice.email, WRONG)).status_code == 401
        assert (await _login(second, alice.email, WRONG)).status_code == 401
        _assert_locked(await _login(first, alice.email, WRONG))
        _assert_locked(await _login(second, alice.email, PASSWORD))


async def test_a_new_password_from_a_tenant_admin_lifts_the_lock(
    database_url: str, tmp_path: Path
) -> None:
    async with instance(database_url, tmp_path, **LIMITS) as (client, runtime):
        alice = await _alice(runtime, with_admin=True)
        token = (await _login(client, "admin@acme.example", PASSWORD)).json()["Authorization"]
        for _ in range(THRESHOLD):
            await _login(client, alice.email, WRONG)
        _assert_locked(await _login(client, alice.email, PASSWORD))
        changed = await client.patch(
            f"/v1/users/{alice.uid}",
            json=[{"op": "replace", "path": "/spec/password", "value": "a brand new password"}],
            headers={"Authorization": token},
        )
        assert changed.status_code == 204, changed.text
        assert (await _login(client, alice.email, "a brand new password")).status_code == 200


async def test_the_console_shows_the_lock_next_to_the_form(
    database_url: str, tmp_path: Path
) -> None:
    async with instance(database_url, tmp_path, **LIMITS) as (client, runtime):
        alice = await _alice(runtime)
        for _ in range(THRESHOLD):
            await _login(client, alice.email, WRONG)
        form = await client.get("/login")
        csrf = form.cookies["keyplane_login_csrf"]
        page = await client.post(
            "/login",
            data={"email": alice.email, "org": "acme", "password": PASSWORD, "csrf_token": csrf},
        )
        assert page.status_code == 429
        assert int(page.headers["Retry-After"]) > 14 * 60
        assert 'id="login-error"' in page.text
        assert "temporarily locked" in page.text
        assert "keyplane_session" not in page.cookies
        assert PASSWORD not in page.text
