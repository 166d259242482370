"""Credential lookups. They run before anyone is known, so they are the only queries not
scoped by a principal: each finds one row by a keyed hash or by tenant and email."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, Select, bindparam, case, delete, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.sql.dml import ReturningUpdate
from sqlalchemy.sql.elements import BindParameter

from keyplane.auth.key_cache import KeySnapshot
from keyplane.kit.credits import Refill, latest_refill_at, refill_due
from keyplane.kit.shared_limits import RateLimit
from keyplane.models import ApiKey, AuthSession, LoginLockout, Tenant, TenantPolicy, User
from keyplane.models.base import UTCDateTime
from keyplane.permissions.repository import role_permissions


@functools.cache
def _snapshot_statement() -> Select[*tuple[Any, ...]]:
    """Built once: the same statement object on every miss lets SQLAlchemy reuse its
    compiled form and result metadata as they are, which otherwise it rebuilds or adapts
    to each new object, at several times the cost of the database's own work."""
    return (
        select(
            ApiKey.uid,
            ApiKey.key_hash,
            Tenant.uid,
            Tenant.name,
            User.uid,
            User.email,
            User.first_name,
            User.last_name,
            User.role,
            User.is_active,
            ApiKey.is_active,
            ApiKey.expires_at,
            ApiKey.scopes,
            ApiKey.permissions,
            ApiKey.permission_roles,
            ApiKey.allowed_cidrs,
            ApiKey.rate_limits,
            ApiKey.credits_remaining,
            ApiKey.credits_refill,
            ApiKey.credits_refilled_at,
            ApiKey.owner_id,
            ApiKey.meta,
            ApiKey.rotation_grace_ends_at,
            TenantPolicy.allowed_cidrs,
        )
        .join(User, User.uid == ApiKey.user_uid)
        .join(Tenant, Tenant.uid == ApiKey.tenant_uid)
        # The tenant's policy ranges travel with the snapshot; a change of them drops every
        # cached snapshot (policies.service.update_policy).
        .outerjoin(TenantPolicy, TenantPolicy.tenant_uid == ApiKey.tenant_uid)
        .where(ApiKey.key_hash == bindparam("key_hash"))
    )


async def find_key_snapshot(
    connection: AsyncConnection | AsyncSession, key_hash: str
) -> KeySnapshot | None:
    """What a decision on the key needs, as plain columns: no ORM objects to build on the
    path every uncached request takes. One statement, so it may run without a transaction
    around it (``kit.db.single_read``); a key with permission roles takes a second one for
    the roles' permissions."""
    row = (await connection.execute(_snapshot_statement(), {"key_hash": key_hash})).first()
    if row is None:
        return None
    columns: tuple[Any, ...] = tuple(row)
    (key_uid, stored_hash, tenant_uid, tenant_name, user_uid, email) = columns[:6]
    (first_name, last_name, role, user_active, key_active, expires_at) = columns[6:12]
    (scopes, permissions, roles, cidrs, rate_limits, remaining, refill) = columns[12:19]
    (refilled_at, owner_id, meta, grace_ends_at, tenant_cidrs) = columns[19:]
    effective = set(permissions or ())
    if roles:
        effective |= await role_permissions(connection, tenant_uid, roles)
    return KeySnapshot(
        key_uid=key_uid,
        key_hash=stored_hash,
        tenant_uid=tenant_uid,
        tenant_name=tenant_name,
        user_uid=user_uid,
        email=email,
        first_name=first_name,
        last_name=last_name,
        role=role,
        user_active=user_active,
        key_active=key_active,
        expires_at=expires_at,
        rotation_grace_ends_at=grace_ends_at,
        tenant_allowed_cidrs=tuple(tenant_cidrs) if tenant_cidrs is not None else None,
        scopes=frozenset(scopes) if scopes is not None else None,
        permissions=frozenset(effective),
        allowed_cidrs=tuple(cidrs) if cidrs is not None else None,
        rate_limits=tuple(
            RateLimit(str(limit["name"]), int(limit["limit"]), int(limit["windowSeconds"]))
            for limit in rate_limits or ()
        ),
        credits_remaining=remaining,
        credits_refill=Refill.from_json(refill),
        credits_refilled_at=refilled_at,
        owner_id=owner_id,
        meta=meta,
    )


