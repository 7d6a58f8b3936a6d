"""The ``controlplane`` command line.

Exit codes (DESIGN.md): 0 ok, 1 the operation ran and failed, 2 bad input or usage,
3 refused (gate, lock, permission), 4 a host or dependency could not be reached.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.table import Table

from controlplane import __version__
from controlplane.app import Context
from controlplane.cli_common import FleetOpt, JsonOpt, err, out, print_json
from controlplane.costs.cli import costs_app
from controlplane.costs.loader import costs_path, load_costs
from controlplane.deploy import cli as deploy_cli
from controlplane.deploy import provision as provision_cli
from controlplane.errors import (
    ControlPlaneError,
    InvalidInput,
    NotFound,
    OperationFailed,
    Refused,
    Unreachable,
)
from controlplane.fleet.capacity import host_usage
from controlplane.fleet.inventory import render_inventory
from controlplane.maintenance.cli import schedule_app
from controlplane.maintenance.loader import load_jobs
from controlplane.settings import load_settings
from controlplane.uptime import cli as uptime_cli
from controlplane.windows.cli import windows_app

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_REFUSED, EXIT_UNREACHABLE = 0, 1, 2, 3, 4

app = typer.Typer(
    name="controlplane",
    help="Hosting and operations control plane for the cooperative's shared datacenter.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
fleet_app = typer.Typer(help="Show the fleet: members, hosts, capacity and stacks.")
db_app = typer.Typer(help="Database schema: migrate and show the revision.")
app.add_typer(fleet_app, name="fleet")
app.add_typer(db_app, name="db")
app.add_typer(windows_app, name="windows")
app.add_typer(costs_app, name="costs")
app.command()(provision_cli.provision)
app.command()(deploy_cli.deploy)
app.command()(deploy_cli.rollback)
app.add_typer(deploy_cli.runs_app, name="runs")
app.add_typer(schedule_app, name="schedule")
app.command()(uptime_cli.uptime)
app.command()(uptime_cli.serve)


def exit_code_for(exc: BaseException) -> int:
    """Map the error tree to the documented exit codes; only the CLI edge does this."""
    if isinstance(exc, InvalidInput | NotFound):
        return EXIT_USAGE
    if isinstance(exc, Refused):
        return EXIT_REFUSED
    if isinstance(exc, Unreachable):
        return EXIT_UNREACHABLE
    if isinstance(exc, OperationFailed):
        return EXIT_FAILED
    return EXIT_FAILED


def context(fleet: Path | None = None) -> Context:
    return Context(load_settings(fleet=fleet))


# -- commands ------------------------------------------------------------------------------


@app.command()
def validate(fleet: FleetOpt = None, as_json: JsonOpt = False) -> None:
    """Check every fleet file; exit 0 when valid, 2 with one line naming the problem."""
    ctx = context(fleet)
    model = ctx.fleet
    directory = ctx.settings.resolved_fleet
    windows = ctx.gate.windows
    jobs = load_jobs(directory, model, ctx.gate)
    costs = costs_path(directory)
    if costs.exists():
        load_costs(directory, model)
    summary = {
        "status": "valid",
        "fleet": str(directory),
        "datacenter": model.name,
        "members": len(model.members),
        "hosts": len(model.hosts),
        "apps": len(model.apps),
        "instances": len(model.instances()),
        "windows": len(windows),
        "maintenance_jobs": len(jobs),
        "costs": costs.exists(),
    }
    if as_json:
        print_json(summary)
    else:
        out.print(
            f"[green]valid[/green] {model.name}: {summary['members']} members, "
            f"{summary['hosts']} hosts, {summary['apps']} apps, {summary['instances']} instances, "
            f"{len(windows)} windows and freezes, {len(jobs)} maintenance jobs"
            + (", cost data" if costs.exists() else "")
        )


@app.command()
def inventory(
    member: Annotated[str | None, typer.Argument(help="Only this member's hosts.")] = None,
    fleet: FleetOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Print the Ansible inventory rendered from the fleet (YAML, or JSON with --json)."""
    ctx = context(fleet)
    inv = render_inventory(ctx.fleet, ctx.render_context, member=member)
    if as_json:
        print_json(inv)
    else:
        sys.stdout.write(yaml.safe_dump(inv, sort_keys=False))


