"""Deploy operations for every edge: deploy, plan, rollback, cancel, execute, recover.

Each takes typed arguments and the caller as a ``Principal``, asks the access policy
itself, and returns runs or raises errors from ``controlplane.errors``. Nothing here prints
or knows which edge called it; progress reaches an edge through the engine's ``Observer``.

Every change is audited here, so no edge can forget it: each run submitted (``accepted``),
refused by the access policy, the windows gate or a lock (``refused``), let through a
closed gate by an emergency reason (``emergency_override``), canceled, and ended
(``controlplane.audit.runs`` says what each entry holds).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from controlplane.access.policy import Action, Principal, authorize
from controlplane.audit import runs as audit_runs
from controlplane.audit.chain import AuditAction, Outcome
from controlplane.deploy.engine import Observer
from controlplane.deploy.history import visible_run
from controlplane.deploy.model import (
    HostOutcome,
    HostResult,
    Run,
    RunFailure,
    RunSpec,
    RunStatus,
)
from controlplane.deploy.plan import DeployRequest
from controlplane.deploy.reasons import run_failure
from controlplane.errors import (
    ControlPlaneError,
    InvalidInput,
    LockHeld,
    OperationFailed,
    Refused,
    Unreachable,
)

if TYPE_CHECKING:
    from controlplane.app import Context

# How long a detached executor may take to pick up its run before we call it dead.
EXECUTOR_START_SECONDS = 30.0

OnWait = Callable[[LockHeld], None]


def recover_runs(ctx: Context) -> list[Run]:
    """Mark runs whose owner died as interrupted, free their locks and record where each
    host was left. Cheap when nothing died; edges call it before they read or launch."""
    from controlplane.deploy.recovery import recover

    recovered = recover(ctx.deployer)
    for run in recovered:
        audit_runs.record_end(ctx.audit, run)
    return recovered


def _authorize(
    ctx: Context, principal: Principal, action: AuditAction, member: str, reason: str
) -> None:
    """The access check of a run's launch; a refusal is audited as that action."""
    try:
        authorize(principal, Action.RUNS_WRITE, member)
    except Refused as exc:
        ctx.audit.refused(principal, action, exc, member=member, reason=reason)
        raise


def deploy(
    ctx: Context,
    principal: Principal,
    member: str,
    *,
    app: str | None = None,
    version: str | None = None,
    check: bool = False,
    serial: str | None = None,
    max_fail: str | None = None,
    reason: str = "",
    emergency_reason: str | None = None,
    wait: bool = True,
    queue: bool = False,
    record: bool = False,
    observer: Observer | None = None,
    on_wait: OnWait | None = None,
) -> list[Run]:
    """Deploy a member's stack (every app, or one) at the fleet's or a given version.

    One run per app. ``check`` plans only (check mode with diff). With ``wait`` the runs
    execute here and come back finished; without, each goes to a detached executor and
    comes back as soon as that executor has taken it. ``queue`` waits for a conflicting
    run to end instead of refusing with ``LockHeld``. ``record``: once a run succeeded,
    the fleet's stacks.yml declares its version (whoever executes it: see
    ``deploy.declared``); a plan or a failed run records nothing."""
    _authorize(ctx, principal, AuditAction.PLAN if check else AuditAction.DEPLOY, member, reason)
    if record and version is None:
        raise InvalidInput(
            "record: needs a version; without one the fleet's declared version is deployed"
        )
    specs = ctx.planner.plan_deploy(
        DeployRequest(
            member=member,
            app=app,
            version=version,
            check=check,
            serial=serial,
            max_fail=max_fail,
            started_by=principal.name,
            reason=reason,
            emergency_reason=emergency_reason,
        )
    )
    if record:
        specs = [replace(s, options=replace(s.options, record=True)) for s in specs]
    return launch(
        ctx, specs, wait=wait, queue=queue, observer=observer, on_wait=on_wait, principal=principal
    )


def plan(
    ctx: Context,
    principal: Principal,
    member: str,
    *,
    app: str | None = None,
    version: str | None = None,
    wait: bool = True,
    observer: Observer | None = None,
) -> list[Run]:
    """What a deploy would change, host by host, without changing anything."""
    return deploy(
        ctx, principal, member, app=app, version=version, check=True, wait=wait, observer=observer
    )


def rollback(
    ctx: Context,
    principal: Principal,
    member: str,
    app: str,
    *,
    version: str | None = None,
    reason: str = "",
    emergency_reason: str | None = None,
    wait: bool = True,
    observer: Observer | None = None,
) -> list[Run]:
    """Switch a member's app back to its previous (or a named) release."""
    _authorize(ctx, principal, AuditAction.ROLLBACK, member, reason)
    spec = ctx.planner.plan_rollback(member, app, version, started_by=principal.name, reason=reason)
    spec = replace(spec, emergency_reason=emergency_reason)
    return launch(ctx, [spec], wait=wait, queue=False, observer=observer, principal=principal)


def cancel(ctx: Context, principal: Principal, run_id: str, *, reason: str = "") -> Run:
    """Ask for a run to end: a queued run is canceled at once, a running one has its
    ansible process group ended by the process executing it. Asking to cancel a run that
    already ended changes nothing and is audited as ``failed``."""
    try:
        run = visible_run(ctx, principal, run_id, Action.RUNS_WRITE)
    except Refused as exc:
        # The id as given, cut short: it is the caller's text, not a known run.
        detail = {"run": run_id[:64]}
        ctx.audit.refused(principal, AuditAction.CANCEL, exc, reason=reason, detail=detail)
        raise
    after = ctx.runs.request_cancel(run.id)
    ctx.audit.record(
        principal,
        AuditAction.CANCEL,
        member=run.member,
        target=run.id,
        reason=reason,
        outcome=Outcome.FAILED if run.status.finished else Outcome.OK,
        detail={**audit_runs.facts(run), "status": after.status.value},
    )
    if after.status.finished and not run.status.finished:
        # A queued run ends here and no executor will report it: record its end now.
        audit_runs.record_end(ctx.audit, after)
    return after


