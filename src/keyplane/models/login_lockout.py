from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from keyplane.models.base import Base, UTCDateTime


class LoginLockout(Base):
    """Failed passwords in a row for one login email, and the lock they led to.

    Keyed by a keyed hash of the email as typed (lowercased), not by user: an email that
    belongs to no account counts and locks exactly like one that does, so that the lockout
    never tells anyone whether an account exists. The hash also keeps out of the table
    whatever people type into the email field (sometimes their password).
    """

    __tablename__ = "login_lockouts"

    subject_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    failed_count: Mapped[int] = mapped_column(Integer, default=0)
    last_failed_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
