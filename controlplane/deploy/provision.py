"""The main job as an operation: deploy every chosen member's stack at the fleet's versions,
in parallel where locks allow, then probe every instance.

An app whose every instance already answers healthy on the fleet's version is left alone
(unless forced), so provisioning again is safe and fast. An app none of whose instances
answers at all is a first install: nothing runs that a freeze protects, so the gate lets it
through and records why. An app with an instance live on a release newer than the one the
fleet declares (someone deployed a version without recording it) is not silently taken
back: provisioning refuses that app, and only ``force`` downgrades it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import TYPE_CHECKING

from packaging.version import Version

from controlplane.access.policy import Action, Principal, authorize
from controlplane.deploy import operations as ops
from controlplane.deploy.declared import version_newer
from controlplane.deploy.model import Run, RunSpec, RunStatus
from controlplane.deploy.operations import outcome_error
from controlplane.deploy.plan import DeployRequest
from controlplane.errors import InvalidInput, OperationFailed, Refused
from controlplane.schemas.declared import ProvisionPlanOut, StackPlanOut
from controlplane.schemas.runs import InstanceHealthOut, ProvisionOut, RunOut
from controlplane.uptime.probes import ProbeResult, probe_all

if TYPE_CHECKING:
    from controlplane.app import Context

MAX_PARALLEL = 16
Live = dict[tuple[str | None, str | None], list[ProbeResult]]


class StackAction(StrEnum):
    UP_TO_DATE = "up-to-date"  # every instance answers healthy on the declared version
    INSTALL = "install"  # no instance answers at all: a first install
    DEPLOY = "deploy"
    DOWNGRADE = "downgrade"  # forced back from a newer live release to the declared one
    REFUSED = "refused"  # a newer live release, and no force


@dataclass(frozen=True)
class StackPlan:
    """What provisioning does with one member's app, from what its instances answer."""

    spec: RunSpec
    live: tuple[str, ...]
    action: StackAction
    newer: str | None = None  # the newest live release newer than the declared one

    @property
    def runs(self) -> bool:
        return self.action not in (StackAction.UP_TO_DATE, StackAction.REFUSED)

    @property
    def note(self) -> str | None:
        m, a, declared = self.spec.member, self.spec.app, self.spec.version
        if self.action is StackAction.REFUSED:
            return (
                f"{m}/{a}: live {self.newer} is newer than the declared {declared}; not "
                f"downgraded without --force (to keep {self.newer}: controlplane deploy {m} "
                f"--app {a} --version {self.newer} --record)"
            )
        if self.action is StackAction.DOWNGRADE:
            return f"{m}/{a}: downgrading live {self.newer} to the declared {declared} (--force)"
        return None

    def out(self) -> StackPlanOut:
        assert self.spec.member and self.spec.app and self.spec.version
        return StackPlanOut(
            member=self.spec.member,
            app=self.spec.app,
            declared=self.spec.version,
            live=list(self.live),
            action=self.action.value,
            note=self.note,
        )


@dataclass(frozen=True)
class Provisioned:
    """What a provision did: the runs it needed, every instance probed afterwards, and the
    apps it refused to downgrade."""

    members: tuple[str, ...]
    runs: tuple[Run, ...]
    probes: tuple[ProbeResult, ...]
    seconds: float
    refused: tuple[StackPlan, ...] = ()

    @property
    def ok(self) -> bool:
        return (
            all(r.status is RunStatus.SUCCESSFUL for r in self.runs)
            and all(p.healthy for p in self.probes)
            and not self.refused
        )


def converged(spec: RunSpec, probes: list[ProbeResult]) -> bool:
    """Every instance of this member's app answers healthy on the version to deploy."""
    return all(p.healthy and p.version == spec.version for p in probes)


def absent(probes: list[ProbeResult]) -> bool:
    """No instance of this member's app answers at all: nothing runs that a freeze protects."""
    return not any(p.healthy or p.version is not None for p in probes)


def first_install(spec: RunSpec) -> RunSpec:
    return replace(spec, options=replace(spec.options, first_install=True))


def plan_stack(spec: RunSpec, probes: list[ProbeResult], *, force: bool) -> StackPlan:
    """Decide one member app: a first install where nothing answers, refused (or with
    ``force`` downgraded) where a live release is newer than the declared one, left alone
    where every instance is healthy on it (unless ``force``), deployed otherwise."""
    assert spec.version is not None
    live = tuple(sorted({p.version for p in probes if p.version}))
    if absent(probes):
        return StackPlan(first_install(spec), live, StackAction.INSTALL)
    newer = [v for v in live if version_newer(v, spec.version)]
    if newer:
        newest = max(newer, key=Version)  # each parsed, or it would not be newer
        action = StackAction.DOWNGRADE if force else StackAction.REFUSED
        return StackPlan(spec, live, action, newest)
    if converged(spec, probes) and not force:
        return StackPlan(spec, live, StackAction.UP_TO_DATE)
    return StackPlan(spec, live, StackAction.DEPLOY)


