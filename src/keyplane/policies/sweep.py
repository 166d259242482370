"""The inactivity sweep: revokes (never deletes) keys unused for longer than their
tenant's policy allows, and records why.

Safe with several instances sweeping at once: each batch of keys is claimed with row
locks (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite's one writer serialises the
sweeps) and revoked in the same transaction as its audit records, events and cache
invalidations, so a key is revoked, audited and announced exactly once.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from keyplane.audit import service as audit
from keyplane.audit.actions import Action, ResourceKind
from keyplane.events.service import emit
from keyplane.events.types import EventType
from keyplane.kit.db import transaction
from keyplane.kit.invalidation import Invalidation, publish
from keyplane.kit.time import rfc3339, utcnow
from keyplane.policies import repository
from keyplane.runtime import Runtime
from keyplane.tenants.service import system_principal

logger = logging.getLogger("keyplane.policies")

REASON = "inactivity"
# Keys revoked per transaction: a tenant with many idle keys is swept in several short
# transactions, none holding its locks for long.
BATCH = 200


async def revoke_inactive_keys(runtime: Runtime) -> None:
    """Revokes each tenant's keys unused (last used, else created) for its policy's days."""
    async with transaction(runtime.sessionmaker, writes=False) as session:
        policies = [
            (tenant, policy.inactivity_days)
            for policy, tenant in await repository.inactivity_policies(session)
        ]
    revoked = 0
    for tenant, days in policies:
        if days is None:
            continue
        principal = system_principal(tenant)
        while True:
            async with transaction(runtime.sessionmaker) as session:
                now = utcnow()
                unused_since = now - timedelta(days=days)
                claimed = await repository.claim_inactive_keys(
                    session, principal, now, unused_since, BATCH
                )
                for key, owner in claimed:
                    key.is_active = False
                    key.revoked_reason = REASON
                    key.modified_at = now
                    last = key.last_used_at
                    audit.record(
                        session,
                        principal,
                        Action.API_KEY_REVOKE,
                        ResourceKind.API_KEY,
                        key.uid,
                        key.name,
                        message=(
                            f"revoked for inactivity: unused for more than {days} days "
                            + (f"(last used {rfc3339(last)})" if last else "(never used)")
                        ),
                        changes={"revokedReason": {"old": None, "new": REASON}},
                    )
                    await emit(
                        session,
                        principal,
                        EventType.API_KEY_REVOKED,
                        api_key=key,
                        user=owner,
                        reason=REASON,
                        occurred_at=now,
                    )
                if claimed:
                    await session.flush()
                    await publish(session, *(Invalidation.key(key.uid) for key, _ in claimed))
            revoked += len(claimed)
            if len(claimed) < BATCH:
                break
    if revoked:
        logger.info("inactivity sweep revoked %d keys", revoked)
