"""Telling every worker of every instance that cached keys changed, and waiting until
they all have, before the change answers.

``publish`` runs inside the transaction that makes the change. On PostgreSQL it sends
``pg_notify``, delivered by the server to every listener when (and only if) the transaction
commits. On SQLite it writes a ``cache_invalidations`` row in the same transaction; each
worker watches ``PRAGMA data_version`` (which moves whenever another connection commits)
and reads the new rows. Either way the worker that made the change applies it to its own
cache the moment its transaction commits, so its very next request already sees it.

**No worker accepts a key after a change to it has answered.** Delivery alone is not
enough (another worker may be busy, paused, or cut off when the change commits), so:

- Every worker that caches keys holds a *lease*, a ``cache_instances`` row renewed every
  quarter lease (``KEYPLANE_INVALIDATION_LEASE_SECONDS``, 2 s) that also says how far it
  has applied the invalidations (``applied_sequence``). The renewal is conditional: it
  succeeds only while the row is still live (``expires_at`` in the future, by the
  database's clock). A worker uses its cache only until ``sent + lease - lease/4`` on its
  own clock (``sent``: when it sent the last renewal that succeeded), checked on every
  lookup; past that, every request reads the database.
- Changes are numbered. SQLite: the ``cache_invalidations`` row id (writers are serialised,
  so ids follow commit order). PostgreSQL: after its commit, the change takes a number N
  from ``cache_invalidation_sequence`` and notifies it on a second channel in the same
  statement. Notifications reach each listener in commit order, and the number is taken
  after the change committed, so a worker that has received N has received the change.
- A worker that has applied up to N writes N into its row at once (a renewal, batched if
  several arrive together). Registering, a worker starts from the latest number (all that
  committed before it), empties its cache and only then trusts it: whatever it reads
  afterwards already includes those changes.
- After the commit and before the answer (``kit.db.transaction`` runs the wait), the change
  polls ``cache_instances`` until no other row is behind N. A row behind N whose lease has
  run out is deleted (conditionally, so it cannot race with its renewal: one of the two
  statements waits for the other's row lock, SQLite's writers are serialised); its worker
  stopped trusting its cache before that moment, cannot renew any more, and must register
  again with an empty cache. A row still live but behind N after half a lease (a worker
  that renews but does not apply) is deleted the same way, and the change waits until that
  row's lease, as returned by the delete, has passed.

So a worker the change did not wait for is one whose lease had run out, and its cache is
emptied before it is trusted again. The cases:
- *Paused* (SIGSTOP, a stalled VM, a suspended machine): its renewals stop; the change waits
  at most one lease, deletes its row and answers. Resumed, the worker finds its lease
  past on its clock (``CLOCK_BOOTTIME`` counts stopped and suspended time) and reads
  through; its next renewal fails, so it registers again with an empty cache.
- *Connection lost or partitioned*: the cache is turned off at once when the loss is seen,
  and in any case the lease is not renewed, so the same bound holds.
- *Killed mid-confirmation*: its row stays until its lease runs out; the next change
  deletes it.
- *The changing request cannot reach the database after its commit*: it answers 503 (the
  change is stored, but not known to be everywhere), never 2xx.

Assumptions: the database's clock and each worker's clock run at the same rate to well
within a quarter lease over a lease (a step of the database server's clock by more than
that, forwards, could end a lease early); on SQLite the clock is the one host's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from functools import partial
from typing import Any

import aiosqlite
import asyncpg
from sqlalchemy import delete, event, func, literal, select, text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import Session

from keyplane.kit.db import AFTER_COMMIT, begin, is_sqlite
from keyplane.kit.errors import Unavailable
from keyplane.kit.ids import new_uid
from keyplane.kit.time import utcnow
from keyplane.models import CacheInstance, CacheInvalidation
from keyplane.models.base import UTCDateTime

logger = logging.getLogger("keyplane.invalidation")

CHANNEL = "keyplane_invalidation"
# PostgreSQL: the numbers changes wait on, notified after their commit (module docstring).
SEQUENCE_CHANNEL = "keyplane_invalidation_sequence"
SEQUENCE = "cache_invalidation_sequence"
# Names the listening connection in pg_stat_activity.
APPLICATION_NAME = "keyplane-invalidation"
DELIVER = "keyplane_deliver_invalidations"
CONFIRM = "keyplane_confirm_invalidations"
_PENDING = "keyplane_pending_invalidations"
_PUBLISHED_ROWS = "keyplane_published_invalidation_rows"
_AWAITING = "keyplane_awaiting_confirmation"
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


# The part of a NOTIFY payload that says when the change was published (milliseconds since
# the epoch), for the delivery delay metric. An instance that predates it reads an unknown
# kind and drops its whole cache: never a missed invalidation.
_SENT_AT = "t"


def encode_notification(invalidations: Sequence[Invalidation], sent_at: float) -> str:
    parts = [invalidation.encode() for invalidation in invalidations]
    parts.append(f"{_SENT_AT}:{round(sent_at * 1000)}")
    return ";".join(parts)


def decode_notification(payload: str) -> tuple[list[Invalidation], float | None]:
    """The invalidations of a NOTIFY payload, and when they were published (None: not
    said, or not understood)."""
    sent_at: float | None = None
    parts = []
    for part in payload.split(";"):
        kind, _, value = part.partition(":")
        if kind == _SENT_AT:
            with contextlib.suppress(ValueError):
                sent_at = int(value) / 1000
        else:
            parts.append(part)
    return Invalidation.decode_all(";".join(parts)), sent_at


def delivery_delay(sent_at: float | None, now: float) -> float | None:
    """Seconds from publication to delivery on this worker's clock; clocks of different
    machines may disagree, so a negative delay counts as none."""
    return None if sent_at is None else max(0.0, now - sent_at)


Deliver = Callable[[Sequence[Invalidation]], None]
SetHealthy = Callable[[bool], None]
# Seconds from a change's publication to this worker's applying it (through the channel).
ObserveDelay = Callable[[float], None]
# (seconds waited, outcome): "confirmed", "expired" (waited out a lease), "error".
ObserveWait = Callable[[float, str], None]


async def publish(session: AsyncSession, *invalidations: Invalidation) -> None:
    """Within the caller's transaction: reaches other workers only if it commits, and the
    transaction, once committed, waits until they have all applied it (``Confirmations``)."""
    session.info.setdefault(_PENDING, []).extend(invalidations)
    bind = session.bind
    if bind is not None and bind.dialect.name == "postgresql":
        payload = encode_notification(invalidations, time.time())
        await session.execute(select(func.pg_notify(CHANNEL, payload)))
    else:
        rows = [
            CacheInvalidation(kind=invalidation.kind.value, uid=invalidation.uid)
            for invalidation in invalidations
        ]
        session.add_all(rows)
        session.info.setdefault(_PUBLISHED_ROWS, []).extend(rows)
    confirmations: Confirmations | None = session.info.get(CONFIRM)
    if confirmations is not None and not session.info.get(_AWAITING):
        session.info[_AWAITING] = True
        session.info.setdefault(AFTER_COMMIT, []).append(partial(confirmations.wait, session))


def _after_commit(session: Session) -> None:
    pending: list[Invalidation] = session.info.pop(_PENDING, [])
    deliver: Deliver | None = session.info.get(DELIVER)
    if pending and deliver is not None:
        deliver(pending)


def _after_rollback(session: Session) -> None:
    for name in (_PENDING, _PUBLISHED_ROWS, _AWAITING, AFTER_COMMIT):
        session.info.pop(name, None)


def install_local_delivery() -> None:
    """Sessions whose ``info`` names a deliverer apply their invalidations on commit."""
    if not event.contains(Session, "after_commit", _after_commit):
        event.listen(Session, "after_commit", _after_commit)
        event.listen(Session, "after_rollback", _after_rollback)


def lease_clock() -> float:
    """Seconds on a clock that keeps counting while the process is stopped and while the
    machine is suspended (``CLOCK_BOOTTIME``; the monotonic clock stops in suspend)."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def new_instance_id() -> str:
    return new_uid()


