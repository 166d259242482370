from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, String, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column, relationship

from keyplane.kit.time import utcnow
from keyplane.models.base import Base, UTCDateTime, uid_column
from keyplane.models.tenant import Tenant
from keyplane.roles import Role as Role  # re-exported: keyplane.models.Role


class User(Base):
    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("tenant_uid", "email"),)

    uid: Mapped[str] = uid_column()
    tenant_uid: Mapped[str] = mapped_column(
        String(24), ForeignKey("tenants.uid", ondelete="CASCADE"), index=True
    )
    # Stored lowercased: addresses are compared case-insensitively.
    email: Mapped[str] = mapped_column(String(254))
    first_name: Mapped[str] = mapped_column(String(64), default="")
    last_name: Mapped[str] = mapped_column(String(64), default="")
    password_hash: Mapped[str | None] = mapped_column(String(255), default=None)
    role: Mapped[str] = mapped_column(String(32), default=Role.USER.value)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    modified_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_sign_in_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    # A tenant admin's choice: a daily mail listing the tenant's keys about to expire.
    expiry_digest: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    tenant: Mapped[Tenant] = relationship(lazy="raise")

    @property
    def full_name(self) -> str:
        return " ".join(part for part in (self.first_name, self.last_name) if part) or self.email
