"""CLI commands for the deploy engine: deploy, rollback, provision and runs."""

from __future__ import annotations

import getpass
import os
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from controlplane.app import Context
from controlplane.cli_common import FleetOpt, JsonOpt, err, out, print_json
from controlplane.deploy.model import Run, RunSpec, RunStatus
from controlplane.deploy.plan import DeployRequest
from controlplane.deploy.progress import LiveProgress, run_json, run_table
from controlplane.errors import InvalidInput, OperationFailed, Unreachable
from controlplane.settings import load_settings

runs_app = typer.Typer(help="List, show, follow and cancel runs.")

ReasonOpt = Annotated[str, typer.Option("--reason", help="Why: recorded on the run.")]
EmergencyOpt = Annotated[
    str | None,
    typer.Option("--emergency", help="Override the windows gate; the reason is recorded."),
]


def context(fleet: Path | None) -> Context:
    return Context(load_settings(fleet=fleet))


def who() -> str:
    """Who started a run: $CONTROLPLANE_USER, else the login user at this machine."""
    user = os.environ.get("CONTROLPLANE_USER")
    if user:
        return user
    try:
        name = getpass.getuser()
    except (KeyError, OSError):
        name = "unknown"
    return f"{name}@{socket.gethostname()}"


def _report(ctx: Context, runs: list[Run], as_json: bool) -> None:
    results = {r.id: ctx.runs.host_results(r.id) for r in runs}
    if as_json:
        print_json([run_json(r, results[r.id]) for r in runs])
        return
    for r in runs:
        out.print(run_table(r, results[r.id]))
        if r.params.get("check"):
            _print_plan(ctx, r)


def _print_plan(ctx: Context, run: Run) -> None:
    """What a check-mode run found would change, per host."""
    changes: dict[str, list[str]] = {}
    for e in ctx.runs.events(run.id):
        if e.event == "runner_on_ok" and e.data.get("changed") and e.host:
            changes.setdefault(e.host, []).append(e.task or "?")
    if not changes:
        out.print("plan: nothing would change")
    for host, tasks in sorted(changes.items()):
        out.print(f"plan: {host} would change: {', '.join(tasks)}")


def _execute_all(
    ctx: Context, specs: list[RunSpec], *, wait: bool, queue: bool, as_json: bool
) -> list[Run]:
    engine = ctx.deployer

    def on_wait(held: Exception) -> None:
        err.print(f"waiting: {held}", markup=False)

    submitted = [engine.submit(s, queue=queue, on_wait=on_wait) for s in specs]
    if not wait:
        for run in submitted:
            _spawn_executor(ctx, run)
        return [ctx.runs.get(r.id) for r in submitted]
    finals: list[Run] = []
    show_live = not as_json and err.is_terminal
    if show_live:
        with LiveProgress(err) as progress:
            for run in submitted:
                finals.append(engine.execute(run.id, observer=progress))
    else:
        for run in submitted:
            if not as_json:
                err.print(
                    f"run {run.id[:8]}: {run.kind.value} {run.member}/{run.app} {run.version}"
                )
            finals.append(engine.execute(run.id))
    return finals


def _spawn_executor(ctx: Context, run: Run) -> None:
    """Run it in a detached process, and wait until that process has taken it over."""
    log_dir = ctx.data_dir / "runs" / run.id
    log_dir.mkdir(parents=True, exist_ok=True)
    with open(log_dir / "executor.log", "ab") as log:
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "controlplane",
                "runs",
                "execute",
                run.id,
                "--fleet",
                str(ctx.settings.resolved_fleet),
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            env={**os.environ, "CONTROLPLANE_DATA_DIR": str(ctx.data_dir)},
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if ctx.runs.get(run.id).status is not RunStatus.QUEUED:
            return
        time.sleep(0.1)
    raise Unreachable(f"the executor for run {run.id} did not start; see {log_dir}/executor.log")


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
    ctx = context(fleet)
    if when is not None:
        _queue_for_window(ctx, when, member, app, version, serial, max_fail, reason, as_json)
        return
    specs = ctx.planner.plan_deploy(
        DeployRequest(
            member=member,
            app=app,
            version=version,
            check=check,
            serial=serial,
            max_fail=max_fail,
            started_by=who(),
            reason=reason,
            emergency_reason=emergency,
        )
    )
    runs = _execute_all(ctx, specs, wait=wait, queue=queue, as_json=as_json)
    _report(ctx, runs, as_json)
    if wait:
        fail_unless_successful(runs)


