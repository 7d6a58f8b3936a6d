"""Run leases: fencing numbers, heartbeats on the database's clock, take-over, and the
guarantee that two executions never work on one stack at once.

Runs on both store backends. The runner is a stand-in for ansible-runner that plays for a
while and polls ``cancel_callback`` as runner's own loop does, recording when each play ran.
"""

from __future__ import annotations

import socket
import sys
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine as SqlEngine
from sqlalchemy.exc import OperationalError

from controlplane.deploy.engine import Engine, EngineConfig
from controlplane.deploy.gating import gate_spec
from controlplane.deploy.model import HostOutcome, HostResult, LockRequest, RunStatus
from controlplane.deploy.options import RunOptions
from controlplane.deploy.plan import DeployRequest, Planner
from controlplane.deploy.processes import this_node
from controlplane.deploy.recovery import recover
from controlplane.deploy.runner import HostStats, PlaybookRequest, PlaybookResult
from controlplane.errors import GateClosed, LeaseLost
from controlplane.fleet.inventory import RenderContext
from controlplane.fleet.loader import load_fleet
from controlplane.store.runs import RunStore
from controlplane.windows.loader import load_gate
from tests.conftest import LAB, ROOT

FLEET = load_fleet(LAB)


class PlayRunner:
    """Each play lasts ``seconds`` unless ``cancel_callback`` says stop; ``at_end`` runs
    just before a play returns. Every play is recorded as (playbook, start, end, status)."""

    def __init__(self, seconds: float = 0.0, healthy: bool = True) -> None:
        self.seconds = seconds
        self.healthy = healthy
        self.at_end: Any = None
        self.plays: list[tuple[str, float, float, str]] = []

    def __call__(
        self, request: PlaybookRequest, pdd: Path, ident: str, **kw: Any
    ) -> PlaybookResult:
        started = time.monotonic()
        status, rc = "successful", 0
        while time.monotonic() - started < self.seconds:
            if kw["cancel_callback"]():
                status, rc = "canceled", 254
                break
            time.sleep(0.02)
        hosts = (request.limit or "").split(",")
        if status == "successful":
            for host in hosts:
                kw["event_handler"](release_event(request, host, self.healthy))
            if not self.healthy:
                status, rc = "failed", 2
        if self.at_end is not None:
            self.at_end()
        self.plays.append((request.playbook.name, started, time.monotonic(), status))
        return PlaybookResult(status, rc, {h: HostStats(ok=1, changed=1) for h in hosts}, pdd)


def release_event(request: PlaybookRequest, host: str, healthy: bool) -> dict[str, Any]:
    v = request.extravars
    return {
        "event": "runner_on_ok",
        "event_data": {
            "host": host,
            "task": "cp-report-release",
            "res": {
                "changed": True,
                "msg": {
                    "member": v["cp_member"],
                    "app": v["cp_app"],
                    "port": 8101,
                    "before": "1.0.0",
                    "after": v.get("cp_version", "1.0.0"),
                    "healthy": healthy,
                },
            },
        },
    }


def engine_for(
    store: RunStore, runner: PlayRunner, tmp: Path, node: str, lease_seconds: float = 60.0
) -> Engine:
    config = EngineConfig(
        data_dir=tmp / node,
        playbooks_dir=ROOT / "controlplane" / "playbooks",
        fleet_dir=LAB,
        lease_seconds=lease_seconds,
    )
    return Engine(
        FLEET, store, config, RenderContext(tmp, sys.executable), runner=runner, node=node
    )


def amsterdam_deploy(store: RunStore) -> Any:
    [spec] = Planner(FLEET, store).plan_deploy(DeployRequest("amsterdam", app="uitkering"))
    return spec


# -- the store: fencing numbers on the database's clock ---------------------------------------


