"""Crash recovery: runs whose owner died are marked interrupted, their locks freed, their
leftover ansible processes killed, and each host's actual live release recorded."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from controlplane.deploy.model import HostOutcome, HostResult, Run, RunStatus
from controlplane.deploy.processes import kill_orphans, node_alive_here
from controlplane.deploy.runner import Tuning
from controlplane.errors import InvalidInput

if TYPE_CHECKING:
    from controlplane.deploy.engine import Engine

# A run on another node whose heartbeat is older than this is taken as orphaned.
STALE_AFTER = timedelta(seconds=60)


def recover(engine: Engine) -> list[Run]:
    """Mark runs whose owner died as interrupted, free their locks, kill their leftover
    ansible processes, and record each host's actual live release."""
    store = engine.store
    recovered: list[Run] = []
    now = engine.clock()
    for run in store.find(statuses=[RunStatus.RUNNING, RunStatus.QUEUED], limit=10_000):
        if owner_alive(run, now):
            continue
        kill_orphans(run.id)
        was_running = run.status is RunStatus.RUNNING
        try:
            final = store.transition(
                run.id,
                RunStatus.INTERRUPTED,
                error=f"the control plane running it ({run.node}) stopped mid-run",
            )
        except InvalidInput:  # another node recovered it first
            continue
        if was_running and run.hosts and run.member and run.app:
            record_live_releases(engine, final)
        recovered.append(store.get(run.id))
    return recovered


def owner_alive(run: Run, now: datetime) -> bool:
    if run.node is None:
        return False
    here = node_alive_here(run.node)
    if here is not None:
        return here
    beat = run.heartbeat_at or run.started_at or run.created_at
    return now - beat < STALE_AFTER


def record_live_releases(engine: Engine, run: Run) -> None:
    """Ask every host of the run which release is live, and record it on the run."""
    from controlplane.deploy.engine import Execution

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
