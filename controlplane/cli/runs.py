"""``controlplane runs``: list, show, follow and cancel runs; parse, call, print.

Every command first recovers runs whose owner died, so a shown status is a true one.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.table import Table

from controlplane.cli.common import FleetOpt, JsonOpt, context, err, me, out, print_json
from controlplane.cli.progress import event_line, print_run
from controlplane.cli.remote import local_only, remote
from controlplane.client import StreamEnd, event_record
from controlplane.deploy import operations as ops
from controlplane.deploy.history import (
    RunFilter,
    follow_events,
    list_runs,
    parse_status,
    run_log,
    show_run,
)
from controlplane.deploy.model import RunEvent, RunStatus
from controlplane.errors import InvalidInput, OperationFailed
from controlplane.schemas.runs import CancelOut
from controlplane.windows.operations import parse_time

runs_app = typer.Typer(help="List, show, follow and cancel runs.")

TimeHelp = "ISO 8601; without an offset it is local time in the configured timezone."


@runs_app.command("list")
def runs_list(
    member: Annotated[str | None, typer.Option("--member", help="Only this member.")] = None,
    app: Annotated[str | None, typer.Option("--app", help="Only this app.")] = None,
    status: Annotated[
        list[str] | None, typer.Option("--status", help="Only runs in this status (repeat).")
    ] = None,
    since: Annotated[
        str | None, typer.Option("--since", help=f"Created at or after. {TimeHelp}")
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", help=f"Created before. {TimeHelp}")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000)] = 20,
    cursor: Annotated[
        str | None, typer.Option("--cursor", help="Continue after an earlier page.")
    ] = None,
    fleet: FleetOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The newest runs, with status and who started them (--cursor for the next page)."""
    where = RunFilter(
        member=member,
        app=app,
        statuses=tuple(parse_status(s) for s in status or ()),
        since=parse_time(since, "since"),
        until=parse_time(until, "until"),
    )
    client = remote(fleet)
    if client is not None:
        with client:
            query = {"member": member, "app": app, "status": status, "since": since}
            page = client.runs({**query, "until": until}, limit=limit, cursor=cursor)
    else:
        ctx = context(fleet)
        ops.recover_runs(ctx)
        page = list_runs(ctx, me(), where, limit=limit, cursor=cursor)
    if page.next_cursor:
        err.print(f"more: --cursor {page.next_cursor}", markup=False, highlight=False)
    if as_json:
        print_json(page.runs)
        return
    table = Table(title="Runs")
    for col in ("id", "kind", "member/app", "version", "status", "started by", "created (UTC)"):
        # A plan must read "deploy (plan)" on one line, never as a deploy.
        table.add_column(col, no_wrap=col in ("id", "kind"))
    for r in page.runs:
        table.add_row(
            r.id[:8],
            f"{r.kind} (plan)" if r.check else r.kind,
            f"{r.member or '-'}/{r.app or '-'}",
            r.version or "-",
            r.status,
            r.started_by,
            r.created_at.strftime("%Y-%m-%d %H:%M:%S"),
        )
    out.print(table)


@runs_app.command("show")
def runs_show(
    run_id: Annotated[str, typer.Argument(help="Run id (or a unique prefix of 4+ characters).")],
    follow: Annotated[bool, typer.Option("--follow", help="Stream events until it ends.")] = False,
    log: Annotated[
        bool, typer.Option("--log", help="Print the run's whole output, play by play.")
    ] = False,
    fleet: FleetOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """One run: its hosts, why each failed one failed, and its events (with --follow, live
    until the run ends); with --log, its whole Ansible output, scrubbed of secrets."""
    if log and (follow or as_json):
        raise InvalidInput("--log: prints the output as text; leave out --follow and --json")
    client = remote(fleet)
    if client is not None:
        with client:
            if log:
                _print_log(client.run_log(run_id))
                return
            for item in client.events(run_id) if follow else ():
                if not isinstance(item, StreamEnd):
                    _print_event(event_record(item))
            run = client.run(run_id)
    else:
        ctx = context(fleet)
        ops.recover_runs(ctx)
        if log:
            _print_log(run_log(ctx, me(), run_id))
            return
        if follow:
            for event in follow_events(ctx, me(), run_id, recover=lambda: ops.recover_runs(ctx)):
                _print_event(event)
        run = show_run(ctx, me(), run_id)
    if as_json:
        print_json([run])
        return
    print_run(out, run)


def _print_log(text: str) -> None:
    sys.stdout.write(text)


def _print_event(event: RunEvent) -> None:
    line = event_line(event)
    if line is not None:
        err.print(line, markup=False, highlight=False)


@runs_app.command("cancel")
def runs_cancel(
    run_id: Annotated[str, typer.Argument(help="Run id (or a unique prefix of 4+ characters).")],
    fleet: FleetOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Cancel a run: its ansible process group is ended and the outcome recorded."""
    client = remote(fleet)
    if client is not None:
        with client:
            canceled = client.cancel(run_id)
        shown = CancelOut(id=canceled.id, status=canceled.status, cancel_requested=True)
    else:
        ctx = context(fleet)
        ops.recover_runs(ctx)
        run = ops.cancel(ctx, me(), run_id)
        shown = CancelOut(id=run.id, status=run.status.value, cancel_requested=True)
    if as_json:
        print_json(shown)
    else:
        out.print(f"run {shown.id[:8]}: cancel requested ({shown.status})")


@runs_app.command("execute", hidden=True)
def runs_execute(run_id: str, fleet: FleetOpt = None) -> None:
    """Execute a queued run (used by --no-wait to run detached)."""
    local_only("runs execute")
    ctx = context(fleet)
    run = ops.execute(ctx, run_id)
    if run.status is not RunStatus.SUCCESSFUL:
        raise OperationFailed(f"run {run.id} {run.status.value}: {run.error or ''}")
