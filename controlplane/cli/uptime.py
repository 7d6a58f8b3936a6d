"""CLI commands ``uptime`` and ``serve`` (registered on the app in ``controlplane/cli.py``)."""

from __future__ import annotations

import logging
import signal
from datetime import timedelta
from typing import Annotated

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from controlplane.app import Context
from controlplane.cli_common import FleetOpt, JsonOpt, err, out, print_json
from controlplane.clock import utc_now
from controlplane.settings import load_settings
from controlplane.uptime.availability import Availability, Period
from controlplane.uptime.job import ProbeJob
from controlplane.uptime.store import ProbeStore
from controlplane.uptime.summary import UptimeReader, availabilities
from controlplane.uptime.windows import WindowCalendar, fleet_calendar


def _calendar(ctx: Context) -> WindowCalendar:
    return fleet_calendar(ctx.settings.resolved_fleet, ctx.fleet)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.3%}"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def uptime(
    member: Annotated[str | None, typer.Option("--member", help="Only this member.")] = None,
    window: Annotated[
        str | None, typer.Option("--window", help="1h, 24h, 7d or 30d (default: all four).")
    ] = None,
    probe: Annotated[
        bool, typer.Option("--probe", help="First probe every instance once and store it.")
    ] = False,
    fleet: FleetOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Availability per member and app: raw, SLA, error budget and burn rate.

    The SLA figure leaves out probes taken inside maintenance windows; budget and burn rate
    are against the member's SLO."""
    periods = (Period.parse(window),) if window is not None else tuple(Period)
    ctx = Context(load_settings(fleet=fleet))
    model = ctx.fleet
    if member is not None:
        model.member(member)
    store = ProbeStore(ctx.engine)
    if probe:
        s = ctx.settings
        ProbeJob(model, store, timeout=s.probe_timeout_seconds, calendar=_calendar(ctx)).run()
    now = utc_now()
    counts = UptimeReader(store).counts(now)
    rows = availabilities(model, counts, periods, member=member)
    if as_json:
        print_json([a.to_json() for a in rows])
        return
    # Piped output is read by people and greps alike: never squeeze the figures to 80 columns.
    console = out if out.is_terminal else Console(width=max(out.width, 160))
    console.print(_table(rows, now.strftime("%Y-%m-%d %H:%M UTC")))


def _table(rows: list[Availability], at: str) -> Table:
    table = Table(
        title=f"Availability at {at} (SLA leaves out maintenance windows)", box=box.SIMPLE_HEAD
    )
    for col in ("member", "app", "window", "probes", "in window", "availability", "SLA"):
        table.add_column(col, justify="right" if col not in ("member", "app") else "left")
    for col in ("SLO", "budget left", "burn rate"):
        table.add_column(col, justify="right")
    for a in rows:
        budget = a.budget_remaining
        style = "" if budget is None else ("red" if budget < 0 else "green")
        table.add_row(
            a.member,
            a.app,
            a.period.value,
            str(a.counts.total),
            str(a.counts.in_window),
            _pct(a.raw),
            _pct(a.sla),
            f"{a.slo:.3%}",
            f"[{style}]{_pct(budget)}[/{style}]" if style else _pct(budget),
            _num(a.burn_rate),
        )
    return table


def serve(
    address: Annotated[
        str | None, typer.Option("--address", help="Listen address for /metrics.")
    ] = None,
    port: Annotated[
        int | None, typer.Option("--port", min=0, max=65535, help="Port for /metrics (0: any).")
    ] = None,
    fleet: FleetOpt = None,
) -> None:
    """Run the service: scheduler (probes, maintenance, queued deploys) and /metrics."""
    from controlplane.service import Service, ServiceConfig

    settings = load_settings(fleet=fleet, metrics_address=address, metrics_port=port)
    ctx = Context(settings)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    for noisy in ("apscheduler", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    config = ServiceConfig(
        address=settings.metrics_address,
        port=settings.metrics_port,
        probe_interval=settings.probe_interval_seconds,
        probe_timeout=settings.probe_timeout_seconds,
        retention=timedelta(hours=settings.probe_retention_hours),
    )
    # Scheduled maintenance (maintenance.yml) runs in the same scheduler.
    service = Service(
        ctx.fleet, ctx.engine, config, calendar=_calendar(ctx), extensions=[ctx.maintenance]
    )

    def started(svc: Service) -> None:
        host, bound = svc.address
        err.print(
            f"serving http://{host}:{bound}/metrics; probing {len(ctx.fleet.instances())} "
            f"instances every {config.probe_interval:g}s",
            markup=False,
            highlight=False,
        )

    signum = service.run_until_signalled(started)
    if signum:
        err.print(f"stopped on {signal.Signals(signum).name}", markup=False, highlight=False)
    ctx.close()
