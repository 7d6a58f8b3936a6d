"""The main job as an operation: deploy every chosen member's stack at the fleet's versions,
in parallel where locks allow, then probe every instance.

An app whose every instance already answers healthy on the fleet's version is left alone
(unless forced), so provisioning again is safe and fast. An app none of whose instances
answers at all is a first install: nothing runs that a freeze protects, so the gate lets it
through and records why.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from controlplane.access.policy import Action, Principal, authorize
from controlplane.deploy import operations as ops
from controlplane.deploy.model import Run, RunSpec, RunStatus
from controlplane.deploy.operations import outcome_error
from controlplane.deploy.plan import DeployRequest
from controlplane.errors import InvalidInput, OperationFailed
from controlplane.schemas.runs import InstanceHealthOut, ProvisionOut, RunOut
from controlplane.uptime.probes import ProbeResult, probe_all

if TYPE_CHECKING:
    from controlplane.app import Context

MAX_PARALLEL = 16
Live = dict[tuple[str | None, str | None], list[ProbeResult]]


@dataclass(frozen=True)
class Provisioned:
    """What a provision did: the runs it needed, and every instance probed afterwards."""

    members: tuple[str, ...]
    runs: tuple[Run, ...]
    probes: tuple[ProbeResult, ...]
    seconds: float

    @property
    def ok(self) -> bool:
        return all(r.status is RunStatus.SUCCESSFUL for r in self.runs) and all(
            p.healthy for p in self.probes
        )


def converged(spec: RunSpec, probes: list[ProbeResult]) -> bool:
    """Every instance of this member's app answers healthy on the version to deploy."""
    return all(p.healthy and p.version == spec.version for p in probes)


def absent(probes: list[ProbeResult]) -> bool:
    """No instance of this member's app answers at all: nothing runs that a freeze protects."""
    return not any(p.healthy or p.version is not None for p in probes)


def first_install(spec: RunSpec) -> RunSpec:
    return replace(spec, options=replace(spec.options, first_install=True))


def needed(specs: list[RunSpec], live: Live, *, force: bool) -> list[RunSpec]:
    """The runs still to do, each marked as a first install where nothing answers yet."""
    todo = specs if force else [s for s in specs if not converged(s, live[(s.member, s.app)])]
    return [first_install(s) if absent(live[(s.member, s.app)]) else s for s in todo]


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
    need a run, before they start."""
    if not 1 <= parallel <= MAX_PARALLEL:
        raise InvalidInput(f"parallel: must be between 1 and {MAX_PARALLEL}")
    chosen = members or [m.slug for m in ctx.fleet.members if principal.sees(m.slug)]
    for m in chosen:
        authorize(principal, Action.RUNS_WRITE, m)
    specs: list[RunSpec] = []
    for m in chosen:
        specs.extend(
            ctx.planner.plan_deploy(DeployRequest(m, started_by=principal.name, reason="provision"))
        )
    instances = [i for m in chosen for i in ctx.fleet.instances(member=m)]
    before = probe_all(instances)
    live: Live = {}
    for p in before:
        live.setdefault((p.member, p.app), []).append(p)
    specs = needed(specs, live, force=force)
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
    return Provisioned(tuple(chosen), runs, tuple(probes), elapsed)


def provision_out(ctx: Context, done: Provisioned) -> ProvisionOut:
    return ProvisionOut(
        status="ok" if done.ok else "failed",
        seconds=round(done.seconds, 1),
        runs=[RunOut.of(r, ctx.runs.host_results(r.id)) for r in done.runs],
        instances=[health_out(p) for p in done.probes],
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
    """Raise unless every run succeeded and every instance answers healthy."""
    error = outcome_error([(r, ctx.runs.host_results(r.id)) for r in done.runs])
    if error is not None:
        raise error
    if not all(p.healthy for p in done.probes):
        raise OperationFailed("some instances do not answer healthy")