def launch(
    ctx: Context,
    specs: Sequence[RunSpec],
    *,
    wait: bool,
    queue: bool,
    observer: Observer | None = None,
    on_wait: OnWait | None = None,
    principal: Principal,
) -> list[Run]:
    """Submit every spec for ``principal`` (each asks the gate and takes its locks), then
    execute them here one after another, or hand each to a detached executor."""
    submitted = [submit(ctx, principal, s, queue=queue, on_wait=on_wait) for s in specs]
    if not wait:
        for run in submitted:
            start_detached(ctx, run)
        return [ctx.runs.get(r.id) for r in submitted]
    return [execute(ctx, r.id, observer=observer) for r in submitted]


def submit(
    ctx: Context,
    principal: Principal,
    spec: RunSpec,
    *,
    queue: bool = False,
    on_wait: OnWait | None = None,
) -> Run:
    """Submit one run and audit it: accepted (and an emergency override when that is what
    let it through the gate), or refused by the gate or a lock, which is re-raised."""
    try:
        run = ctx.deployer.submit(spec, queue=queue, on_wait=on_wait)
    except Refused as exc:
        audit_runs.record_refused(ctx.audit, principal, spec, exc)
        raise
    audit_runs.record_accepted(ctx.audit, principal, run)
    return run


def execute(ctx: Context, run_id: str, observer: Observer | None = None) -> Run:
    """Execute a queued run in this process to its end (the detached executor's work);
    its end is audited."""
    run = ctx.deployer.execute(ctx.runs.get(run_id).id, observer=observer)
    audit_runs.record_end(ctx.audit, run)
    return run


def start_detached(ctx: Context, run: Run) -> None:
    """Execute the run in a process of its own, and return once that process has taken it
    over: the run then survives the caller (a closed terminal, an ended HTTP request)."""
    log_dir = ctx.data_dir / "runs" / run.id
    log_dir.mkdir(parents=True, exist_ok=True)
    fleet = str(ctx.settings.resolved_fleet)
    command = [sys.executable, "-m", "controlplane", "runs", "execute", run.id, "--fleet", fleet]
    env = {**os.environ, "CONTROLPLANE_DATA_DIR": str(ctx.data_dir)}
    if ctx.settings.database_url:
        env["CONTROLPLANE_DATABASE_URL"] = ctx.settings.database_url
    with open(log_dir / "executor.log", "ab") as log:
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            env=env,
        )
    # A long-lived caller (serve) must reap its executors: recovery takes a zombie for a
    # live owner, and would never free the locks of a run whose executor died.
    threading.Thread(target=proc.wait, name=f"reap-{run.id[:8]}", daemon=True).start()
    deadline = time.monotonic() + EXECUTOR_START_SECONDS
    while time.monotonic() < deadline:
        if ctx.runs.get(run.id).status is not RunStatus.QUEUED:
            return
        time.sleep(0.1)
    # Nobody took it: cancel it, or its locks stay with a caller that may live on (serve).
    ctx.runs.request_cancel(run.id)
    raise Unreachable(f"the executor for run {run.id} did not start; see {log_dir}/executor.log")


def unreachable_only(hosts: Sequence[HostResult]) -> bool:
    """The run failed only because hosts could not be reached: every host that did not
    come through is unreachable (and at least one is)."""
    bad = [h for h in hosts if h.outcome in (HostOutcome.FAILED, HostOutcome.UNREACHABLE)]
    return bool(bad) and all(h.outcome is HostOutcome.UNREACHABLE for h in bad)


def failure_kind(run: Run, hosts: Sequence[HostResult]) -> RunFailure:
    """What kind of failure a run that did not succeed is: its recorded ``failure``; for
    runs recorded before that existed, unreachable when only unreachable hosts failed it.
    Canceled, timed out and interrupted runs count as failed."""
    if run.status is not RunStatus.FAILED:
        return RunFailure.FAILED
    if run.failure is not None:
        return run.failure
    return RunFailure.UNREACHABLE if unreachable_only(hosts) else RunFailure.FAILED


def outcome_error(results: Sequence[tuple[Run, Sequence[HostResult]]]) -> ControlPlaneError | None:
    """The error for runs that did not all succeed, or None when they did, carrying each
    bad run's own error text (which names each bad host with its reason).

    The kind follows the runs' failures: any run that failed (a task, the health gate, a
    cancel) is ``OperationFailed`` (exit 1); else a configuration problem (a key, vault
    file or vault password) is ``InvalidInput`` (2); runs that failed only on unreachable
    hosts are ``Unreachable`` (4)."""
    bad = [(r, h) for r, h in results if r.status is not RunStatus.SUCCESSFUL]
    if not bad:
        return None
    text = "; ".join(
        f"run {r.id[:8]} {r.member or '-'}/{r.app or '-'} {r.status.value}"
        + (f": {r.error}" if r.error else "")
        for r, _ in bad
    )
    kind = run_failure(failure_kind(r, h) for r, h in bad)
    if kind is RunFailure.CONFIG:
        return InvalidInput(text)
    if kind is RunFailure.UNREACHABLE:
        return Unreachable(text)
    return OperationFailed(text)


def ensure_successful(ctx: Context, runs: Sequence[Run]) -> None:
    """Raise the right error unless every run succeeded."""
    error = outcome_error([(r, ctx.runs.host_results(r.id)) for r in runs])
    if error is not None:
        raise error
