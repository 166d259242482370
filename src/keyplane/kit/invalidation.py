"""Telling every worker of every instance that cached keys changed.

``publish`` runs inside the transaction that makes the change. On PostgreSQL it sends
``pg_notify``, delivered by the server to every listener when (and only if) the transaction
commits. On SQLite it writes a ``cache_invalidations`` row in the same transaction; each
worker watches ``PRAGMA data_version`` (which moves whenever another connection commits)
and reads the new rows. Either way the worker that made the change applies it to its own
cache the moment its transaction commits, so its very next request already sees it.

A listener that loses its connection reports itself unhealthy; the cache is then turned
off (every request reads the database) until the listener is back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import partial
from typing import Any

import aiosqlite
import asyncpg
from sqlalchemy import event, func, select
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from keyplane.models import CacheInvalidation

logger = logging.getLogger("keyplane.invalidation")

CHANNEL = "keyplane_invalidation"
# Names the listening connection in pg_stat_activity.
APPLICATION_NAME = "keyplane-invalidation"
DELIVER = "keyplane_deliver_invalidations"
_PENDING = "keyplane_pending_invalidations"
_SQLITE_KEEP_ROWS = 10_000


class InvalidationKind(StrEnum):
    KEY = "key"
    USER = "user"
    ALL = "all"


@dataclass(frozen=True, slots=True)
class Invalidation:
    kind: InvalidationKind
    uid: str = ""

    @classmethod
    def key(cls, uid: str) -> Invalidation:
        return cls(InvalidationKind.KEY, uid)

    @classmethod
    def user(cls, uid: str) -> Invalidation:
        return cls(InvalidationKind.USER, uid)

    def encode(self) -> str:
        return f"{self.kind.value}:{self.uid}"

    @classmethod
    def decode_all(cls, payload: str) -> list[Invalidation]:
        found = []
        for part in payload.split(";"):
            kind, _, uid = part.partition(":")
            try:
                found.append(cls(InvalidationKind(kind), uid))
            except ValueError:
                # Something we do not understand: drop everything rather than guess.
                found.append(cls(InvalidationKind.ALL))
        return found


Deliver = Callable[[Sequence[Invalidation]], None]
SetHealthy = Callable[[bool], None]


async def publish(session: AsyncSession, *invalidations: Invalidation) -> None:
    """Within the caller's transaction: reaches other workers only if it commits."""
    session.info.setdefault(_PENDING, []).extend(invalidations)
    bind = session.bind
    if bind is not None and bind.dialect.name == "postgresql":
        payload = ";".join(invalidation.encode() for invalidation in invalidations)
        await session.execute(select(func.pg_notify(CHANNEL, payload)))
    else:
        session.add_all(
            CacheInvalidation(kind=invalidation.kind.value, uid=invalidation.uid)
            for invalidation in invalidations
        )


def _after_commit(session: Session) -> None:
    pending: list[Invalidation] = session.info.pop(_PENDING, [])
    deliver: Deliver | None = session.info.get(DELIVER)
    if pending and deliver is not None:
        deliver(pending)


def _after_rollback(session: Session) -> None:
    session.info.pop(_PENDING, None)


def install_local_delivery() -> None:
    """Sessions whose ``info`` names a deliverer apply their invalidations on commit."""
    if not event.contains(Session, "after_commit", _after_commit):
        event.listen(Session, "after_commit", _after_commit)
        event.listen(Session, "after_rollback", _after_rollback)


def _signal(lost: asyncio.Event, _connection: Any) -> None:
    lost.set()


