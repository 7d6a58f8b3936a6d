"""``controlplane schedule``: what the scheduler will start, as stored in the database."""

from __future__ import annotations

import typer
from rich.table import Table

from controlplane.cli.common import FleetOpt, JsonOpt, context, me, out, print_json
from controlplane.cli.remote import local_only, remote
from controlplane.maintenance.operations import list_schedule, sync_schedule

schedule_app = typer.Typer(help="Scheduled maintenance and queued deploys: list and sync.")


@schedule_app.command("list")
def schedule_list(fleet: FleetOpt = None, as_json: JsonOpt = False) -> None:
    """Every stored maintenance job and queued deploy, with its next start."""
    client = remote(fleet)
    if client is not None:
        with client:
            jobs = client.schedule()
    else:
        jobs = list_schedule(context(fleet), me())
    if as_json:
        print_json(jobs)
        return
    table = Table(title="Scheduled work")
    for col in ("id", "what", "next start (UTC)"):
        table.add_column(col)
    for j in jobs:
        table.add_row(j.id, j.name, j.next_run.isoformat() if j.next_run else "-")
    out.print(table)


@schedule_app.command("sync")
def schedule_sync(
    fleet: FleetOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Store each maintenance job's next start from maintenance.yml (serve does this too)."""
    local_only("schedule sync")
    synced = sync_schedule(context(fleet), me())
    if as_json:
        print_json(synced)
    else:
        out.print(f"schedule synced: {synced.jobs} stored jobs")
