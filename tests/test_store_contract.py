"""One contract suite, run unchanged over SQLite and PostgreSQL (the `engine` fixture)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine

from controlplane.deploy.model import (
    HostOutcome,
    HostResult,
    LockMode,
    LockRequest,
    RunEvent,
    RunKind,
    RunSpec,
    RunStatus,
)
from controlplane.deploy.options import RunOptions
from controlplane.errors import InvalidInput, LockHeld, RunNotFound
from controlplane.store.runs import RunStore


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@pytest.fixture
def store(engine: Engine) -> RunStore:
    return RunStore(engine, clock=FakeClock())


def deploy_spec(member: str = "amsterdam", app: str = "uitkering") -> RunSpec:
    return RunSpec(
        kind=RunKind.DEPLOY,
        playbook="deploy.yml",
        started_by="jan@coop",
        reason="release 1.1.0",
        member=member,
        app=app,
        version="1.1.0",
        hosts=("lab-1", "lab-2"),
        options=RunOptions(serial="50%", max_fail_percentage=25),
    )


def test_create_and_get_round_trip(store: RunStore) -> None:
    run = store.create(deploy_spec())
    got = store.get(run.id)
    assert got == run
    assert got.status is RunStatus.QUEUED
    assert got.hosts == ("lab-1", "lab-2")
    assert got.options == RunOptions(serial="50%", max_fail_percentage=25.0)
    assert got.lease == 0
    assert got.created_at.tzinfo is not None
    assert store.get(run.id[:8]) == run  # short ids, as printed by `runs list`


def test_unknown_run(store: RunStore) -> None:
    with pytest.raises(RunNotFound):
        store.get("0" * 32)


def test_find_filters_and_orders_newest_first(store: RunStore) -> None:
    a = store.create(deploy_spec("amsterdam"))
    b = store.create(deploy_spec("utrecht"))
    c = store.create(deploy_spec("amsterdam"))
    store.transition(c.id, RunStatus.RUNNING)
    assert [r.id for r in store.find()] == [c.id, b.id, a.id]
    assert [r.id for r in store.find(member="amsterdam")] == [c.id, a.id]
    assert [r.id for r in store.find(statuses=[RunStatus.RUNNING])] == [c.id]


def test_transitions_only_move_forward(store: RunStore) -> None:
    run = store.create(deploy_spec())
    running = store.transition(run.id, RunStatus.RUNNING, node="node-a", tuning={"forks": 4})
    assert running.started_at is not None and running.node == "node-a"
    assert running.tuning == {"forks": 4}
    done = store.transition(run.id, RunStatus.FAILED, rc=2, error="health gate failed")
    assert done.finished_at is not None and done.rc == 2
    with pytest.raises(InvalidInput):
        store.transition(run.id, RunStatus.RUNNING)
    with pytest.raises(InvalidInput):
        store.transition(run.id, RunStatus.SUCCESSFUL)
    assert store.get(run.id).status is RunStatus.FAILED


def test_host_results_upsert(store: RunStore) -> None:
    run = store.create(deploy_spec())
    store.record_host(HostResult(run.id, "lab-1", HostOutcome.CHANGED, ok=5, changed=2))
    store.record_host(
        HostResult(
            run.id,
            "lab-1",
            HostOutcome.FAILED,
            ok=5,
            failures=1,
            release_before="1.0.0",
            release_after="1.0.0",
        )
    )
    store.record_host(HostResult(run.id, "lab-2", HostOutcome.UNREACHABLE, unreachable=1))
    results = store.host_results(run.id)
    assert [(r.host, r.outcome) for r in results] == [
        ("lab-1", HostOutcome.FAILED),
        ("lab-2", HostOutcome.UNREACHABLE),
    ]
    assert results[0].release_before == "1.0.0"


def test_events_append_and_follow(store: RunStore) -> None:
    run = store.create(deploy_spec())
    t = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    store.append_events(
        run.id,
        [
            RunEvent(run.id, i, "runner_on_ok", t, host="lab-1", task=f"t{i}", data={"i": i})
            for i in range(5)
        ],
    )
    assert [e.seq for e in store.events(run.id)] == [0, 1, 2, 3, 4]
    assert [e.seq for e in store.events(run.id, after_seq=2)] == [3, 4]
    assert store.events(run.id)[4].data == {"i": 4}
    assert store.events(run.id)[0].created_at == t


def test_shared_host_locks_coexist_exclusive_stack_lock_does_not(store: RunStore) -> None:
    a = store.create(deploy_spec("amsterdam"))
    b = store.create(deploy_spec("utrecht"))
    c = store.create(deploy_spec("amsterdam"))
    store.acquire(
        a.id, [LockRequest.stack("amsterdam", "uitkering"), LockRequest.host("lab-1", False)]
    )
    # A different member on the same shared host proceeds in parallel.
    store.acquire(
        b.id, [LockRequest.stack("utrecht", "uitkering"), LockRequest.host("lab-1", False)]
    )
    # The same member's app does not.
    with pytest.raises(LockHeld) as held:
        store.acquire(
            c.id, [LockRequest.stack("amsterdam", "uitkering"), LockRequest.host("lab-2", False)]
        )
    assert held.value.holder_run_id == a.id
    assert "stack:amsterdam/uitkering" in str(held.value)
    # All or nothing: c got no lock at all, not even the free host lock.
    assert {lk.run_id for lk in store.held_locks()} == {a.id, b.id}


def test_host_level_run_excludes_every_other_run_on_that_host(store: RunStore) -> None:
    deploy = store.create(deploy_spec())
    patch = store.create(RunSpec(RunKind.PATCH, "patch.yml", "ops", hosts=("lab-1",)))
    store.acquire(deploy.id, [LockRequest.host("lab-1", False)])
    with pytest.raises(LockHeld):
        store.acquire(patch.id, [LockRequest.host("lab-1", True)])
    store.release(deploy.id)
    store.acquire(patch.id, [LockRequest.host("lab-1", True)])
    other = store.create(deploy_spec("utrecht"))
    with pytest.raises(LockHeld) as held:
        store.acquire(other.id, [LockRequest.host("lab-1", False)])
    assert held.value.holder_run_id == patch.id
    assert [lk.mode for lk in store.held_locks()] == [LockMode.EXCLUSIVE]


def test_finishing_a_run_releases_its_locks(store: RunStore) -> None:
    run = store.create(deploy_spec())
    store.acquire(run.id, [LockRequest.stack("amsterdam", "uitkering")])
    store.transition(run.id, RunStatus.RUNNING)
    assert len(store.held_locks()) == 1
    store.transition(run.id, RunStatus.INTERRUPTED, error="control plane restarted")
    assert store.held_locks() == []


def test_concurrent_acquire_has_exactly_one_winner(store: RunStore) -> None:
    """Eight threads race for one exclusive lock on the real backend; one wins."""
    ids = [store.create(deploy_spec()).id for _ in range(8)]
    barrier = threading.Barrier(len(ids))
    winners: list[str] = []
    losers: list[str] = []

    def attempt(run_id: str) -> None:
        barrier.wait()
        try:
            store.acquire(run_id, [LockRequest.stack("amsterdam", "uitkering")])
            winners.append(run_id)
        except LockHeld:
            losers.append(run_id)

    threads = [threading.Thread(target=attempt, args=(i,)) for i in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) == 1
    assert len(losers) == 7
    assert [lk.run_id for lk in store.held_locks()] == winners
