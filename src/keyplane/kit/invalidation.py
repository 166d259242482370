"""Telling every worker of every instance that cached keys changed, and waiting until
they all have, before the change answers.

This module is the public face: ``publish`` (inside the transaction that makes the change)
and the delivery of a change to this worker's own cache when that transaction commits,
with every name the rest of Keyplane uses. The parts live beside it, by feature:

- ``invalidation_payload``: the ``Invalidation`` value type and the NOTIFY payload;
- ``invalidation_listener``: each worker's end of the channel (PostgreSQL LISTEN/NOTIFY,
  SQLite polling), which applies other workers' changes and renews its lease;
- ``invalidation_leases``: the leases and the wait for every worker's confirmation, and
  why the whole mechanism is correct (its module docstring).
"""

from __future__ import annotations

import time
from functools import partial

from sqlalchemy import event, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from keyplane.kit.db import AFTER_COMMIT
from keyplane.kit.invalidation_leases import (
    _PUBLISHED_ROWS,
    SEQUENCE,
    SEQUENCE_CHANNEL,
    Confirmations,
    Lease,
    Membership,
    ObserveWait,
    instance_label,
    lease_clock,
    new_instance_id,
)
from keyplane.kit.invalidation_listener import (
    APPLICATION_NAME,
    ObserveDelay,
    PostgresListener,
    SetHealthy,
    SqliteWatcher,
)
from keyplane.kit.invalidation_payload import (
    CHANNEL,
    Deliver,
    Invalidation,
    InvalidationKind,
    decode_notification,
    delivery_delay,
    encode_notification,
)
from keyplane.models import CacheInvalidation

__all__ = [
    "APPLICATION_NAME",
    "CHANNEL",
    "CONFIRM",
    "DELIVER",
    "SEQUENCE",
    "SEQUENCE_CHANNEL",
    "Confirmations",
    "Deliver",
    "Invalidation",
    "InvalidationKind",
    "Lease",
    "Membership",
    "ObserveDelay",
    "ObserveWait",
    "PostgresListener",
    "SetHealthy",
    "SqliteWatcher",
    "decode_notification",
    "delivery_delay",
    "encode_notification",
    "install_local_delivery",
    "instance_label",
    "lease_clock",
    "new_instance_id",
    "publish",
]

DELIVER = "keyplane_deliver_invalidations"
CONFIRM = "keyplane_confirm_invalidations"
_PENDING = "keyplane_pending_invalidations"
_AWAITING = "keyplane_awaiting_confirmation"


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
