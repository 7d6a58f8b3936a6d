"""Why a run failed, per host and as a whole.

``run_hosts.reason`` is the first failing task and its message (scrubbed) of a failed or
unreachable host. ``runs.failure`` says what kind of failure ended a run (``config``,
``unreachable`` or ``failed``), which is what its exit code follows.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("run_hosts", sa.Column("reason", sa.Text(), nullable=True))
    op.add_column("runs", sa.Column("failure", sa.String(16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("run_hosts") as batch:
        batch.drop_column("reason")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("failure")
