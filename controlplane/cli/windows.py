"""``controlplane windows ...``: list occurrences, check the gate, find conflicts, export .ics.

Parse the options, call the windows operations, print. A refused check exits 3 after
printing the decision, so stdout holds only that decision.
"""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo

import typer
from rich.table import Table

from controlplane.cli.common import FleetOpt, JsonOpt, context, me, out, print_json
from controlplane.cli.remote import remote
from controlplane.schemas.windows import DecisionOut, OccurrenceOut
from controlplane.settings import load_settings
from controlplane.windows import operations as ops
from controlplane.windows.operations import parse_time

EXIT_REFUSED = 3

windows_app = typer.Typer(
    help="Maintenance windows and freezes: list occurrences, check the gate, conflicts, .ics.",
    no_args_is_help=True,
)
TimeHelp = "ISO 8601 time; without an offset it is local time in the configured timezone."
AtOpt = Annotated[str | None, typer.Option("--at", help=f"When (default now). {TimeHelp}")]
FromOpt = Annotated[
    str | None, typer.Option("--from", help=f"Range start (default now). {TimeHelp}")
]
ToOpt = Annotated[str | None, typer.Option("--to", help=f"Range end. {TimeHelp}")]


def _local_text(utc_text: str, zone: ZoneInfo, fmt: str = "%Y-%m-%d %H:%M %Z") -> str:
    at = datetime.fromisoformat(utc_text.replace("Z", "+00:00"))
    return at.astimezone(zone).strftime(fmt)


def _span_local(o: OccurrenceOut) -> str:
    start, end = datetime.fromisoformat(o.start_local), datetime.fromisoformat(o.end_local)
    zone = ZoneInfo(o.timezone)
    start, end = start.astimezone(zone), end.astimezone(zone)
    if start.date() == end.date():
        return f"{start:%a %Y-%m-%d %H:%M %Z} to {end:%H:%M %Z}"
    return f"{start:%a %Y-%m-%d %H:%M %Z} to {end:%a %Y-%m-%d %H:%M %Z}"


def _utc_span(o: OccurrenceOut) -> str:
    start = o.start_utc.replace("T", " ")[:16]
    end = o.end_utc.replace("T", " ")[:16]
    return f"{start} to {end}Z"


@windows_app.command("list")
def list_occurrences(
    member: Annotated[str | None, typer.Option("--member", help="Only windows gating it.")] = None,
    start: FromOpt = None,
    end: ToOpt = None,
    fleet: FleetOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List window and freeze occurrences in local time and UTC (default: the next 30 days)."""
    begin, until = parse_time(start, "from"), parse_time(end, "to")
    client = remote(fleet)
    if client is not None:
        with client:
            found = client.windows({"member": member, "from": start, "to": end})
    else:
        found = ops.list_occurrences(context(fleet), me(), member, begin, until)
    if as_json:
        print_json(found)
        return
    table = Table(title=f"Windows and freezes {found.start} .. {found.end}")
    table.add_column("window", no_wrap=True)
    for col in ("kind", "scope", "local time", "UTC"):
        table.add_column(col)
    for o in found.occurrences:
        table.add_row(
            o.window,
            o.kind,
            ops.scope_text(o.scope),
            _span_local(o),
            _utc_span(o),
            style="red" if o.kind == "freeze" else None,
        )
    out.print(table)


def _show(decision: DecisionOut, as_json: bool, zone: ZoneInfo) -> None:
    if as_json:
        print_json(decision)
    else:
        colour = "green" if decision.allowed else "red"
        out.print(f"[{colour}]{decision.status.upper()}[/{colour}] ({decision.reason})")
        out.print(decision.message, markup=False, highlight=False)
        if decision.hosts:
            out.print(f"hosts touched: {', '.join(decision.hosts)}", highlight=False)
        if decision.next_allowed and not decision.allowed:
            out.print(
                f"next opening: {_local_text(decision.next_allowed, zone)} "
                f"({decision.next_allowed})",
                highlight=False,
            )
    if not decision.allowed:
        # The decision is printed; exiting directly keeps stdout the only output.
        raise typer.Exit(EXIT_REFUSED)


@windows_app.command("check")
def check(
    member: Annotated[str, typer.Argument(help="Member slug.")],
    app: Annotated[str | None, typer.Option("--app", help="Only this app's instances.")] = None,
    at: AtOpt = None,
    fleet: FleetOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Say whether a change to MEMBER may start now (or --at); exit 0 allowed, 3 refused."""
    when = parse_time(at, "at")
    client = remote(fleet)
    if client is not None:
        with client:
            decision = client.check({"member": member, "app": app, "at": at})
        _show(decision, as_json, _zone())
        return
    ctx = context(fleet)
    decision = ops.check_member(ctx, me(), member, app, when)
    _show(decision, as_json, ZoneInfo(ctx.settings.timezone))


@windows_app.command("check-host")
def check_host(
    host: Annotated[str, typer.Argument(help="Host name.")],
    at: AtOpt = None,
    fleet: FleetOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Say whether host work (patching) on HOST may start; exit 0 allowed, 3 refused."""
    when = parse_time(at, "at")
    client = remote(fleet)
    if client is not None:
        with client:
            decision = client.check_host({"host": host, "at": at})
        _show(decision, as_json, _zone())
        return
    ctx = context(fleet)
    decision = ops.check_host(ctx, me(), host, when)
    _show(decision, as_json, ZoneInfo(ctx.settings.timezone))


def _zone() -> ZoneInfo:
    """The zone this machine's settings name: where the person reading the answer is."""
    return ZoneInfo(load_settings().timezone)


@windows_app.command("conflicts")
def conflicts(
    start: FromOpt = None,
    end: ToOpt = None,
    fleet: FleetOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Windows lost to freezes on shared hosts, and overlapping host windows (next 365 days)."""
    begin, until = parse_time(start, "from"), parse_time(end, "to")
    client = remote(fleet)
    if client is not None:
        with client:
            found = client.conflicts({"from": start, "to": end})
    else:
        found = ops.conflicts(context(fleet), me(), begin, until)
    if as_json:
        print_json(found)
        return
    if not found.conflicts:
        out.print(f"no conflicts between {found.start} and {found.end}")
        return
    table = Table(title=f"{len(found.conflicts)} conflicts {found.start} .. {found.end}")
    for col in ("kind", "window", "local start", "with", "hosts", "members / stacks"):
        table.add_column(col)
    for c in found.conflicts:
        table.add_row(
            c.kind,
            c.window,
            _local_text(c.start_utc, ZoneInfo(c.timezone), "%a %Y-%m-%d %H:%M %Z"),
            ", ".join(o.window for o in c.others),
            ", ".join(c.hosts),
            ", ".join(c.shared),
        )
    out.print(table)


@windows_app.command("ics")
def ics(
    member: Annotated[str, typer.Argument(help="Member slug.")],
    app: Annotated[str | None, typer.Option("--app", help="Only windows gating this app.")] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file, not stdout.")
    ] = None,
    fleet: FleetOpt = None,
) -> None:
    """Print MEMBER's windows and freezes as an iCalendar (RFC 5545) feed to import."""
    client = remote(fleet)
    if client is not None:
        with client:
            feed = client.ics(member, {"app": app})
    else:
        feed = ops.ics(context(fleet), me(), member, app)
    if output is not None:
        output.write_bytes(feed)
    else:
        sys.stdout.write(feed.decode("utf-8"))
