"""CLI commands ``uptime`` and ``serve`` (registered on the app in ``controlplane.cli``)."""

from __future__ import annotations

import logging
import signal
from typing import Annotated

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from controlplane.app import build_service
from controlplane.cli.common import FleetOpt, JsonOpt, context, err, me, out, print_json
from controlplane.cli.remote import local_only, remote
from controlplane.clock import utc_now
from controlplane.deploy.operations import recover_runs
from controlplane.errors import InvalidInput
from controlplane.schemas.uptime import AvailabilityOut
from controlplane.uptime import operations as ops


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
    client = remote(fleet)
    if client is not None:
        if probe:
            raise InvalidInput("--probe is local-only: the server probes on its own schedule")
        with client:
            rows = client.uptime({"member": member, "window": window})
    else:
        rows = ops.availability(context(fleet), me(), member, window, probe=probe)
    now = utc_now()
    if as_json:
        print_json(rows)
        return
    # Piped output is read by people and greps alike: never squeeze the figures to 80 columns.
    console = out if out.is_terminal else Console(width=max(out.width, 160))
    console.print(_table(rows, now.strftime("%Y-%m-%d %H:%M UTC")))


def _table(rows: list[AvailabilityOut], at: str) -> Table:
    table = Table(
        title=f"Availability at {at} (SLA leaves out maintenance windows)", box=box.SIMPLE_HEAD
    )
    for col in ("member", "app", "window", "probes", "in window", "availability", "SLA"):
        table.add_column(col, justify="right" if col not in ("member", "app") else "left")
    for col in ("SLO", "budget left", "burn rate"):
        table.add_column(col, justify="right")
    for a in rows:
        budget = a.error_budget_remaining
        style = "" if budget is None else ("red" if budget < 0 else "green")
        table.add_row(
            a.member,
            a.app,
            a.window,
            str(a.probes),
            str(a.in_window),
            _pct(a.availability),
            _pct(a.sla_availability),
            f"{a.slo:.3%}",
            f"[{style}]{_pct(budget)}[/{style}]" if style else _pct(budget),
            _num(a.burn_rate),
        )
    return table


def serve(
    address: Annotated[
        str | None, typer.Option("--address", help="Listen address for the API and /metrics.")
    ] = None,
    port: Annotated[
        int | None, typer.Option("--port", min=0, max=65535, help="Port (0: any free port).")
    ] = None,
    fleet: FleetOpt = None,
) -> None:
    """Run the service: scheduler (probes, maintenance, queued deploys), API and /metrics."""
    local_only("serve")
    ctx = context(fleet, metrics_address=address, metrics_port=port)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    for noisy in ("apscheduler", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    recover_runs(ctx)  # runs a dead process left behind are interrupted before we serve
    service = build_service(ctx)

    def started(svc: object) -> None:
        host, bound = service.address
        err.print(
            f"serving http://{host}:{bound}/metrics; probing {len(ctx.fleet.instances())} "
            f"instances every {service.config.probe_interval:g}s",
            markup=False,
            highlight=False,
        )

    signum = service.run_until_signalled(started)
    if signum:
        err.print(f"stopped on {signal.Signals(signum).name}", markup=False, highlight=False)
    ctx.close()
