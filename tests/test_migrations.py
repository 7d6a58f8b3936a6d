"""Migrations build the schema from an empty database, and it matches the tables in code."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect

from controlplane.store.db import alembic_config, current_revision, make_engine, migrate
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
