"""Credential lookups. They run before anyone is known, so they are the only queries not
scoped by a principal: each finds one row by a keyed hash or by tenant and email."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from keyplane.models import ApiKey, AuthSession, Tenant, User


async def find_api_key_with_owner(
    session: AsyncSession, key_hash: str
) -> tuple[ApiKey, User, Tenant] | None:
    statement = (
        select(ApiKey, User, Tenant)
        .join(User, User.uid == ApiKey.user_uid)
        .join(Tenant, Tenant.uid == ApiKey.tenant_uid)
        .where(ApiKey.key_hash == key_hash)
    )
    row = (await session.execute(statement)).first()
    return None if row is None else (row[0], row[1], row[2])


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


async def find_user(session: AsyncSession, user_uid: str) -> User | None:
    return await session.get(User, user_uid)
