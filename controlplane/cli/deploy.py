"""``controlplane deploy``, ``rollback`` and ``provision``: parse, call the deploy
operations, print. Live progress goes to stderr so ``--json`` output stays clean."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.table import Table

from controlplane.app import Context
from controlplane.cli.common import FleetOpt, JsonOpt, context, err, me, out, print_json
from controlplane.cli.progress import LiveProgress, print_run
from controlplane.cli.remote import ensure_successful as ensure_remote_successful
from controlplane.cli.remote import follow as follow_remote
from controlplane.cli.remote import local_only, remote
from controlplane.client import ControlPlaneClient
from controlplane.deploy import operations as ops
from controlplane.deploy import provision as provisioning
from controlplane.deploy.declared import ensure_recorded
from controlplane.deploy.engine import Observer
from controlplane.deploy.history import detail
from controlplane.deploy.model import Run, RunEvent, RunStatus
from controlplane.errors import LockHeld
from controlplane.maintenance.operations import schedule_deploy
from controlplane.schemas.declared import StackPlanOut
from controlplane.schemas.runs import InstanceHealthOut, RunDetailOut, RunOut

ReasonOpt = Annotated[str, typer.Option("--reason", help="Why: recorded on the run.")]
EmergencyOpt = Annotated[
    str | None,
    typer.Option("--emergency", help="Override the windows gate; the reason is recorded."),
]


# How long a remote deploy waits for the server to record its version after the run ended.
RECORD_WAIT_SECONDS = 10.0


def _on_wait(held: LockHeld) -> None:
    err.print(f"waiting: {held}", markup=False)


@contextmanager
def _progress(as_json: bool) -> Iterator[Observer | None]:
    """A live table on a terminal; otherwise nothing (the caller prints one line per run)."""
    if as_json or not err.is_terminal:
        yield None
        return
    with LiveProgress(err) as progress:
        yield progress


class _Announcing:
    """Without a live table: one line per run on stderr as it starts (none with --json)."""

    def __init__(self, as_json: bool) -> None:
        self.quiet = as_json

    def on_status(self, run: Run) -> None:
        if not self.quiet and run.status is RunStatus.RUNNING:
            err.print(f"run {run.id[:8]}: {run.kind.value} {run.member}/{run.app} {run.version}")

    def on_event(self, run: Run, event: RunEvent) -> None:
        pass


def _report(ctx: Context, runs: list[Run], as_json: bool) -> None:
    _print_details([detail(ctx, r) for r in runs], as_json)


def _print_details(shown: list[RunDetailOut], as_json: bool) -> None:
    if as_json:
        print_json(shown)
        return
    for r in shown:
        print_run(out, r)


def deploy(
    member: Annotated[str, typer.Argument(help="Member slug, e.g. amsterdam.")],
    app: Annotated[str | None, typer.Option("--app", help="Only this app.")] = None,
    version: Annotated[str | None, typer.Option("--version", help="Version to deploy.")] = None,
    check: Annotated[
        bool, typer.Option("--check", help="Plan only: check mode with diff.")
    ] = False,
    serial: Annotated[
        str | None, typer.Option("--serial", help="Hosts per batch: N or P%.")
    ] = None,
    max_fail: Annotated[
        str | None, typer.Option("--max-fail", help="Stop when a batch's failures exceed P%.")
    ] = None,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Wait for the end.")] = True,
    queue: Annotated[
        bool, typer.Option("--queue", help="Wait for a conflicting run instead of refusing.")
    ] = False,
    record: Annotated[
        bool,
        typer.Option(
            "--record", help="Once it succeeded, set the version in the fleet's stacks.yml."
        ),
    ] = False,
    reason: ReasonOpt = "",
    emergency: EmergencyOpt = None,
    when: Annotated[
        str | None,
        typer.Option("--when", help="next-window: store it; serve starts it when allowed."),
    ] = None,
    fleet: FleetOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Deploy a member's stack (all apps, or one) to the fleet's or a given version."""
    if when is not None:
        local_only("deploy --when")
    client = remote(fleet)
    if client is not None:
        with client:
            submitted = client.deploy(
                member,
                app=app,
                version=version,
                check=check,
                serial=serial,
                max_fail=max_fail,
                reason=reason,
                emergency_reason=emergency,
                queue=queue,
                record=record or None,  # an older server knows no such field
            )
            _finish_remote(client, submitted, as_json, wait=wait, declared=True)
        return
    ctx = context(fleet)
    if when is not None:
        scheduled = schedule_deploy(
            ctx,
            me(),
            member,
            app,
            when=when,
            version=version,
            serial=serial,
            max_fail=max_fail,
            reason=reason,
            record=record,
        )
        if as_json:
            print_json(scheduled)
        else:
            out.print(
                f"deploy of {member}/{app} scheduled for {scheduled.at.isoformat()} "
                f"({scheduled.id})"
            )
        return
    ops.recover_runs(ctx)  # a dead run's locks must not refuse this one
    with _progress(as_json) as live:
        runs = ops.deploy(
            ctx,
            me(),
            member,
            app=app,
            version=version,
            check=check,
            serial=serial,
            max_fail=max_fail,
            reason=reason,
            emergency_reason=emergency,
            wait=wait,
            queue=queue,
            record=record,
            observer=live or _Announcing(as_json),
            on_wait=_on_wait,
        )
    shown = [detail(ctx, r) for r in runs]
    _print_details(shown, as_json)
    _print_declared(shown, as_json)
    if wait:
        ops.ensure_successful(ctx, runs)
        ensure_recorded(shown)


