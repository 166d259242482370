"""The rules of who is told what."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from keyplane.auth import policy
from keyplane.auth.principal import AuthMethod, Principal
from keyplane.events.types import EventType
from keyplane.kit.errors import Forbidden, NotFound
from keyplane.kit.keys import hint_display
from keyplane.kit.time import as_utc
from keyplane.models import ApiKey, Notification, NotificationStatus, User
from keyplane.notifications import repository
from keyplane.users import repository as users

if TYPE_CHECKING:
    from keyplane.events.service import Event

# What a notification is about (``Notification.kind``): the event's name where one caused it.
EXPIRING_SOON = EventType.API_KEY_EXPIRING_SOON.value
EXPIRED = EventType.API_KEY_EXPIRED.value
DIGEST = "expiryDigest"
# Where people act on their own keys, and where tenant admins see every key.
MY_KEYS_PATH = "/my/api-keys"
TENANT_KEYS_PATH = "/tenant/settings/api-keys"
NOTIFICATIONS_PATH = "/my/notifications"
# How far ahead the digest looks.
DIGEST_DAYS = 7
DIGEST_MAX_KEYS = 100


async def notify(
    session: AsyncSession,
    recipient: User,
    *,
    kind: str,
    subject: str,
    body: str,
    link_path: str,
    dedupe_key: str,
    key_uid: str | None = None,
) -> Notification | None:
    """Writes one notification in the caller's transaction, unless one with the same
    ``dedupe_key`` exists (then None): the key says what makes a notice the same notice
    (e.g. ``expiring:{key uid}:{expiry}:{days}``), so that every instance and every
    restart may try to write it and it still exists once. Never put a key value in it."""
    existing = await session.scalar(
        select(Notification.uid).where(Notification.dedupe_key == dedupe_key)
    )
    if existing is not None:
        return None
    notification = Notification(
        tenant_uid=recipient.tenant_uid,
        user_uid=recipient.uid,
        email=recipient.email,
        kind=kind,
        subject=subject,
        body=body,
        link_path=link_path,
        dedupe_key=dedupe_key,
        key_uid=key_uid,
        status=NotificationStatus.PENDING,
    )
    try:
        # A savepoint: another instance writing the same notice at the same moment makes
        # this insert fail on the unique key, which must not undo the caller's change.
        async with session.begin_nested():
            session.add(notification)
    except IntegrityError:
        return None
    return notification


_KEY_CHANGES = {
    EventType.API_KEY_REVOKED: "revoked",
    EventType.API_KEY_ROTATED: "rotated",
    EventType.API_KEY_DELETED: "deleted",
}


def _when(moment: datetime) -> str:
    return as_utc(moment).strftime("%Y-%m-%d %H:%M UTC")


def _key_label(key: ApiKey) -> str:
    """How a mail names a key: its name and its last characters (never its value)."""
    return f"“{key.name}” ({hint_display(key.key_hint)})"


def _greeting(user: User) -> str:
    return f"Hello {user.first_name or user.full_name},"


def _actor_label(event: Event) -> str:
    principal = event.principal
    if principal.method is AuthMethod.SYSTEM:
        if event.reason == "inactivity":
            return "Keyplane"
        return "Keyplane (an operator on the server)"
    return f"{principal.display_name} ({principal.email})"


def _key_change(event: Event, key: ApiKey, verb: str) -> tuple[str, str, str]:
    """Subject, body and console path of the mail about a change to someone's key."""
    tenant, label = event.principal.tenant_name, _key_label(key)
    subject = f"Your API key “{key.name}” was {verb}"
    lines = [_greeting(event.user) if event.user else "Hello,", ""]
    if event.reason == "inactivity":
        lines.append(
            f"Keyplane revoked your API key {label} in {tenant} on {_when(event.occurred_at)} "
            "because it had not been used for longer than your tenant's policy allows."
        )
    elif event.reason == "policy":
        lines.append(
            f"Keyplane revoked your API key {label} in {tenant} on {_when(event.occurred_at)} "
            "because it no longer meets your tenant's API key policy."
        )
    else:
        lines.append(
            f"{_actor_label(event)} {verb} your API key {label} in {tenant} on "
            f"{_when(event.occurred_at)}."
        )
    if verb == "revoked":
        lines.append("Requests with this key are refused from now on.")
        path = f"{MY_KEYS_PATH}/{key.uid}"
    elif verb == "rotated":
        if key.rotation_grace_ends_at is not None and key.rotated_to_uid is not None:
            lines.append(
                "A new key replaces it; this one keeps working until "
                f"{_when(key.rotation_grace_ends_at)}. The new key's value was shown once "
                "to whoever rotated it: ask them for it, or create a key of your own."
            )
        else:
            lines.append(
                "A new key replaces it. Its value was shown once to whoever rotated it: "
                "ask them for it, or create a key of your own."
            )
        path = f"{MY_KEYS_PATH}/{key.uid}"
    else:
        lines.append("Requests with this key are refused from now on.")
        path = MY_KEYS_PATH
    lines += ["", "Your API keys are listed in the Keyplane console (link below)."]
    return subject, "\n".join(lines), path


