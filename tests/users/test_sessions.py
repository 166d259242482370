"""A change to a person's credentials or standing ends what they were holding.

Setting a password, changing the role, deactivating, re-activating or deleting a user ends
every session of theirs (REST tokens and console cookies) at once; their API keys follow
the rule each event documents (README, "Sessions and keys when a user changes"). The acting
session survives only its own password or role change.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import select, text, update

from keyplane.audit.actions import Action
from keyplane.console.session import SESSION_COOKIE, csrf_token_for
from keyplane.kit.db import transaction
from keyplane.models import AuditEvent, AuthSession, Tenant
from keyplane.runtime import Runtime
from keyplane.settings import Settings
from keyplane.tenants.service import system_principal
from keyplane.users import service as users
from keyplane.users.schemas import UserChanges
from tests.api_keys.helpers import CreatedKey, make_api_key
from tests.helpers import World
from tests.users.helpers import Actor, login, make_user

USERS = "/v1/users"
INFO = "/v1/users/info"
NEW_PASSWORD = "Brand-New-Passphrase-5521"


# --- observing ------------------------------------------------------------------------


async def _fresh_login(client: httpx.AsyncClient, actor: Actor) -> dict[str, str]:
    """Another session of the actor; the actor's own headers are left as they were."""
    response = await client.post(
        "/v1/auth/authenticate",
        json={"emailId": actor.email, "org": actor.tenant_name, "password": actor.password},
    )
    assert response.status_code == 200, response.text
    return {"Authorization": response.json()["Authorization"]}


async def _session_uid(runtime: Runtime, token: str) -> str:
    async with transaction(runtime.sessionmaker, writes=False) as session:
        uid = await session.scalar(
            select(AuthSession.uid).where(
                AuthSession.token_hash == runtime.secret_hasher.hash(token)
            )
        )
    assert uid is not None
    return uid


@dataclass
class Console:
    """A console login: the session token in the cookie, and its CSRF token."""

    cookie: str
    csrf: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Cookie": f"{SESSION_COOKIE}={self.cookie}"}


async def _console_login(client: httpx.AsyncClient, runtime: Runtime, actor: Actor) -> Console:
    token = (await _fresh_login(client, actor))["Authorization"]
    return Console(token, csrf_token_for(runtime, await _session_uid(runtime, token)))


async def _console_works(client: httpx.AsyncClient, console: Console) -> bool:
    response = await client.get("/my/api-keys", headers=console.headers)
    if response.status_code == 303:
        assert response.headers["location"].startswith("/login")
        return False
    assert response.status_code == 200, response.text
    return True


async def _rest_code(client: httpx.AsyncClient, headers: dict[str, str]) -> str:
    """ "ok", or the code of the 401."""
    response = await client.get(INFO, headers=headers)
    if response.status_code == 200:
        return "ok"
    assert response.status_code == 401, response.text
    code: str = response.json()["code"]
    return code


async def _live_sessions(runtime: Runtime, user_uid: str) -> int:
    async with transaction(runtime.sessionmaker, writes=False) as session:
        rows = await session.scalars(
            select(AuthSession.uid).where(
                AuthSession.user_uid == user_uid, AuthSession.revoked_at.is_(None)
            )
        )
        return len(rows.all())


_USER_CHANGES = [
    action.value
    for action in (
        Action.USER_UPDATE,
        Action.USER_DEACTIVATE,
        Action.USER_REACTIVATE,
        Action.USER_DELETE,
    )
]


async def _last_audit(runtime: Runtime, user_uid: str) -> AuditEvent:
    async with transaction(runtime.sessionmaker, writes=False) as session:
        event = await session.scalar(
            select(AuditEvent)
            .where(AuditEvent.resource_uid == user_uid, AuditEvent.action.in_(_USER_CHANGES))
            .order_by(AuditEvent.occurred_at.desc())
            .limit(1)
        )
    assert event is not None
    return event


async def _tenant(runtime: Runtime, uid: str) -> Tenant:
    async with transaction(runtime.sessionmaker, writes=False) as session:
        tenant = await session.get(Tenant, uid)
    assert tenant is not None
    return tenant


# --- the events -----------------------------------------------------------------------


def _patch(path: str, value: object) -> list[dict[str, object]]:
    return [{"op": "replace", "path": path, "value": value}]


async def _password_by_patch(client: httpx.AsyncClient, world: World, _r: Runtime) -> None:
    response = await client.patch(
        f"{USERS}/{world.alice.uid}",
        json=_patch("/spec/password", NEW_PASSWORD),
        headers=world.admin.headers,
    )
    assert response.status_code == 204, response.text