def _instances_json(ctx: Context, member: str | None = None) -> list[dict[str, Any]]:
    return [
        {
            "member": i.member,
            "app": i.app,
            "version": i.version,
            "host": i.host,
            "address": i.address,
            "port": i.port,
        }
        for i in ctx.fleet.instances(member=member)
    ]


@fleet_app.command("show")
def fleet_show(fleet: FleetOpt = None, as_json: JsonOpt = False) -> None:
    """Members, hosts with capacity and reservations, and every placed instance."""
    ctx = context(fleet)
    model = ctx.fleet
    usage = host_usage(model)
    if as_json:
        print_json(
            {
                "datacenter": model.name,
                "members": [
                    {
                        "member": m.slug,
                        "name": m.name,
                        "slo": m.slo,
                        "deploy_policy": m.deploy_policy.value,
                    }
                    for m in model.members
                ],
                "hosts": [
                    {
                        "host": u.host,
                        "address": model.host(u.host).address,
                        "capacity": {k: str(v) for k, v in u.capacity.items()},
                        "reserved": {k: str(v) for k, v in u.reserved.items()},
                    }
                    for u in usage
                ],
                "instances": _instances_json(ctx),
            }
        )
        return
    members = Table(title=f"Members of datacenter {model.name}")
    for col in ("member", "name", "SLO", "deploy policy"):
        members.add_column(col)
    for m in model.members:
        members.add_row(m.slug, m.name, f"{m.slo:.3%}", m.deploy_policy.value)
    hosts = Table(title="Hosts (reserved / capacity)")
    for col in ("host", "address", "vCPU", "RAM GiB", "disk GiB"):
        hosts.add_column(col)
    for u in usage:
        cells = [
            f"{r} / {c} ({u.ratio(k):.0%})"
            for (k, r), (_, c) in zip(u.reserved.items(), u.capacity.items(), strict=True)
        ]
        hosts.add_row(u.host, model.host(u.host).address, *cells)
    stacks = Table(title="Stacks")
    for col in ("member", "app", "version", "host", "address:port"):
        stacks.add_column(col)
    for i in model.instances():
        stacks.add_row(i.member, i.app, i.version, i.host, f"{i.address}:{i.port}")
    out.print(members, hosts, stacks)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply database migrations (they also apply at every start)."""
    ctx = context()
    ctx.engine  # noqa: B018 - building the engine migrates it
    out.print(f"database at revision {_revision(ctx)}")


@db_app.command("status")
def db_status(as_json: JsonOpt = False) -> None:
    """Show the database URL (without password) and schema revision."""
    ctx = context()
    data = {
        "status": "ok",
        "database": ctx.engine.url.render_as_string(hide_password=True),
        "revision": _revision(ctx),
    }
    if as_json:
        print_json(data)
    else:
        out.print(f"{data['database']} at revision {data['revision']}")


def _revision(ctx: Context) -> str | None:
    from controlplane.store.db import current_revision

    return current_revision(ctx.engine)


@app.command("config")
def show_config(as_json: JsonOpt = False) -> None:
    """Show the settings in force, after environment and TOML file."""
    s = load_settings()
    data = {
        "data_dir": str(s.resolved_data_dir),
        "database_url": s.resolved_database_url.split("@")[-1]
        if "@" in s.resolved_database_url
        else s.resolved_database_url,
        "fleet": str(s.resolved_fleet),
        "timezone": s.timezone,
        "artifact_retention": s.artifact_retention,
    }
    if as_json:
        print_json(data)
    else:
        for key, value in data.items():
            out.print(f"{key:20} {value}")


@app.command()
def version() -> None:
    """Print the controlplane version."""
    out.print(__version__)


# -- entry point ---------------------------------------------------------------------------


def run(args: list[str] | None = None) -> int:
    """Run the CLI and return its exit code, turning our errors into one line on stderr."""
    try:
        app(args=args, prog_name="controlplane")
    except SystemExit as exc:
        # Typer/Click exit here after usage errors (code 2) and after normal completion.
        code = exc.code
        return code if isinstance(code, int) else (EXIT_OK if code is None else EXIT_FAILED)
    except ControlPlaneError as exc:
        err.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        return exit_code_for(exc)
    except KeyboardInterrupt:
        err.print("interrupted")
        return 130
    return EXIT_OK


def main() -> None:
    sys.exit(run())
