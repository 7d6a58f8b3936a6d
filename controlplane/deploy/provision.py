"""The main job: ``controlplane provision`` deploys every member's stack at the fleet's
versions, in parallel where locks allow, then probes every instance."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Annotated, Any

import typer
from rich.table import Table

from controlplane.cli_common import FleetOpt, JsonOpt, err, out, print_json
from controlplane.deploy.cli import context, fail_unless_successful, who
from controlplane.deploy.model import Run, RunSpec, RunStatus
from controlplane.deploy.plan import DeployRequest
from controlplane.deploy.progress import run_json
from controlplane.errors import OperationFailed
from controlplane.uptime.probes import ProbeResult, probe_all


def provision(
    members: Annotated[
        list[str] | None, typer.Argument(help="Members to provision (default: all).")
    ] = None,
    parallel: Annotated[int, typer.Option("--parallel", min=1, max=16)] = 4,
    force: Annotated[
        bool, typer.Option("--force", help="Run the playbooks even where nothing changed.")
    ] = False,
    fleet: FleetOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Provision every member's stack at the fleet's versions, then probe every instance.

    Runs for different members and apps go in parallel on the shared hosts. An app whose
    every instance already answers healthy on the fleet's version is left alone (--force
    runs its playbook anyway), so running this again is safe and fast."""
    ctx = context(fleet)
    chosen = members or [m.slug for m in ctx.fleet.members]
    specs: list[RunSpec] = []
    for m in chosen:
        specs.extend(
            ctx.planner.plan_deploy(DeployRequest(m, started_by=who(), reason="provision"))
        )
    instances = [i for m in chosen for i in ctx.fleet.instances(member=m)]
    before = probe_all(instances)
    live: dict[tuple[str | None, str | None], list[ProbeResult]] = {}
    for p in before:
        live.setdefault((p.member, p.app), []).append(p)
    if not force:
        specs = [s for s in specs if not _converged(s, live[(s.member, s.app)])]
    specs = [
        replace(s, params={**s.params, "first_install": True})
        if _absent(live[(s.member, s.app)])
        else s
        for s in specs
    ]
    engine = ctx.deployer
    started = time.monotonic()

    def one(spec: RunSpec) -> Run:
        run = engine.submit(spec, queue=True)
        return engine.execute(run.id)

    with ThreadPoolExecutor(max_workers=parallel) as pool:
        if not as_json:
            err.print(
                f"provisioning {len(specs)} app stacks of {len(chosen)} members "
                f"({'all' if force else 'those not already up to date'}) …"
            )
        runs = list(pool.map(one, specs))
    elapsed = time.monotonic() - started
    probes = probe_all(instances) if runs else before
    if as_json:
        print_json(
            {
                "status": "ok" if _all_good(runs, probes) else "failed",
                "seconds": round(elapsed, 1),
                "runs": [run_json(r, ctx.runs.host_results(r.id)) for r in runs],
                "instances": [_probe_json(p) for p in probes],
            }
        )
    else:
        _print_probes(probes)
        ok = sum(1 for p in probes if p.healthy)
        if not runs:
            out.print("every member app was already up to date; no playbook had to run")
        out.print(
            f"{sum(r.status is RunStatus.SUCCESSFUL for r in runs)}/{len(runs)} runs successful "
            f"in {elapsed:.1f}s; {ok}/{len(probes)} instances answering healthy on "
            f"{len({(p.member, p.app) for p in probes})} member apps"
        )
    fail_unless_successful(runs)
    if not all(p.healthy for p in probes):
        raise OperationFailed("some instances do not answer healthy")


def _converged(spec: RunSpec, probes: list[ProbeResult]) -> bool:
    """Every instance of this member's app answers healthy on the version to deploy."""
    return all(p.healthy and p.version == spec.version for p in probes)


def _absent(probes: list[ProbeResult]) -> bool:
    """No instance of this member's app answers at all: nothing runs that a freeze protects."""
    return not any(p.healthy or p.version is not None for p in probes)


def _all_good(runs: list[Run], probes: list[ProbeResult]) -> bool:
    return all(r.status is RunStatus.SUCCESSFUL for r in runs) and all(p.healthy for p in probes)


def _probe_json(p: ProbeResult) -> dict[str, Any]:
    return {
        "member": p.member,
        "app": p.app,
        "version": p.version,
        "host": p.host,
        "address": p.address,
        "port": p.port,
        "status": "healthy" if p.healthy else "down",
        "latency_seconds": round(p.latency_seconds, 4),
        "error": p.error,
    }


def _print_probes(probes: list[ProbeResult]) -> None:
    table = Table(title="App instances")
    for col in ("member", "app", "version", "host", "address:port", "status", "ms"):
        table.add_column(col)
    for p in probes:
        table.add_row(
            p.member,
            p.app,
            p.version or "-",
            p.host,
            f"{p.address}:{p.port}",
            "[green]healthy[/green]" if p.healthy else f"[red]down[/red] {p.error or ''}",
            f"{p.latency_seconds * 1000:.0f}",
        )
    out.print(table)