def plan_stacks(specs: list[RunSpec], live: Live, *, force: bool) -> list[StackPlan]:
    return [plan_stack(s, live[(s.member, s.app)], force=force) for s in specs]


def needed(specs: list[RunSpec], live: Live, *, force: bool) -> list[RunSpec]:
    """The runs still to do, each marked as a first install where nothing answers yet."""
    return [p.spec for p in plan_stacks(specs, live, force=force) if p.runs]


def provision(
    ctx: Context,
    principal: Principal,
    members: list[str] | None = None,
    *,
    parallel: int = 4,
    force: bool = False,
    on_start: Callable[[int], None] | None = None,
) -> Provisioned:
    """Provision the members' stacks (default: every member the caller acts for) at the
    fleet's versions, then probe every instance. ``on_start`` hears how many app stacks
    need a run, before they start. Apps whose live release is newer than the declared one
    are left alone and listed in ``refused`` (``force`` downgrades them)."""
    if not 1 <= parallel <= MAX_PARALLEL:
        raise InvalidInput(f"parallel: must be between 1 and {MAX_PARALLEL}")
    chosen, plans, before = _survey(ctx, principal, members, force=force)
    specs = [p.spec for p in plans if p.runs]
    refused = tuple(p for p in plans if p.action is StackAction.REFUSED)
    instances = [i for m in chosen for i in ctx.fleet.instances(member=m)]
    started = time.monotonic()

    def one(spec: RunSpec) -> Run:
        # Through the operations, so every provisioning run is audited like a deploy.
        run = ops.submit(ctx, principal, spec, queue=True)
        return ops.execute(ctx, run.id)

    if on_start is not None:
        on_start(len(specs))
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        runs = tuple(pool.map(one, specs))
    elapsed = time.monotonic() - started
    probes = probe_all(instances) if runs else before
    return Provisioned(tuple(chosen), runs, tuple(probes), elapsed, refused)


def plan_provision(
    ctx: Context, principal: Principal, members: list[str] | None = None, *, force: bool = False
) -> list[StackPlan]:
    """What ``provision`` would do with each member app, from probing every instance;
    nothing runs."""
    return _survey(ctx, principal, members, force=force)[1]


def _survey(
    ctx: Context, principal: Principal, members: list[str] | None, *, force: bool
) -> tuple[list[str], list[StackPlan], list[ProbeResult]]:
    """The members chosen (each authorized), each member app's plan, and the probes."""
    chosen = members or [m.slug for m in ctx.fleet.members if principal.sees(m.slug)]
    for m in chosen:
        authorize(principal, Action.RUNS_WRITE, m)
    specs: list[RunSpec] = []
    for m in chosen:
        specs.extend(
            ctx.planner.plan_deploy(DeployRequest(m, started_by=principal.name, reason="provision"))
        )
    before = probe_all([i for m in chosen for i in ctx.fleet.instances(member=m)])
    live: Live = {}
    for p in before:
        live.setdefault((p.member, p.app), []).append(p)
    return chosen, plan_stacks(specs, live, force=force), before


def plan_out(plans: list[StackPlan]) -> ProvisionPlanOut:
    return ProvisionPlanOut(stacks=[p.out() for p in plans])


def ensure_no_downgrade(plans: Sequence[StackPlan]) -> None:
    """Refuse (one line naming each app, its live and declared versions, and --force)
    when provisioning left an app alone rather than downgrade it."""
    notes = [p.note for p in plans if p.action is StackAction.REFUSED and p.note]
    if notes:
        raise Refused("; ".join(notes))


def provision_out(ctx: Context, done: Provisioned) -> ProvisionOut:
    failed = not all(r.status is RunStatus.SUCCESSFUL for r in done.runs) or not all(
        p.healthy for p in done.probes
    )
    return ProvisionOut(
        status="failed" if failed else "refused" if done.refused else "ok",
        seconds=round(done.seconds, 1),
        runs=[RunOut.of(r, ctx.runs.host_results(r.id)) for r in done.runs],
        instances=[health_out(p) for p in done.probes],
        refused=[p.out() for p in done.refused],
    )


def health_out(p: ProbeResult) -> InstanceHealthOut:
    return InstanceHealthOut(
        member=p.member,
        app=p.app,
        version=p.version,
        host=p.host,
        address=p.address,
        port=p.port,
        status="healthy" if p.healthy else "down",
        latency_seconds=round(p.latency_seconds, 4),
        error=p.error,
    )


def ensure_provisioned(ctx: Context, done: Provisioned) -> None:
    """Raise unless every run succeeded, every instance answers healthy and no app was
    left alone rather than downgraded (a failure outranks a refusal)."""
    error = outcome_error([(r, ctx.runs.host_results(r.id)) for r in done.runs])
    if error is not None:
        raise error
    if not all(p.healthy for p in done.probes):
        raise OperationFailed("some instances do not answer healthy")
    ensure_no_downgrade(done.refused)
