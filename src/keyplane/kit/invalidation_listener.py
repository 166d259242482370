"""Each worker's end of the invalidation channel: it applies the changes other workers
publish to its key cache, and keeps its lease (its ``cache_instances`` row) renewed with how
far it has applied them. PostgreSQL: LISTEN/NOTIFY on a connection of its own; SQLite:
watching ``PRAGMA data_version`` and reading the new ``cache_invalidations`` rows.

Why that is enough for no worker to accept a key after a change to it has answered:
``keyplane.kit.invalidation_leases``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any

import aiosqlite
import asyncpg
from sqlalchemy.engine import URL

from keyplane.kit.invalidation_leases import SEQUENCE, SEQUENCE_CHANNEL, Membership
from keyplane.kit.invalidation_payload import (
    CHANNEL,
    Deliver,
    Invalidation,
    decode_notification,
    delivery_delay,
)
from keyplane.kit.time import utcnow

logger = logging.getLogger("keyplane.invalidation")

# Names the listening connection in pg_stat_activity.
APPLICATION_NAME = "keyplane-invalidation"
_SQLITE_KEEP_ROWS = 10_000

SetHealthy = Callable[[bool], None]
# Seconds from a change's publication to this worker's applying it (through the channel).
ObserveDelay = Callable[[float], None]


def _sqlite_time(moment: datetime) -> str:
    # How SQLAlchemy stores a DateTime in SQLite: comparable as text.
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _signal(lost: asyncio.Event, wake: asyncio.Event, _connection: Any) -> None:
    lost.set()
    wake.set()


# The sequence's name is a constant.
_PG_JOIN = f"""
INSERT INTO cache_instances (id, label, applied_sequence, started_at, expires_at)
VALUES ($1, $2, COALESCE(pg_sequence_last_value('{SEQUENCE}'::regclass), 0),
        clock_timestamp(), clock_timestamp() + make_interval(secs => $3))
ON CONFLICT (id) DO UPDATE
SET applied_sequence = EXCLUDED.applied_sequence, expires_at = EXCLUDED.expires_at
RETURNING applied_sequence
"""  # noqa: S608
_PG_RENEW = """
UPDATE cache_instances
SET applied_sequence = GREATEST(applied_sequence, $2),
    expires_at = clock_timestamp() + make_interval(secs => $3)
WHERE id = $1 AND expires_at > clock_timestamp()
RETURNING 1
"""
_PG_LEAVE = "DELETE FROM cache_instances WHERE id = $1"
_SQLITE_LEAVE = "DELETE FROM cache_instances WHERE id = ?"


class PostgresListener:
    def __init__(
        self,
        url: URL,
        deliver: Deliver,
        set_healthy: SetHealthy,
        membership: Membership,
        timeout_seconds: float = 5.0,
    ) -> None:
        self.url = url
        self.deliver = deliver
        self.set_healthy = set_healthy
        self.membership = membership
        self.timeout_seconds = timeout_seconds
        self.observe_delay: ObserveDelay | None = None

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
        invalidations, sent_at = decode_notification(payload)
        self.deliver(invalidations)
        delay = delivery_delay(sent_at, time.time())
        if delay is not None and self.observe_delay is not None:
            self.observe_delay(delay)

    def _on_sequence(self, _connection: Any, _pid: int, _channel: str, payload: str) -> None:
        # Everything notified before this number has been delivered (and applied) already.
        try:
            self.membership.applied_up_to(int(payload))
        except ValueError:
            logger.warning("ignored a malformed invalidation number %r", payload[:40])

    async def _join(self, connection: asyncpg.Connection) -> None:
        member = self.membership
        member.lease.lapse()
        sent = member.lease.clock()
        applied = await connection.fetchval(
            _PG_JOIN,
            member.instance_id,
            member.label,
            member.lease.seconds,
            timeout=self.timeout_seconds,
        )
        member.joined(sent, int(applied))

    async def _renew(self, connection: asyncpg.Connection) -> None:
        member = self.membership
        sent, applied = member.lease.clock(), member.applied
        renewed = await connection.fetchval(
            _PG_RENEW,
            member.instance_id,
            applied,
            member.lease.seconds,
            timeout=self.timeout_seconds,
        )
        if renewed is None:
            logger.warning("cache lease ran out; registering again with an empty cache")
            await self._join(connection)
        else:
            member.renewed(sent, applied)

    async def run(self) -> None:
        backoff = 0.1
        member = self.membership
        while True:
            connection = None
            try:
                connection = await asyncpg.connect(**self._connect_arguments())
                lost = asyncio.Event()
                connection.add_termination_listener(partial(_signal, lost, member.wake))
                # Listening before registering: every number taken after the registration
                # reaches this connection.
                await connection.add_listener(CHANNEL, self._on_notify)
                await connection.add_listener(SEQUENCE_CHANNEL, self._on_sequence)
                await self._join(connection)
                self.set_healthy(True)
                backoff = 0.1
                while not lost.is_set():
                    if not member.due():
                        member.wake.clear()
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(member.wake.wait(), member.seconds_to_renewal())
                        if lost.is_set():
                            break
                    await self._renew(connection)
            except asyncio.CancelledError:
                member.lease.lapse()
                if connection is not None and not connection.is_closed():
                    await _quietly(connection.execute(_PG_LEAVE, member.instance_id, timeout=1))
                raise
            except Exception as exc:
                logger.warning("invalidation channel lost (%r); cache off until it is back", exc)
            finally:
                member.lease.lapse()
                self.set_healthy(False)
                if connection is not None and not connection.is_closed():
                    connection.terminate()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)


async def _quietly(statement: Any) -> None:
    """Leaving is a courtesy (a row left behind runs out with its lease): best effort."""
    try:
        await statement
    except Exception as exc:
        logger.debug("could not remove this worker's cache lease (%r)", exc)


def _stored_time(value: object) -> float | None:
    """A ``created_at`` as SQLite stores it (UTC text without an offset), in epoch seconds."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value).replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None