class PostgresListener:
    def __init__(
        self,
        url: URL,
        deliver: Deliver,
        set_healthy: SetHealthy,
        ping_seconds: float = 1.0,
        timeout_seconds: float = 5.0,
    ) -> None:
        self.url = url
        self.deliver = deliver
        self.set_healthy = set_healthy
        self.ping_seconds = ping_seconds
        self.timeout_seconds = timeout_seconds

    def _connect_arguments(self) -> dict[str, Any]:
        arguments: dict[str, Any] = {
            "host": self.url.host,
            "port": self.url.port or 5432,
            "user": self.url.username,
            "password": self.url.password,
            "database": self.url.database,
            # A partition closes nothing: without these, the connect or the LISTEN could
            # wait for it to end, with the cache on and no notification arriving.
            "timeout": self.timeout_seconds,
            "command_timeout": self.timeout_seconds,
            "server_settings": {"application_name": APPLICATION_NAME},
        }
        if "ssl" in self.url.query:
            arguments["ssl"] = self.url.query["ssl"]
        return arguments

    def _on_notify(self, _connection: Any, _pid: int, _channel: str, payload: str) -> None:
        self.deliver(Invalidation.decode_all(payload))

    async def run(self) -> None:
        backoff = 0.1
        while True:
            connection = None
            try:
                connection = await asyncpg.connect(**self._connect_arguments())
                lost = asyncio.Event()
                connection.add_termination_listener(partial(_signal, lost))
                await connection.add_listener(CHANNEL, self._on_notify)
                self.set_healthy(True)
                backoff = 0.1
                while not lost.is_set():
                    try:
                        await asyncio.wait_for(lost.wait(), self.ping_seconds)
                    except TimeoutError:
                        await connection.fetchval("SELECT 1", timeout=self.ping_seconds)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("invalidation channel lost (%r); cache off until it is back", exc)
            finally:
                self.set_healthy(False)
                if connection is not None and not connection.is_closed():
                    connection.terminate()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)


class SqliteWatcher:
    def __init__(
        self, path: str, deliver: Deliver, set_healthy: SetHealthy, poll_seconds: float = 0.02
    ) -> None:
        self.path = path
        self.deliver = deliver
        self.set_healthy = set_healthy
        self.poll_seconds = poll_seconds

    async def _latest_id(self, connection: aiosqlite.Connection) -> int:
        async with connection.execute("SELECT MAX(id) FROM cache_invalidations") as cursor:
            row = await cursor.fetchone()
        return int(row[0] or 0) if row else 0

    async def _data_version(self, connection: aiosqlite.Connection) -> int:
        async with connection.execute("PRAGMA data_version") as cursor:
            row = await cursor.fetchone()
        return int(row[0]) if row else 0

    async def run(self) -> None:
        backoff = 0.1
        while True:
            try:
                async with aiosqlite.connect(self.path, isolation_level=None) as connection:
                    await connection.execute("PRAGMA busy_timeout=5000")
                    last_id = await self._latest_id(connection)
                    version = await self._data_version(connection)
                    self.set_healthy(True)
                    backoff = 0.1
                    polls = 0
                    while True:
                        await asyncio.sleep(self.poll_seconds)
                        current = await self._data_version(connection)
                        if current == version:
                            continue
                        version = current
                        last_id = await self._read_new(connection, last_id)
                        polls += 1
                        if polls % 500 == 0:
                            await connection.execute(
                                "DELETE FROM cache_invalidations WHERE id < ?",
                                (last_id - _SQLITE_KEEP_ROWS,),
                            )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("invalidation watcher failed (%r); cache off until it is back", exc)
            finally:
                self.set_healthy(False)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)

    async def _read_new(self, connection: aiosqlite.Connection, last_id: int) -> int:
        async with connection.execute(
            "SELECT id, kind, uid FROM cache_invalidations WHERE id > ? ORDER BY id", (last_id,)
        ) as cursor:
            rows = list(await cursor.fetchall())
        if rows:
            self.deliver(
                [
                    invalidation
                    for _id, kind, uid in rows
                    for invalidation in Invalidation.decode_all(f"{kind}:{uid}")
                ]
            )
            last_id = int(rows[-1][0])
        return last_id
