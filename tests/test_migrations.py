"""Migrations build the schema from an empty database, and it matches the tables in code."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, text

from controlplane.deploy.options import GateRecord, RunOptions, ScheduleRef
from controlplane.store.db import alembic_config, current_revision, make_engine, migrate
from controlplane.store.runs import RunStore
from controlplane.store.schema import metadata


def check_from_empty(engine: Engine) -> None:
    assert inspect(engine).get_table_names() == []
    migrate(engine)
    head = ScriptDirectory.from_config(alembic_config(engine)).get_current_head()
    assert current_revision(engine) == head
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == [], diff
    migrate(engine)  # applying again at the next start is a no-op
    assert current_revision(engine) == head
    command.downgrade(alembic_config(engine), "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}


def test_sqlite_from_empty(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'new' / 'cp.db'}")
    check_from_empty(engine)
    engine.dispose()


def test_postgresql_from_empty(fresh_pg_url: str) -> None:
    engine = make_engine(fresh_pg_url)
    check_from_empty(engine)
    engine.dispose()


# Runs as the 0003 schema stored them: options as a free-form ``params`` dict.
LEGACY_RUNS = {
    "d" * 32: (
        "deploy",
        {
            "check": False,
            "serial": "50%",
            "max_fail_percentage": 0.0,
            "broken": False,
            "first_install": True,
            "gate": {"reason": "emergency", "message": "freeze payment-run-amsterdam"},
        },
    ),
    "p" * 32: (
        "patch",
        {
            "vars": {"cp_serial": "1", "cp_max_fail_percentage": 0.0},
            "job": "patch-all",
            "window": {"window": "patch-soon", "start_utc": "2026-11-24T04:00:00Z"},
            "silence_id": "abc-123",
        },
    ),
    "m" * 32: ("drift", {"job": "drift-nightly", "due": "2026-11-24T02:00:00+00:00"}),
}


def write_legacy_runs(engine: Engine) -> None:
    created = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
    with engine.begin() as conn:
        for run_id, (kind, params) in LEGACY_RUNS.items():
            conn.execute(
                text(
                    "INSERT INTO runs (id, kind, status, playbook, started_by, reason, member,"
                    " app, version, hosts, params, tuning, created_at, cancel_requested)"
                    " VALUES (:id, :kind, 'successful', :pb, 'jan', '', 'amsterdam',"
                    " 'uitkering', '1.1.0', '[\"lab-1\"]', :params, '{}', :at, false)"
                ),
                {
                    "id": run_id,
                    "kind": kind,
                    "pb": f"{kind}.yml",
                    "params": json.dumps(params),
                    "at": created,
                },
            )
            conn.execute(
                text(
                    "INSERT INTO run_hosts (run_id, host, outcome, ok, changed, failures,"
                    " unreachable, skipped, release_after)"
                    " VALUES (:id, 'lab-1', 'changed', 1, 1, 0, 0, 0, '1.1.0')"
                ),
                {"id": run_id},
            )


def check_legacy_runs_upgrade(engine: Engine) -> None:
    cfg = alembic_config(engine)
    command.upgrade(cfg, "0003")
    write_legacy_runs(engine)
    migrate(engine)
    store = RunStore(engine)
    deploy = store.get("d" * 32)
    assert deploy.options == RunOptions(
        serial="50%",
        max_fail_percentage=0.0,
        first_install=True,
        gate=GateRecord("emergency", "freeze payment-run-amsterdam"),
    )
    assert deploy.lease == 0
    patch = store.get("p" * 32).options
    assert patch.extravars() == {"cp_serial": "1", "cp_max_fail_percentage": 0.0}
    assert patch.schedule == ScheduleRef(
        job="patch-all",
        occurrence=datetime(2026, 11, 24, 4, 0, tzinfo=UTC),
        window="patch-soon",
        silence_id="abc-123",
    )
    missed = store.get("m" * 32).options.schedule
    assert missed == ScheduleRef("drift-nightly", datetime(2026, 11, 24, 2, 0, tzinfo=UTC))
    # Changing the runs table kept what hangs off each run.
    assert [h.release_after for h in store.host_results("p" * 32)] == ["1.1.0"]
    # Going back gives every run its old params unchanged.
    command.downgrade(cfg, "0003")
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT id, params FROM runs")).all()
    restored = {r[0]: r[1] if isinstance(r[1], dict) else json.loads(r[1]) for r in rows}
    assert restored == {k: params for k, (_, params) in LEGACY_RUNS.items()}


def test_sqlite_runs_written_before_typed_options_read_back(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    check_legacy_runs_upgrade(engine)
    engine.dispose()


def test_postgresql_runs_written_before_typed_options_read_back(fresh_pg_url: str) -> None:
    engine = make_engine(fresh_pg_url)
    check_legacy_runs_upgrade(engine)
    engine.dispose()
