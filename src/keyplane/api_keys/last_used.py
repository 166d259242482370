"""Last-used times, gathered in memory and written in batches.

Verifying a key must not write to the database: a write per request would serialise
every authenticated request on SQLite and double the cost on PostgreSQL. The price is
that "last used" may lag by up to one flush interval.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from sqlalchemy import bindparam, or_, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from keyplane.kit.db import transaction
from keyplane.models import ApiKey

logger = logging.getLogger("keyplane.last_used")


class LastUsedRecorder:
    def __init__(self) -> None:
        self._pending: dict[str, datetime] = {}

    def record(self, key_uid: str, used_at: datetime) -> None:
        previous = self._pending.get(key_uid)
        if previous is None or used_at > previous:
            self._pending[key_uid] = used_at

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def flush(self, sessionmaker: async_sessionmaker[AsyncSession]) -> int:
        if not self._pending:
            return 0
        batch, self._pending = self._pending, {}
        statement = (
            update(ApiKey)
            .where(ApiKey.uid == bindparam("key_uid"))
            .where(or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at < bindparam("at")))
            .values(last_used_at=bindparam("at"))
            .execution_options(synchronize_session=False)
        )
        rows = [{"key_uid": uid, "at": at} for uid, at in sorted(batch.items())]
        try:
            async with transaction(sessionmaker) as session:
                connection = await session.connection()
                await connection.execute(statement, rows)
        except Exception:
            # Keep the times for the next attempt rather than lose them.
            for uid, at in batch.items():
                self.record(uid, at)
            raise
        return len(rows)

    async def run(self, sessionmaker: async_sessionmaker[AsyncSession], interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.flush(sessionmaker)
            except Exception:
                logger.warning("could not write last-used times; will retry", exc_info=True)