def test_each_start_and_take_over_raises_the_fence(engine: SqlEngine) -> None:
    # The store's own clock is decades off: staleness must not be judged on it.
    store = RunStore(engine, clock=lambda: datetime(2100, 1, 1, tzinfo=UTC))
    run = store.create(amsterdam_deploy(store), node="node-a")
    store.acquire(run.id, [LockRequest.stack("amsterdam", "uitkering")])
    assert run.lease == 0
    started = store.start(run.id, "node-a")
    assert started.lease == 1 and started.status is RunStatus.RUNNING
    assert store.heartbeat(run.id, 1)
    assert not store.heartbeat(run.id, 0)
    # Freshly beating: nobody may take it over, whatever the nodes' clocks say.
    assert store.take_over(run.id, 1, "taken", stale_after=timedelta(seconds=30)) is None
    time.sleep(0.25)
    assert store.take_over(run.id, 1, "taken", stale_after=timedelta(seconds=30)) is None
    taken = store.take_over(run.id, 1, "node-b took it over", timedelta(milliseconds=100))
    assert taken is not None
    assert (taken.lease, taken.status, taken.error) == (
        2,
        RunStatus.INTERRUPTED,
        "node-b took it over",
    )
    assert store.held_locks() == []
    # The old owner learns it lost the run, and cannot write over the new record.
    assert not store.heartbeat(run.id, 1)
    assert store.watch(run.id, 1) == (False, False)
    with pytest.raises(LeaseLost):
        store.transition(run.id, RunStatus.SUCCESSFUL, rc=0, fence=1)
    assert store.get(run.id).status is RunStatus.INTERRUPTED
    assert store.get(run.id).error == "node-b took it over"


def test_of_many_nodes_taking_over_one_run_exactly_one_wins(engine: SqlEngine) -> None:
    store = RunStore(engine)
    run = store.start(store.create(amsterdam_deploy(store)).id, "node-a")
    barrier = threading.Barrier(6)
    wins: list[int] = []

    def attempt(i: int) -> None:
        barrier.wait()
        if store.take_over(run.id, run.lease, f"node-{i}", stale_after=None) is not None:
            wins.append(i)

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1
    final = store.get(run.id)
    assert final.lease == 2 and final.error == f"node-{wins[0]}"


# -- the engine: a run whose lease is taken over stops -----------------------------------------


def test_a_run_taken_over_stops_before_its_next_play(engine: SqlEngine, tmp_path: Path) -> None:
    store = RunStore(engine)
    runner = PlayRunner(healthy=False)  # the deploy fails: next would come the rollback play
    node_a = engine_for(store, runner, tmp_path, "node-a")
    run = node_a.submit(amsterdam_deploy(store))
    # Another node takes the run over while its deploy play finishes.
    runner.at_end = lambda: store.take_over(run.id, 1, "taken over by node-b", None)
    final = node_a.execute(run.id)
    assert [p[0] for p in runner.plays] == ["deploy.yml"]  # no rollback play was started
    assert final == store.get(run.id)
    assert (final.status, final.error, final.lease) == (
        RunStatus.INTERRUPTED,
        "taken over by node-b",
        2,
    )
    assert store.host_results(run.id) == []  # the loser wrote nothing about the hosts
    assert store.held_locks() == []


class PartitionedStore(RunStore):
    """A node's view of the store that can be cut off from the database for its writes
    and lease checks, as a network partition would."""

    cut = False

    def heartbeat(self, run_id: str, fence: int) -> bool:
        if self.cut:
            raise OperationalError("heartbeat", {}, ConnectionError("partitioned"))
        return super().heartbeat(run_id, fence)

    def watch(self, run_id: str, fence: int) -> tuple[bool, bool]:
        if self.cut:
            raise OperationalError("watch", {}, ConnectionError("partitioned"))
        return super().watch(run_id, fence)


def test_a_partitioned_owner_stops_before_another_node_takes_over_its_stack(
    engine: SqlEngine, tmp_path: Path
) -> None:
    lease = 1.5
    a_store = PartitionedStore(engine)
    a_runner = PlayRunner(seconds=30)
    node_a = engine_for(a_store, a_runner, tmp_path, "node-a", lease_seconds=lease)
    b_store = RunStore(engine)
    b_runner = PlayRunner()
    node_b = engine_for(b_store, b_runner, tmp_path, "node-b", lease_seconds=lease)

    first = node_a.submit(amsterdam_deploy(a_store))
    done: list[Any] = []
    worker = threading.Thread(target=lambda: done.append(node_a.execute(first.id)))
    worker.start()
    time.sleep(0.5)
    a_store.cut = True  # node A can no longer renew its lease
    deadline = time.monotonic() + 15
    while not recover(node_b) and time.monotonic() < deadline:
        time.sleep(0.05)
    second = node_b.execute(node_b.submit(amsterdam_deploy(b_store)).id)
    worker.join(timeout=10)

    assert second.status is RunStatus.SUCCESSFUL
    [(playbook, _, a_end, a_status)] = a_runner.plays
    assert (playbook, a_status) == ("deploy.yml", "canceled")
    b_plays = [(p[0], p[1]) for p in b_runner.plays]
    assert [p[0] for p in b_plays] == ["status.yml", "deploy.yml"]
    # Node A's play had ended before node B's first play on the stack began.
    assert a_end < min(start for _, start in b_plays)
    # Node A stopped on its own, before the take-over: it wrote no outcome of its own.
    [a_seen] = done
    assert (a_seen.status, a_seen.lease) == (RunStatus.RUNNING, 1)
    a_final = b_store.get(first.id)
    assert (a_final.status, a_final.lease) == (RunStatus.INTERRUPTED, 2)
    # The hosts' record is the recovering node's: what it found live on each.
    assert {h.outcome for h in b_store.host_results(first.id)} == {HostOutcome.INTERRUPTED}


