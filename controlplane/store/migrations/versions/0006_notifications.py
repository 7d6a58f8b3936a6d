"""Webhook notifications: the deliveries outbox and the scanner's watermark.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "notify_deliveries",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("target", sa.String(63), nullable=False),
        sa.Column("event_key", sa.String(300), nullable=False),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("member", sa.String(63)),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("next_attempt_at", TZ),
        sa.Column("last_attempt_at", TZ),
        sa.Column("delivered_at", TZ),
        sa.Column("last_http_status", sa.Integer()),
        sa.Column("last_error", sa.String(300)),
        sa.PrimaryKeyConstraint("id", name="pk_notify_deliveries"),
        sa.UniqueConstraint("target", "event_key", name="uq_notify_deliveries_target"),
    )
    op.create_index(
        "ix_notify_deliveries_status_next", "notify_deliveries", ["status", "next_attempt_at"]
    )
    op.create_index("ix_notify_deliveries_created_at", "notify_deliveries", ["created_at"])
    op.create_table(
        "notify_state",
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("at", TZ, nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_notify_state"),
    )


def downgrade() -> None:
    op.drop_table("notify_state")
    op.drop_index("ix_notify_deliveries_created_at", table_name="notify_deliveries")
    op.drop_index("ix_notify_deliveries_status_next", table_name="notify_deliveries")
    op.drop_table("notify_deliveries")
