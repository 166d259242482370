from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from keyplane.kit.time import utcnow
from keyplane.models.base import Base, UTCDateTime, uid_column


class NotificationStatus:
    PENDING = "pending"  # to be mailed
    SENT = "sent"
    FAILED = "failed"  # gave up after retries
    NOT_MAILED = "notMailed"  # no SMTP configured: listed in the console only


class Notification(Base):
    """A message to one person, written in the transaction of what caused it and mailed
    by whichever instance claims it first (``claimed_until``). ``dedupe_key`` makes each
    notice exist once however many instances or restarts produce it. Never a key value."""

    __tablename__ = "notifications"
    __table_args__ = (
        Index("ix_notifications_status_next_attempt_at", "status", "next_attempt_at"),
        Index("ix_notifications_user_uid_created_at", "user_uid", "created_at"),
    )

    uid: Mapped[str] = uid_column()
    tenant_uid: Mapped[str] = mapped_column(
        String(24), ForeignKey("tenants.uid", ondelete="CASCADE"), index=True
    )
    user_uid: Mapped[str] = mapped_column(String(24), ForeignKey("users.uid", ondelete="CASCADE"))
    # The address at the time it was written: a mail goes where the person was.
    email: Mapped[str] = mapped_column(String(254))
    kind: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str] = mapped_column(String(255))
    body: Mapped[str] = mapped_column(Text)
    key_uid: Mapped[str | None] = mapped_column(String(24), default=None)
    # The console page where the person acts, joined to KEYPLANE_PUBLIC_URL when mailed.
    link_path: Mapped[str] = mapped_column(String(512), default="")
    dedupe_key: Mapped[str] = mapped_column(String(200), unique=True)
    status: Mapped[str] = mapped_column(String(16), default=NotificationStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    last_error: Mapped[str | None] = mapped_column(String(512), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