async def _password_in_console(client: httpx.AsyncClient, world: World, runtime: Runtime) -> None:
    console = await _console_login(client, runtime, world.admin)
    response = await client.post(
        f"/tenant/settings/users/{world.alice.uid}/edit",
        headers=console.headers,
        data={
            "csrf_token": console.csrf,
            "email": world.alice.email,
            "first_name": "Alice",
            "last_name": "Liddell",
            "role": "user",
            "password": NEW_PASSWORD,
        },
    )
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/tenant/settings/users"


async def _role_by_put(client: httpx.AsyncClient, world: World, _r: Runtime) -> None:
    response = await client.put(
        f"{USERS}/{world.alice.uid}",
        json={"spec": {"roles": ["tenant-admin"]}},
        headers=world.admin.headers,
    )
    assert response.status_code == 204, response.text


async def _role_by_patch(client: httpx.AsyncClient, world: World, _r: Runtime) -> None:
    response = await client.patch(
        f"{USERS}/{world.alice.uid}",
        json=_patch("/spec/roles", ["verifier"]),
        headers=world.admin.headers,
    )
    assert response.status_code == 204, response.text


async def _deactivate(client: httpx.AsyncClient, world: World, _r: Runtime) -> None:
    response = await client.patch(
        f"{USERS}/{world.alice.uid}",
        json=_patch("/status/isActive", False),
        headers=world.admin.headers,
    )
    assert response.status_code == 204, response.text


async def _delete(client: httpx.AsyncClient, world: World, _r: Runtime) -> None:
    response = await client.delete(f"{USERS}/{world.alice.uid}", headers=world.admin.headers)
    assert response.status_code == 204, response.text


