"""Alembic environment: the engine is handed in by ``controlplane.store.db.migrate``."""

from __future__ import annotations

from alembic import context

from controlplane.store.schema import metadata

engine = context.config.attributes["engine"]

# APScheduler's job store creates and owns its own table in the same database.
FOREIGN_TABLES = {"apscheduler_jobs"}


def include_object(
    obj: object, name: str | None, type_: str, reflected: bool, compare_to: object
) -> bool:
    return not (type_ == "table" and name in FOREIGN_TABLES)


with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        include_object=include_object,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
