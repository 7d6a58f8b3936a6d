"""Planning: validate a request against the fleet and turn it into run specs.

Nothing is written here; bad input raises ``InvalidInput``/``NotFound`` before anything is
queued.
"""

from __future__ import annotations

from dataclasses import dataclass

from controlplane.deploy.model import LockRequest, RunKind, RunSpec, RunStatus
from controlplane.deploy.options import RunOptions
from controlplane.deploy.rollout import Serial, parse_max_fail
from controlplane.errors import InvalidInput
from controlplane.fleet.model import Fleet, check_version
from controlplane.store.runs import RunStore


@dataclass(frozen=True)
class DeployRequest:
    member: str
    app: str | None = None
    version: str | None = None
    check: bool = False
    serial: str | None = None
    max_fail: str | None = None
    started_by: str = "unknown"
    reason: str = ""
    emergency_reason: str | None = None


def lock_requests(spec: RunSpec) -> list[LockRequest]:
    """A stack run locks its member's app and shares its hosts; a host run owns its hosts."""
    if spec.kind is RunKind.PATCH:
        return [LockRequest.host(h, exclusive=True) for h in spec.hosts]
    locks = [LockRequest.host(h, exclusive=False) for h in spec.hosts]
    if spec.member and spec.app:
        locks.insert(0, LockRequest.stack(spec.member, spec.app))
    return locks


class Planner:
    def __init__(self, fleet: Fleet, store: RunStore) -> None:
        self.fleet = fleet
        self.store = store

    def plan_deploy(self, req: DeployRequest) -> list[RunSpec]:
        """One run spec per app; raises ``InvalidInput``/``NotFound`` before anything is queued."""
        self.fleet.member(req.member)
        if req.version is not None:
            try:
                check_version(req.version)
            except ValueError as exc:
                raise InvalidInput(f"version: {exc}") from None
            if req.app is None:
                raise InvalidInput("version: needs an app, as apps have their own version lines")
        serial = Serial.parse(req.serial) if req.serial is not None else None
        max_fail = parse_max_fail(req.max_fail) if req.max_fail is not None else None
        stack_apps = (
            [self.fleet.stack_app(req.member, req.app)]
            if req.app
            else list(self.fleet.stack(req.member).apps)
        )
        if not stack_apps:
            raise InvalidInput(f"member {req.member} runs no apps in this fleet")
        specs = []
        for sa in stack_apps:
            version = req.version or sa.version
            release = self.fleet.app(sa.app).version(version)
            specs.append(
                RunSpec(
                    kind=RunKind.DEPLOY,
                    playbook="deploy.yml",
                    started_by=req.started_by,
                    reason=req.reason,
                    member=req.member,
                    app=sa.app,
                    version=version,
                    hosts=tuple(i.host for i in sa.instances),
                    options=RunOptions(
                        check=req.check,
                        serial=serial.for_ansible() if serial else None,
                        max_fail_percentage=max_fail,
                        broken=release.broken,
                    ),
                    emergency_reason=req.emergency_reason,
                )
            )
        return specs

    def plan_rollback(
        self,
        member: str,
        app: str,
        version: str | None = None,
        started_by: str = "unknown",
        reason: str = "",
    ) -> RunSpec:
        sa = self.fleet.stack_app(member, app)
        if version is None:
            version = self.last_good_release(member, app)
        else:
            try:
                check_version(version)
            except ValueError as exc:
                raise InvalidInput(f"version: {exc}") from None
        self.fleet.app(app).version(version)
        return RunSpec(
            kind=RunKind.ROLLBACK,
            playbook="rollback.yml",
            started_by=started_by,
            reason=reason or f"roll back to {version}",
            member=member,
            app=app,
            version=version,
            hosts=tuple(i.host for i in sa.instances),
        )

    def last_good_release(self, member: str, app: str) -> str:
        """The release live before the newest successful deploy of this member's app."""
        for run in self.store.find(member=member, statuses=[RunStatus.SUCCESSFUL], limit=200):
            if run.app != app or run.kind is not RunKind.DEPLOY or run.options.check:
                continue
            befores = {
                h.release_before
                for h in self.store.host_results(run.id)
                if h.release_before and h.release_before != run.version
            }
            if len(befores) == 1:
                return befores.pop()
        raise InvalidInput(
            f"version: no earlier release of {member}/{app} is recorded; name the one to go back to"
        )
