from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from keyplane.kit.time import utcnow
from keyplane.models.base import Base, UTCDateTime, uid_column


class LeakReporter:
    """Who told Keyplane about a leak."""

    REPORT = "report"  # POST /v1/apiKeys/leaks (anyone, e.g. ``keyplane scan --report``)
    GITHUB = "github"  # GitHub's secret scanning partner programme, signed by GitHub


class KeyLeak(Base):
    """One sighting of a key's value where it should not be. Never the value itself."""

    __tablename__ = "key_leaks"

    uid: Mapped[str] = uid_column()
    tenant_uid: Mapped[str] = mapped_column(
        String(24), ForeignKey("tenants.uid", ondelete="CASCADE"), index=True
    )
    key_uid: Mapped[str] = mapped_column(
        String(24), ForeignKey("api_keys.uid", ondelete="CASCADE"), index=True
    )
    reporter: Mapped[str] = mapped_column(String(16))
    # Where it was seen, as the reporter said (a URL, "commit", "ci-log"...), cut to fit.
    url: Mapped[str] = mapped_column(String(2048), default="")
    source: Mapped[str] = mapped_column(String(128), default="")
    client_address: Mapped[str] = mapped_column(String(64), default="")
    reported_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
