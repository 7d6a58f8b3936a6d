"""Runs as the edges show them: a run with its hosts, a page of runs, events, plans."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from controlplane.deploy.model import HostResult, Run, RunEvent
from controlplane.schemas.declared import DeclaredOut, StackPlanOut


class HostResultOut(BaseModel):
    host: str
    outcome: str
    ok: int
    changed: int
    failures: int
    unreachable: int
    release_before: str | None
    release_after: str | None
    started_at: datetime | None
    finished_at: datetime | None
    reason: str | None = Field(
        default=None,
        description="a failed or unreachable host: its first failing task and message, one line",
    )

    @classmethod
    def of(cls, h: HostResult) -> HostResultOut:
        return cls(
            host=h.host,
            outcome=h.outcome.value,
            ok=h.ok,
            changed=h.changed,
            failures=h.failures,
            unreachable=h.unreachable,
            release_before=h.release_before,
            release_after=h.release_after,
            started_at=h.started_at,
            finished_at=h.finished_at,
            reason=h.reason,
        )


class RunOut(BaseModel):
    """One run and where each of its hosts was left."""

    id: str
    kind: str
    status: str
    member: str | None
    app: str | None
    version: str | None
    playbook: str
    started_by: str
    reason: str
    emergency_reason: str | None
    options: dict[str, Any]
    tuning: dict[str, Any]
    cancel_requested: bool
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    rc: int | None
    error: str | None
    failure: Literal["config", "unreachable", "failed"] | None = Field(
        default=None,
        description="a failed run: config, unreachable or failed (exit code 2, 4 or 1)",
    )
    check: bool = Field(default=False, description="a plan (check mode): it changed nothing")
    hosts: list[HostResultOut]

    @classmethod
    def of(cls, run: Run, hosts: list[HostResult]) -> RunOut:
        return cls(**_run_fields(run), hosts=[HostResultOut.of(h) for h in hosts])


def _run_fields(run: Run) -> dict[str, Any]:
    return {
        "id": run.id,
        "kind": run.kind.value,
        "status": run.status.value,
        "member": run.member,
        "app": run.app,
        "version": run.version,
        "playbook": run.playbook,
        "started_by": run.started_by,
        "reason": run.reason,
        "emergency_reason": run.emergency_reason,
        "options": run.options.to_json(),
        "tuning": run.tuning,
        "cancel_requested": run.cancel_requested,
        "created_at": run.created_at,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "rc": run.rc,
        "error": run.error,
        "failure": None if run.failure is None else run.failure.value,
        "check": run.options.check,
    }


class PlanChangeOut(BaseModel):
    """In a plan (check mode): the tasks that would change this host, and the release
    switch and restart a deploy would make there (``None`` when the host did not say)."""

    host: str
    tasks: list[str]
    release_before: str | None = None
    release_after: str | None = None
    restart: bool | None = None


class RunDetailOut(RunOut):
    """A run, its hosts, and for a plan what would change (``None`` for other runs)."""

    changes: list[PlanChangeOut] | None = None
    # A deploy's declared version: stacks.yml after the run (None for other runs).
    declared: DeclaredOut | None = None


class RunPageOut(BaseModel):
    """Newest first; pass ``next_cursor`` back for the next page (``None``: no more)."""

    runs: list[RunOut]
    next_cursor: str | None


class RunEventOut(BaseModel):
    run_id: str
    seq: int
    event: str
    created_at: datetime
    host: str | None
    task: str | None
    data: dict[str, Any]

    @classmethod
    def of(cls, e: RunEvent) -> RunEventOut:
        return cls(
            run_id=e.run_id,
            seq=e.seq,
            event=e.event,
            created_at=e.created_at,
            host=e.host,
            task=e.task,
            data=e.data,
        )


class CancelOut(BaseModel):
    id: str
    status: str
    cancel_requested: bool


class ScheduledDeployOut(BaseModel):
    """A deploy stored to start when the member's app may next be changed."""

    status: str = "scheduled"
    id: str
    member: str
    app: str
    version: str | None
    at: datetime


class InstanceHealthOut(BaseModel):
    member: str
    app: str
    version: str | None
    host: str
    address: str
    port: int
    status: str
    latency_seconds: float
    error: str | None


class ProvisionOut(BaseModel):
    """``status`` is ok when every run succeeded and every instance answers healthy."""

    status: str
    seconds: float
    runs: list[RunOut]
    instances: list[InstanceHealthOut]
    # Member apps left alone because a live release is newer than the declared one.
    refused: list[StackPlanOut] = Field(default_factory=list)


class LaunchedOut(BaseModel):
    """Runs just submitted over the API: each has passed the gate and holds its locks, and
    executes on in the server after the answer."""

    runs: list[RunOut]