# -- recovery: who is dead ---------------------------------------------------------------------


def test_recovery_trusts_pids_only_in_its_own_boot_and_pid_namespace(
    engine: SqlEngine, tmp_path: Path
) -> None:
    store = RunStore(engine)
    host, _pid, started, place, _token = this_node().rsplit(":", 4)
    assert host == socket.gethostname()
    gone_here = f"{host}:999999999:{started}:{place}:feedface"
    # Same hostname, another container (pid namespace): its pid means nothing here.
    other_container = f"{host}:999999999:{started}:0123456789ab:feedface"
    spec = amsterdam_deploy(store)
    dead = store.create(spec, node=gone_here)
    alive = store.create(replace(spec, member="utrecht"), node=other_container)
    recovered = recover(engine_for(store, PlayRunner(), tmp_path, "node-b"))
    assert [r.id for r in recovered] == [dead.id]
    assert store.get(alive.id).status is RunStatus.QUEUED
    # Once its heartbeat is older than the lease on the database's clock, it is taken too.
    time.sleep(0.2)
    late = recover(engine_for(store, PlayRunner(), tmp_path, "node-b", lease_seconds=0.1))
    assert [r.id for r in late] == [alive.id]
    assert store.get(alive.id).status is RunStatus.INTERRUPTED


# -- freezes and first installs ----------------------------------------------------------------

FREEZE_DAY = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)  # a lab payment-run day


def test_a_first_install_passes_a_freeze_only_when_no_release_was_ever_recorded(
    engine: SqlEngine,
) -> None:
    store = RunStore(engine)
    gate = load_gate(LAB, FLEET)
    base = amsterdam_deploy(store)
    first = replace(base, options=replace(base.options, first_install=True))

    allowed = gate_spec(gate, first, FREEZE_DAY, ever_released=store.ever_released)
    assert allowed.options.gate is not None
    assert allowed.options.gate.message.startswith("first install")

    # A plan that once ran records no release: still a first install.
    plan = store.start(store.create(replace(base, options=RunOptions(check=True))).id, "node-a")
    store.transition(plan.id, RunStatus.SUCCESSFUL, rc=0)
    store.record_host(HostResult(plan.id, "lab-1", HostOutcome.CHANGED, release_after="1.1.0"))
    assert gate_spec(gate, first, FREEZE_DAY, ever_released=store.ever_released)

    # An interrupted deploy left a release live on a host: the app is not new, only silent.
    run = store.start(store.create(base).id, "node-a")
    store.transition(run.id, RunStatus.INTERRUPTED, error="owner died")
    store.record_host(HostResult(run.id, "lab-1", HostOutcome.INTERRUPTED, release_after="1.0.0"))
    with pytest.raises(GateClosed, match="payment-run-amsterdam"):
        gate_spec(gate, first, FREEZE_DAY, ever_released=store.ever_released)
    # Other members' apps are unaffected.
    assert store.ever_released("utrecht", "uitkering") is False
    assert store.ever_released("amsterdam", "reintegratie") is False


def test_a_successful_deploy_counts_as_a_release(engine: SqlEngine) -> None:
    store = RunStore(engine)
    run = store.start(store.create(amsterdam_deploy(store)).id, "node-a")
    assert store.ever_released("amsterdam", "uitkering") is False
    store.transition(run.id, RunStatus.SUCCESSFUL, rc=0)
    assert store.ever_released("amsterdam", "uitkering") is True
