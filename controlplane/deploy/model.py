"""Pure records of runs: what was asked, what happened, on which host."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any

from controlplane.deploy.options import RunOptions


class RunKind(Enum):
    DEPLOY = "deploy"
    ROLLBACK = "rollback"
    PATCH = "patch"
    DRIFT = "drift"
    PLAYBOOK = "playbook"


class RunStatus(Enum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCESSFUL = "successful"
    FAILED = "failed"
    CANCELED = "canceled"
    TIMED_OUT = "timed_out"
    INTERRUPTED = "interrupted"
    SKIPPED = "skipped"  # scheduled work that did not start: its window passed or closed

    @property
    def finished(self) -> bool:
        return self not in (RunStatus.QUEUED, RunStatus.RUNNING)


# A run only moves forward; a finished run never changes status again.
ALLOWED_TRANSITIONS: dict[RunStatus, frozenset[RunStatus]] = {
    RunStatus.QUEUED: frozenset(
        {
            RunStatus.RUNNING,
            RunStatus.CANCELED,
            RunStatus.INTERRUPTED,
            RunStatus.FAILED,
            RunStatus.SKIPPED,
        }
    ),
    RunStatus.RUNNING: frozenset(
        {
            RunStatus.SUCCESSFUL,
            RunStatus.FAILED,
            RunStatus.CANCELED,
            RunStatus.TIMED_OUT,
            RunStatus.INTERRUPTED,
        }
    ),
}


class RunFailure(Enum):
    """What kind of failure ended a failed run; its exit code follows it (2, 4, 1)."""

    CONFIG = "config"  # a key, known_hosts or vault file, or the vault password: fix the setup
    UNREACHABLE = "unreachable"  # only hosts that could not be reached
    FAILED = "failed"  # a task or the health gate failed on a host


class HostOutcome(Enum):
    OK = "ok"
    CHANGED = "changed"
    FAILED = "failed"
    UNREACHABLE = "unreachable"
    SKIPPED = "skipped"
    NOT_RUN = "not_run"  # the rollout stopped before this host's batch
    INTERRUPTED = "interrupted"  # the control plane died while this host was in the run


class LockMode(Enum):
    SHARED = "shared"
    EXCLUSIVE = "exclusive"


@dataclass(frozen=True)
class LockRequest:
    key: str
    mode: LockMode

    @staticmethod
    def stack(member: str, app: str) -> LockRequest:
        return LockRequest(f"stack:{member}/{app}", LockMode.EXCLUSIVE)

    @staticmethod
    def host(host: str, exclusive: bool) -> LockRequest:
        return LockRequest(f"host:{host}", LockMode.EXCLUSIVE if exclusive else LockMode.SHARED)


@dataclass(frozen=True)
class RunSpec:
    """What someone asked for; becomes a run record in status ``queued``."""

    kind: RunKind
    playbook: str
    started_by: str
    reason: str = ""
    member: str | None = None
    app: str | None = None
    version: str | None = None
    hosts: tuple[str, ...] = ()
    options: RunOptions = field(default_factory=RunOptions)
    emergency_reason: str | None = None


@dataclass(frozen=True)
class Run:
    id: str
    kind: RunKind
    status: RunStatus
    playbook: str
    started_by: str
    reason: str
    member: str | None
    app: str | None
    version: str | None
    hosts: tuple[str, ...]
    options: RunOptions
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    node: str | None = None
    rc: int | None = None
    error: str | None = None
    tuning: dict[str, Any] = field(default_factory=dict)
    emergency_reason: str | None = None
    cancel_requested: bool = False
    heartbeat_at: datetime | None = None
    # The fencing number: raised each time an execution starts or another node takes the
    # run over. Only the holder of the current number may write the run's outcome.
    lease: int = 0
    failure: RunFailure | None = None  # set on failed runs only


@dataclass(frozen=True)
class HostResult:
    run_id: str
    host: str
    outcome: HostOutcome
    ok: int = 0
    changed: int = 0
    failures: int = 0
    unreachable: int = 0
    skipped: int = 0
    release_before: str | None = None
    release_after: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    # A failed or unreachable host: its first failing task and message, one scrubbed line.
    reason: str | None = None


@dataclass(frozen=True)
class RunEvent:
    run_id: str
    seq: int
    event: str
    created_at: datetime
    host: str | None = None
    task: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class HeldLock:
    key: str
    run_id: str
    mode: LockMode
    acquired_at: datetime
