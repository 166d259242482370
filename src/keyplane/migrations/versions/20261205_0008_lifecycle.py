"""key lifecycle: rotation links and revocation reasons on keys, tenant key policies, the
notifications outbox, webhook endpoints with their event outbox and deliveries, and the
admins' expiry digest choice

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "tenant_policies",
        sa.Column("tenant_uid", sa.String(length=24), nullable=False),
        sa.Column("max_lifetime_days", sa.Integer(), nullable=True),
        sa.Column("default_lifetime_days", sa.Integer(), nullable=True),
        sa.Column("expiry_required", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("key_creation", sa.String(length=16), server_default="everyone", nullable=False),
        sa.Column("allowed_cidrs", sa.JSON(), nullable=True),
        sa.Column("inactivity_days", sa.Integer(), nullable=True),
        sa.Column(
            "expiry_notice_days", sa.JSON(), server_default=sa.text("'[7, 1]'"), nullable=False
        ),
        sa.Column("modified_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("modified_by_uid", sa.String(length=24), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_uid"],
            ["tenants.uid"],
            name=op.f("fk_tenant_policies_tenant_uid_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_uid", name=op.f("pk_tenant_policies")),
    )
    op.create_table(
        "webhook_endpoints",
        sa.Column("uid", sa.String(length=24), nullable=False),
        sa.Column("tenant_uid", sa.String(length=24), nullable=False),
        sa.Column("url", sa.String(length=2048), nullable=False),
        sa.Column("description", sa.String(length=1024), nullable=False),
        sa.Column("events", sa.JSON(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("secret_encrypted", sa.String(length=512), nullable=False),
        sa.Column("created_by_uid", sa.String(length=24), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("modified_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("failing_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("disabled_reason", sa.String(length=256), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_uid"],
            ["tenants.uid"],
            name=op.f("fk_webhook_endpoints_tenant_uid_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("uid", name=op.f("pk_webhook_endpoints")),
    )
    with op.batch_alter_table("webhook_endpoints", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_webhook_endpoints_tenant_uid"), ["tenant_uid"], unique=False
        )

    op.create_table(
        "webhook_events",
        sa.Column("uid", sa.String(length=24), nullable=False),
        sa.Column("tenant_uid", sa.String(length=24), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_uid"],
            ["tenants.uid"],
            name=op.f("fk_webhook_events_tenant_uid_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("uid", name=op.f("pk_webhook_events")),
    )
    with op.batch_alter_table("webhook_events", schema=None) as batch_op:
        batch_op.create_index(
            "ix_webhook_events_tenant_uid_created_at", ["tenant_uid", "created_at"], unique=False
        )

    op.create_table(
        "notifications",
        sa.Column("uid", sa.String(length=24), nullable=False),
        sa.Column("tenant_uid", sa.String(length=24), nullable=False),
        sa.Column("user_uid", sa.String(length=24), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("subject", sa.String(length=255), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("key_uid", sa.String(length=24), nullable=True),
        sa.Column("link_path", sa.String(length=512), nullable=False),
        sa.Column("dedupe_key", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(length=512), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_uid"],
            ["tenants.uid"],
            name=op.f("fk_notifications_tenant_uid_tenants"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_uid"],
            ["users.uid"],
            name=op.f("fk_notifications_user_uid_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("uid", name=op.f("pk_notifications")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_notifications_dedupe_key")),
    )
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.create_index(
            "ix_notifications_status_next_attempt_at", ["status", "next_attempt_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_notifications_tenant_uid"), ["tenant_uid"], unique=False
        )
        batch_op.create_index(
            "ix_notifications_user_uid_created_at", ["user_uid", "created_at"], unique=False
        )

    op.create_table(
        "webhook_deliveries",
        sa.Column("uid", sa.String(length=24), nullable=False),
        sa.Column("tenant_uid", sa.String(length=24), nullable=False),
        sa.Column("endpoint_uid", sa.String(length=24), nullable=False),
        sa.Column("event_uid", sa.String(length=24), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("response_status", sa.Integer(), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=True),
        sa.Column("error", sa.String(length=512), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["endpoint_uid"],
            ["webhook_endpoints.uid"],
            name=op.f("fk_webhook_deliveries_endpoint_uid_webhook_endpoints"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["event_uid"],
            ["webhook_events.uid"],
            name=op.f("fk_webhook_deliveries_event_uid_webhook_events"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_uid"],
            ["tenants.uid"],
            name=op.f("fk_webhook_deliveries_tenant_uid_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("uid", name=op.f("pk_webhook_deliveries")),
    )
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.create_index(
            "ix_webhook_deliveries_endpoint_uid_created_at",
            ["endpoint_uid", "created_at"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_webhook_deliveries_event_uid"), ["event_uid"], unique=False
        )
        batch_op.create_index(
            "ix_webhook_deliveries_status_next_attempt_at",
            ["status", "next_attempt_at"],
            unique=False,
        )

    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("rotated_to_uid", sa.String(length=24), nullable=True))
        batch_op.add_column(sa.Column("rotated_from_uid", sa.String(length=24), nullable=True))
        batch_op.add_column(
            sa.Column("rotation_grace_ends_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(sa.Column("revoked_reason", sa.String(length=32), nullable=True))
        batch_op.create_index("ix_api_keys_expires_at", ["expires_at"], unique=False)

    # A plain ADD COLUMN: a batch would copy the table, and on SQLite dropping the old
    # users table cascades to every API key.
    op.add_column(
        "users",
        sa.Column("expiry_digest", sa.Boolean(), server_default=sa.false(), nullable=False),
    )


def downgrade() -> None:
    # Not a batch either (SQLite has DROP COLUMN since 3.35), for the reason above.
    op.drop_column("users", "expiry_digest")

    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_index("ix_api_keys_expires_at")
        batch_op.drop_column("revoked_reason")
        batch_op.drop_column("rotation_grace_ends_at")
        batch_op.drop_column("rotated_from_uid")
        batch_op.drop_column("rotated_to_uid")

    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_webhook_deliveries_status_next_attempt_at")
        batch_op.drop_index(batch_op.f("ix_webhook_deliveries_event_uid"))
        batch_op.drop_index("ix_webhook_deliveries_endpoint_uid_created_at")

    op.drop_table("webhook_deliveries")
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.drop_index("ix_notifications_user_uid_created_at")
        batch_op.drop_index(batch_op.f("ix_notifications_tenant_uid"))
        batch_op.drop_index("ix_notifications_status_next_attempt_at")

    op.drop_table("notifications")
    with op.batch_alter_table("webhook_events", schema=None) as batch_op:
        batch_op.drop_index("ix_webhook_events_tenant_uid_created_at")

    op.drop_table("webhook_events")
    with op.batch_alter_table("webhook_endpoints", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_webhook_endpoints_tenant_uid"))

    op.drop_table("webhook_endpoints")
    op.drop_table("tenant_policies")
