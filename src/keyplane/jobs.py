"""Every instance's background work, started by the app's lifespan."""

from __future__ import annotations

from keyplane.kit.background import PeriodicJob
from keyplane.notifications import worker as notifications
from keyplane.policies import sweep
from keyplane.retention import prune_history
from keyplane.runtime import Runtime
from keyplane.webhooks import worker as webhooks

JOBS: tuple[PeriodicJob[Runtime], ...] = (
    PeriodicJob("deliver webhooks", webhooks.deliver_due),
    PeriodicJob("send mail", notifications.send_due),
    # Scans over every tenant's keys: less often.
    PeriodicJob("expiry notices", notifications.queue_expiry_notices, every=12),
    PeriodicJob("expiry digests", notifications.queue_digests, every=12),
    PeriodicJob("inactivity sweep", sweep.revoke_inactive_keys, every=12),
    PeriodicJob("prune history", prune_history, every=120),
)
