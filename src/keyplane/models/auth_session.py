from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from keyplane.kit.time import utcnow
from keyplane.models.base import Base, UTCDateTime, uid_column


class AuthSession(Base):
    """One login. Its token rotates on renewal; logging out revokes it."""

    __tablename__ = "auth_sessions"

    uid: Mapped[str] = uid_column()
    tenant_uid: Mapped[str] = mapped_column(
        String(24), ForeignKey("tenants.uid", ondelete="CASCADE")
    )
    user_uid: Mapped[str] = mapped_column(
        String(24), ForeignKey("users.uid", ondelete="CASCADE"), index=True
    )
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Renewal never extends a session past this point: a stolen token cannot live forever.
    max_expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
