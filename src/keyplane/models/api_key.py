from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Boolean, ForeignKey, Index, String, UniqueConstraint
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


class ApiKey(Base):
    __tablename__ = "api_keys"
    __table_args__ = (
        UniqueConstraint("user_uid", "name"),
        Index("ix_api_keys_tenant_uid_created_at_uid", "tenant_uid", "created_at", "uid"),
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

    user: Mapped[User] = relationship(lazy="raise")

    def is_expired(self, now: datetime) -> bool:
        return self.expires_at <= now

    def state(self, now: datetime) -> ApiKeyState:
        """Expired wins over active: the key no longer authenticates. Revoked (inactive)
        wins over expired: a revoke is a deliberate act that outlives the expiry (extending
        a revoked key leaves it revoked), and it is what a request with the key is told
        first (``ApiKeyRevoked``, verification's ``REVOKED``)."""
        if not self.is_active:
            return ApiKeyState.INACTIVE
        if self.is_expired(now):
            return ApiKeyState.EXPIRED
        return ApiKeyState.ACTIVE
