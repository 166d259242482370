"""audit actor first and last names

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("actor_first_name", sa.String(length=64), server_default="", nullable=False)
        )
        batch_op.add_column(
            sa.Column("actor_last_name", sa.String(length=64), server_default="", nullable=False)
        )
    # Earlier events kept only the joined name: take the names from the user where the user
    # still exists, else split at the first space (the best that can be done for them).
    op.execute(
        """
        UPDATE audit_events SET
            actor_first_name = COALESCE(
                (SELECT users.first_name FROM users WHERE users.uid = audit_events.actor_user_uid),
                substr(actor_name, 1, CASE WHEN instr(actor_name, ' ') > 0
                    THEN instr(actor_name, ' ') - 1 ELSE length(actor_name) END)
            ),
            actor_last_name = COALESCE(
                (SELECT users.last_name FROM users WHERE users.uid = audit_events.actor_user_uid),
                CASE WHEN instr(actor_name, ' ') > 0
                    THEN substr(actor_name, instr(actor_name, ' ') + 1) ELSE '' END
            )
        WHERE actor_name <> ''
        """
        if op.get_bind().dialect.name == "sqlite"
        else """
        UPDATE audit_events SET
            actor_first_name = COALESCE(
                (SELECT users.first_name FROM users WHERE users.uid = audit_events.actor_user_uid),
                split_part(actor_name, ' ', 1)
            ),
            actor_last_name = COALESCE(
                (SELECT users.last_name FROM users WHERE users.uid = audit_events.actor_user_uid),
                CASE WHEN position(' ' in actor_name) > 0
                    THEN substr(actor_name, position(' ' in actor_name) + 1) ELSE '' END
            )
        WHERE actor_name <> ''
        """
    )


def downgrade() -> None:
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_column("actor_last_name")
        batch_op.drop_column("actor_first_name")
