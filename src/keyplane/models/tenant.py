from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from keyplane.kit.time import utcnow
from keyplane.models.base import Base, UTCDateTime, uid_column


class Tenant(Base):
    __tablename__ = "tenants"

    uid: Mapped[str] = uid_column()
    # The "org" people type when they log in; compared case-insensitively.
    name: Mapped[str] = mapped_column(String(64))
    name_key: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
