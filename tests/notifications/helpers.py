from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select

from keyplane.kit.db import transaction
from keyplane.models import Notification
from keyplane.runtime import Runtime


async def notifications_of(runtime: Runtime, user_uid: str | None = None) -> Sequence[Notification]:
    async with transaction(runtime.sessionmaker, writes=False) as session:
        statement = select(Notification).order_by(Notification.created_at, Notification.uid)
        if user_uid is not None:
            statement = statement.where(Notification.user_uid == user_uid)
        return (await session.scalars(statement)).all()
