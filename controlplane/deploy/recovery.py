"""Crash recovery: runs whose owner died are taken over (their lease raised, so a live
owner stops at once), marked interrupted and their locks freed; leftover ansible processes
here are killed, and each host's actual live release is recorded.

Recovery is an explicit step: the service runs it at start and periodically, and commands
that show or change runs run it first. Nothing here happens when an engine is built or a
run is read. This module imports the engine; the engine never imports it.
"""

from __future__ import annotations

from datetime import timedelta

from controlplane.deploy.engine import Engine
from controlplane.deploy.execution import Execution
from controlplane.deploy.model import HostOutcome, HostResult, Run, RunStatus
from controlplane.deploy.processes import kill_orphans, node_alive_here
from controlplane.deploy.runner import Tuning, scrub_leftover_artifacts


def recover(engine: Engine, stale_after: timedelta | None = None) -> list[Run]:
    """Take over every run whose owner is dead, and return them as recorded now.

    An owner is dead when it was a process in this kernel boot and pid namespace that no
    longer runs, or when its heartbeat is older than ``stale_after`` (default: the
    engine's lease) on the database's clock. Several nodes may recover at once: each run
    is taken over by exactly one of them."""
    store = engine.store
    stale = timedelta(seconds=engine.config.lease_seconds) if stale_after is None else stale_after
    recovered: list[Run] = []
    for run in store.find(statuses=[RunStatus.RUNNING, RunStatus.QUEUED], limit=10_000):
        alive = False if run.node is None else node_alive_here(run.node)
        if alive:
            continue
        if alive is False:
            # Known dead here: its ansible processes are orphans, and must stop before
            # the run's locks are free for anyone else.
            kill_orphans(run.id)
        final = store.take_over(
            run.id,
            run.lease,
            f"the control plane running it ({run.node}) stopped mid-run",
            stale_after=None if alive is False else stale,
        )
        if final is None:  # its owner is beating, or another node took it first
            continue
        kill_orphans(run.id)
        if run.status is RunStatus.RUNNING and run.hosts and run.member and run.app:
            record_live_releases(engine, final)
        recovered.append(store.get(run.id))
    if recovered:
        # A run that died mid-play never scrubbed its artifacts: the environment runner
        # copied there may hold secrets.
        scrub_leftover_artifacts(engine.config.data_dir / "runs")
    return recovered


def record_live_releases(engine: Engine, run: Run) -> None:
    """Ask every host of the run which release is live, and record it on the run."""
    assert run.member and run.app
    store = engine.store
    last = store.last_seq(run.id)
    ex = Execution(run, None, seq=0 if last is None else last + 1, plays=100)
    vars_ = {"cp_member": run.member, "cp_app": run.app}
    play = engine.run_once(ex, "status.yml", list(run.hosts), vars_, False, Tuning())
    live = {r.host: r.after for r in play.reports}
    previous = {h.host: h for h in store.host_results(run.id)}
    for host in run.hosts:
        old = previous.get(host)
        store.record_host(
            HostResult(
                run_id=run.id,
                host=host,
                outcome=HostOutcome.INTERRUPTED,
                ok=old.ok if old else 0,
                changed=old.changed if old else 0,
                failures=old.failures if old else 0,
                unreachable=1 if host in play.unreachable_hosts else 0,
                skipped=old.skipped if old else 0,
                release_before=old.release_before if old else None,
                release_after=live.get(host),
                started_at=old.started_at if old else None,
                finished_at=old.finished_at if old else None,
            )
        )
