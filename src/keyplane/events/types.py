"""The event vocabulary of webhooks (and of the notifications that follow some events)."""

from __future__ import annotations

from enum import StrEnum


class EventType(StrEnum):
    API_KEY_CREATED = "apiKey.created"
    API_KEY_UPDATED = "apiKey.updated"
    # Also by Keyplane itself: ``data.reason`` says why ("inactivity", "policy", "leaked").
    API_KEY_REVOKED = "apiKey.revoked"
    API_KEY_REACTIVATED = "apiKey.reactivated"
    API_KEY_ROTATED = "apiKey.rotated"
    API_KEY_DELETED = "apiKey.deleted"
    API_KEY_EXPIRING_SOON = "apiKey.expiringSoon"
    API_KEY_EXPIRED = "apiKey.expired"
    # A key that a change of the tenant's policy put outside it (listed on the policy
    # page until an admin acts).
    API_KEY_RESTRICTED_BY_POLICY = "apiKey.restrictedByPolicy"
    # Its value was reported as seen in public (``data.leak``: where, who reported it;
    # ``data.action``: revoked or flagged by the tenant's policy).
    API_KEY_LEAKED = "apiKey.leaked"
    USER_CREATED = "user.created"
    USER_DEACTIVATED = "user.deactivated"
    USER_DELETED = "user.deleted"


ALL_EVENT_TYPES = tuple(EventType)