def _queue_for_window(
    ctx: Context,
    when: str,
    member: str,
    app: str | None,
    version: str | None,
    serial: str | None,
    max_fail: str | None,
    reason: str,
    as_json: bool,
) -> None:
    from controlplane.maintenance.cli import stored_schedule

    if when != "next-window":
        raise InvalidInput(f"--when: {when!r} is not understood; use next-window")
    if app is None:
        raise InvalidInput("--when next-window needs --app: each app waits for its own window")
    request = DeployRequest(
        member, app, version, serial=serial, max_fail=max_fail, started_by=who(), reason=reason
    )
    with stored_schedule(ctx):
        job_id, at = ctx.maintenance.queue_deploy(request)
    if as_json:
        print_json(
            {
                "status": "scheduled",
                "id": job_id,
                "member": member,
                "app": app,
                "at": at.isoformat(),
            }
        )
    else:
        out.print(f"deploy of {member}/{app} scheduled for {at.isoformat()} ({job_id})")


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
    ctx = context(fleet)
    spec = ctx.planner.plan_rollback(member, app, version, started_by=who(), reason=reason)
    spec = replace(spec, emergency_reason=emergency)
    runs = _execute_all(ctx, [spec], wait=True, queue=False, as_json=as_json)
    _report(ctx, runs, as_json)
    fail_unless_successful(runs)


def fail_unless_successful(runs: list[Run]) -> None:
    bad = [r for r in runs if r.status is not RunStatus.SUCCESSFUL]
    if bad:
        raise OperationFailed(
            "; ".join(f"run {r.id[:8]} {r.member}/{r.app} {r.status.value}" for r in bad)
        )


# -- runs ----------------------------------------------------------------------------------


@runs_app.command("list")
def runs_list(
    member: Annotated[str | None, typer.Option("--member", help="Only this member.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10_000)] = 20,
    fleet: FleetOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The newest runs, with status and who started them."""
    ctx = context(fleet)
    ctx.deployer  # noqa: B018 - recovering dead runs first makes the list true
    runs = ctx.runs.find(member=member, limit=limit)
    if as_json:
        print_json([run_json(r, ctx.runs.host_results(r.id)) for r in runs])
        return
    table = Table(title="Runs")
    for col in ("id", "kind", "member/app", "version", "status", "started by", "created (UTC)"):
        table.add_column(col)
    for r in runs:
        table.add_row(
            r.id[:8],
            r.kind.value,
            f"{r.member or '-'}/{r.app or '-'}",
            r.version or "-",
            r.status.value,
            r.started_by,
            r.created_at.strftime("%Y-%m-%d %H:%M:%S"),
        )
    out.print(table)


@runs_app.command("show")
def runs_show(
    run_id: Annotated[str, typer.Argument(help="Run id (or a unique prefix).")],
    follow: Annotated[bool, typer.Option("--follow", help="Stream events until it ends.")] = False,
    fleet: FleetOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """One run: its hosts, and its events (with --follow, live until the run ends)."""
    ctx = context(fleet)
    engine = ctx.deployer  # recovering dead runs first: a shown status is a true one
    run = ctx.runs.get(run_id)
    if follow:
        seq = -1
        checked = time.monotonic()
        while True:
            for e in ctx.runs.events(run.id, after_seq=seq):
                seq = e.seq
                if e.host and e.event.startswith("runner_on_") and e.event != "runner_on_start":
                    state = e.event.removeprefix("runner_on_")
                    if e.data.get("changed"):
                        state = "changed"
                    err.print(f"{e.created_at:%H:%M:%S} {e.host:12} {state:12} {e.task}")
            if time.monotonic() - checked > 5:
                # The owner may die while we watch; following must not wait forever.
                engine.recover()
                checked = time.monotonic()
            run = ctx.runs.get(run.id)
            if run.status.finished:
                break
            time.sleep(0.5)
    _report(ctx, [run], as_json)


@runs_app.command("cancel")
def runs_cancel(
    run_id: Annotated[str, typer.Argument(help="Run id (or a unique prefix).")],
    fleet: FleetOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Cancel a run: its ansible process group is ended and the outcome recorded."""
    ctx = context(fleet)
    run = ctx.runs.request_cancel(ctx.runs.get(run_id).id)
    if as_json:
        print_json({"id": run.id, "status": run.status.value, "cancel_requested": True})
    else:
        out.print(f"run {run.id[:8]}: cancel requested ({run.status.value})")


@runs_app.command("execute", hidden=True)
def runs_execute(run_id: str, fleet: FleetOpt = None) -> None:
    """Execute a queued run (used by --no-wait to run detached)."""
    ctx = context(fleet)
    run = ctx.deployer.execute(ctx.runs.get(run_id).id)
    if run.status is not RunStatus.SUCCESSFUL:
        raise OperationFailed(f"run {run.id} {run.status.value}: {run.error or ''}")