async def find_reported_keys(
    session: AsyncSession, key_hashes: Sequence[str]
) -> list[tuple[ApiKey, User, Tenant]]:
    """The keys whose values were reported leaked (``api_keys.leaks``), by keyed hash, with
    their owners and tenants; locked, in uid order (two reports naming the same keys wait
    for each other instead of deadlocking)."""
    if not key_hashes:
        return []
    statement = (
        select(ApiKey, User, Tenant)
        .join(User, User.uid == ApiKey.user_uid)
        .join(Tenant, Tenant.uid == ApiKey.tenant_uid)
        .where(ApiKey.key_hash.in_(key_hashes))
        .order_by(ApiKey.uid)
        .with_for_update(of=ApiKey)
        .execution_options(populate_existing=True)
    )
    return [(row[0], row[1], row[2]) for row in (await session.execute(statement)).all()]


async def find_session_with_owner(
    session: AsyncSession, token_hash: str
) -> tuple[AuthSession, User, Tenant] | None:
    statement = (
        select(AuthSession, User, Tenant)
        .join(User, User.uid == AuthSession.user_uid)
        .join(Tenant, Tenant.uid == AuthSession.tenant_uid)
        .where(AuthSession.token_hash == token_hash)
    )
    row = (await session.execute(statement)).first()
    return None if row is None else (row[0], row[1], row[2])


MAX_LOGIN_CANDIDATES = 10


async def find_login_candidates(
    session: AsyncSession, email: str, org: str | None
) -> list[tuple[User, Tenant]]:
    statement = (
        select(User, Tenant).join(Tenant, Tenant.uid == User.tenant_uid).where(User.email == email)
    )
    if org is not None:
        statement = statement.where(Tenant.name_key == org.strip().lower())
    rows = (await session.execute(statement.limit(MAX_LOGIN_CANDIDATES))).all()
    return [(row[0], row[1]) for row in rows]


async def find_session(session: AsyncSession, session_uid: str) -> AuthSession | None:
    return await session.get(AuthSession, session_uid)


async def find_key_with_owner(session: AsyncSession, key_uid: str) -> tuple[ApiKey, User] | None:
    """A key by uid, for re-checking the credential a request authenticated with (its uid
    came from that authentication, so no tenant scoping applies)."""
    statement = select(ApiKey, User).join(User, User.uid == ApiKey.user_uid)
    row = (await session.execute(statement.where(ApiKey.uid == key_uid))).first()
    return None if row is None else (row[0], row[1])


async def lock_user(session: AsyncSession, user_uid: str) -> User | None:
    """The user, fresh from the database and locked (FOR NO KEY UPDATE on PostgreSQL: it
    waits for a change to the user in progress, yet lets keys be inserted for them)."""
    statement = (
        select(User)
        .where(User.uid == user_uid)
        .with_for_update(key_share=True)
        .execution_options(populate_existing=True)
    )
    return await session.scalar(statement)


async def revoke_user_sessions(
    session: AsyncSession, user_uid: str, now: datetime, *, keep_uid: str | None = None
) -> int:
    """Ends every live session of the user, except ``keep_uid`` when given. Sessions are
    read from the database on every request, so this is in force on every instance as
    soon as the caller's transaction commits. Returns how many were ended."""
    statement = (
        update(AuthSession)
        .where(AuthSession.user_uid == user_uid, AuthSession.revoked_at.is_(None))
        .values(revoked_at=now)
        .execution_options(synchronize_session=False)
    )
    if keep_uid is not None:
        statement = statement.where(AuthSession.uid != keep_uid)
    result = await session.execute(statement)
    return int(getattr(result, "rowcount", 0) or 0)


async def find_login_lockout(session: AsyncSession, subject_hash: str) -> LoginLockout | None:
    return await session.get(LoginLockout, subject_hash)


