from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from keyplane.kit.time import utcnow
from keyplane.models.base import Base, UTCDateTime, uid_column


class AuditEvent(Base):
    """One recorded action. Names are copied in so that the record outlives its subjects."""

    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_tenant_uid_occurred_at_uid", "tenant_uid", "occurred_at", "uid"),
    )

    uid: Mapped[str] = uid_column()
    tenant_uid: Mapped[str] = mapped_column(
        String(24), ForeignKey("tenants.uid", ondelete="CASCADE")
    )
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    actor_type: Mapped[str] = mapped_column(String(16))
    actor_user_uid: Mapped[str | None] = mapped_column(String(24), index=True)
    actor_email: Mapped[str] = mapped_column(String(254), default="")
    actor_name: Mapped[str] = mapped_column(String(160), default="")
    # Kept apart as well: a joined name cannot be split back ("Mary Ann" + "van Dyke").
    actor_first_name: Mapped[str] = mapped_column(String(64), default="", server_default="")
    actor_last_name: Mapped[str] = mapped_column(String(64), default="", server_default="")
    auth_method: Mapped[str] = mapped_column(String(16), default="")
    action: Mapped[str] = mapped_column(String(32))
    action_type: Mapped[str] = mapped_column(String(16))
    resource_kind: Mapped[str] = mapped_column(String(32))
    resource_uid: Mapped[str] = mapped_column(String(24), default="")
    resource_name: Mapped[str] = mapped_column(String(254), default="")
    outcome: Mapped[str] = mapped_column(String(16))
    client_address: Mapped[str] = mapped_column(String(64), default="")
    message: Mapped[str] = mapped_column(String(512), default="")
    # What a change changed: {"field": {"old": ..., "new": ...}}; NULL when not recorded.
    changes: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
