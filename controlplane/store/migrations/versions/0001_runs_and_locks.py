"""Runs, per-host results, run events, locks and probe history.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("playbook", sa.String(200), nullable=False),
        sa.Column("started_by", sa.String(200), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("member", sa.String(63)),
        sa.Column("app", sa.String(63)),
        sa.Column("version", sa.String(64)),
        sa.Column("hosts", sa.JSON(), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("tuning", sa.JSON(), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("started_at", TZ),
        sa.Column("finished_at", TZ),
        sa.Column("node", sa.String(200)),
        sa.Column("rc", sa.Integer()),
        sa.Column("error", sa.Text()),
        sa.Column("emergency_reason", sa.Text()),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("heartbeat_at", TZ),
        sa.PrimaryKeyConstraint("id", name="pk_runs"),
    )
    op.create_index("ix_runs_status", "runs", ["status"])
    op.create_index("ix_runs_member_created", "runs", ["member", "created_at"])
    op.create_table(
        "run_hosts",
        sa.Column("run_id", sa.String(32), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("ok", sa.Integer(), nullable=False),
        sa.Column("changed", sa.Integer(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("unreachable", sa.Integer(), nullable=False),
        sa.Column("skipped", sa.Integer(), nullable=False),
        sa.Column("release_before", sa.String(64)),
        sa.Column("release_after", sa.String(64)),
        sa.Column("started_at", TZ),
        sa.Column("finished_at", TZ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name="fk_run_hosts_run_id_runs", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("run_id", "host", name="pk_run_hosts"),
    )
    op.create_table(
        "run_events",
        sa.Column("run_id", sa.String(32), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("event", sa.String(64), nullable=False),
        sa.Column("host", sa.String(255)),
        sa.Column("task", sa.Text()),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name="fk_run_events_run_id_runs", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("run_id", "seq", name="pk_run_events"),
    )
    op.create_table(
        "locks",
        sa.Column("key", sa.String(300), nullable=False),
        sa.Column("run_id", sa.String(32), nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("acquired_at", TZ, nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name="fk_locks_run_id_runs", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("key", "run_id", name="pk_locks"),
    )
    op.create_index("ix_locks_run_id", "locks", ["run_id"])
    op.create_table(
        "probe_samples",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("member", sa.String(63), nullable=False),
        sa.Column("app", sa.String(63), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("at", TZ, nullable=False),
        sa.Column("healthy", sa.Boolean(), nullable=False),
        sa.Column("in_window", sa.Boolean(), nullable=False),
        sa.Column("latency_seconds", sa.Float(), nullable=False),
        sa.Column("version", sa.String(64)),
        sa.Column("error", sa.String(300)),
        sa.PrimaryKeyConstraint("id", name="pk_probe_samples"),
    )
    op.create_index("ix_probe_samples_at", "probe_samples", ["at"])
    op.create_index("ix_probe_samples_member_app_at", "probe_samples", ["member", "app", "at"])
    op.create_table(
        "probe_hourly",
        sa.Column("member", sa.String(63), nullable=False),
        sa.Column("app", sa.String(63), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("hour", TZ, nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("good", sa.Integer(), nullable=False),
        sa.Column("in_window", sa.Integer(), nullable=False),
        sa.Column("good_in_window", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("member", "app", "host", "port", "hour", name="pk_probe_hourly"),
    )
    op.create_index("ix_probe_hourly_hour", "probe_hourly", ["hour"])


def downgrade() -> None:
    op.drop_table("probe_hourly")
    op.drop_table("probe_samples")
    op.drop_table("locks")
    op.drop_table("run_events")
    op.drop_table("run_hosts")
    op.drop_table("runs")
