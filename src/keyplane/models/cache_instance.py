from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from keyplane.models.base import Base, UTCDateTime


class CacheInstance(Base):
    """One row per running worker process that keeps a key cache: its lease on that cache.

    A change that invalidates cached keys waits, before it answers, until every row whose
    lease has not run out has ``applied_sequence`` at or past the change's sequence (see
    ``keyplane.kit.invalidation``). A worker renews its lease only while the row is still
    live, and trusts its cache only while it knows the lease is."""

    __tablename__ = "cache_instances"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    # For operators: host and process id of the worker.
    label: Mapped[str] = mapped_column(String(255))
    applied_sequence: Mapped[int] = mapped_column(BigInteger)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
