"""leaked keys: each sighting of a key's value (key_leaks), when a key was first reported,
and what a tenant's policy does with a leaked key

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "key_leaks",
        sa.Column("uid", sa.String(length=24), nullable=False),
        sa.Column("tenant_uid", sa.String(length=24), nullable=False),
        sa.Column("key_uid", sa.String(length=24), nullable=False),
        sa.Column("reporter", sa.String(length=16), nullable=False),
        sa.Column("url", sa.String(length=2048), nullable=False),
        sa.Column("source", sa.String(length=128), nullable=False),
        sa.Column("client_address", sa.String(length=64), nullable=False),
        sa.Column("reported_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["key_uid"],
            ["api_keys.uid"],
            name=op.f("fk_key_leaks_key_uid_api_keys"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_uid"],
            ["tenants.uid"],
            name=op.f("fk_key_leaks_tenant_uid_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("uid", name=op.f("pk_key_leaks")),
    )
    with op.batch_alter_table("key_leaks", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_key_leaks_key_uid"), ["key_uid"], unique=False)
        batch_op.create_index(batch_op.f("ix_key_leaks_tenant_uid"), ["tenant_uid"], unique=False)

    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("leaked_at", sa.DateTime(timezone=True), nullable=True))

    with op.batch_alter_table("tenant_policies", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("leak_action", sa.String(length=16), server_default="revoke", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("key_leaks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_key_leaks_tenant_uid"))
        batch_op.drop_index(batch_op.f("ix_key_leaks_key_uid"))
    op.drop_table("key_leaks")
    with op.batch_alter_table("tenant_policies", schema=None) as batch_op:
        batch_op.drop_column("leak_action")
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_column("leaked_at")
