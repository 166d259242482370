"""The inactivity sweep (``policies.sweep.revoke_inactive_keys``)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
from sqlalchemy import func, select, update

from keyplane.kit.db import transaction
from keyplane.kit.time import utcnow
from keyplane.models import ApiKey, AuditEvent
from keyplane.policies import sweep
from keyplane.runtime import Runtime
from tests.api_keys.helpers import make_api_key
from tests.helpers import World
from tests.policies.helpers import set_policy


async def _age(runtime: Runtime, uid: str, *, created: int, used: int | None = None) -> None:
    now = utcnow()
    async with transaction(runtime.sessionmaker) as session:
        await session.execute(
            update(ApiKey)
            .where(ApiKey.uid == uid)
            .values(
                created_at=now - timedelta(days=created),
                last_used_at=None if used is None else now - timedelta(days=used),
            )
        )


async def _revocations(runtime: Runtime) -> list[str]:
    async with transaction(runtime.sessionmaker, writes=False) as session:
        rows = await session.scalars(
            select(AuditEvent.resource_uid).where(AuditEvent.action == "apiKey.revoke")
        )
        return sorted(rows)


async def test_revokes_unused_keys_once_and_records_why(
    client: httpx.AsyncClient, world: World, runtime: Runtime
) -> None:
    never_used = await make_api_key(client, world.alice, "never-used")
    used_long_ago = await make_api_key(client, world.alice, "used-long-ago")
    used_lately = await make_api_key(client, world.alice, "used-lately")
    fresh = await make_api_key(client, world.bob, "fresh")
    other_tenant = await make_api_key(client, world.other_admin, "globex")
    await _age(runtime, never_used.uid, created=40)
    await _age(runtime, used_long_ago.uid, created=90, used=31)
    await _age(runtime, used_lately.uid, created=90, used=2)
    await _age(runtime, other_tenant.uid, created=400)
    await set_policy(client, world.admin, inactivityDays=30)

    # Several instances at once: each key is revoked, audited and announced once.
    await asyncio.gather(*(sweep.revoke_inactive_keys(runtime) for _ in range(3)))
    await sweep.revoke_inactive_keys(runtime)

    assert await _revocations(runtime) == sorted([never_used.uid, used_long_ago.uid])
    for key in (never_used, used_long_ago):
        refused = await client.get("/v1/users/info", headers=key.headers)
        assert refused.status_code == 401
        assert refused.json()["code"] == "ApiKeyRevoked"
    for key in (used_lately, fresh, other_tenant):
        assert (await client.get("/v1/users/info", headers=key.headers)).status_code == 200

    async with transaction(runtime.sessionmaker, writes=False) as session:
        rows = (await session.execute(select(ApiKey.uid, ApiKey.revoked_reason))).all()
        reasons = {uid: reason for uid, reason in rows}
        audited = await session.scalar(
            select(func.count()).where(
                AuditEvent.action == "apiKey.revoke", AuditEvent.actor_type == "system"
            )
        )
    assert reasons[never_used.uid] == "inactivity"
    assert reasons[used_lately.uid] is None
    assert audited == 2

    # Re-activated by a person, the key is theirs again: the reason goes.
    reactivated = await client.patch(
        f"/v1/apiKeys/{never_used.uid}", json={"isActive": True}, headers=world.alice.headers
    )
    assert reactivated.status_code == 204


async def test_without_a_policy_nothing_is_revoked(
    client: httpx.AsyncClient, world: World, runtime: Runtime
) -> None:
    key = await make_api_key(client, world.alice, "old")
    await _age(runtime, key.uid, created=1000)
    await sweep.revoke_inactive_keys(runtime)
    assert await _revocations(runtime) == []
