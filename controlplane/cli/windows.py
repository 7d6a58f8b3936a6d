"""``controlplane windows ...``: list occurrences, check the gate, find conflicts, export .ics.

Only this module reads the clock (``datetime.now(UTC)``); everything below it takes ``now``.
"""

from __future__ import annotations

import sys
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo

import typer
from rich.table import Table

from controlplane.app import Context
from controlplane.cli_common import FleetOpt, JsonOpt, out, print_json
from controlplane.errors import InvalidInput
from controlplane.settings import load_settings
from controlplane.windows.calendar import member_calendar
from controlplane.windows.conflicts import find_conflicts
from controlplane.windows.gate import Decision, Gate, when
from controlplane.windows.rules import Occurrence, utc_text

EXIT_REFUSED = 3
LIST_DAYS = 30
CONFLICT_DAYS = 365

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


def _gate(fleet: Path | None) -> tuple[Context, Gate]:
    ctx = Context(load_settings(fleet=fleet))
    return ctx, ctx.gate


def parse_time(text: str | None, zone: ZoneInfo, option: str, now: datetime) -> datetime:
    """``now``, a date (local midnight) or an ISO date-time; naive means local in ``zone``."""
    if text is None or text == "now":
        return now
    try:
        parsed = (
            datetime.combine(date.fromisoformat(text), time())
            if len(text) == 10
            else datetime.fromisoformat(text)
        )
    except ValueError:
        raise InvalidInput(f"{option}: {text!r} is not a time like 2026-03-29T02:30") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone)  # fold=0: the documented DST choice
    return parsed.astimezone(UTC)


def _range(
    ctx: Context, start: str | None, end: str | None, days: int
) -> tuple[datetime, datetime]:
    zone = ZoneInfo(ctx.settings.timezone)
    now = datetime.now(UTC)
    lo = parse_time(start, zone, "--from", now)
    hi = parse_time(end, zone, "--to", now) if end else lo + timedelta(days=days)
    if hi <= lo:
        raise InvalidInput("--to: must be after --from")
    return lo, hi


def _local(o: Occurrence, at: datetime) -> str:
    return f"{at.astimezone(o.window.zone):%a %Y-%m-%d %H:%M %Z}"


def _span_local(o: Occurrence) -> str:
    start, end = o.local_start, o.local_end
    if start.date() == end.date():
        return f"{start:%a %Y-%m-%d %H:%M %Z} to {end:%H:%M %Z}"
    return f"{start:%a %Y-%m-%d %H:%M %Z} to {end:%a %Y-%m-%d %H:%M %Z}"


@windows_app.command("list")
def list_occurrences(
    member: Annotated[str | None, typer.Option("--member", help="Only windows gating it.")] = None,
    start: FromOpt = None,
    end: ToOpt = None,
    fleet: FleetOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List window and freeze occurrences in local time and UTC (default: the next 30 days)."""
    ctx, gate = _gate(fleet)
    lo, hi = _range(ctx, start, end, LIST_DAYS)
    chosen = gate.windows_for_member(member) if member else gate.windows
    found = gate.occurrences_between(lo, hi, chosen)
    if as_json:
        print_json(
            {
                "from": utc_text(lo),
                "to": utc_text(hi),
                "member": member,
                "occurrences": [o.to_json() for o in found],
            }
        )
        return
    table = Table(title=f"Windows and freezes {utc_text(lo)} .. {utc_text(hi)}")
    table.add_column("window", no_wrap=True)
    for col in ("kind", "scope", "local time", "UTC"):
        table.add_column(col)
    for o in found:
        table.add_row(
            o.window.name,
            o.window.kind.value,
            str(o.window.scope),
            _span_local(o),
            f"{o.start:%Y-%m-%d %H:%M} to {o.end:%Y-%m-%d %H:%M}Z",
            style="red" if o.window.is_freeze else None,
        )
    out.print(table)


def _show(decision: Decision, as_json: bool, zone: ZoneInfo) -> None:
    if as_json:
        print_json(decision.to_json())
    else:
        colour = "green" if decision.allowed else "red"
        verdict = decision.verdict.value.upper()
        out.print(f"[{colour}]{verdict}[/{colour}] ({decision.reason.value})")
        out.print(decision.message, markup=False, highlight=False)
        if decision.hosts:
            out.print(f"hosts touched: {', '.join(decision.hosts)}", highlight=False)
        if decision.next_allowed and not decision.allowed:
            out.print(
                f"next opening: {when(decision.next_allowed, zone)} "
                f"({utc_text(decision.next_allowed)})",
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
    ctx, gate = _gate(fleet)
    zone = ZoneInfo(ctx.settings.timezone)
    now = parse_time(at, zone, "--at", datetime.now(UTC))
    _show(gate.check_member(member, app, now), as_json, zone)


@windows_app.command("check-host")
def check_host(
    host: Annotated[str, typer.Argument(help="Host name.")],
    at: AtOpt = None,
    fleet: FleetOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Say whether host work (patching) on HOST may start; exit 0 allowed, 3 refused."""
    ctx, gate = _gate(fleet)
    zone = ZoneInfo(ctx.settings.timezone)
    now = parse_time(at, zone, "--at", datetime.now(UTC))
    _show(gate.check_host(host, now), as_json, zone)


@windows_app.command("conflicts")
def conflicts(
    start: FromOpt = None,
    end: ToOpt = None,
    fleet: FleetOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Windows lost to freezes on shared hosts, and overlapping host windows (next 365 days)."""
    ctx, gate = _gate(fleet)
    lo, hi = _range(ctx, start, end, CONFLICT_DAYS)
    found = find_conflicts(gate, lo, hi)
    if as_json:
        print_json(
            {"from": utc_text(lo), "to": utc_text(hi), "conflicts": [c.to_json() for c in found]}
        )
        return
    if not found:
        out.print(f"no conflicts between {utc_text(lo)} and {utc_text(hi)}")
        return
    table = Table(title=f"{len(found)} conflicts {utc_text(lo)} .. {utc_text(hi)}")
    for col in ("kind", "window", "local start", "with", "hosts", "members / stacks"):
        table.add_column(col)
    for c in found:
        table.add_row(
            c.kind.value,
            c.window.window.name,
            _local(c.window, c.window.start),
            ", ".join(o.window.name for o in c.others),
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
    _, gate = _gate(fleet)
    feed = member_calendar(gate, member, datetime.now(UTC), app)
    if output is not None:
        output.write_bytes(feed)
    else:
        sys.stdout.write(feed.decode("utf-8"))
