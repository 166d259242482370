from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from keyplane.kit.time import utcnow
from keyplane.models.base import Base, UTCDateTime, uid_column
from keyplane.models.user import User


class ApiKeyState(StrEnum):
    """The one state a key is shown in (console, CLI, filters), in Palette's words: its
    console's Active column reads Active or Inactive, Inactive being a revoked key."""

    ACTIVE = "active"
    INACTIVE = "inactive"  # revoked
    EXPIRED = "expired"
    # Replaced by a rotation whose grace period has ended (``rotated_to_uid``).
    ROTATED = "rotated"


class ApiKey(Base):
    __tablename__ = "api_keys"
    __table_args__ = (
        UniqueConstraint("user_uid", "name"),
        Index("ix_api_keys_tenant_uid_created_at_uid", "tenant_uid", "created_at", "uid"),
        Index("ix_api_keys_tenant_uid_owner_id", "tenant_uid", "owner_id"),
        # The expiry notices' scans (notifications.worker) read keys by expiry.
        Index("ix_api_keys_expires_at", "expires_at"),
    )

    uid: Mapped[str] = uid_column()
    tenant_uid: Mapped[str] = mapped_column(
        String(24), ForeignKey("tenants.uid", ondelete="CASCADE")
    )
    user_uid: Mapped[str] = mapped_column(
        String(24), ForeignKey("users.uid", ondelete="CASCADE"), index=True
    )
    # Who created the key (a tenant admin may create keys for others). A plain uid, not a
    # foreign key: the record must outlive the creator's account.
    created_by_uid: Mapped[str] = mapped_column(String(24))
    name: Mapped[str] = mapped_column(String(128))
    description: Mapped[str] = mapped_column(String(1024), default="")
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    # HMAC-SHA256(server secret, key value), hex. The value itself is never stored.
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # The value's last 4 characters (checksum characters, no secret: see kit/keys.py), to
    # tell keys apart in lists. NULL for keys created before it was kept.
    key_hint: Mapped[str | None] = mapped_column(String(4), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    modified_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)

    # Restrictions: what makes a key narrower than its owner (api_keys.restrictions). A key
    # without any behaves as every key did before they existed.
    # Scopes on Keyplane's own API (auth.scopes); NULL: all its owner may do.
    scopes: Mapped[list[str] | None] = mapped_column(JSON, default=None)
    # The tenant's own permission names, directly and through its permission roles.
    permissions: Mapped[list[str]] = mapped_column(JSON, default=list, server_default=text("'[]'"))
    permission_roles: Mapped[list[str]] = mapped_column(
        JSON, default=list, server_default=text("'[]'")
    )
    # CIDR ranges the key may be used from (kit.cidr); NULL: anywhere.
    allowed_cidrs: Mapped[list[str] | None] = mapped_column(JSON, default=None)
    # [{"name", "limit", "windowSeconds"}], enforced across instances (kit.shared_limits).
    rate_limits: Mapped[list[dict[str, Any]]] = mapped_column(
        JSON, default=list, server_default=text("'[]'")
    )
    # Remaining uses (kit.credits); NULL: unlimited. Spent atomically by verify.
    credits_remaining: Mapped[int | None] = mapped_column(Integer, default=None)
    credits_refill: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    credits_refilled_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    # The tenant's own customer or account id for this key, and a small JSON document,
    # both returned by verify so that a service needs no second lookup.
    owner_id: Mapped[str | None] = mapped_column(String(256), default=None)
    meta: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)

    # Rotation (api_keys.rotation): the key that replaced this one, and the moment this one
    # stops working (``ApiKeyRotated``): the end of the grace period, never past its expiry.
    # Plain uids, not foreign keys: either key may be deleted while the other lives on.
    rotated_to_uid: Mapped[str | None] = mapped_column(String(24), default=None)
    rotated_from_uid: Mapped[str | None] = mapped_column(String(24), default=None)
    rotation_grace_ends_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    # Why a key was revoked when Keyplane itself revoked it ("inactivity", "policy"); NULL
    # when a person did, or when it is active. Cleared by re-activation.
    revoked_reason: Mapped[str | None] = mapped_column(String(32), default=None)
    # When the value was first reported as leaked (api_keys.leaks); every sighting is a
    # KeyLeak row. NULL: never reported. Cleared only by a tenant admin's confirmed
    # re-activation.
    leaked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)

    user: Mapped[User] = relationship(lazy="raise")

    def is_expired(self, now: datetime) -> bool:
        return self.expires_at <= now

    def is_rotated_away(self, now: datetime) -> bool:
        return self.rotation_grace_ends_at is not None and self.rotation_grace_ends_at <= now

    def state(self, now: datetime) -> ApiKeyState:
        """Expired wins over active: the key no longer authenticates. Revoked (inactive)
        wins over expired: a revoke is a deliberate act that outlives the expiry (extending
        a revoked key leaves it revoked), and it is what a request with the key is told
        first (``ApiKeyRevoked``, verification's ``REVOKED``)."""
        if not self.is_active:
            return ApiKeyState.INACTIVE
        if self.is_rotated_away(now):
            return ApiKeyState.ROTATED
        if self.is_expired(now):
            return ApiKeyState.EXPIRED
        return ApiKeyState.ACTIVE
