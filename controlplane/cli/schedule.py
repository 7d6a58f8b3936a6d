"""``controlplane schedule``: what the scheduler will start, as stored in the database."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from rich.table import Table

from controlplane.app import Context
from controlplane.cli_common import FleetOpt, JsonOpt, out, print_json
from controlplane.scheduler import JOB_TABLE
from controlplane.settings import load_settings

schedule_app = typer.Typer(help="Scheduled maintenance and queued deploys: list and sync.")


class _StoreOnly(BackgroundScheduler):  # type: ignore[misc]
    """Reads and writes the stored schedule and never runs a job: one-shot commands are not
    the service. (A paused scheduler still runs due jobs once while it shuts down.)"""

    def _process_jobs(self) -> float | None:
        return None


@contextmanager
def stored_schedule(ctx: Context) -> Iterator[BackgroundScheduler]:
    """The persistent schedule, opened for reading and writing only."""
    scheduler = _StoreOnly(
        jobstores={"default": SQLAlchemyJobStore(engine=ctx.engine, tablename=JOB_TABLE)},
        timezone="UTC",
    )
    ctx.maintenance.install(scheduler)
    scheduler.start(paused=True)
    try:
        yield scheduler
    finally:
        scheduler.shutdown(wait=False)


@schedule_app.command("list")
def schedule_list(fleet: FleetOpt = None, as_json: JsonOpt = False) -> None:
    """Every stored maintenance job and queued deploy, with its next start."""
    ctx = Context(load_settings(fleet=fleet))
    with stored_schedule(ctx) as scheduler:
        jobs = [
            {
                "id": j.id,
                "name": j.name,
                "next_run": j.next_run_time.isoformat() if j.next_run_time else None,
            }
            for j in scheduler.get_jobs()
            if j.id.split(":", 1)[0] in ("window", "cron", "deploy")
        ]
    if as_json:
        print_json(jobs)
        return
    table = Table(title="Scheduled work")
    for col in ("id", "what", "next start (UTC)"):
        table.add_column(col)
    for j in jobs:
        table.add_row(j["id"], j["name"], j["next_run"] or "-")
    out.print(table)


@schedule_app.command("sync")
def schedule_sync(
    fleet: FleetOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Store each maintenance job's next start from maintenance.yml (serve does this too)."""
    ctx = Context(load_settings(fleet=fleet))
    with stored_schedule(ctx) as scheduler:
        ctx.maintenance.sync()
        count = len(scheduler.get_jobs())
    if as_json:
        print_json({"status": "ok", "jobs": count})
    else:
        out.print(f"schedule synced: {count} stored jobs")
