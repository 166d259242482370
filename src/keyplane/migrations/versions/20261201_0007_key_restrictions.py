"""key restrictions: scopes, permissions, address ranges, rate limits, credits, owner id
and metadata; the tenant's permission names and roles; audited changes

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Existing keys get no restriction at all: they behave exactly as before.
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("scopes", sa.JSON(), nullable=True))
        batch_op.add_column(
            sa.Column("permissions", sa.JSON(), server_default=sa.text("'[]'"), nullable=False)
        )
        batch_op.add_column(
            sa.Column("permission_roles", sa.JSON(), server_default=sa.text("'[]'"), nullable=False)
        )
        batch_op.add_column(sa.Column("allowed_cidrs", sa.JSON(), nullable=True))
        batch_op.add_column(
            sa.Column("rate_limits", sa.JSON(), server_default=sa.text("'[]'"), nullable=False)
        )
        batch_op.add_column(sa.Column("credits_remaining", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("credits_refill", sa.JSON(), nullable=True))
        batch_op.add_column(
            sa.Column("credits_refilled_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(sa.Column("owner_id", sa.String(length=256), nullable=True))
        batch_op.add_column(sa.Column("meta", sa.JSON(), nullable=True))
        batch_op.create_index(
            "ix_api_keys_tenant_uid_owner_id", ["tenant_uid", "owner_id"], unique=False
        )
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("changes", sa.JSON(), nullable=True))
    op.create_table(
        "permissions",
        sa.Column("uid", sa.String(length=24), nullable=False),
        sa.Column("tenant_uid", sa.String(length=24), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("description", sa.String(length=1024), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_uid"],
            ["tenants.uid"],
            name=op.f("fk_permissions_tenant_uid_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("uid", name=op.f("pk_permissions")),
        sa.UniqueConstraint("tenant_uid", "name", name=op.f("uq_permissions_tenant_uid_name")),
    )
    op.create_table(
        "permission_roles",
        sa.Column("uid", sa.String(length=24), nullable=False),
        sa.Column("tenant_uid", sa.String(length=24), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("description", sa.String(length=1024), nullable=False),
        sa.Column("permissions", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("modified_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_uid"],
            ["tenants.uid"],
            name=op.f("fk_permission_roles_tenant_uid_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("uid", name=op.f("pk_permission_roles")),
        sa.UniqueConstraint("tenant_uid", "name", name=op.f("uq_permission_roles_tenant_uid_name")),
    )


def downgrade() -> None:
    op.drop_table("permission_roles")
    op.drop_table("permissions")
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_column("changes")
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_index("ix_api_keys_tenant_uid_owner_id")
        for column in (
            "meta",
            "owner_id",
            "credits_refilled_at",
            "credits_refill",
            "credits_remaining",
            "rate_limits",
            "allowed_cidrs",
            "permission_roles",
            "permissions",
            "scopes",
        ):
            batch_op.drop_column(column)
