from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, TypeVarTuple

from sqlalchemy import ColumnElement, Select, String, and_, cast, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from keyplane.auth.principal import Principal
from keyplane.kit.time import utcnow
from keyplane.models import ApiKey, ApiKeyState, KeyLeak, User

Columns = TypeVarTuple("Columns")


class ApiKeyOrder(StrEnum):
    CREATED = "created"
    NAME = "name"
    EXPIRY = "expiry"
    LAST_USED = "lastUsed"
    USER = "user"


@dataclass(frozen=True, slots=True)
class ApiKeyFilters:
    user_uid: str | None = None
    is_active: bool | None = None
    # The one state shown for a key (``ApiKey.state``): inactive (revoked), else expired,
    # else active.
    state: ApiKeyState | None = None
    # Restrictions: the key's owner id, a scope it carries, a permission given directly.
    owner_id: str | None = None
    scope: str | None = None
    permission: str | None = None
    # Newest first unless asked otherwise; the uid breaks ties, so pages stay stable.
    order: ApiKeyOrder = ApiKeyOrder.CREATED
    descending: bool = True


_ORDER_COLUMNS: dict[ApiKeyOrder, tuple[Any, ...]] = {
    ApiKeyOrder.CREATED: (ApiKey.created_at,),
    ApiKeyOrder.NAME: (func.lower(ApiKey.name),),
    ApiKeyOrder.EXPIRY: (ApiKey.expires_at,),
    ApiKeyOrder.LAST_USED: (ApiKey.last_used_at,),
    ApiKeyOrder.USER: (func.lower(User.first_name), func.lower(User.last_name), User.email),
}


def _json_list_holds(column: Any, name: str) -> ColumnElement[bool]:
    """Whether a JSON list of names holds ``name``, on both databases: names are checked
    against a pattern without quotes or backslashes (scopes, permission names), so the
    JSON text holds ``"name"`` exactly when the list does."""
    quoted = '"' + name.replace("_", "\\_") + '"'
    return cast(column, String).like(f"%{quoted}%", escape="\\")


def _state_condition(state: ApiKeyState, now: datetime) -> ColumnElement[bool]:
    """``ApiKey.state`` as a query condition."""
    if state is ApiKeyState.INACTIVE:
        return ApiKey.is_active.is_(False)
    rotated_away = and_(
        ApiKey.rotation_grace_ends_at.is_not(None), ApiKey.rotation_grace_ends_at <= now
    )
    if state is ApiKeyState.ROTATED:
        return and_(ApiKey.is_active.is_(True), rotated_away)
    if state is ApiKeyState.EXPIRED:
        return and_(ApiKey.is_active.is_(True), ~rotated_away, ApiKey.expires_at <= now)
    return and_(ApiKey.is_active.is_(True), ~rotated_away, ApiKey.expires_at > now)


def visible_only(statement: Select[*Columns], principal: Principal) -> Select[*Columns]:
    """The one place key reads are scoped: a tenant admin sees the tenant's keys, anyone
    else their own. Every query below goes through here."""
    statement = statement.where(ApiKey.tenant_uid == principal.tenant_uid)
    if not principal.is_tenant_admin:
        statement = statement.where(ApiKey.user_uid == principal.user_uid)
    return statement


def visible_keys(principal: Principal) -> Select[ApiKey, User]:
    return visible_only(select(ApiKey, User).join(User, User.uid == ApiKey.user_uid), principal)


def _counted(principal: Principal) -> Select[int]:
    """Counts need no join: every key has its user (a foreign key), and reading only
    api_keys lets the database answer from the tenant index alone."""
    return visible_only(select(func.count(ApiKey.uid)), principal)


async def get_with_owner(
    session: AsyncSession, principal: Principal, uid: str, *, for_update: bool = False
) -> tuple[ApiKey, User] | None:
    statement = visible_keys(principal).where(ApiKey.uid == uid)
    if for_update:
        statement = statement.with_for_update(of=ApiKey)
    row = (await session.execute(statement)).first()
    return None if row is None else (row[0], row[1])


