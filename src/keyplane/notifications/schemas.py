"""Keyplane's own shapes (Palette has no notifications): camelCase like the rest."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, StrictBool

from keyplane.kit.pagination import ListMeta
from keyplane.kit.schemas import PaletteModel, Rfc3339
from keyplane.models import Notification

NotificationStatusName = Literal["pending", "sent", "failed", "notMailed"]


class NotificationRead(PaletteModel):
    uid: str
    kind: str = Field(description="apiKey.revoked, apiKey.expiringSoon, expiryDigest, ...")
    subject: str
    body: str
    # The console page where the person acts, absolute (KEYPLANE_PUBLIC_URL).
    link: str
    key_uid: str | None = None
    status: NotificationStatusName = Field(
        description="pending (to be mailed), sent, failed (gave up after retries) or "
        "notMailed (the server has no SMTP configured: listed here only)."
    )
    created_at: Rfc3339
    sent_at: Rfc3339 | None = None


class NotificationList(PaletteModel):
    """Newest first; always paged (``limit``, ``offset`` or ``continue``)."""

    items: list[NotificationRead]
    listmeta: ListMeta


class NotificationSettingsRead(PaletteModel):
    expiry_digest: bool = Field(
        description="A daily mail listing the tenant's keys that expire within 7 days."
    )
    expiry_digest_available: bool = Field(description="Tenant admins only.")
    email_enabled: bool = Field(
        description="Whether this server mails notifications (KEYPLANE_SMTP_URL is set)."
    )


class NotificationSettingsUpdate(PaletteModel):
    expiry_digest: StrictBool = Field(
        description="Tenant admins only may turn it on (403 for anyone else); anyone may "
        "turn it off."
    )


def notification_read(notification: Notification, console_url: str) -> NotificationRead:
    path = notification.link_path
    return NotificationRead(
        uid=notification.uid,
        kind=notification.kind,
        subject=notification.subject,
        body=notification.body,
        link=console_url.rstrip("/") + path if path else "",
        key_uid=notification.key_uid,
        status=notification.status,
        created_at=notification.created_at,
        sent_at=notification.sent_at,
    )