def instance_label() -> str:
    return f"{socket.gethostname()[:200]}:{os.getpid()}"


class Lease:
    """This worker's right to use its key cache (module docstring)."""

    def __init__(self, seconds: float, clock: Callable[[], float] = lease_clock) -> None:
        self.seconds = seconds
        # Room for the two clocks (this worker's, the database's) to disagree.
        self.margin = seconds / 4
        self.heartbeat_seconds = seconds / 4
        self.clock = clock
        self._until = -math.inf

    def valid(self) -> bool:
        return self.clock() < self._until

    def remaining(self) -> float:
        """Seconds this worker may still trust its cache without renewing (0: not now)."""
        return max(0.0, self._until - self.clock())

    def renewed(self, sent_at: float) -> None:
        """A renewal sent at ``sent_at`` (this clock) succeeded: the row lives until at least
        ``sent_at + seconds`` by the database's clock."""
        self._until = max(self._until, sent_at + self.seconds - self.margin)

    def lapse(self) -> None:
        self._until = -math.inf


class Confirmations:
    """A committed change's wait until every other live worker has applied it."""

    def __init__(
        self,
        engine: AsyncEngine,
        instance_id: str,
        lease_seconds: float,
        observe: ObserveWait | None = None,
    ) -> None:
        self.engine = engine
        self.instance_id = instance_id
        self.lease_seconds = lease_seconds
        # A worker that renews its lease but does not apply the change within this long is
        # deleted from the table (and waited out, one lease at most).
        self.evict_after = lease_seconds / 2
        # Beyond a paused or lost worker (a lease) and an evicted one (half a lease more),
        # something else is wrong: 503 rather than an answer that might not hold.
        self.bound = 2 * lease_seconds + 1.0
        self.observe = observe
        self._postgres = not is_sqlite(engine.url)

    async def wait(self, session: AsyncSession) -> None:
        started = time.monotonic()
        outcome = "error"
        try:
            if self._postgres:
                sequence = await self._number()
            else:
                rows: list[CacheInvalidation] = session.info.pop(_PUBLISHED_ROWS, [])
                sequence = max((row.id for row in rows), default=0)
            outcome = await self._wait_for(sequence, started)
        finally:
            if self.observe is not None:
                self.observe(time.monotonic() - started, outcome)

    async def _number(self) -> int:
        # One statement in its own transaction: the number is taken after the change
        # committed, and notified when this commits (so after the change's notification).
        async with self.engine.connect() as connection:
            await connection.execution_options(isolation_level="AUTOCOMMIT")
            number = await connection.scalar(
                # nextval is volatile: the subquery is evaluated once, not inlined.
                text(
                    f"SELECT n, pg_notify(:channel, CAST(n AS text)) "  # noqa: S608 (constant)
                    f"FROM (SELECT nextval('{SEQUENCE}') AS n) AS taken"
                ),
                {"channel": SEQUENCE_CHANNEL},
            )
        return int(number)

    def _now(self) -> Any:
        # The database's clock on PostgreSQL, read when the statement runs; on SQLite the
        # one host's, read before the statement is sent (so not later than it runs: what
        # it calls expired has expired).
        if self._postgres:
            return func.clock_timestamp()
        return literal(utcnow(), UTCDateTime())

    async def _laggards(self, behind: Any, waited_out: datetime | None) -> tuple[list[Any], bool]:
        """The rows behind, each with whether its lease has run out; and whether the lease
        waited out (if any) has passed."""
        instances = CacheInstance
        async with begin(self.engine, writes=False) as connection:
            rows = list(
                await connection.execute(
                    select(
                        instances.id, (instances.expires_at <= self._now()).label("expired")
                    ).where(behind)
                )
            )
            passed = waited_out is None or bool(
                await connection.scalar(select(self._now() > literal(waited_out, UTCDateTime())))
            )
        return rows, passed

    async def _wait_for(self, sequence: int, started: float) -> str:
        instances = CacheInstance
        behind = (instances.id != self.instance_id) & (instances.applied_sequence < sequence)
        outcome = "confirmed"
        waited_out: datetime | None = None
        while True:
            rows, passed = await self._laggards(behind, waited_out)
            if not rows and passed:
                return outcome
            elapsed = time.monotonic() - started
            if elapsed > self.bound:
                raise Unavailable(
                    "The change is saved, but not every Keyplane instance confirmed it in "
                    "time; it may still be accepted there for a few seconds.",
                    code="InvalidationUnconfirmed",
                    headers={"Retry-After": str(math.ceil(self.lease_seconds))},
                )
            expired = [row.id for row in rows if row.expired]
            if expired:
                # Conditional: a renewal that got in first makes the row live again.
                async with begin(self.engine, writes=True) as connection:
                    await connection.execute(
                        delete(instances).where(
                            behind, instances.id.in_(expired), instances.expires_at <= self._now()
                        )
                    )
                outcome = "expired"
                continue
            if rows and elapsed > self.evict_after:
                async with begin(self.engine, writes=True) as connection:
                    leases = (
                        await connection.execute(
                            delete(instances)
                            .where(behind, instances.id.in_([row.id for row in rows]))
                            .returning(instances.expires_at)
                        )
                    ).scalars()
                    latest = max((_aware(lease) for lease in leases), default=None)
                if latest is not None:
                    logger.warning(
                        "a worker renewed its cache lease but did not apply change %d within "
                        "%.1f s: removed; waiting its lease out",
                        sequence,
                        self.evict_after,
                    )
                    waited_out = latest if waited_out is None else max(waited_out, latest)
                    outcome = "expired"
                continue
            # A few milliseconds when all is well; a paused worker is waited out more slowly.
            await asyncio.sleep(0.002 if elapsed < 0.05 else 0.02)