async def list_page(
    session: AsyncSession,
    principal: Principal,
    filters: ApiKeyFilters,
    offset: int,
    limit: int | None,
) -> tuple[Sequence[tuple[ApiKey, User]], int]:
    conditions = []
    if filters.user_uid is not None:
        conditions.append(ApiKey.user_uid == filters.user_uid)
    if filters.is_active is not None:
        conditions.append(ApiKey.is_active.is_(filters.is_active))
    if filters.state is not None:
        conditions.append(_state_condition(filters.state, utcnow()))
    if filters.owner_id is not None:
        conditions.append(ApiKey.owner_id == filters.owner_id)
    if filters.scope is not None:
        conditions.append(_json_list_holds(ApiKey.scopes, filters.scope))
    if filters.permission is not None:
        conditions.append(_json_list_holds(ApiKey.permissions, filters.permission))
    statement = visible_keys(principal).where(*conditions)
    total = await session.scalar(_counted(principal).where(*conditions))
    columns = (*_ORDER_COLUMNS[filters.order], ApiKey.uid)
    ordered = statement.order_by(
        *(column.desc() if filters.descending else column.asc() for column in columns)
    ).offset(offset)
    if limit is not None:
        ordered = ordered.limit(limit)
    rows = (await session.execute(ordered)).all()
    return [(row[0], row[1]) for row in rows], int(total or 0)


async def count_owned_by(session: AsyncSession, principal: Principal, user_uid: str) -> int:
    total = await session.scalar(_counted(principal).where(ApiKey.user_uid == user_uid))
    return int(total or 0)


async def count_by_owner(
    session: AsyncSession, principal: Principal, user_uids: Sequence[str]
) -> dict[str, int]:
    """How many keys each of these users owns (users without keys are left out)."""
    if not user_uids:
        return {}
    statement = (
        visible_keys(principal)
        .with_only_columns(ApiKey.user_uid, func.count(ApiKey.uid))
        .where(ApiKey.user_uid.in_(user_uids))
        .group_by(ApiKey.user_uid)
    )
    rows = (await session.execute(statement)).all()
    return {str(user_uid): int(count) for user_uid, count in rows}


async def name_taken(
    session: AsyncSession, principal: Principal, user_uid: str, name: str, except_uid: str = ""
) -> bool:
    statement = (
        visible_keys(principal)
        .with_only_columns(ApiKey.uid)
        .where(ApiKey.user_uid == user_uid, ApiKey.name == name, ApiKey.uid != except_uid)
    )
    return (await session.scalar(statement.limit(1))) is not None


async def tenant_of_key(session: AsyncSession, uid: str) -> str | None:
    """Whose a key is, for the invalidation feed (not a read on a caller's behalf: the
    feed tells only that tenant's subscribers)."""
    return await session.scalar(select(ApiKey.tenant_uid).where(ApiKey.uid == uid))


# --- sightings of leaked keys (api_keys.leaks) -------------------------------------------


def visible_leaks(principal: Principal) -> Select[KeyLeak]:
    """The one place sighting reads are scoped: those of the keys the caller may see."""
    statement = select(KeyLeak).where(KeyLeak.tenant_uid == principal.tenant_uid)
    if not principal.is_tenant_admin:
        statement = statement.join(ApiKey, ApiKey.uid == KeyLeak.key_uid).where(
            ApiKey.user_uid == principal.user_uid
        )
    return statement


async def latest_leaks(
    session: AsyncSession, principal: Principal, key_uid: str, limit: int
) -> Sequence[KeyLeak]:
    statement = (
        visible_leaks(principal)
        .where(KeyLeak.key_uid == key_uid)
        .order_by(KeyLeak.reported_at.desc(), KeyLeak.uid.desc())
        .limit(limit)
    )
    return (await session.scalars(statement)).all()


async def count_leaks(session: AsyncSession, principal: Principal, key_uid: str) -> int:
    statement = (
        visible_leaks(principal)
        .with_only_columns(func.count(KeyLeak.uid))
        .where(KeyLeak.key_uid == key_uid)
    )
    return int(await session.scalar(statement) or 0)


async def leak_seen(
    session: AsyncSession, principal: Principal, key_uid: str, reporter: str, url: str, source: str
) -> bool:
    statement = (
        visible_leaks(principal)
        .with_only_columns(KeyLeak.uid)
        .where(
            KeyLeak.key_uid == key_uid,
            KeyLeak.reporter == reporter,
            KeyLeak.url == url,
            KeyLeak.source == source,
        )
        .limit(1)
    )
    return (await session.scalar(statement)) is not None