def _print_declared(shown: list[RunDetailOut], as_json: bool) -> None:
    """After a deploy of a named version: what the fleet declares now, and how to record."""
    if as_json:
        return
    for r in shown:
        if r.declared is not None:
            out.print(r.declared.note, markup=False, highlight=False, soft_wrap=True)


def rollback(
    member: Annotated[str, typer.Argument(help="Member slug.")],
    app: Annotated[str, typer.Option("--app", help="The app to roll back.")],
    version: Annotated[
        str | None, typer.Option("--version", help="Release to return to (default: previous).")
    ] = None,
    reason: ReasonOpt = "",
    emergency: EmergencyOpt = None,
    fleet: FleetOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Switch a member's app back to its previous (or a named) release."""
    client = remote(fleet)
    if client is not None:
        with client:
            submitted = client.rollback(
                member, app, version=version, reason=reason, emergency_reason=emergency
            )
            _finish_remote(client, submitted, as_json, wait=True)
        return
    ctx = context(fleet)
    ops.recover_runs(ctx)
    with _progress(as_json) as live:
        runs = ops.rollback(
            ctx,
            me(),
            member,
            app,
            version=version,
            reason=reason,
            emergency_reason=emergency,
            observer=live or _Announcing(as_json),
        )
    _report(ctx, runs, as_json)
    ops.ensure_successful(ctx, runs)


def _finish_remote(
    client: ControlPlaneClient,
    submitted: list[RunOut],
    as_json: bool,
    *,
    wait: bool,
    declared: bool = False,
) -> None:
    """The server executes the submitted runs: follow them to their end (with ``wait``),
    then print and judge them as the local command does."""
    if wait:
        with _progress(as_json) as live:
            follow_remote(client, submitted, live or _Announcing(as_json))
    shown = [client.run(r.id) for r in submitted]
    if wait and declared:
        shown = _recorded_remote(client, shown)
    _print_details(shown, as_json)
    if declared:
        _print_declared(shown, as_json)
    if wait:
        ensure_remote_successful(shown)
        ensure_recorded(shown)


def _recorded_remote(client: ControlPlaneClient, shown: list[RunDetailOut]) -> list[RunDetailOut]:
    """The server's executor records a version just after the run's end: wait briefly for
    it, so the answer says whether it happened."""
    deadline = time.monotonic() + RECORD_WAIT_SECONDS
    while time.monotonic() < deadline:
        if not any(r.declared is not None and r.declared.pending for r in shown):
            break
        time.sleep(0.3)
        shown = [client.run(r.id) for r in shown]
    return shown


def provision(
    members: Annotated[
        list[str] | None, typer.Argument(help="Members to provision (default: all).")
    ] = None,
    parallel: Annotated[int, typer.Option("--parallel", min=1, max=16)] = 4,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Run the playbooks even where nothing changed, and downgrade a live "
            "release newer than the declared one.",
        ),
    ] = False,
    plan: Annotated[
        bool, typer.Option("--plan", help="Only say what would be done with each app.")
    ] = False,
    fleet: FleetOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Provision every member's stack at the fleet's versions, then probe every instance.

    Runs for different members and apps go in parallel on the shared hosts. An app whose
    every instance already answers healthy on the fleet's version is left alone (--force
    runs its playbook anyway), so running this again is safe and fast. An app live on a
    release newer than the fleet declares is not downgraded (exit 3) unless --force."""
    local_only("provision")
    ctx = context(fleet)
    if plan:
        plans = provisioning.plan_provision(ctx, me(), members, force=force)
        if as_json:
            print_json(provisioning.plan_out(plans))
        else:
            _print_plan(provisioning.plan_out(plans).stacks)
        provisioning.ensure_no_downgrade(plans)
        return
    ops.recover_runs(ctx)

    def starting(count: int) -> None:
        if not as_json:
            which = "all" if force else "those not already up to date"
            err.print(f"provisioning {count} app stacks ({which}) …")

    done = provisioning.provision(
        ctx, me(), members, parallel=parallel, force=force, on_start=starting
    )
    shown = provisioning.provision_out(ctx, done)
    if as_json:
        print_json(shown)
    else:
        _print_instances(shown.instances)
        if not done.runs and not done.refused:
            out.print("every member app was already up to date; no playbook had to run")
        healthy = sum(1 for i in shown.instances if i.status == "healthy")
        good = sum(1 for r in shown.runs if r.status == "successful")
        stacks = len({(i.member, i.app) for i in shown.instances})
        out.print(
            f"{good}/{len(shown.runs)} runs successful in {done.seconds:.1f}s; "
            f"{healthy}/{len(shown.instances)} instances answering healthy on {stacks} member apps"
        )
    provisioning.ensure_provisioned(ctx, done)


def _print_plan(stacks: list[StackPlanOut]) -> None:
    table = Table(title="What provision would do")
    for col in ("member", "app", "declared", "live", "action"):
        table.add_column(col)
    for st in stacks:
        action = f"[red]{st.action}[/red]" if st.action == "refused" else st.action
        table.add_row(st.member, st.app, st.declared, ", ".join(st.live) or "-", action)
    out.print(table)
    for st in stacks:
        if st.note:
            out.print(st.note, markup=False, highlight=False, soft_wrap=True)


def _print_instances(instances: list[InstanceHealthOut]) -> None:
    table = Table(title="App instances")
    for col in ("member", "app", "version", "host", "address:port", "status", "ms"):
        table.add_column(col)
    for i in instances:
        table.add_row(
            i.member,
            i.app,
            i.version or "-",
            i.host,
            f"{i.address}:{i.port}",
            "[green]healthy[/green]"
            if i.status == "healthy"
            else f"[red]down[/red] {i.error or ''}",
            f"{i.latency_seconds * 1000:.0f}",
        )
    out.print(table)