def _aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _sqlite_time(moment: datetime) -> str:
    # How SQLAlchemy stores a DateTime in SQLite: comparable as text.
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


@dataclass
class Membership:
    """This worker's row in ``cache_instances``: its lease, and how far it has applied."""

    instance_id: str
    lease: Lease
    # Empties the key cache: on (re)registration, what it holds may predate changes that
    # did not wait for this worker.
    forget: Callable[[], None]
    label: str = field(default_factory=instance_label)
    applied: int = 0
    reported: int = -1
    next_renewal: float = -math.inf
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    def applied_up_to(self, sequence: int) -> None:
        if sequence > self.applied:
            self.applied = sequence
            self.wake.set()

    def due(self) -> bool:
        return self.applied > self.reported or self.lease.clock() >= self.next_renewal

    def seconds_to_renewal(self) -> float:
        return max(0.0, self.next_renewal - self.lease.clock())

    def joined(self, sent_at: float, applied: int) -> None:
        self.applied = max(self.applied, applied)
        self.forget()
        self.renewed(sent_at, self.applied)

    def renewed(self, sent_at: float, applied: int) -> None:
        self.lease.renewed(sent_at)
        self.reported = max(self.reported, applied)
        self.next_renewal = sent_at + self.lease.heartbeat_seconds


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