async def _reset_password_cli(client: httpx.AsyncClient, world: World, runtime: Runtime) -> None:
    """`keyplane reset-password`, run as a process against the same database."""
    settings: Settings = runtime.settings
    environment = {
        **{name: value for name, value in os.environ.items() if not name.startswith("KEYPLANE_")},
        "KEYPLANE_ENV": "test",
        "KEYPLANE_SECRET_KEY": settings.secret_key.get_secret_value(),
        "KEYPLANE_DATA_DIR": str(settings.data_dir),
        "KEYPLANE_DATABASE_URL": settings.database_url or "",
        "KEYPLANE_NEW_PASSWORD": NEW_PASSWORD,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "keyplane",
        "reset-password",
        "--tenant",
        "acme",
        "--email",
        world.alice.email,
        env=environment,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, err.decode()
    assert NEW_PASSWORD not in out.decode()


Event = Callable[[httpx.AsyncClient, World, Runtime], Awaitable[None]]


@dataclass(frozen=True)
class Case:
    name: str
    event: Event
    action: Action
    # What an ended REST session answers, and what alice's API key does afterwards.
    session_code: str
    key_code: str
    rows_kept: bool = True


CASES = [
    Case("password (PATCH)", _password_by_patch, Action.USER_UPDATE, "TokenRevoked", "ok"),
    Case("password (console)", _password_in_console, Action.USER_UPDATE, "TokenRevoked", "ok"),
    Case("password (CLI)", _reset_password_cli, Action.USER_UPDATE, "TokenRevoked", "ok"),
    Case("role (PUT)", _role_by_put, Action.USER_UPDATE, "TokenRevoked", "ok"),
    Case("role (PATCH)", _role_by_patch, Action.USER_UPDATE, "TokenRevoked", "ok"),
    Case(
        "deactivation",
        _deactivate,
        Action.USER_DEACTIVATE,
        "UserInactive",
        "ApiKeyUserInactive",
    ),
    Case("deletion", _delete, Action.USER_DELETE, "TokenInvalid", "ApiKeyInvalid", False),
]


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
async def test_the_event_ends_every_session_of_the_user_and_keys_follow_the_rule(
    case: Case, client: httpx.AsyncClient, runtime: Runtime, world: World
) -> None:
    second = await _fresh_login(client, world.alice)
    console = await _console_login(client, runtime, world.alice)
    key = await make_api_key(client, world.alice, "deploy")
    for headers in (world.alice.headers, second):
        assert await _rest_code(client, headers) == "ok"
    assert await _console_works(client, console)
    bob_console = await _console_login(client, runtime, world.bob)

    await case.event(client, world, runtime)

    # Every session of hers ends at once, REST and console, and cannot be renewed.
    for headers in (world.alice.headers, second, {"Authorization": console.cookie}):
        assert await _rest_code(client, headers) == case.session_code
    assert not await _console_works(client, console)
    refreshed = await client.get(f"/v1/auth/refresh/{second['Authorization']}")
    assert refreshed.status_code == 401, refreshed.text
    assert await _live_sessions(runtime, world.alice.uid) == 0
    # Her API key follows the rule for this event.
    assert await _rest_code(client, key.headers) == case.key_code
    # Nobody else is touched.
    assert await _rest_code(client, world.bob.headers) == "ok"
    assert await _rest_code(client, world.admin.headers) == "ok"
    assert await _console_works(client, bob_console)
    # The audit record says so, and carries no secret.
    event = await _last_audit(runtime, world.alice.uid)
    assert event.action == case.action.value
    assert "all sessions ended (3 sessions)" in event.message
    assert NEW_PASSWORD not in event.message
    if case.rows_kept and case.session_code == "TokenRevoked":
        # Logging in again works, with the password in force.
        password = NEW_PASSWORD if case.name.startswith("password") else world.alice.password
        world.alice.password = password
        assert await _rest_code(client, await _fresh_login(client, world.alice)) == "ok"


async def test_changing_only_names_or_email_leaves_sessions_alone(
    client: httpx.AsyncClient, runtime: Runtime, world: World
) -> None:
    console = await _console_login(client, runtime, world.alice)
    response = await client.patch(
        f"{USERS}/{world.alice.uid}",
        json=[
            {"op": "replace", "path": "/spec/firstName", "value": "Alicia"},
            {"op": "replace", "path": "/spec/emailId", "value": "alicia@acme.example"},
        ],
        headers=world.admin.headers,
    )
    assert response.status_code == 204, response.text
    assert await _rest_code(client, world.alice.headers) == "ok"
    assert await _console_works(client, console)
    # Setting the role a user already has is not a role change either.
    same = await client.put(
        f"{USERS}/{world.alice.uid}",
        json={"spec": {"roles": ["user"]}},
        headers=world.admin.headers,
    )
    assert same.status_code == 204, same.text
    assert await _rest_code(client, world.alice.headers) == "ok"


async def test_reactivation_never_brings_old_sessions_back(
    client: httpx.AsyncClient, runtime: Runtime, world: World
) -> None:
    """Even sessions a deactivation left unrevoked (as it did before this rule) stay
    ended: re-activation ends every session too."""
    console = await _console_login(client, runtime, world.alice)
    key = await make_api_key(client, world.alice, "deploy")
    await _deactivate(client, world, runtime)
    assert await _rest_code(client, world.alice.headers) == "UserInactive"
    # What a deactivation stored before this rule existed: the sessions still unrevoked.
    async with transaction(runtime.sessionmaker) as session:
        await session.execute(
            update(AuthSession)
            .where(AuthSession.user_uid == world.alice.uid)
            .values(revoked_at=None)
        )

    reactivated = await client.patch(
        f"{USERS}/{world.alice.uid}",
        json=_patch("/status/isActive", True),
        headers=world.admin.headers,
    )
    assert reactivated.status_code == 204, reactivated.text

    assert await _rest_code(client, world.alice.headers) == "TokenRevoked"
    assert not await _console_works(client, console)
    assert await _live_sessions(runtime, world.alice.uid) == 0
    # Her keys work again (unless revoked or expired meanwhile); she may log in again.
    assert await _rest_code(client, key.headers) == "ok"
    assert await _rest_code(client, await _fresh_login(client, world.alice)) == "ok"
    event = await _last_audit(runtime, world.alice.uid)
    assert event.action == Action.USER_REACTIVATE.value
    assert "all sessions ended" in event.message


async def test_own_password_change_keeps_the_acting_session_and_ends_the_others(
    client: httpx.AsyncClient, runtime: Runtime, world: World
) -> None:
    other = await _fresh_login(client, world.admin)
    console = await _console_login(client, runtime, world.admin)
    response = await client.patch(
        f"{USERS}/{world.admin.uid}",
        json=_patch("/spec/password", NEW_PASSWORD),
        headers=world.admin.headers,
    )
    assert response.status_code == 204, response.text
    assert await _rest_code(client, world.admin.headers) == "ok"
    assert await _rest_code(client, other) == "TokenRevoked"
    assert not await _console_works(client, console)
    assert await _live_sessions(runtime, world.admin.uid) == 1
    event = await _last_audit(runtime, world.admin.uid)
    assert "2 other sessions ended; the session making the change was kept" in event.message


async def test_own_password_change_in_the_console_keeps_that_console_session(
    client: httpx.AsyncClient, runtime: Runtime, world: World
) -> None:
    console = await _console_login(client, runtime, world.admin)
    response = await client.post(
        f"/tenant/settings/users/{world.admin.uid}/edit",
        headers=console.headers,
        data={
            "csrf_token": console.csrf,
            "email": world.admin.email,
            "first_name": "Ada",
            "last_name": "Admin",
            "role": "tenant-admin",
            "password": NEW_PASSWORD,
        },
    )
    assert response.status_code == 303, response.text
    assert await _console_works(client, console)
    assert await _rest_code(client, world.admin.headers) == "TokenRevoked"


async def test_own_change_with_an_api_key_ends_every_session(
    client: httpx.AsyncClient, runtime: Runtime, world: World
) -> None:
    key = await make_api_key(client, world.admin, "automation")
    response = await client.patch(
        f"{USERS}/{world.admin.uid}",
        json=_patch("/spec/password", NEW_PASSWORD),
        headers=key.headers,
    )
    assert response.status_code == 204, response.text
    assert await _rest_code(client, world.admin.headers) == "TokenRevoked"
    assert await _rest_code(client, key.headers) == "ok"


async def test_own_demotion_keeps_the_acting_session_with_the_new_role(
    client: httpx.AsyncClient, runtime: Runtime, world: World
) -> None:
    carol = await make_user(
        runtime,
        await _tenant(runtime, world.admin.tenant_uid),
        "carol@acme.example",
        role="tenant-admin",
    )
    await login(client, carol)
    other = await _fresh_login(client, carol)
    response = await client.put(
        f"{USERS}/{carol.uid}", json={"spec": {"roles": ["user"]}}, headers=carol.headers
    )
    assert response.status_code == 204, response.text
    assert await _rest_code(client, other) == "TokenRevoked"
    kept = await client.get(USERS, headers=carol.headers)
    assert kept.status_code == 403, kept.text
    assert kept.json()["code"] == "Forbidden"


async def test_deactivating_oneself_ends_the_acting_session_too(
    client: httpx.AsyncClient, runtime: Runtime, world: World
) -> None:
    carol = await make_user(
        runtime,
        await _tenant(runtime, world.admin.tenant_uid),
        "carol@acme.example",
        role="tenant-admin",
    )
    await login(client, carol)
    response = await client.patch(
        f"{USERS}/{carol.uid}", json=_patch("/status/isActive", False), headers=carol.headers
    )
    assert response.status_code == 204, response.text
    assert await _live_sessions(runtime, carol.uid) == 0
    assert await _rest_code(client, carol.headers) == "UserInactive"


_LOCK_WAITERS = text(
    "SELECT count(*) FROM pg_stat_activity "
    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
)


async def test_a_login_racing_a_password_change_does_not_outlive_it(
    client: httpx.AsyncClient, runtime: Runtime, world: World
) -> None:
    """The login checked the old password before the change committed; the session it
    would then store must not appear after every session was ended."""
    acme = await _tenant(runtime, world.admin.tenant_uid)
    async with transaction(runtime.sessionmaker) as session:
        await users.update_user(
            session,
            runtime,
            system_principal(acme),
            world.alice.uid,
            UserChanges(password=SecretStr(NEW_PASSWORD)),
        )
        # The change is made but not committed: a login with the old password starts now.
        attempt = asyncio.ensure_future(
            client.post(
                "/v1/auth/authenticate",
                json={
                    "emailId": world.alice.email,
                    "org": "acme",
                    "password": world.alice.password,
                },
            )
        )
        if session.get_bind().dialect.name == "postgresql":
            deadline = time.monotonic() + 10
            while True:
                async with transaction(runtime.sessionmaker, writes=False) as observer:
                    if int(await observer.scalar(_LOCK_WAITERS) or 0) >= 1:
                        break
                assert time.monotonic() < deadline, "the login never waited for the change"
                await asyncio.sleep(0.005)
        else:
            await asyncio.sleep(0.3)
        assert not attempt.done()
    response = await attempt
    assert response.status_code == 401, response.text
    assert response.json()["code"] == "InvalidCredentials"
    assert await _live_sessions(runtime, world.alice.uid) == 0


async def test_keys_of_a_user_survive_their_password_change(
    client: httpx.AsyncClient, runtime: Runtime, world: World
) -> None:
    """Keys are credentials of their own (as with GitHub or Stripe tokens): a new password
    does not end them; revoke them separately if they may have leaked too."""
    key: CreatedKey = await make_api_key(client, world.alice, "deploy")
    await _password_by_patch(client, world, runtime)
    assert await _rest_code(client, key.headers) == "ok"
