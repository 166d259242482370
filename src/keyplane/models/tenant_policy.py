from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String, false, text
from sqlalchemy.orm import Mapped, mapped_column

from keyplane.kit.time import utcnow
from keyplane.models.base import Base, UTCDateTime

# Days before a key's expiry on which its owner is mailed, when the tenant says nothing.
DEFAULT_EXPIRY_NOTICE_DAYS = (7, 1)


class KeyCreation:
    """Who may create API keys in a tenant."""

    EVERYONE = "everyone"
    ADMINS = "admins"


class LeakAction:
    """What Keyplane does with a key reported as leaked."""

    REVOKE = "revoke"
    FLAG = "flag"


class TenantPolicy(Base):
    """A tenant's API key policy (Tenant Settings > API Key Policy). No row: the defaults,
    which are Keyplane's behaviour without a policy (server limits only)."""

    __tablename__ = "tenant_policies"

    tenant_uid: Mapped[str] = mapped_column(
        String(24), ForeignKey("tenants.uid", ondelete="CASCADE"), primary_key=True
    )
    # Within the server's KEYPLANE_API_KEY_MAX_LIFETIME_DAYS; NULL: the server's.
    max_lifetime_days: Mapped[int | None] = mapped_column(Integer, default=None)
    # For a key created without an expiry; NULL: the server's default (capped by the max).
    default_lifetime_days: Mapped[int | None] = mapped_column(Integer, default=None)
    # True: a key must be created with an explicit expiry (no default is applied).
    expiry_required: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    key_creation: Mapped[str] = mapped_column(
        String(16), default=KeyCreation.EVERYONE, server_default=KeyCreation.EVERYONE
    )
    # Every key of the tenant must stay within these ranges; NULL: no tenant-wide bound.
    allowed_cidrs: Mapped[list[str] | None] = mapped_column(JSON, default=None)
    # Revoke keys unused (last used, else created) for this many days; NULL: never.
    inactivity_days: Mapped[int | None] = mapped_column(Integer, default=None)
    expiry_notice_days: Mapped[list[int]] = mapped_column(
        JSON, default=lambda: list(DEFAULT_EXPIRY_NOTICE_DAYS), server_default=text("'[7, 1]'")
    )
    leak_action: Mapped[str] = mapped_column(
        String(16), default=LeakAction.REVOKE, server_default=LeakAction.REVOKE
    )
    modified_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    modified_by_uid: Mapped[str] = mapped_column(String(24), default="")
