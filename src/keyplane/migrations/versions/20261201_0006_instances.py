"""cache instances: each worker's lease on its key cache, and the confirmation sequence

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# PostgreSQL only: numbers the confirmation requests sent after a change commits (see
# keyplane.kit.invalidation). SQLite numbers changes by the cache_invalidations row id.
SEQUENCE = "cache_invalidation_sequence"


def upgrade() -> None:
    op.create_table(
        "cache_instances",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("label", sa.String(length=255), nullable=False),
        sa.Column("applied_sequence", sa.BigInteger(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cache_instances")),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(sa.text(f"CREATE SEQUENCE {SEQUENCE}"))


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(sa.text(f"DROP SEQUENCE {SEQUENCE}"))
    op.drop_table("cache_instances")
