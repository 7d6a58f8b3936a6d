"""Reservation history: the stack's reservations over time, for cost metering.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "reservation_history",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("member", sa.String(63), nullable=False),
        sa.Column("app", sa.String(63), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("vcpu", sa.Numeric(12, 3), nullable=False),
        sa.Column("ram_gib", sa.Numeric(12, 3), nullable=False),
        sa.Column("disk_gib", sa.Numeric(12, 3), nullable=False),
        sa.Column("valid_from", TZ, nullable=False),
        sa.Column("valid_to", TZ),
        sa.PrimaryKeyConstraint("id", name="pk_reservation_history"),
    )
    op.create_index("ix_reservation_history_valid_from", "reservation_history", ["valid_from"])
    op.create_index("ix_reservation_history_valid_to", "reservation_history", ["valid_to"])


def downgrade() -> None:
    op.drop_index("ix_reservation_history_valid_to", table_name="reservation_history")
    op.drop_index("ix_reservation_history_valid_from", table_name="reservation_history")
    op.drop_table("reservation_history")
