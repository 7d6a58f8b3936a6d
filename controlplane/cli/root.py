"""The ``controlplane`` command line.

Exit codes: 0 ok, 1 the operation ran and failed, 2 bad input or usage,
3 refused (gate, lock, permission), 4 a host or dependency could not be reached.
"""

from __future__ import annotations

import sys
from decimal import Decimal
from typing import Annotated

import httpx
import typer
import yaml
from rich.table import Table

from controlplane import __version__
from controlplane.app import Context
from controlplane.cli.audit import audit_app
from controlplane.cli.common import FleetOpt, JsonOpt, context, err, me, out, print_json
from controlplane.cli.config import show_config
from controlplane.cli.costs import costs_app
from controlplane.cli.deploy import deploy, provision, rollback
from controlplane.cli.notifications import notifications_app
from controlplane.cli.remote import RootOptions, begin, local_only, remote
from controlplane.cli.runs import runs_app
from controlplane.cli.schedule import schedule_app
from controlplane.cli.tokens import tokens_app
from controlplane.cli.uptime import serve, uptime
from controlplane.cli.windows import windows_app
from controlplane.errors import (
    ControlPlaneError,
    InvalidInput,
    NotFound,
    OperationFailed,
    PreflightFailed,
    Refused,
    Unreachable,
)
from controlplane.files import make_private
from controlplane.fleet import operations as fleet_ops
from controlplane.preflight import preflight as preflight_op
from controlplane.schemas.fleet import FleetOut

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
app.command()(provision)
app.command()(deploy)
app.command()(rollback)
app.add_typer(runs_app, name="runs")
app.add_typer(schedule_app, name="schedule")
app.add_typer(tokens_app, name="tokens")
app.add_typer(audit_app, name="audit")
app.add_typer(notifications_app, name="notifications")
app.command()(uptime)
app.command()(serve)
app.command("config")(show_config)


@app.callback()
def root(
    ctx: typer.Context,
    server: Annotated[
        str | None,
        typer.Option(
            "--server",
            metavar="URL",
            help="Talk to the control plane at URL (default $CONTROLPLANE_SERVER) with "
            "$CONTROLPLANE_TOKEN, instead of this machine's database.",
        ),
    ] = None,
) -> None:
    """Hosting and operations control plane for the cooperative's shared datacenter."""
    given = ctx.obj if isinstance(ctx.obj, RootOptions) else RootOptions()
    begin(RootOptions(server=server, http=given.http))


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


# -- commands ------------------------------------------------------------------------------


ConnectOpt = Annotated[
    bool,
    typer.Option(
        "--connect",
        help="Also log in to every SSH host (in parallel, 5 s timeout) and check its Python "
        "and process manager; needs every member's vault file.",
    ),
]


@app.command()
def validate(fleet: FleetOpt = None, connect: ConnectOpt = False, as_json: JsonOpt = False) -> None:
    """Check the fleet files, then the preflight: key, known_hosts and vault files (and with
    --connect every SSH host). Exit 0 when all is well, 2 naming each problem on its own
    line, 4 when the only problems are hosts that could not be reached."""
    local_only("validate")
    ctx = context(fleet)
    summary = fleet_ops.validate(ctx, me())
    checked = preflight_op(ctx, me(), connect=connect)
    lines = [p.message for p in checked.problems]
    code = EXIT_OK
    if lines:
        failed = (
            Unreachable(lines[0]) if checked.status == "unreachable" else PreflightFailed(lines)
        )
        code = exit_code_for(failed)
    if as_json:
        status = {"ok": "valid", "failed": "invalid"}.get(checked.status, checked.status)
        print_json(
            {
                **summary.model_dump(mode="json"),
                "status": status,
                "preflight": checked.model_dump(mode="json"),
            }
        )
    elif lines:
        for line in lines:
            err.print(f"error: {line}", markup=False, highlight=False, soft_wrap=True)
    else:
        out.print(
            f"[green]valid[/green] {summary.datacenter}: {summary.members} members, "
            f"{summary.hosts} hosts, {summary.apps} apps, {summary.instances} instances, "
            f"{summary.windows} windows and freezes, {summary.maintenance_jobs} maintenance jobs"
            + (", cost data" if summary.costs else "")
        )
        for h in checked.hosts if connect else []:
            if h.reached:
                python = f"python {h.python} ({h.python_version})"
                out.print(f"{h.host}: ssh ok, {python}, {h.process_manager}", highlight=False)
            else:
                out.print(f"{h.host}: {h.connection}, {h.process_manager}", highlight=False)
        out.print(f"preflight: {len(checked.hosts)} hosts ok", highlight=False)
    if code != EXIT_OK:
        raise typer.Exit(code)


@app.command()
def inventory(
    member: Annotated[str | None, typer.Argument(help="Only this member's hosts.")] = None,
    fleet: FleetOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Print the Ansible inventory rendered from the fleet (YAML, or JSON with --json)."""
    local_only("inventory")
    inv = fleet_ops.inventory(context(fleet), me(), member)
    if as_json:
        print_json(inv)
    else:
        sys.stdout.write(yaml.safe_dump(inv, sort_keys=False))


@fleet_app.command("show")
def fleet_show(fleet: FleetOpt = None, as_json: JsonOpt = False) -> None:
    """Members, hosts with capacity and reservations, and every placed instance."""
    client = remote(fleet)
    if client is not None:
        with client:
            shown = client.fleet()
    else:
        shown = fleet_ops.show_fleet(context(fleet), me())
    if as_json:
        print_json(shown)
        return
    _print_fleet(shown)


def _print_fleet(shown: FleetOut) -> None:
    members = Table(title=f"Members of datacenter {shown.datacenter}")
    for col in ("member", "name", "SLO", "deploy policy"):
        members.add_column(col)
    for m in shown.members:
        members.add_row(m.member, m.name, f"{m.slo:.3%}", m.deploy_policy)
    hosts = Table(title="Hosts (reserved / capacity)")
    for col in ("host", "address", "vCPU", "RAM GiB", "disk GiB"):
        hosts.add_column(col)
    for h in shown.hosts:
        cells = [
            f"{r} / {h.capacity[k]} ({Decimal(r) / Decimal(h.capacity[k]):.0%})"
            for k, r in h.reserved.items()
        ]
        hosts.add_row(h.host, h.address, *cells)
    stacks = Table(title="Stacks")
    for col in ("member", "app", "version", "host", "address:port"):
        stacks.add_column(col)
    for i in shown.instances:
        stacks.add_row(i.member, i.app, i.version, i.host, f"{i.address}:{i.port}")
    out.print(members, hosts, stacks)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply database migrations (they also apply at every start)."""
    local_only("db upgrade")
    ctx = context()
    ctx.engine  # noqa: B018 - building the engine migrates it
    out.print(f"database at revision {_revision(ctx)}")


@db_app.command("status")
def db_status(as_json: JsonOpt = False) -> None:
    """Show the database URL (without password) and schema revision."""
    local_only("db status")
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


@app.command()
def version() -> None:
    """Print the controlplane version."""
    out.print(__version__)


# -- entry point ---------------------------------------------------------------------------


def run(args: list[str] | None = None, *, http: httpx.Client | None = None) -> int:
    """Run the CLI and return its exit code, turning our errors into one line on stderr.

    ``http``: with ``--server``, send the requests through this client (tests pass an
    in-process ``TestClient`` of the API)."""
    try:
        app(args=args, prog_name="controlplane", obj=RootOptions(http=http))
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
    # Before anything is written: data dir, database, artifacts and reports stay private.
    make_private()
    sys.exit(run())
