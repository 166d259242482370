from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from keyplane.kit.time import utcnow
from keyplane.models.base import Base, UTCDateTime, uid_column


class WebhookEndpoint(Base):
    """Where a tenant wants its events. The signing secret is needed to sign, so it is
    kept encrypted with a key derived from the server secret, never in the clear."""

    __tablename__ = "webhook_endpoints"

    uid: Mapped[str] = uid_column()
    tenant_uid: Mapped[str] = mapped_column(
        String(24), ForeignKey("tenants.uid", ondelete="CASCADE"), index=True
    )
    url: Mapped[str] = mapped_column(String(2048))
    description: Mapped[str] = mapped_column(String(1024), default="")
    # Event types wanted (events.types.EventType values).
    events: Mapped[list[str]] = mapped_column(JSON, default=list)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    secret_encrypted: Mapped[str] = mapped_column(String(512))
    created_by_uid: Mapped[str] = mapped_column(String(24), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    modified_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # Since when every delivery has failed (NULL: the last one succeeded); past the
    # server's limit the endpoint is disabled and ``disabled_reason`` says why.
    failing_since: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    disabled_reason: Mapped[str | None] = mapped_column(String(256), default=None)


class WebhookEvent(Base):
    """One event, written in the transaction of the change it reports (the outbox). Its
    uid is the Standard Webhooks ``webhook-id``: the same on every retry."""

    __tablename__ = "webhook_events"
    __table_args__ = (Index("ix_webhook_events_tenant_uid_created_at", "tenant_uid", "created_at"),)

    uid: Mapped[str] = uid_column()
    tenant_uid: Mapped[str] = mapped_column(
        String(24), ForeignKey("tenants.uid", ondelete="CASCADE")
    )
    type: Mapped[str] = mapped_column(String(64))
    # The whole body sent: {"type", "timestamp", "data"}. Never a key value.
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class DeliveryStatus:
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class WebhookDelivery(Base):
    """One event to one endpoint, claimed by one worker at a time and retried with
    exponential backoff until it succeeds or its time is up."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_status_next_attempt_at", "status", "next_attempt_at"),
        Index("ix_webhook_deliveries_endpoint_uid_created_at", "endpoint_uid", "created_at"),
    )

    uid: Mapped[str] = uid_column()
    tenant_uid: Mapped[str] = mapped_column(
        String(24), ForeignKey("tenants.uid", ondelete="CASCADE")
    )
    endpoint_uid: Mapped[str] = mapped_column(
        String(24), ForeignKey("webhook_endpoints.uid", ondelete="CASCADE")
    )
    event_uid: Mapped[str] = mapped_column(
        String(24), ForeignKey("webhook_events.uid", ondelete="CASCADE"), index=True
    )
    status: Mapped[str] = mapped_column(String(16), default=DeliveryStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    response_status: Mapped[int | None] = mapped_column(Integer, default=None)
    duration_ms: Mapped[int | None] = mapped_column(Integer, default=None)
    error: Mapped[str | None] = mapped_column(String(512), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