async def count_failed_login(
    session: AsyncSession, subject_hash: str, now: datetime, window_start: datetime
) -> int:
    """One more failed password, in one statement so that instances racing on the same
    account cannot lose a count; a run whose last failure is older than the window starts
    over. Returns the count including this failure."""
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    statement = (
        insert(LoginLockout)
        .values(subject_hash=subject_hash, failed_count=1, last_failed_at=now)
        .on_conflict_do_update(
            index_elements=[LoginLockout.subject_hash],
            set_={
                "failed_count": case(
                    (LoginLockout.last_failed_at < window_start, 1),
                    else_=LoginLockout.failed_count + 1,
                ),
                "last_failed_at": now,
            },
        )
        .returning(LoginLockout.failed_count)
    )
    return int((await session.execute(statement)).scalar_one())


async def lock_login(
    session: AsyncSession, subject_hash: str, threshold: int, until: datetime
) -> bool:
    """Locks once the count reached the threshold, and starts the count over. True for
    the one caller that locked, when several reach the threshold together."""
    statement = (
        update(LoginLockout)
        .where(LoginLockout.subject_hash == subject_hash)
        .where(LoginLockout.failed_count >= threshold)
        .values(failed_count=0, locked_until=until)
        .returning(LoginLockout.subject_hash)
    )
    return (await session.execute(statement)).first() is not None


async def clear_login_failures(session: AsyncSession, subject_hash: str) -> None:
    await session.execute(delete(LoginLockout).where(LoginLockout.subject_hash == subject_hash))


async def prune_login_lockouts(
    session: AsyncSession, stale_before: datetime, now: datetime
) -> None:
    """Forgets counts whose window has passed and locks that have ended."""
    await session.execute(
        delete(LoginLockout)
        .where(LoginLockout.last_failed_at < stale_before)
        .where(or_(LoginLockout.locked_until.is_(None), LoginLockout.locked_until <= now))
    )


@functools.cache
def _spend_statement(refills: bool) -> ReturningUpdate[int | None]:
    # Built once per shape, as ``_snapshot_statement``: a key with credits spends on every
    # call.
    remaining = ApiKey.credits_remaining
    cost = bindparam("cost", type_=Integer())
    key_uid: BindParameter[str] = bindparam("key_uid")
    if not refills:
        return (
            update(ApiKey)
            .where(ApiKey.uid == key_uid, remaining >= cost)
            .values(credits_remaining=remaining - cost)
            .returning(remaining)
        )
    owed = or_(
        ApiKey.credits_refilled_at.is_(None),
        ApiKey.credits_refilled_at < bindparam("refill_due_at", type_=UTCDateTime()),
    )
    available = case((owed, bindparam("refill_amount", type_=Integer())), else_=remaining)
    return (
        update(ApiKey)
        .where(ApiKey.uid == key_uid, remaining.is_not(None), available >= cost)
        .values(
            credits_remaining=available - cost,
            credits_refilled_at=case(
                (owed, bindparam("now", type_=UTCDateTime())), else_=ApiKey.credits_refilled_at
            ),
        )
        .returning(remaining)
    )


@functools.cache
def _credits_statement() -> Select[int | None, datetime | None]:
    return select(ApiKey.credits_remaining, ApiKey.credits_refilled_at).where(
        ApiKey.uid == bindparam("key_uid")
    )


async def spend_credits(
    connection: AsyncConnection, key_uid: str, cost: int, refill: Refill | None, now: datetime
) -> int | None:
    """Takes ``cost`` uses from a key, refilling it first when a refill is owed
    (``kit.credits``), in one atomic statement: concurrent spends on any instance never
    take the count below zero nor refill twice. The uses left, or None when there were
    not enough (nothing is spent then). On the credential path, by the key found."""
    parameters: dict[str, Any] = {"key_uid": key_uid, "cost": cost}
    if refill is not None:
        parameters.update(
            refill_amount=refill.amount, refill_due_at=latest_refill_at(refill, now), now=now
        )
    row = (await connection.execute(_spend_statement(refill is not None), parameters)).first()
    return None if row is None or row[0] is None else int(row[0])


async def credits_left(
    connection: AsyncConnection, key_uid: str, refill: Refill | None, now: datetime
) -> int | None:
    """The uses a key has now (a refill owed counted as done), without spending any."""
    row = (await connection.execute(_credits_statement(), {"key_uid": key_uid})).first()
    if row is None or row[0] is None:
        return None
    if refill is not None and refill_due(refill, row[1], now):
        return refill.amount
    return int(row[0])
