"""Mail sending and the scans that write notices.

Every instance runs these (``keyplane.jobs``); each notice still exists once and is mailed
once:

- the scans write notices through ``notify``, whose unique ``dedupe_key`` makes a second
  writer (another instance, a restart) a no-op; the ``apiKey.expiringSoon`` and
  ``apiKey.expired`` events are emitted in the same transaction, and only by the writer
  whose notice row was new, so they too exist once;
- ``send_due`` claims rows in the database (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, the
  single writer on SQLite) with a lease, sends outside any transaction, then records the
  outcome only if its lease still holds. The lease is sized so that a sender never still
  sends when it runs out. The one way to get a mail twice is an instance dying between
  the SMTP server's acceptance and the commit of ``sent``: its lease runs out and the
  mail goes again, with the same ``X-Keyplane-Notification`` header.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from keyplane.events.service import emit
from keyplane.events.types import EventType
from keyplane.kit import mail
from keyplane.kit.db import transaction
from keyplane.kit.time import as_utc, utcnow
from keyplane.models import Notification, NotificationStatus
from keyplane.notifications import repository, service
from keyplane.runtime import Runtime
from keyplane.tenants.service import system_principal

logger = logging.getLogger("keyplane.notifications")

SEND_BATCH = 20
SCAN_BATCH = 200
# Retries: exponential from 30 s, at most an hour apart, for up to MAX_ATTEMPTS sends or
# GIVE_UP_AFTER since the notification was written, whichever comes first.
FIRST_RETRY_SECONDS = 30.0
MAX_RETRY_SECONDS = 3600.0
MAX_ATTEMPTS = 12
GIVE_UP_AFTER = timedelta(hours=24)
# Keys that expired this long ago at most still get their ``expired`` notice and event
# (an instance that was down for a while catches up; older ones are left alone).
EXPIRED_LOOKBACK = timedelta(days=7)


def retry_delay(attempts: int) -> timedelta:
    """After the ``attempts``-th failed send."""
    seconds = min(MAX_RETRY_SECONDS, FIRST_RETRY_SECONDS * 2 ** max(0, attempts - 1))
    return timedelta(seconds=seconds)


def _link(runtime: Runtime, path: str) -> str:
    return runtime.settings.console_url.rstrip("/") + path if path else ""


def _mail_body(runtime: Runtime, notification: Notification) -> str:
    link = _link(runtime, notification.link_path)
    body = notification.body.rstrip()
    if link:
        body += f"\n\nOpen in Keyplane: {link}"
    return body + "\n\n-- \nKeyplane, API key management. This mail was sent automatically.\n"


async def send_due(runtime: Runtime) -> None:
    """Claims pending notifications and mails them (or lists them, without SMTP)."""
    settings = runtime.settings
    if settings.smtp_url is None:
        async with transaction(runtime.sessionmaker) as session:
            await repository.mark_pending_not_mailed(session)
        return
    server = mail.parse_smtp_url(settings.smtp_url.get_secret_value())
    timeout = settings.smtp_timeout_seconds
    # The longest one send may take; the lease covers a few of them and every send starts
    # only while the lease has at least that much left, so that no claim runs out while
    # its mail is still being sent.
    per_send = timedelta(seconds=timeout * mail.SEND_TIMEOUT_FACTOR)
    margin = timedelta(seconds=5)
    while True:
        now = utcnow()
        lease_until = now + max(timedelta(seconds=60), 4 * per_send + margin)
        async with transaction(runtime.sessionmaker) as session:
            claimed = await repository.claim_due(session, now, lease_until, SEND_BATCH)
        if not claimed:
            return
        for notification in claimed:
            if utcnow() + per_send + margin > lease_until:
                # The rest are claimed until the lease ends and retaken after it.
                break
            await _send_one(runtime, server, notification, lease_until)
        if len(claimed) < SEND_BATCH:
            return


async def _send_one(
    runtime: Runtime, server: mail.SmtpServer, notification: Notification, lease_until: datetime
) -> None:
    settings = runtime.settings
    message = mail.build_message(
        sender=settings.smtp_from,
        recipient=notification.email,
        subject=notification.subject,
        body=_mail_body(runtime, notification),
        notification_uid=notification.uid,
    )
    try:
        await mail.send(server, message, timeout_seconds=settings.smtp_timeout_seconds)
    except mail.MailError as exc:
        attempts = notification.attempts + 1
        now = utcnow()
        gave_up = (
            exc.permanent
            or attempts >= MAX_ATTEMPTS
            or now - as_utc(notification.created_at) >= GIVE_UP_AFTER
        )
        logger.warning(
            "notification %s not sent (attempt %d%s): %s",
            notification.uid,
            attempts,
            ", giving up" if gave_up else "",
            exc,
        )
        async with transaction(runtime.sessionmaker) as session:
            await repository.finish(
                session,
                notification.uid,
                lease_until,
                attempts=attempts,
                last_error=str(exc)[:500],
                status=NotificationStatus.FAILED if gave_up else NotificationStatus.PENDING,
                next_attempt_at=now + retry_delay(attempts),
            )
        return
    async with transaction(runtime.sessionmaker) as session:
        await repository.finish(
            session,
            notification.uid,
            lease_until,
            attempts=notification.attempts + 1,
            status=NotificationStatus.SENT,
            sent_at=utcnow(),
            last_error=None,
        )


async def queue_expiry_notices(runtime: Runtime) -> None:
    """Writes the notices of keys expiring within their tenant's notice days, and the
    ``apiKey.expiringSoon`` / ``apiKey.expired`` events, each once.

    A key gets one notice per (expiry, notice day): the smallest of its tenant's notice
    days that it is now within (a key created 3 days before its expiry gets the 7-day
    notice at once and the 1-day notice later; an instance that was down past a notice day
    writes only the one still meaningful). An extended expiry is a new expiry, with notices
    of its own. Keys are read in bounded batches (keyset over expiry and uid), each batch
    in a transaction of its own."""
    now = utcnow()
    async with transaction(runtime.sessionmaker, writes=False) as session:
        policy_days = await repository.notice_days_by_tenant(session)
    defaults = repository.default_notice_days()
    horizon = max((max(days) for days in [defaults, *policy_days.values()] if days), default=0)
    if horizon:
        await _scan(runtime, now, now, now + timedelta(days=horizon), policy_days, expired=False)
    await _scan(runtime, now, now - EXPIRED_LOOKBACK, now, policy_days, expired=True)


async def _scan(
    runtime: Runtime,
    now: datetime,
    start: datetime,
    end: datetime,
    policy_days: dict[str, tuple[int, ...]],
    *,
    expired: bool,
) -> None:
    defaults = repository.default_notice_days()
    after: tuple[datetime, str] | None = None
    while True:
        async with transaction(runtime.sessionmaker) as session:
            rows = await repository.active_keys_expiring_between(
                session, start, end, after, SCAN_BATCH
            )
            for key, owner in rows:
                tenant = await repository.tenant(session, key.tenant_uid)
                if tenant is None:
                    continue
                expires_at = as_utc(key.expires_at)
                expiry = expires_at.isoformat()
                if expired:
                    subject, body, path = service.expired_notice(key, owner, tenant.name)
                    kind, dedupe_key = service.EXPIRED, f"expired:{key.uid}:{expiry}"
                    event = EventType.API_KEY_EXPIRED
                else:
                    days = policy_days.get(key.tenant_uid, defaults)
                    within = [d for d in days if expires_at - now <= timedelta(days=d)]
                    if not within:
                        continue
                    notice_day = min(within)
                    subject, body, path = service.expiring_notice(key, owner, tenant.name, now)
                    kind = service.EXPIRING_SOON
                    dedupe_key = f"expiring:{key.uid}:{expiry}:{notice_day}"
                    event = EventType.API_KEY_EXPIRING_SOON
                written = await service.notify(
                    session,
                    owner,
                    kind=kind,
                    subject=subject,
                    body=body,
                    link_path=path,
                    dedupe_key=dedupe_key,
                    key_uid=key.uid,
                )
                if written is not None:
                    extra = {} if expired else {"daysBefore": notice_day}
                    await emit(
                        session,
                        system_principal(tenant),
                        event,
                        api_key=key,
                        user=owner,
                        extra=extra,
                        occurred_at=now,
                    )
        if len(rows) < SCAN_BATCH:
            return
        last = rows[-1][0]
        after = (last.expires_at, last.uid)


async def queue_digests(runtime: Runtime) -> None:
    """Writes the daily digest for tenant admins who asked for one: once per UTC day each,
    listing their tenant's keys that expire within ``DIGEST_DAYS`` (none: no digest)."""
    now = utcnow()
    day = now.astimezone(UTC).date().isoformat()
    after = ""
    while True:
        async with transaction(runtime.sessionmaker) as session:
            admins = await repository.digest_recipients(session, after, SCAN_BATCH)
            for admin in admins:
                dedupe_key = f"digest:{admin.uid}:{day}"
                if await repository.exists(session, dedupe_key):
                    continue
                rows, total = await repository.tenant_keys_expiring_between(
                    session,
                    admin.tenant_uid,
                    now,
                    now + timedelta(days=service.DIGEST_DAYS),
                    service.DIGEST_MAX_KEYS,
                )
                if not rows:
                    continue
                tenant = await repository.tenant(session, admin.tenant_uid)
                if tenant is None:
                    continue
                subject, body, path = service.digest_notice(admin, tenant.name, rows, total, now)
                await service.notify(
                    session,
                    admin,
                    kind=service.DIGEST,
                    subject=subject,
                    body=body,
                    link_path=path,
                    dedupe_key=dedupe_key,
                )
        if len(admins) < SCAN_BATCH:
            return
        after = admins[-1].uid