class SqliteWatcher:
    def __init__(
        self,
        path: str,
        deliver: Deliver,
        set_healthy: SetHealthy,
        membership: Membership,
        poll_seconds: float = 0.02,
    ) -> None:
        self.path = path
        self.deliver = deliver
        self.set_healthy = set_healthy
        self.membership = membership
        self.poll_seconds = poll_seconds
        self.observe_delay: ObserveDelay | None = None

    async def _data_version(self, connection: aiosqlite.Connection) -> int:
        async with connection.execute("PRAGMA data_version") as cursor:
            row = await cursor.fetchone()
        return int(row[0]) if row else 0

    async def _write(self, connection: aiosqlite.Connection, statements: Callable[[], Any]) -> Any:
        # BEGIN IMMEDIATE: a write that starts as a read could fail on a stale snapshot.
        await connection.execute("BEGIN IMMEDIATE")
        try:
            result = await statements()
        except BaseException:
            await _quietly(connection.execute("ROLLBACK"))
            raise
        await connection.execute("COMMIT")
        return result

    async def _join(self, connection: aiosqlite.Connection) -> int:
        member = self.membership
        member.lease.lapse()
        sent = member.lease.clock()

        async def register() -> int:
            async with connection.execute(
                "SELECT COALESCE(MAX(id), 0) FROM cache_invalidations"
            ) as cursor:
                row = await cursor.fetchone()
            latest = int(row[0]) if row else 0
            # Read after the write lock was taken: not earlier than the real moment.
            now = utcnow()
            expires = now.timestamp() + member.lease.seconds
            await connection.execute(
                "INSERT INTO cache_instances (id, label, applied_sequence, started_at, "
                "expires_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
                "applied_sequence = excluded.applied_sequence, expires_at = excluded.expires_at",
                (
                    member.instance_id,
                    member.label,
                    latest,
                    _sqlite_time(now),
                    _sqlite_time(datetime.fromtimestamp(expires, UTC)),
                ),
            )
            return latest

        latest: int = await self._write(connection, register)
        member.joined(sent, latest)
        return latest

    async def _renew(self, connection: aiosqlite.Connection) -> None:
        member = self.membership
        sent, applied = member.lease.clock(), member.applied

        async def renew() -> bool:
            now = utcnow()
            expires = datetime.fromtimestamp(now.timestamp() + member.lease.seconds, UTC)
            async with connection.execute(
                "UPDATE cache_instances SET applied_sequence = MAX(applied_sequence, ?), "
                "expires_at = ? WHERE id = ? AND expires_at > ?",
                (applied, _sqlite_time(expires), member.instance_id, _sqlite_time(now)),
            ) as cursor:
                return cursor.rowcount == 1

        if await self._write(connection, renew):
            member.renewed(sent, applied)
        else:
            logger.warning("cache lease ran out; registering again with an empty cache")
            await self._join(connection)

    async def run(self) -> None:
        backoff = 0.1
        member = self.membership
        while True:
            try:
                async with aiosqlite.connect(self.path, isolation_level=None) as connection:
                    await connection.execute("PRAGMA busy_timeout=5000")
                    # As the engine's connections: WAL without a sync on every commit.
                    await connection.execute("PRAGMA synchronous=NORMAL")
                    try:
                        await self._watch(connection)
                    except asyncio.CancelledError:
                        member.lease.lapse()
                        await _quietly(asyncio.wait_for(self._leave(connection), 1))
                        raise
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("invalidation watcher failed (%r); cache off until it is back", exc)
            finally:
                member.lease.lapse()
                self.set_healthy(False)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)

    async def _leave(self, connection: aiosqlite.Connection) -> None:
        await connection.execute(_SQLITE_LEAVE, (self.membership.instance_id,))

    async def _watch(self, connection: aiosqlite.Connection) -> None:
        member = self.membership
        # Read before registering: any commit after it moves the version.
        version = await self._data_version(connection)
        last_id = await self._join(connection)
        self.set_healthy(True)
        polls = 0
        while True:
            await asyncio.sleep(self.poll_seconds)
            current = await self._data_version(connection)
            if current != version:
                version = current
                last_id = await self._read_new(connection, last_id)
                member.applied_up_to(last_id)
                polls += 1
                if polls % 500 == 0:
                    await connection.execute(
                        "DELETE FROM cache_invalidations WHERE id < ?",
                        (last_id - _SQLITE_KEEP_ROWS,),
                    )
            if member.due():
                await self._renew(connection)

    async def _read_new(self, connection: aiosqlite.Connection, last_id: int) -> int:
        async with connection.execute(
            "SELECT id, kind, uid, created_at FROM cache_invalidations WHERE id > ? ORDER BY id",
            (last_id,),
        ) as cursor:
            rows = list(await cursor.fetchall())
        if rows:
            self.deliver(
                [
                    invalidation
                    for _id, kind, uid, _created_at in rows
                    for invalidation in Invalidation.decode_all(f"{kind}:{uid}")
                ]
            )
            last_id = int(rows[-1][0])
            if self.observe_delay is not None:
                now = time.time()
                for *_, created_at in rows:
                    delay = delivery_delay(_stored_time(created_at), now)
                    if delay is not None:
                        self.observe_delay(delay)
        return last_id
