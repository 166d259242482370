"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "tenants",
        sa.Column("uid", sa.String(length=24), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("name_key", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("uid", name=op.f("pk_tenants")),
        sa.UniqueConstraint("name_key", name=op.f("uq_tenants_name_key")),
    )
    op.create_table(
        "audit_events",
        sa.Column("uid", sa.String(length=24), nullable=False),
        sa.Column("tenant_uid", sa.String(length=24), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor_type", sa.String(length=16), nullable=False),
        sa.Column("actor_user_uid", sa.String(length=24), nullable=True),
        sa.Column("actor_email", sa.String(length=254), nullable=False),
        sa.Column("actor_name", sa.String(length=160), nullable=False),
        sa.Column("auth_method", sa.String(length=16), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("action_type", sa.String(length=16), nullable=False),
        sa.Column("resource_kind", sa.String(length=32), nullable=False),
        sa.Column("resource_uid", sa.String(length=24), nullable=False),
        sa.Column("resource_name", sa.String(length=254), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("client_address", sa.String(length=64), nullable=False),
        sa.Column("message", sa.String(length=512), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_uid"],
            ["tenants.uid"],
            name=op.f("fk_audit_events_tenant_uid_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("uid", name=op.f("pk_audit_events")),
    )
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_audit_events_actor_user_uid"), ["actor_user_uid"], unique=False
        )
        batch_op.create_index(
            "ix_audit_events_tenant_uid_occurred_at_uid",
            ["tenant_uid", "occurred_at", "uid"],
            unique=False,
        )

    op.create_table(
        "resource_limits",
        sa.Column("tenant_uid", sa.String(length=24), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("limit", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_uid"],
            ["tenants.uid"],
            name=op.f("fk_resource_limits_tenant_uid_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_uid", "kind", name=op.f("pk_resource_limits")),
    )
    op.create_table(
        "users",
        sa.Column("uid", sa.String(length=24), nullable=False),
        sa.Column("tenant_uid", sa.String(length=24), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("first_name", sa.String(length=64), nullable=False),
        sa.Column("last_name", sa.String(length=64), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=True),
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("modified_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_sign_in_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_uid"],
            ["tenants.uid"],
            name=op.f("fk_users_tenant_uid_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("uid", name=op.f("pk_users")),
        sa.UniqueConstraint("tenant_uid", "email", name=op.f("uq_users_tenant_uid_email")),
    )
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_users_tenant_uid"), ["tenant_uid"], unique=False)

    op.create_table(
        "api_keys",
        sa.Column("uid", sa.String(length=24), nullable=False),
        sa.Column("tenant_uid", sa.String(length=24), nullable=False),
        sa.Column("user_uid", sa.String(length=24), nullable=False),
        sa.Column("created_by_uid", sa.String(length=24), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("description", sa.String(length=1024), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("modified_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_uid"],
            ["tenants.uid"],
            name=op.f("fk_api_keys_tenant_uid_tenants"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_uid"], ["users.uid"], name=op.f("fk_api_keys_user_uid_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("uid", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_api_keys_key_hash")),
        sa.UniqueConstraint("user_uid", "name", name=op.f("uq_api_keys_user_uid_name")),
    )
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.create_index(
            "ix_api_keys_tenant_uid_created_at_uid",
            ["tenant_uid", "created_at", "uid"],
            unique=False,
        )
        batch_op.create_index(batch_op.f("ix_api_keys_user_uid"), ["user_uid"], unique=False)

    op.create_table(
        "auth_sessions",
        sa.Column("uid", sa.String(length=24), nullable=False),
        sa.Column("tenant_uid", sa.String(length=24), nullable=False),
        sa.Column("user_uid", sa.String(length=24), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("max_expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_uid"],
            ["tenants.uid"],
            name=op.f("fk_auth_sessions_tenant_uid_tenants"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_uid"],
            ["users.uid"],
            name=op.f("fk_auth_sessions_user_uid_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("uid", name=op.f("pk_auth_sessions")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_auth_sessions_token_hash")),
    )
    with op.batch_alter_table("auth_sessions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_auth_sessions_user_uid"), ["user_uid"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("auth_sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_auth_sessions_user_uid"))

    op.drop_table("auth_sessions")
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_api_keys_user_uid"))
        batch_op.drop_index("ix_api_keys_tenant_uid_created_at_uid")

    op.drop_table("api_keys")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_users_tenant_uid"))

    op.drop_table("users")
    op.drop_table("resource_limits")
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_events_tenant_uid_occurred_at_uid")
        batch_op.drop_index(batch_op.f("ix_audit_events_actor_user_uid"))

    op.drop_table("audit_events")
    op.drop_table("tenants")
