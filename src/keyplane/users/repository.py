from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from keyplane.auth.principal import Principal
from keyplane.models import Role, Tenant, User


def visible_users(principal: Principal) -> Select[User]:
    """The one place user reads are scoped: the caller's tenant."""
    return select(User).where(User.tenant_uid == principal.tenant_uid)


async def get(session: AsyncSession, principal: Principal, uid: str) -> User | None:
    return await session.scalar(visible_users(principal).where(User.uid == uid))


async def get_for_update(session: AsyncSession, principal: Principal, uid: str) -> User | None:
    # populate_existing: a user read earlier in the transaction (before the lock was
    # granted) is refreshed, so rules are checked against what is stored now.
    statement = (
        visible_users(principal)
        .where(User.uid == uid)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return await session.scalar(statement)


async def lock_tenant(session: AsyncSession, principal: Principal) -> None:
    """Serialises changes to the caller's tenant's users (PostgreSQL; on SQLite a writing
    transaction holds the database's write lock already).

    Every user change takes this lock first and the user rows after it, always in that
    order, so two admins changing each other wait for one another instead of deadlocking.
    FOR NO KEY UPDATE: rows that merely reference the tenant (keys, sessions, audit
    events) are still inserted meanwhile."""
    statement = (
        select(Tenant.uid).where(Tenant.uid == principal.tenant_uid).with_for_update(key_share=True)
    )
    await session.execute(statement)


async def find_by_email(session: AsyncSession, principal: Principal, email: str) -> User | None:
    return await session.scalar(visible_users(principal).where(User.email == email))


async def list_page(
    session: AsyncSession, principal: Principal, offset: int, limit: int | None
) -> tuple[Sequence[User], int]:
    statement = visible_users(principal)
    total = await session.scalar(select(func.count()).select_from(statement.subquery()))
    ordered = statement.order_by(User.created_at, User.uid).offset(offset)
    if limit is not None:
        ordered = ordered.limit(limit)
    return (await session.scalars(ordered)).all(), int(total or 0)


async def lock_active_admin_uids(session: AsyncSession, principal: Principal) -> list[str]:
    """Locked, in uid order; callers hold the tenant lock (``lock_tenant``) already."""
    statement = (
        visible_users(principal)
        .where(User.role == Role.TENANT_ADMIN.value, User.is_active.is_(True))
        .order_by(User.uid)
        .with_for_update()
    )
    return [user.uid for user in (await session.scalars(statement)).all()]


async def active_admins(session: AsyncSession, principal: Principal) -> Sequence[User]:
    """The tenant's active tenant admins, in uid order (no lock: to tell them something)."""
    statement = (
        visible_users(principal)
        .where(User.role == Role.TENANT_ADMIN.value, User.is_active.is_(True))
        .order_by(User.uid)
    )
    return (await session.scalars(statement)).all()


async def tenant_of_user(session: AsyncSession, uid: str) -> str | None:
    """Whose a user is, for the invalidation feed (not a read on a caller's behalf: the
    feed tells only that tenant's subscribers)."""
    return await session.scalar(select(User.tenant_uid).where(User.uid == uid))
