from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from keyplane.kit.time import utcnow
from keyplane.models.base import Base, UTCDateTime


class CacheInvalidation(Base):
    """Written in the same transaction as a change that can turn a key invalid. Workers on
    SQLite watch this table to drop cached keys; on PostgreSQL, NOTIFY carries the same."""

    __tablename__ = "cache_invalidations"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    kind: Mapped[str] = mapped_column(String(16))
    uid: Mapped[str] = mapped_column(String(24))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
