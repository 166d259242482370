"""The limits on failed authentication, and how they are recorded.

Two limits, for two attacks:

- Per client address (``FailureCounts``: a token bucket on the shared counters of
  ``runtime.limiter``, so that it holds across instances with Redis, and per process
  without): one source trying many keys, tokens or passwords. Only failures take tokens, so valid
  credentials are never slowed down. Refusals are audited, but at most once per address
  per report interval (``FailureLimiter.should_report``), so that refused requests cannot
  be turned into an unbounded number of stored records. An audit record belongs to a
  tenant: it is written when the refused attempt names one (a login for an existing
  account, a revoked or expired key or session); otherwise only the ``keyplane.security``
  log says it.
- Per login email (``login_lockouts``, in the database so that every instance sees it):
  many sources trying passwords for one account. After ``login_lockout_threshold`` wrong
  passwords in a row, logins for that email are refused for ``login_lockout_seconds``,
  whatever the password. The lock is keyed by the email typed, not by the account, and
  applies the same to an email that has no account, so it tells nobody which accounts
  exist. Locking is audited in the tenant of every account with that email.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from keyplane.audit import service as audit
from keyplane.audit.actions import Action, Outcome, ResourceKind
from keyplane.auth import repository
from keyplane.auth.principal import Principal
from keyplane.kit.db import transaction
from keyplane.kit.errors import RateLimited, Unauthorized, too_many_failures
from keyplane.kit.time import as_utc, rfc3339, utcnow
from keyplane.models import LoginLockout
from keyplane.runtime import Runtime

logger = logging.getLogger("keyplane.security")


@dataclass(frozen=True, slots=True)
class Claimed:
    """The account a refused credential belongs to (when it matched one), as the subject
    of an audit record. It says nothing about who sent it: that is the client address."""

    principal: Principal
    credential: str


class CredentialRefused(Unauthorized):
    """An ``Unauthorized`` for a credential that matched an account (revoked, expired,
    deactivated): the account is known, and so is the tenant to audit in."""

    def __init__(self, message: str, *, code: str, claimed: Claimed) -> None:
        super().__init__(message, code=code)
        self.claimed = claimed


def claimed_by(error: Unauthorized) -> Sequence[Claimed]:
    return (error.claimed,) if isinstance(error, CredentialRefused) else ()


class FailureCounts:
    """One client address's failed-authentication bucket, on the shared counters (Redis
    when configured). If Redis cannot answer, the bucket is not enforced (it fails open
    like every rate limit); refusals of bad credentials themselves never depend on it.
    Whether a refusal is due for the audit log stays per process (``auth_failures``)."""

    def __init__(self, runtime: Runtime, client_address: str) -> None:
        self.limiter = runtime.limiter
        self.subject = f"addr:{client_address}"
        self.rate = runtime.settings.auth_failure_rate_per_second
        self.burst = runtime.settings.auth_failure_burst

    async def exhausted(self) -> bool:
        return await self.limiter.exhausted(self.subject, self.rate, self.burst)

    async def record(self) -> bool:
        """Takes a token; False when there was none left (the address is over its limit)."""
        return await self.limiter.record_failure(self.subject, self.rate, self.burst)

    async def retry_after(self) -> int:
        return await self.limiter.retry_after(self.subject, self.rate, self.burst)


async def refuse_over_limit(
    runtime: Runtime,
    client_address: str,
    kind: str,
    find_claimed: Callable[[], Awaitable[Sequence[Claimed]]],
) -> RateLimited:
    """The 429 for a client over its failure limit, recorded when one is due."""
    retry_after = await FailureCounts(runtime, client_address).retry_after()
    if runtime.auth_failures.should_report(client_address):
        interval = runtime.settings.auth_failure_report_interval_seconds
        logger.warning(
            "failed authentications from %s are over the limit (last: %s); refusing them "
            "for %d s (logged at most once per %g s per address)",
            client_address or "-",
            kind,
            retry_after,
            interval,
        )
        message = (
            f"too many failed authentications from this address ({kind}); further attempts "
            f"refused, recorded at most once per {interval:g} s"
        )
        for claimed in await find_claimed():
            await audit.record_separately(
                runtime.sessionmaker,
                claimed.principal,
                Action.AUTH_RATE_LIMITED,
                ResourceKind.USER,
                claimed.principal.user_uid,
                claimed.principal.email,
                outcome=Outcome.FAILURE,
                message=f"{message}; credential: {claimed.credential}",
            )
    return too_many_failures(retry_after)


def account_locked(locked_until: datetime, now: datetime) -> RateLimited:
    """429 rather than 423: it is "too many attempts, come back after Retry-After", which
    HTTP clients and proxies understand (423 is WebDAV's lock on a resource), and it is one
    of the statuses the API documents. The same words whether or not the email has an
    account: they must not tell."""
    retry_after = max(1, math.ceil((locked_until - now).total_seconds()))
    minutes = math.ceil(retry_after / 60)
    return RateLimited(
        "This account is temporarily locked after too many failed logins. Try again after "
        f"{as_utc(locked_until):%Y-%m-%d %H:%M} UTC (in {minutes} minute"
        f"{'' if minutes == 1 else 's'}), or ask a tenant admin to set a new password.",
        code="AccountLocked",
        details={"retryAfterSeconds": retry_after, "lockedUntil": rfc3339(locked_until)},
        headers={"Retry-After": str(retry_after)},
    )


def lockout_subject(runtime: Runtime, email: str) -> str:
    return runtime.secret_hasher.hash_label("login-lockout", email)


def check_not_locked(lockout: LoginLockout | None, now: datetime) -> None:
    if lockout is not None and lockout.locked_until is not None and lockout.locked_until > now:
        raise account_locked(lockout.locked_until, now)


async def record_wrong_password(
    runtime: Runtime,
    subject: str,
    accounts: Sequence[Claimed],
    *,
    audit_attempt: bool,
) -> RateLimited | None:
    """Counts a wrong password for the email; returns the lock error when this one locked
    it. ``accounts`` are the accounts with that email (none when it has none)."""
    settings = runtime.settings
    now = utcnow()
    locked_until: datetime | None = None
    async with transaction(runtime.sessionmaker) as session:
        if audit_attempt:
            for account in accounts:
                audit.record(
                    session,
                    account.principal,
                    Action.LOGIN,
                    ResourceKind.USER,
                    account.principal.user_uid,
                    account.principal.email,
                    outcome=Outcome.FAILURE,
                    message="wrong password",
                )
        window_start = now - timedelta(seconds=settings.login_lockout_window_seconds)
        count = await repository.count_failed_login(session, subject, now, window_start)
        if count >= settings.login_lockout_threshold:
            locked_until = now + timedelta(seconds=settings.login_lockout_seconds)
            threshold = settings.login_lockout_threshold
            # Several instances may see the threshold at once: one locks and audits.
            if await repository.lock_login(session, subject, threshold, locked_until):
                for account in accounts:
                    audit.record(
                        session,
                        account.principal,
                        Action.LOGIN_LOCKOUT,
                        ResourceKind.USER,
                        account.principal.user_uid,
                        account.principal.email,
                        outcome=Outcome.FAILURE,
                        message=(
                            f"{count} failed logins in a row: locked until {rfc3339(locked_until)}"
                        ),
                    )
    if runtime.login_failure_pruning.due():
        await _prune(runtime, now)
    return None if locked_until is None else account_locked(locked_until, now)


async def _prune(runtime: Runtime, now: datetime) -> None:
    # Emails that never reach the threshold (an attacker spraying many) leave rows behind;
    # once their window has passed they mean nothing. A transaction of its own, so that it
    # never holds the row of the failure just counted while waiting for others.
    stale_before = now - timedelta(seconds=runtime.settings.login_lockout_window_seconds)
    async with transaction(runtime.sessionmaker) as session:
        await repository.prune_login_lockouts(session, stale_before, now)
