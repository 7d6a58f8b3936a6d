"""Typed run options and run leases.

``runs.params`` (a free-form JSON dict) becomes ``runs.options``, one validated document
per run; every existing row is converted, and its old dict is kept inside the document
under ``legacy_params`` so a downgrade gives it back unchanged. ``runs.lease`` is the
fencing number of the run's current execution.

The conversion is written out here rather than imported, so this migration keeps doing
what it did when it was written however the application's own model changes later.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if 0 <= value <= 100 else None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _utc(value: Any) -> str | None:
    """Window times were stored as ``...Z``; the options document uses ``+00:00``."""
    text = _text(value)
    return None if text is None else text.replace("Z", "+00:00")


def options_from_params(params: dict[str, Any]) -> dict[str, Any]:
    """The options document for a run written with the free-form ``params`` dict."""
    vars_, window = _dict(params.get("vars")), _dict(params.get("window"))
    gate = _dict(params.get("gate")) if isinstance(params.get("gate"), dict) else None
    serial = params.get("serial", vars_.get("cp_serial"))
    max_fail = params.get("max_fail_percentage", vars_.get("cp_max_fail_percentage"))
    broken = vars_.get("cp_broken_versions")
    schedule = None
    if _text(params.get("job")):
        schedule = {
            "job": params["job"],
            "occurrence": _utc(window.get("start_utc")) or _utc(params.get("due")),
            "window": _text(window.get("window")),
            "silence_id": _text(params.get("silence_id")),
        }
    return {
        "check": params.get("check") is True,
        "serial": str(serial) if isinstance(serial, str | int) and str(serial) else None,
        "max_fail_percentage": _number(max_fail),
        "broken": params.get("broken") is True,
        "first_install": params.get("first_install") is True,
        "gate": None
        if gate is None
        else {"reason": str(gate.get("reason", "")), "message": str(gate.get("message", ""))},
        "schedule": schedule,
        "vars": {
            "vault_dir": _text(vars_.get("cp_vault_dir")),
            "broken_versions": broken if isinstance(broken, dict) else {},
        },
        "legacy_params": params,
    }


def params_from_options(options: dict[str, Any]) -> dict[str, Any]:
    """The ``params`` dict of the previous schema, for a downgrade."""
    legacy = options.get("legacy_params")
    if isinstance(legacy, dict):
        return legacy
    params: dict[str, Any] = {
        k: options.get(k) for k in ("check", "serial", "max_fail_percentage", "broken")
    }
    if options.get("first_install"):
        params["first_install"] = True
    if options.get("gate"):
        params["gate"] = options["gate"]
    schedule = _dict(options.get("schedule"))
    if schedule:
        params["job"] = schedule.get("job")
        if schedule.get("silence_id"):
            params["silence_id"] = schedule["silence_id"]
    return params


def _runs(column: str) -> sa.TableClause:
    return sa.table("runs", sa.column("id", sa.String()), sa.column(column, sa.JSON()))


def _convert(source: str, target: str, how: Any) -> None:
    conn = op.get_bind()
    old, new = _runs(source), _runs(target)
    rows = conn.execute(sa.select(old.c.id, old.c[source])).all()
    for run_id, value in rows:
        doc = how(_dict(value))
        conn.execute(sa.update(new).where(new.c.id == run_id).values({target: doc}))


def upgrade() -> None:
    # SQLite (3.35+) adds and drops these columns in place; a batch copy of ``runs`` would
    # drop the table, and its ON DELETE CASCADE would take every run's hosts and events.
    op.add_column("runs", sa.Column("options", sa.JSON(), nullable=False, server_default="{}"))
    op.add_column("runs", sa.Column("lease", sa.Integer(), nullable=False, server_default="0"))
    _convert("params", "options", options_from_params)
    op.drop_column("runs", "params")


def downgrade() -> None:
    op.add_column("runs", sa.Column("params", sa.JSON(), nullable=False, server_default="{}"))
    _convert("options", "params", params_from_options)
    op.drop_column("runs", "lease")
    op.drop_column("runs", "options")
