"""What the audit log says about runs: their submission, refusal, override and end.

Each run leaves two entries with the same ``target`` (the run id): one when it is
accepted (outcome ``accepted``) and one when it ends (``ok`` when it succeeded, ``failed``
when it failed, was canceled, timed out or was interrupted; ``detail.status`` says which).
The first names whoever asked for the run; the second is written by the control plane
itself (``SYSTEM``), since a run's end is a fact the control plane reports, whichever
process happened to execute it; ``detail.started_by`` still names who asked.

A run the windows gate or a lock refuses was never created, so its ``refused`` entry has
no run id: ``target`` is empty and ``detail`` says what was asked for and why it was
refused. A run let through a closed gate by an emergency reason also gets an
``emergency_override`` entry whose ``reason`` is that emergency reason.

Only plain facts go into ``detail`` (kind, app, version, hosts, the scheduled job): never
a run's variables, its output or its error text, which may quote what a host printed.
"""

from __future__ import annotations

from typing import Any

from controlplane.access.policy import Principal, Role
from controlplane.audit.chain import AuditAction, AuditEntry, Outcome
from controlplane.audit.store import AuditLog
from controlplane.deploy.model import Run, RunKind, RunSpec, RunStatus
from controlplane.windows.decision import Reason

# The control plane itself, as the author of entries no person wrote at that moment: the
# end of a run. Admin, because it acts on every member's behalf.
SYSTEM = Principal(name="controlplane", role=Role.ADMIN)


def action_for(run: Run | RunSpec) -> AuditAction:
    """The action a run is audited under: scheduled work is a ``schedule_start``, a
    check-mode deploy a ``plan``, a rollback a ``rollback`` and the rest a ``deploy``."""
    if run.options.schedule is not None:
        return AuditAction.SCHEDULE_START
    if run.kind is RunKind.ROLLBACK:
        return AuditAction.ROLLBACK
    if run.options.check:
        return AuditAction.PLAN
    return AuditAction.DEPLOY


def facts(run: Run | RunSpec) -> dict[str, Any]:
    """The plain facts of a run for ``detail``; empty values are left out."""
    found: dict[str, Any] = {
        "kind": run.kind.value,
        "app": run.app,
        "version": run.version,
        "hosts": list(run.hosts),
    }
    schedule = run.options.schedule
    if schedule is not None:
        found["job"] = schedule.job
        found["window"] = schedule.window
        found["occurrence"] = (
            None if schedule.occurrence is None else schedule.occurrence.isoformat()
        )
    return {k: v for k, v in found.items() if v not in (None, [])}


def record_accepted(
    audit: AuditLog, principal: Principal, run: Run, action: AuditAction | None = None
) -> None:
    """A run was submitted: ``accepted``, and ``emergency_override`` when an emergency
    reason is what let it through the gate."""
    chosen = action or action_for(run)
    detail = facts(run)
    if run.started_by != principal.name:  # a queued deploy the scheduler starts
        detail["started_by"] = run.started_by
    audit.record(
        principal,
        chosen,
        member=run.member,
        target=run.id,
        reason=run.reason,
        outcome=Outcome.ACCEPTED,
        detail=detail,
    )
    gate = run.options.gate
    if gate is not None and gate.reason == Reason.EMERGENCY.value:
        audit.record(
            principal,
            AuditAction.EMERGENCY_OVERRIDE,
            member=run.member,
            target=run.id,
            reason=run.emergency_reason or "",
            outcome=Outcome.OK,
            detail={"action": chosen.value, "gate": gate.message, **facts(run)},
        )


def record_refused(
    audit: AuditLog,
    principal: Principal,
    spec: RunSpec,
    refusal: Exception,
    action: AuditAction | None = None,
) -> AuditEntry:
    """A run the gate, a lock or the access policy refused: nothing was created."""
    return audit.refused(
        principal,
        action or action_for(spec),
        refusal,
        member=spec.member,
        reason=spec.reason,
        detail=facts(spec),
    )


def record_end(audit: AuditLog, run: Run) -> None:
    """A run ended (or was found to have ended); nothing is written while it still runs."""
    if not run.status.finished or run.status is RunStatus.SKIPPED:
        return
    audit.record(
        SYSTEM,
        action_for(run),
        member=run.member,
        target=run.id,
        reason=run.reason,
        outcome=Outcome.OK if run.status is RunStatus.SUCCESSFUL else Outcome.FAILED,
        detail={**facts(run), "status": run.status.value, "started_by": run.started_by},
    )
