"""Engines and migrations for SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError

from controlplane.errors import InvalidInput, StoreUnavailable
from controlplane.settings import mask_database_url

MIGRATIONS = Path(__file__).parent / "migrations"


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL, a busy timeout and serialised writers.

    Errors show the URL without its password (it may hold the database's secret)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        masked = mask_database_url(url)
        raise InvalidInput(f"database URL {masked!r} is not a SQLAlchemy URL") from None
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed, connect_args={"timeout": 30})
        _sqlite_immediate(engine)
        return engine
    if parsed.get_backend_name() == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        return create_engine(parsed, pool_pre_ping=True)
    masked = mask_database_url(url)
    raise InvalidInput(f"database URL {masked!r}: only sqlite and postgresql are supported")


def _sqlite_immediate(engine: Engine) -> None:
    # pysqlite's own BEGIN is deferred, so two nodes could both read "lock free" and then
    # both write. BEGIN IMMEDIATE takes the write lock up front: the check-then-insert in
    # the lock repository becomes atomic, as it is under PostgreSQL's advisory lock.
    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision; safe to call at every start."""
    try:
        command.upgrade(alembic_config(engine), "head")
    except OperationalError as exc:
        # Drivers add hint lines ("Is the server running…"); one line is the contract.
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else "unreachable"
        where = engine.url.render_as_string(hide_password=True)
        password = engine.url.password
        if password:
            # libpq quotes the connection string in some messages; never echo the secret.
            reason = reason.replace(str(password), "***")
        raise StoreUnavailable(f"database {where}: {reason}") from None


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()
