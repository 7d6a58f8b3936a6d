"""The tables. Alembic migrations under ``migrations/`` must produce exactly this schema."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_name)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

runs = Table(
    "runs",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("playbook", String(200), nullable=False),
    Column("started_by", String(200), nullable=False),
    Column("reason", Text, nullable=False, default=""),
    Column("member", String(63)),
    Column("app", String(63)),
    Column("version", String(64)),
    Column("hosts", JSON, nullable=False),
    Column("options", JSON, nullable=False, server_default="{}"),
    Column("tuning", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("started_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)),
    Column("node", String(200)),
    Column("rc", Integer),
    Column("error", Text),
    Column("emergency_reason", Text),
    Column("cancel_requested", Boolean, nullable=False, default=False),
    # Written with the database's clock, never a node's: staleness is judged on it.
    Column("heartbeat_at", DateTime(timezone=True)),
    # The fencing number of the current execution (see RunStore.take_over).
    Column("lease", Integer, nullable=False, default=0, server_default="0"),
    # What kind of failure ended the run: config, unreachable or failed (its exit code).
    Column("failure", String(16)),
    Index("ix_runs_status", "status"),
    Index("ix_runs_member_created", "member", "created_at"),
)

run_hosts = Table(
    "run_hosts",
    metadata,
    Column("run_id", String(32), ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    Column("host", String(255), primary_key=True),
    Column("outcome", String(16), nullable=False),
    Column("ok", Integer, nullable=False, default=0),
    Column("changed", Integer, nullable=False, default=0),
    Column("failures", Integer, nullable=False, default=0),
    Column("unreachable", Integer, nullable=False, default=0),
    Column("skipped", Integer, nullable=False, default=0),
    Column("release_before", String(64)),
    Column("release_after", String(64)),
    Column("started_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)),
    # The first failing task and its message (scrubbed), for a failed or unreachable host.
    Column("reason", Text),
)

run_events = Table(
    "run_events",
    metadata,
    Column("run_id", String(32), ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("event", String(64), nullable=False),
    Column("host", String(255)),
    Column("task", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("data", JSON, nullable=False),
)

# Every probe of an app instance. ``in_window`` says a maintenance window covered the
# instance when it was probed: such probes count neither as up nor as down for the SLA.
probe_samples = Table(
    "probe_samples",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("member", String(63), nullable=False),
    Column("app", String(63), nullable=False),
    Column("host", String(255), nullable=False),
    Column("port", Integer, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("healthy", Boolean, nullable=False),
    Column("in_window", Boolean, nullable=False),
    Column("latency_seconds", Float, nullable=False),
    Column("version", String(64)),
    Column("error", String(300)),
    Index("ix_probe_samples_at", "at"),
    Index("ix_probe_samples_member_app_at", "member", "app", "at"),
)

# Samples older than the retention limit are rolled up into hourly counts, not dropped.
probe_hourly = Table(
    "probe_hourly",
    metadata,
    Column("member", String(63), primary_key=True),
    Column("app", String(63), primary_key=True),
    Column("host", String(255), primary_key=True),
    Column("port", Integer, primary_key=True),
    Column("hour", DateTime(timezone=True), primary_key=True),
    Column("total", Integer, nullable=False),
    Column("good", Integer, nullable=False),
    Column("in_window", Integer, nullable=False),
    Column("good_in_window", Integer, nullable=False),
    Index("ix_probe_hourly_hour", "hour"),
)

locks = Table(
    "locks",
    metadata,
    Column("key", String(300), primary_key=True),
    Column("run_id", String(32), ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    Column("mode", String(16), nullable=False),
    Column("acquired_at", DateTime(timezone=True), nullable=False),
    Index("ix_locks_run_id", "run_id"),
)

# The stack history costs are metered from: one row per (member, app, host) reservation
# interval, all replicas on that host summed; the open row (valid_to NULL) is held now.
reservation_history = Table(
    "reservation_history",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("member", String(63), nullable=False),
    Column("app", String(63), nullable=False),
    Column("host", String(255), nullable=False),
    Column("vcpu", Numeric(12, 3), nullable=False),
    Column("ram_gib", Numeric(12, 3), nullable=False),
    Column("disk_gib", Numeric(12, 3), nullable=False),
    Column("valid_from", DateTime(timezone=True), nullable=False),
    Column("valid_to", DateTime(timezone=True)),
    Index("ix_reservation_history_valid_from", "valid_from"),
    Index("ix_reservation_history_valid_to", "valid_to"),
)

# API tokens. Only a SHA-256 of the whole token is kept (tokens are 256-bit random, so a
# slow hash buys nothing); ``prefix`` is the visible start people recognise in a list.
api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(100), nullable=False),
    Column("prefix", String(16), nullable=False),
    Column("secret_sha256", String(64), nullable=False, unique=True),
    Column("role", String(16), nullable=False),
    Column("members", JSON, nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True)),
    Column("revoked_at", DateTime(timezone=True)),
    Column("last_used_at", DateTime(timezone=True)),
)

# The audit log is a hash chain: ``hash`` covers the entry's canonical JSON and
# ``prev_hash``. ``prev_hash`` is unique, so two writers racing for the same head cannot
# fork the chain: the loser's insert fails and it appends again after the winner.
audit_log = Table(
    "audit_log",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("role", String(16), nullable=False),
    Column("action", String(64), nullable=False),
    Column("member", String(63)),
    Column("target", String(200)),
    Column("reason", Text, nullable=False, default=""),
    Column("outcome", String(32), nullable=False),
    Column("detail", JSON, nullable=False),
    Column("prev_hash", String(64), nullable=False, unique=True),
    Column("hash", String(64), nullable=False, unique=True),
    Index("ix_audit_log_member", "member"),
)

# Webhook notifications (controlplane.notify): one row per (target, event), written by the
# scanner and sent by serve's delivery worker. ``(target, event_key)`` is unique, so two
# scans (or two nodes) that see the same event never send it twice. Rows hold the target's
# name and the payload, never its URL or signing secret.
notify_deliveries = Table(
    "notify_deliveries",
    metadata,
    Column("id", String(40), primary_key=True),  # the webhook-id, the same on every retry
    Column("target", String(63), nullable=False),
    Column("event_key", String(300), nullable=False),
    Column("event_type", String(64), nullable=False),
    Column("member", String(63)),
    Column("payload", JSON, nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("created_at", DateTime(timezone=True), nullable=False),
    # When the next attempt is due; a sender claims a row by moving it forward.
    Column("next_attempt_at", DateTime(timezone=True)),
    Column("last_attempt_at", DateTime(timezone=True)),
    Column("delivered_at", DateTime(timezone=True)),
    Column("last_http_status", Integer),
    Column("last_error", String(300)),
    UniqueConstraint("target", "event_key"),
    Index("ix_notify_deliveries_status_next", "status", "next_attempt_at"),
    Index("ix_notify_deliveries_created_at", "created_at"),
)

# How far the notification scanner has looked (one row per source, e.g. ``scan``).
notify_state = Table(
    "notify_state",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("at", DateTime(timezone=True), nullable=False),
)
