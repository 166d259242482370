from __future__ import annotations

from sqlalchemy import ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from keyplane.models.base import Base


class ResourceLimit(Base):
    """A tenant's override of a default limit; absent means the default applies."""

    __tablename__ = "resource_limits"

    tenant_uid: Mapped[str] = mapped_column(
        String(24), ForeignKey("tenants.uid", ondelete="CASCADE"), primary_key=True
    )
    kind: Mapped[str] = mapped_column(String(32), primary_key=True)
    limit: Mapped[int] = mapped_column(Integer)
