"""Schedule operations for every edge: list and sync the stored schedule, and store a deploy
to start when its member's app may next be changed.

One-shot callers (the CLI, an HTTP request) are not the service: they open the persistent
schedule for reading and writing only, and never run a job themselves.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum
from typing import TYPE_CHECKING

from apscheduler.job import Job
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler

from controlplane.access.policy import Action, Principal, authorize
from controlplane.audit.chain import AuditAction, Outcome
from controlplane.deploy.plan import DeployRequest
from controlplane.errors import Forbidden, InvalidInput, Refused
from controlplane.scheduler import JOB_TABLE
from controlplane.schemas.runs import ScheduledDeployOut
from controlplane.schemas.schedule import ScheduledJobOut, ScheduleSyncOut

if TYPE_CHECKING:
    from controlplane.app import Context

# Stored jobs the schedule list shows: maintenance windows, cron jobs, queued deploys.
_SHOWN_KINDS = ("window", "cron", "deploy")


class When(Enum):
    """When a stored deploy starts."""

    NEXT_WINDOW = "next-window"

    @staticmethod
    def parse(text: str) -> When:
        try:
            return When(text)
        except ValueError:
            choices = ", ".join(w.value for w in When)
            raise InvalidInput(f"when: {text!r} is not understood; use {choices}") from None


class StoreOnlyScheduler(BackgroundScheduler):  # type: ignore[misc]
    """Reads and writes the stored schedule and never runs a job. (A paused scheduler still
    runs due jobs once while it shuts down, hence the override.)"""

    def _process_jobs(self) -> float | None:
        return None


@contextmanager
def stored_schedule(ctx: Context) -> Iterator[BackgroundScheduler]:
    """The persistent schedule, opened for reading and writing only."""
    scheduler = StoreOnlyScheduler(
        jobstores={"default": SQLAlchemyJobStore(engine=ctx.engine, tablename=JOB_TABLE)},
        timezone="UTC",
    )
    ctx.maintenance.install(scheduler)
    scheduler.start(paused=True)
    try:
        yield scheduler
    finally:
        scheduler.shutdown(wait=False)


def list_schedule(ctx: Context, principal: Principal) -> list[ScheduledJobOut]:
    """Every stored maintenance job and queued deploy, with its next start. A member-scoped
    caller sees its members' deploys, and host jobs only on hosts carrying their instances."""
    authorize(principal, Action.SCHEDULE_READ)
    with stored_schedule(ctx) as scheduler:
        return [
            ScheduledJobOut(id=j.id, name=j.name, next_run=j.next_run_time)
            for j in scheduler.get_jobs()
            if j.id.split(":", 1)[0] in _SHOWN_KINDS and _visible_job(ctx, principal, j)
        ]


def _visible_job(ctx: Context, principal: Principal, job: Job) -> bool:
    if not principal.scoped:
        return True
    kind, _, rest = job.id.partition(":")
    if kind == "deploy":
        payload = job.args[2] if len(job.args) > 2 and isinstance(job.args[2], dict) else {}
        member = payload.get("member")
        return isinstance(member, str) and principal.sees(member)
    declared = ctx.maintenance.jobs.get(rest.split(":", 1)[0])
    if declared is None:
        return False
    gate = ctx.gate
    return any(principal.sees(m) for h in declared.hosts for m, _ in gate.placed_on(h))


def sync_schedule(ctx: Context, principal: Principal) -> ScheduleSyncOut:
    """Store each maintenance job's next start from the fleet's maintenance file."""
    authorize(principal, Action.RUNS_WRITE)
    if principal.scoped:  # the jobs patch shared hosts: not one member's business
        raise Forbidden(f"{principal.name} acts for some members only; the schedule is shared")
    with stored_schedule(ctx) as scheduler:
        ctx.maintenance.sync()
        return ScheduleSyncOut(jobs=len(scheduler.get_jobs()))


def schedule_deploy(
    ctx: Context,
    principal: Principal,
    member: str,
    app: str | None,
    *,
    when: str = When.NEXT_WINDOW.value,
    version: str | None = None,
    serial: str | None = None,
    max_fail: str | None = None,
    reason: str = "",
    record: bool = False,
) -> ScheduledDeployOut:
    """Store a deploy of one app; the service starts it at the next moment the gate allows
    (``record``: once it succeeded, the fleet's stacks.yml declares its version).
    Bad input fails before anything is stored. The request is audited as a ``deploy``
    (``accepted``, the target is the stored job); its start and end are audited when the
    scheduler gets to it."""
    When.parse(when)
    try:
        authorize(principal, Action.RUNS_WRITE, member)
    except Refused as exc:
        detail = {"app": app, "when": when}
        ctx.audit.refused(
            principal, AuditAction.DEPLOY, exc, member=member, reason=reason, detail=detail
        )
        raise
    if app is None:
        raise InvalidInput("app: a deploy that waits for a window names its app")
    if record and version is None:
        raise InvalidInput(
            "record: needs a version; without one the fleet's declared version is deployed"
        )
    request = DeployRequest(
        member,
        app,
        version,
        serial=serial,
        max_fail=max_fail,
        started_by=principal.name,
        reason=reason,
    )
    with stored_schedule(ctx):
        job_id, at = ctx.maintenance.queue_deploy(request, record=record)
    ctx.audit.record(
        principal,
        AuditAction.DEPLOY,
        member=member,
        target=job_id,
        reason=reason,
        outcome=Outcome.ACCEPTED,
        detail={"app": app, "version": version, "when": when, "at": at.isoformat()},
    )
    return ScheduledDeployOut(id=job_id, member=member, app=app, version=version, at=at)
