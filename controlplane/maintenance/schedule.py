"""Scheduling maintenance on APScheduler: jobs start when their window opens.

How it works:

* Each window-bound job is one persisted ``DateTrigger`` job for the window's *next*
  occurrence (id ``window:<job>:<start>``). When it fires it does the work and schedules the
  occurrence after. Because the id names the occurrence, a restart that re-syncs the
  schedule replaces, never duplicates, and nothing is lost: the job lives in the database.
* Misfire policy: a job whose start passed while the control plane was down still runs if
  it is inside its window and before the cutoff (APScheduler's ``misfire_grace_time`` is
  set to exactly that span); otherwise APScheduler skips it and we record a ``skipped`` run.
* The gate is asked again at the moment the work starts (a freeze beats the window).
* ``deploy --when next-window`` stores a one-shot job (id ``deploy:<uuid>``) at the next
  opening the gate reports; it is planned and gated again when it fires.
* Everything the scheduler starts or skips is audited, with ``SCHEDULER`` (name
  ``scheduler``, role ``admin``) as the actor: ``schedule_start`` (accepted) when a job's
  run starts, ``maintenance_skipped`` when a job is skipped (``refused`` by the gate or a
  lock, ``failed`` when it was missed), and the run's end like any other run's.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from apscheduler.events import EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger

from controlplane.access.policy import Principal, Role
from controlplane.audit import runs as audit_runs
from controlplane.audit.chain import AuditAction, Outcome
from controlplane.audit.store import AuditLog
from controlplane.deploy.engine import Engine
from controlplane.deploy.model import Run, RunKind, RunSpec, RunStatus
from controlplane.deploy.options import PlaybookVars, RunOptions, ScheduleRef
from controlplane.deploy.plan import DeployRequest, Planner
from controlplane.deploy.rollout import Serial, parse_max_fail
from controlplane.errors import ControlPlaneError, GateClosed, InvalidInput, LockHeld
from controlplane.maintenance.model import JobKind, MaintenanceJob
from controlplane.windows.gate import Gate
from controlplane.windows.rules import Occurrence, ScopeKind

log = logging.getLogger(__name__)

# The one Maintenance object of this process: persisted jobs name a module-level function
# and find the live object here, since APScheduler cannot pickle an engine.
_active: Maintenance | None = None

DEPLOY_GRACE = timedelta(minutes=30)

# Who the audit log names for what the scheduler starts or skips: no person is at the
# keyboard then; a queued deploy's entries still say who queued it (``started_by``).
SCHEDULER = Principal(name="scheduler", role=Role.ADMIN)


def fire(kind: str, name: str, payload: dict[str, Any]) -> None:
    """What every persisted maintenance job runs."""
    if _active is None:
        log.warning("maintenance job %s %s fired with no maintenance service; skipped", kind, name)
        return
    _active.dispatch(kind, name, payload)


@dataclass(frozen=True)
class Silence:
    """Where to create Alertmanager silences for window occurrences (optional)."""

    url: str
    created_by: str = "controlplane"


class Maintenance:
    def __init__(
        self,
        engine: Engine,
        planner: Planner,
        gate: Gate,
        jobs: tuple[MaintenanceJob, ...],
        *,
        silence: Silence | None = None,
        clock: Callable[[], datetime] | None = None,
        fleet_dir: str | None = None,
        audit: AuditLog | None = None,
    ) -> None:
        self.engine = engine
        self.audit = audit or AuditLog(engine.store.engine)
        self.planner = planner
        self.gate = gate
        self.jobs = {j.name: j for j in jobs}
        self.silence = silence
        self.clock = clock or engine.clock
        self.fleet_dir = fleet_dir
        self.scheduler: BaseScheduler | None = None

    # -- installing the schedule -------------------------------------------------------------

    def install(self, scheduler: BaseScheduler) -> None:
        """Make this process run maintenance jobs, and bring the stored schedule in line
        with the fleet's ``maintenance.yml``. Call before ``scheduler.start()``."""
        global _active
        _active = self
        self.scheduler = scheduler
        scheduler.add_listener(self._on_missed, EVENT_JOB_MISSED)

    def sync(self) -> None:
        """Schedule each job's next run; drop stored jobs the fleet no longer declares.
        Call after ``scheduler.start()`` (a running or paused scheduler writes through)."""
        assert self.scheduler is not None
        now = self.clock()
        wanted: set[str] = set()
        for job in self.jobs.values():
            if job.cron is not None:
                job_id = f"cron:{job.name}"
                trigger = CronTrigger.from_crontab(job.cron, timezone=self.gate.fleet.timezone)
                self.scheduler.add_job(
                    fire,
                    trigger,
                    args=["cron", job.name, {}],
                    id=job_id,
                    name=job_id,
                    replace_existing=True,
                    misfire_grace_time=3600,
                    coalesce=True,
                )
                wanted.add(job_id)
            else:
                wanted.update(self._schedule_window(job, after=now, keep_due=True))
        for stored in self.scheduler.get_jobs():
            kind = stored.id.split(":", 1)[0]
            if kind in ("window", "cron") and stored.id not in wanted:
                stored.remove()

    def _schedule_window(
        self, job: MaintenanceJob, after: datetime, keep_due: bool = False
    ) -> set[str]:
        """Store the job for the window's next occurrence (and keep a due one)."""
        assert self.scheduler is not None and job.window is not None
        ids: set[str] = set()
        prefix = f"window:{job.name}:"
        existing = {j.id for j in self.scheduler.get_jobs() if j.id.startswith(prefix)}
        if keep_due:
            ids.update(existing)  # a pending (maybe overdue) occurrence is left to APScheduler
        if existing and keep_due:
            return ids
        nxt = self.gate.next_occurrences(job.window, after=after, count=1)
        if not nxt:
            return ids
        occ = nxt[0]
        job_id = f"{prefix}{occ.start.isoformat()}"
        grace = max(1, int((occ.cutoff_at - occ.start).total_seconds()))
        self.scheduler.add_job(
            fire,
            DateTrigger(run_date=occ.start),
            args=["window", job.name, {"start": occ.start.isoformat()}],
            id=job_id,
            name=job_id,
            replace_existing=True,
            misfire_grace_time=grace,
        )
        ids.add(job_id)
        return ids

    def queue_deploy(self, request: DeployRequest, *, record: bool = False) -> tuple[str, datetime]:
        """Store a deploy to run at the next moment the gate allows it (``record``: the run
        records its version in the fleet's stacks.yml once it succeeded)."""
        assert self.scheduler is not None
        [spec] = self.planner.plan_deploy(request)  # bad input fails here, nothing stored
        assert spec.member is not None
        decision = self.gate.check_member(spec.member, spec.app, self.clock())
        at = decision.at if decision.allowed else decision.next_allowed
        if at is None:
            raise InvalidInput(f"no window opens for {spec.member}/{spec.app} within a year")
        job_id = f"deploy:{uuid.uuid4().hex}"
        payload = {
            "member": request.member,
            "app": request.app,
            "version": spec.version,
            "serial": request.serial,
            "max_fail": request.max_fail,
            "started_by": request.started_by,
            "reason": request.reason,
            "record": record,
        }
        self.scheduler.add_job(
            fire,
            DateTrigger(run_date=at),
            args=["deploy", job_id, payload],
            id=job_id,
            name=f"deploy {spec.member}/{spec.app} {spec.version}",
            misfire_grace_time=int(DEPLOY_GRACE.total_seconds()),
        )
        return job_id, at

    # -- running ------------------------------------------------------------------------------

    def dispatch(self, kind: str, name: str, payload: dict[str, Any]) -> Run | None:
        try:
            if kind == "deploy":
                return self._deploy(payload)
            job = self.jobs.get(name)
            if job is None:
                log.warning("maintenance job %r is no longer declared; skipped", name)
                return None
            occurrence = None
            if kind == "window":
                start = datetime.fromisoformat(payload["start"])
                occurrence = self._occurrence(job, start)
            try:
                return self._maintain(job, occurrence)
            finally:
                if kind == "window":
                    self._schedule_window(job, after=self.clock() + timedelta(seconds=1))
        except ControlPlaneError as exc:  # logged, recorded; the scheduler must go on
            log.error("maintenance job %s %s failed: %s", kind, name, exc)
            return None

    def _occurrence(self, job: MaintenanceJob, start: datetime) -> Occurrence | None:
        assert job.window is not None
        found = self.gate.next_occurrences(job.window, after=start, count=1)
        return found[0] if found and found[0].start == start else None

    def _maintain(self, job: MaintenanceJob, occurrence: Occurrence | None) -> Run:
        vars_ = PlaybookVars()
        if job.kind is JobKind.DRIFT and self.fleet_dir:
            vars_ = PlaybookVars(
                vault_dir=f"{self.fleet_dir}/vault",
                broken_versions={
                    a.slug: tuple(v.version for v in a.versions if v.broken)
                    for a in self.gate.fleet.apps
                },
            )
        schedule = ScheduleRef(job=job.name)
        if occurrence is not None:
            schedule = ScheduleRef(
                job=job.name,
                occurrence=occurrence.start,
                window=occurrence.window.name,
                silence_id=self._silence(occurrence) if self.silence is not None else None,
            )
        options = RunOptions(
            serial=Serial.parse(job.serial).for_ansible(),
            max_fail_percentage=parse_max_fail(job.max_fail),
            schedule=schedule,
            vars=vars_,
        )
        spec = RunSpec(
            kind=RunKind.PATCH if job.kind is JobKind.PATCH else RunKind.DRIFT,
            playbook=job.playbook,
            started_by="scheduler",
            reason=f"maintenance job {job.name}"
            + (f" in window {occurrence.window.name}" if occurrence else ""),
            hosts=job.hosts,
            options=options,
        )
        if job.kind is JobKind.PATCH:
            return self._submit_and_run(spec)
        return self._drift_per_member(spec)

    def _drift_per_member(self, spec: RunSpec) -> Run:
        """One drift run per member on its hosts, so drift is found (and reported in the
        metrics) per member; the last run is returned."""
        fleet = self.gate.fleet
        last: Run | None = None
        for member in fleet.members:
            hosts = [h for h in dict.fromkeys(i.host for i in fleet.instances(member=member.slug))]
            hosts = [h for h in hosts if h in spec.hosts]
            if not hosts:
                continue
            # The engine gives a member's run its cp_member.
            last = self._submit_and_run(replace(spec, member=member.slug, hosts=tuple(hosts)))
        if last is None:
            raise InvalidInput(f"{spec.reason}: no member has instances on {spec.hosts}")
        return last

    def _deploy(self, payload: dict[str, Any]) -> Run:
        [spec] = self.planner.plan_deploy(
            DeployRequest(
                member=payload["member"],
                app=payload["app"],
                version=payload["version"],
                serial=payload.get("serial"),
                max_fail=payload.get("max_fail"),
                started_by=payload.get("started_by") or "scheduler",
                reason=(payload.get("reason") or "") + " (queued for the next window)",
            )
        )
        if payload.get("record") is True:
            spec = replace(spec, options=replace(spec.options, record=True))
        return self._submit_and_run(spec)

    def _submit_and_run(self, spec: RunSpec) -> Run:
        try:
            run = self.engine.submit(spec, queue=True, queue_timeout=600)
        except GateClosed as refused:
            why = f"the gate refused at start: {refused}"
            return self.record_skipped(spec, why, Outcome.REFUSED)
        except LockHeld as held:
            audit_runs.record_refused(
                self.audit, SCHEDULER, spec, held, AuditAction.MAINTENANCE_SKIPPED
            )
            raise
        audit_runs.record_accepted(self.audit, SCHEDULER, run, AuditAction.SCHEDULE_START)
        final = self.engine.execute(run.id)
        audit_runs.record_end(self.audit, final)
        return final

    def record_skipped(self, spec: RunSpec, why: str, outcome: Outcome = Outcome.FAILED) -> Run:
        """Record scheduled work that did not start, as a skipped run and in the audit log
        (``refused`` when the gate said no, ``failed`` when it was missed)."""
        run = self.engine.store.create(spec, node=self.engine.node)
        skipped = self.engine.store.transition(run.id, RunStatus.SKIPPED, error=why)
        self.audit.record(
            SCHEDULER,
            AuditAction.MAINTENANCE_SKIPPED,
            member=skipped.member,
            target=skipped.id,
            reason=skipped.reason,
            outcome=outcome,
            detail={**audit_runs.facts(skipped), "why": why, "started_by": skipped.started_by},
        )
        return skipped

    def _on_missed(self, event: JobExecutionEvent) -> None:
        """The window passed while the control plane was down: skip it and say so."""
        kind, _, rest = event.job_id.partition(":")
        name = rest.split(":", 1)[0] if kind == "window" else rest
        job = self.jobs.get(name)
        when = event.scheduled_run_time.isoformat()
        why = f"missed: the control plane was down when this was due at {when}"
        if job is not None and kind in ("window", "cron"):
            spec = RunSpec(
                kind=RunKind.PATCH if job.kind is JobKind.PATCH else RunKind.DRIFT,
                playbook=job.playbook,
                started_by="scheduler",
                reason=f"maintenance job {job.name}",
                hosts=job.hosts,
                options=RunOptions(
                    schedule=ScheduleRef(job=job.name, occurrence=event.scheduled_run_time)
                ),
            )
            self.record_skipped(spec, why)
            if kind == "window":
                self._schedule_window(job, after=self.clock())
        elif kind == "deploy":
            log.warning("queued deploy %s %s", event.job_id, why)
            self.audit.record(
                SCHEDULER,
                AuditAction.MAINTENANCE_SKIPPED,
                target=event.job_id,
                outcome=Outcome.FAILED,
                detail={"kind": "deploy", "why": why},
            )

    # -- Alertmanager --------------------------------------------------------------------------

    def _silence(self, occurrence: Occurrence) -> str | None:
        """Silence alerts for the window's scope for the occurrence; returns the silence id."""
        assert self.silence is not None
        scope = occurrence.window.scope
        if scope.kind is ScopeKind.HOST:
            matchers = [_matcher("host", str(scope.host))]
        elif scope.kind in (ScopeKind.MEMBER, ScopeKind.APP):
            matchers = [_matcher("member", str(scope.member))]
            if scope.app:
                matchers.append(_matcher("app", scope.app))
        else:
            matchers = [_matcher("job", ".+", regex=True)]
        body = {
            "matchers": matchers,
            "startsAt": occurrence.start.isoformat().replace("+00:00", "Z"),
            "endsAt": occurrence.end.isoformat().replace("+00:00", "Z"),
            "createdBy": self.silence.created_by,
            "comment": f"maintenance window {occurrence.window.name}",
        }
        request = urllib.request.Request(
            self.silence.url.rstrip("/") + "/api/v2/silences",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as resp:
                return str(json.loads(resp.read()).get("silenceID"))
        except (OSError, ValueError, urllib.error.URLError) as exc:
            # Monitoring being down must not stop planned maintenance.
            log.warning("could not create an Alertmanager silence: %s", exc)
            return None


def _matcher(name: str, value: str, regex: bool = False) -> dict[str, Any]:
    return {"name": name, "value": value, "isRegex": regex, "isEqual": True}
