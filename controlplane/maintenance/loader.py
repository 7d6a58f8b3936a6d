"""Load ``maintenance.yml`` and check it against the fleet and its windows."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from apscheduler.triggers.cron import CronTrigger

from controlplane.errors import FleetInvalid
from controlplane.fleet.loader import read_yaml, validate_as
from controlplane.fleet.model import Fleet
from controlplane.maintenance.model import MaintenanceJob
from controlplane.windows.gate import Gate
from controlplane.windows.rules import ScopeKind, WindowKind

FILE = "maintenance.yml"


def load_jobs(directory: Path, fleet: Fleet, gate: Gate) -> tuple[MaintenanceJob, ...]:
    """The fleet's maintenance jobs; none when the file is absent."""
    path = directory / FILE
    if not path.exists():
        return ()
    doc = read_yaml(path) or {}
    if not isinstance(doc, dict) or set(doc) - {"jobs"}:
        raise FleetInvalid("", "must be a mapping with one key, jobs", str(path))
    try:
        jobs = validate_as(tuple[MaintenanceJob, ...], doc.get("jobs") or [], "jobs")
        return tuple(_resolve(job, fleet, gate) for job in _unique(jobs))
    except FleetInvalid as exc:
        raise exc.in_file(str(path)) from None


def _unique(jobs: tuple[MaintenanceJob, ...]) -> tuple[MaintenanceJob, ...]:
    seen: set[str] = set()
    for i, job in enumerate(jobs):
        if job.name in seen:
            raise FleetInvalid(f"jobs[{i}].name", f"duplicate name {job.name!r}")
        seen.add(job.name)
    return jobs


def _resolve(job: MaintenanceJob, fleet: Fleet, gate: Gate) -> MaintenanceJob:
    """Check references, and fill in the hosts from the window's scope when none are given."""
    where = f"jobs[{job.name}]"
    for host in job.hosts:
        if host not in {h.name for h in fleet.hosts}:
            raise FleetInvalid(f"{where}.hosts", f"unknown host {host!r}")
    if job.cron is not None:
        try:
            CronTrigger.from_crontab(job.cron, timezone=fleet.timezone)
        except ValueError as exc:
            raise FleetInvalid(f"{where}.cron", f"invalid cron {job.cron!r}: {exc}") from None
        return replace(job, hosts=job.hosts or tuple(h.name for h in fleet.hosts))
    assert job.window is not None
    if job.window not in {w.name for w in gate.windows}:
        raise FleetInvalid(f"{where}.window", f"unknown window {job.window!r}")
    window = gate.window(job.window)
    if window.kind is not WindowKind.MAINTENANCE:
        raise FleetInvalid(f"{where}.window", f"{job.window} is a freeze, not a window")
    if job.hosts:
        return job
    scope = window.scope
    if scope.kind is ScopeKind.HOST:
        hosts: tuple[str, ...] = (str(scope.host),)
    elif scope.kind is ScopeKind.EVERYTHING:
        hosts = tuple(h.name for h in fleet.hosts)
    else:
        member = str(scope.member)
        hosts = tuple(dict.fromkeys(i.host for i in fleet.instances(member=member, app=scope.app)))
    return replace(job, hosts=hosts)
