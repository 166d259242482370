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

Here: the leases and the wait for confirmations (``Lease``, ``Membership``,
``Confirmations``). ``publish`` is in ``keyplane.kit.invalidation``; the listeners that
apply changes and renew leases are in ``keyplane.kit.invalidation_listener``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, literal, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from keyplane.kit.db import begin, is_sqlite
from keyplane.kit.errors import Unavailable
from keyplane.kit.ids import new_uid
from keyplane.kit.time import utcnow
from keyplane.models import CacheInstance, CacheInvalidation
from keyplane.models.base import UTCDateTime

logger = logging.getLogger("keyplane.invalidation")

# PostgreSQL: the numbers changes wait on, notified after their commit (module docstring).
SEQUENCE_CHANNEL = "keyplane_invalidation_sequence"
SEQUENCE = "cache_invalidation_sequence"
_PUBLISHED_ROWS = "keyplane_published_invalidation_rows"

# (seconds waited, outcome): "confirmed", "expired" (waited out a lease), "error".
ObserveWait = Callable[[float, str], None]


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