async def on_event(session: AsyncSession, event: Event) -> None:
    """A notification for the key's owner when someone else (a tenant admin, or Keyplane's
    inactivity sweep) revoked, rotated or deleted their key. Nothing for what the owner
    did themselves, nor for user events (the person concerned did it, or no longer has
    an account to be told in)."""
    verb = _KEY_CHANGES.get(event.type)
    key, owner = event.api_key, event.user
    if verb is None or key is None or owner is None or event.acted_by_owner:
        return
    if event.reason == "leaked":
        # The leak notice (api_keys.leaks) tells the owner and the admins, revocation included.
        return
    if not owner.is_active:
        return
    subject, body, path = _key_change(event, key, verb)
    await notify(
        session,
        owner,
        kind=event.type.value,
        subject=subject,
        body=body,
        link_path=path,
        # One notice per change, however often the event is looked at.
        dedupe_key=f"{event.type.value}:{key.uid}:{as_utc(event.occurred_at).isoformat()}",
        key_uid=key.uid,
    )


# --- the scans' notices -----------------------------------------------------------------


def _remaining(expires_at: datetime, now: datetime) -> str:
    seconds = (as_utc(expires_at) - now).total_seconds()
    if seconds >= 2 * 86_400:
        return f"in {int(seconds // 86_400)} days"
    if seconds >= 86_400:
        return "in 1 day"
    hours = max(1, round(seconds / 3600))
    return f"in {hours} hour{'s' if hours != 1 else ''}"


def expiring_notice(
    key: ApiKey, owner: User, tenant_name: str, now: datetime
) -> tuple[str, str, str]:
    label = _key_label(key)
    subject = f"Your API key “{key.name}” expires {_remaining(key.expires_at, now)}"
    body = "\n".join(
        [
            _greeting(owner),
            "",
            f"Your API key {label} in {tenant_name} expires on {_when(key.expires_at)} "
            f"({_remaining(key.expires_at, now)}).",
            "After that, requests with it are refused. Extend its expiry, or create a new "
            "key and move your services to it before then.",
        ]
    )
    return subject, body, f"{MY_KEYS_PATH}/{key.uid}"


def expired_notice(key: ApiKey, owner: User, tenant_name: str) -> tuple[str, str, str]:
    label = _key_label(key)
    subject = f"Your API key “{key.name}” has expired"
    body = "\n".join(
        [
            _greeting(owner),
            "",
            f"Your API key {label} in {tenant_name} expired on {_when(key.expires_at)}; "
            "requests with it are refused. Extend its expiry or create a new key.",
        ]
    )
    return subject, body, f"{MY_KEYS_PATH}/{key.uid}"


def digest_notice(
    admin: User,
    tenant_name: str,
    rows: Sequence[tuple[ApiKey, User]],
    total: int,
    now: datetime,
) -> tuple[str, str, str]:
    count = f"{total} API key{'s' if total != 1 else ''}"
    subject = f"{count} in {tenant_name} expire within {DIGEST_DAYS} days"
    lines = [
        _greeting(admin),
        "",
        f"These API keys of {tenant_name} expire within the next {DIGEST_DAYS} days:",
        "",
    ]
    for key, owner in rows:
        lines.append(
            f"- {_key_label(key)}, owned by {owner.full_name} ({owner.email}): "
            f"{_when(key.expires_at)} ({_remaining(key.expires_at, now)})"
        )
    if total > len(rows):
        lines.append(f"- and {total - len(rows)} more")
    lines += [
        "",
        "You receive this digest once a day because you asked for it; turn it off on your "
        f"Notifications page ({NOTIFICATIONS_PATH}).",
    ]
    return subject, "\n".join(lines), TENANT_KEYS_PATH


# --- a person's own notifications and settings ---------------------------------------------


@dataclass(frozen=True, slots=True)
class NotificationSettings:
    expiry_digest: bool
    # Whether this person may ask for the digest (tenant admins only).
    digest_available: bool


async def list_notifications(
    session: AsyncSession, principal: Principal, offset: int, limit: int
) -> tuple[Sequence[Notification], int]:
    """The caller's own notifications, newest first."""
    policy.require_account_access(principal)
    return await repository.list_page(session, principal, offset, limit)


async def _me(session: AsyncSession, principal: Principal) -> User:
    user = await users.get(session, principal, principal.user_uid) if principal.user_uid else None
    if user is None:
        raise NotFound("Only a user has notification settings.", code="UserNotFound")
    return user


async def get_notification_settings(
    session: AsyncSession, principal: Principal
) -> NotificationSettings:
    policy.require_account_access(principal)
    user = await _me(session, principal)
    return NotificationSettings(
        expiry_digest=user.expiry_digest and principal.is_tenant_admin,
        digest_available=principal.is_tenant_admin,
    )


async def set_expiry_digest(session: AsyncSession, principal: Principal, on: bool) -> None:
    """Turns the caller's daily digest of expiring keys on or off. Only tenant admins may
    turn it on (it lists every key of the tenant); anyone may turn it off."""
    policy.require_account_access(principal)
    if on and not principal.is_tenant_admin:
        raise Forbidden("Only tenant admins can receive the daily digest of expiring keys.")
    user = await _me(session, principal)
    await repository.set_expiry_digest(session, user, on)
