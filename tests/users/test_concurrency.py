"""Two tenant admins demoting each other at the same moment: the rule that an active tenant
admin remains decides the race, on both databases, never a deadlock (a 500).

Half the rounds run free; in the other half a third transaction (another change to the same
users, still in progress) holds both admins' rows while the two requests arrive, so that
both are queued at the same point and released together: the tightest form of the race,
and on PostgreSQL a deadlock every time if the rows were locked in opposite orders.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Sequence

import httpx
from sqlalchemy import select, text

from keyplane.kit.db import transaction
from keyplane.models import Role, Tenant, User
from keyplane.runtime import Runtime
from tests.api_keys.helpers import CreatedKey, make_api_key
from tests.helpers import World
from tests.users.helpers import Actor, make_user

ROUNDS = 30
_LOCK_WAITERS = text(
    "SELECT count(*) FROM pg_stat_activity "
    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
)


async def _race(
    runtime: Runtime, calls: Sequence[Awaitable[httpx.Response]], hold: Sequence[str]
) -> list[httpx.Response]:
    """Runs the calls together; with ``hold``, while another transaction holds those user
    rows, released once every call is waiting for a lock."""
    if not hold:
        return list(await asyncio.gather(*calls))
    async with transaction(runtime.sessionmaker) as blocker:
        await blocker.execute(select(User.uid).where(User.uid.in_(hold)).with_for_update())
        tasks = [asyncio.ensure_future(call) for call in calls]
        if blocker.get_bind().dialect.name == "postgresql":
            deadline = time.monotonic() + 10
            while True:
                async with transaction(runtime.sessionmaker, writes=False) as observer:
                    waiting = int(await observer.scalar(_LOCK_WAITERS) or 0)
                if waiting >= len(tasks):
                    break
                assert time.monotonic() < deadline, f"only {waiting} requests waiting"
                await asyncio.sleep(0.005)
        else:
            # SQLite: the blocker holds the write lock; the requests wait in BEGIN IMMEDIATE.
            await asyncio.sleep(0.05)
    return list(await asyncio.gather(*tasks))


async def _active_admins(runtime: Runtime, tenant_uid: str) -> set[str]:
    async with transaction(runtime.sessionmaker, writes=False) as session:
        rows = await session.scalars(
            select(User.uid).where(
                User.tenant_uid == tenant_uid,
                User.role == Role.TENANT_ADMIN.value,
                User.is_active.is_(True),
            )
        )
        return set(rows.all())


async def _set_role(
    client: httpx.AsyncClient, headers: dict[str, str], uid: str, role: str
) -> httpx.Response:
    return await client.patch(
        f"/v1/users/{uid}",
        json=[{"op": "replace", "path": "/spec/roles", "value": [role]}],
        headers=headers,
    )


def _loser_is_refused_by_the_rule(response: httpx.Response) -> bool:
    """The request that lost: refused because the other admin is now the last one (409),
    or, when it was authenticated after the other change had committed, because its key
    now acts as a plain user (403)."""
    if response.status_code == 409:
        return bool(response.json()["code"] == "LastTenantAdmin")
    if response.status_code == 403:
        return bool(response.json()["code"] == "Forbidden")
    return False


async def test_two_admins_demoting_each_other_end_with_one_admin_every_time(
    client: httpx.AsyncClient, runtime: Runtime, world: World
) -> None:
    async with transaction(runtime.sessionmaker, writes=False) as session:
        acme = await session.get(Tenant, world.admin.tenant_uid)
    assert acme is not None
    carol = await make_user(runtime, acme, "carol@acme.example", role="tenant-admin")
    # API keys: checked from the cache, so both requests reach the database together.
    admin_key = await make_api_key(client, world.admin, "race")
    carol_key = await make_api_key(client, world.admin, "race", user_uid=carol.uid)
    admins: dict[str, tuple[Actor, CreatedKey]] = {
        world.admin.uid: (world.admin, admin_key),
        carol.uid: (carol, carol_key),
    }
    outcomes: list[tuple[int, int]] = []

    for round_number in range(ROUNDS):
        (first, first_key), (second, second_key) = admins.values()
        responses = await _race(
            runtime,
            [
                _set_role(client, first_key.headers, second.uid, "user"),
                _set_role(client, second_key.headers, first.uid, "user"),
            ],
            hold=[first.uid, second.uid] if round_number % 2 else [],
        )
        statuses = tuple(response.status_code for response in responses)
        assert all(status < 500 for status in statuses), [r.text for r in responses]
        winners = [index for index, response in enumerate(responses) if response.status_code == 204]
        assert len(winners) == 1, [r.text for r in responses]
        loser = responses[1 - winners[0]]
        assert _loser_is_refused_by_the_rule(loser), loser.text
        outcomes.append((statuses[0], statuses[1]))

        remaining = await _active_admins(runtime, acme.uid)
        demoted = second if winners[0] == 0 else first
        survivor = first if winners[0] == 0 else second
        assert remaining == {survivor.uid}
        # The survivor makes the other an admin again for the next round.
        restored = await _set_role(
            client, admins[survivor.uid][1].headers, demoted.uid, "tenant-admin"
        )
        assert restored.status_code == 204, restored.text
        assert await _active_admins(runtime, acme.uid) == {first.uid, second.uid}

    assert len(outcomes) == ROUNDS


async def test_demoting_and_deactivating_each_other_never_leaves_the_tenant_without_an_admin(
    client: httpx.AsyncClient, runtime: Runtime, world: World
) -> None:
    """The same race through the other two changes that take an admin away."""
    async with transaction(runtime.sessionmaker, writes=False) as session:
        acme = await session.get(Tenant, world.admin.tenant_uid)
    assert acme is not None
    carol = await make_user(runtime, acme, "carol@acme.example", role="tenant-admin")
    admin_key = await make_api_key(client, world.admin, "race")
    carol_key = await make_api_key(client, world.admin, "race", user_uid=carol.uid)

    for round_number in range(ROUNDS // 3):
        responses = await _race(
            runtime,
            [
                client.patch(
                    f"/v1/users/{carol.uid}",
                    json=[{"op": "replace", "path": "/status/isActive", "value": False}],
                    headers=admin_key.headers,
                ),
                client.delete(f"/v1/users/{world.admin.uid}", headers=carol_key.headers),
            ],
            hold=[carol.uid, world.admin.uid] if round_number % 2 else [],
        )
        assert all(response.status_code < 500 for response in responses), [
            r.text for r in responses
        ]
        remaining = await _active_admins(runtime, acme.uid)
        assert len(remaining) == 1
        if responses[1].status_code == 204:
            # Carol deleted the admin: the test cannot go on with the same cast.
            assert responses[0].status_code in {401, 409}, responses[0].text
            return
        assert responses[0].status_code == 204, responses[0].text
        assert _loser_is_refused_by_the_rule(responses[1]) or responses[1].status_code == 401
        reactivated = await client.patch(
            f"/v1/users/{carol.uid}",
            json=[{"op": "replace", "path": "/status/isActive", "value": True}],
            headers=admin_key.headers,
        )
        assert reactivated.status_code == 204, reactivated.text
