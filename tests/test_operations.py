"""The operations layer every edge calls: access checks, run pages, following a run, and
how a failed run maps to an error and an exit code. A real SQLite store, no CLI."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from controlplane.access.policy import Principal, Role
from controlplane.app import Context, build_context
from controlplane.cli import exit_code_for
from controlplane.deploy import operations as ops
from controlplane.deploy.history import RunFilter, follow_events, list_runs, show_run
from controlplane.deploy.model import (
    HostOutcome,
    HostResult,
    Run,
    RunEvent,
    RunKind,
    RunSpec,
    RunStatus,
)
from controlplane.deploy.provision import Live, needed
from controlplane.errors import (
    Forbidden,
    InvalidInput,
    NotFound,
    OperationFailed,
    Unreachable,
)
from controlplane.fleet import operations as fleet_ops
from controlplane.maintenance.operations import schedule_deploy
from controlplane.store.runs import RunStore
from controlplane.uptime.probes import ProbeResult
from tests.conftest import LAB

ADMIN = Principal.local("admin@test")
AMSTERDAM = Principal("eve", Role.ENGINEER, frozenset({"amsterdam"}))
BOARD = Principal("board", Role.BOARD)
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def ctx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Context]:
    monkeypatch.setenv("CONTROLPLANE_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.delenv("CONTROLPLANE_DATABASE_URL", raising=False)
    with build_context(LAB) as context:
        yield context


def spec(
    member: str | None, app: str | None = "uitkering", kind: RunKind = RunKind.DEPLOY
) -> RunSpec:
    return RunSpec(
        kind=kind,
        playbook="deploy.yml" if kind is RunKind.DEPLOY else "patch.yml",
        started_by="test",
        member=member,
        app=app if member else None,
        version="1.0.0" if member else None,
        hosts=("lab-1",),
    )


def store_at(ctx: Context, *times: datetime) -> RunStore:
    """A store over the context's database whose clock hands out ``times`` in turn."""
    ticks = iter(times)
    return RunStore(ctx.engine, clock=lambda: next(ticks))


def test_an_engineer_sees_only_their_members_runs(ctx: Context) -> None:
    store = store_at(ctx, T0, T0 + timedelta(minutes=1), T0 + timedelta(minutes=2))
    mine = store.create(spec("amsterdam"))
    theirs = store.create(spec("utrecht"))
    patch = store.create(spec(None, kind=RunKind.PATCH))

    assert [r.id for r in list_runs(ctx, AMSTERDAM).runs] == [mine.id]
    assert {r.id for r in list_runs(ctx, ADMIN).runs} == {mine.id, theirs.id, patch.id}
    assert show_run(ctx, AMSTERDAM, mine.id[:8]).id == mine.id
    # Another member's run, and a run of no member, do not exist for this engineer.
    for hidden in (theirs.id, patch.id):
        with pytest.raises(NotFound):
            show_run(ctx, AMSTERDAM, hidden)
    with pytest.raises(NotFound):
        ops.cancel(ctx, AMSTERDAM, theirs.id)
    assert ctx.runs.get(theirs.id).status is RunStatus.QUEUED  # nothing was canceled
    with pytest.raises(NotFound):
        list_runs(ctx, AMSTERDAM, RunFilter(member="utrecht"))
    # The board reviews costs and uptime; runs are not its business.
    with pytest.raises(Forbidden):
        list_runs(ctx, BOARD)
    assert ops.cancel(ctx, AMSTERDAM, mine.id).status is RunStatus.CANCELED


def test_an_engineer_cannot_deploy_another_members_stack(ctx: Context) -> None:
    with pytest.raises(NotFound):
        ops.deploy(ctx, AMSTERDAM, "utrecht", app="uitkering", check=True)
    with pytest.raises(Forbidden):
        ops.rollback(ctx, BOARD, "utrecht", "uitkering")
    assert ctx.runs.find() == []
    shown = fleet_ops.show_fleet(ctx, AMSTERDAM)
    assert [m.member for m in shown.members] == ["amsterdam"]
    assert {i.member for i in shown.instances} == {"amsterdam"}
    assert len(shown.hosts) == 4  # shared hosts are everyone's


def test_pages_follow_a_stable_order_and_end(ctx: Context) -> None:
    # Two runs share a creation time: the id decides between them, on every page.
    times = [T0, T0 + timedelta(minutes=1), T0 + timedelta(minutes=1), T0 + timedelta(minutes=2)]
    store = store_at(ctx, *times, T0 + timedelta(minutes=3))
    created = [store.create(spec(m)) for m in ("amsterdam", "utrecht", "den-haag", "amsterdam")]
    created.append(store.create(spec("rotterdam", "reintegratie")))
    expected = [r.id for r in sorted(created, key=lambda r: (-r.created_at.timestamp(), r.id))]

    seen: list[str] = []
    cursor = None
    for _ in range(5):
        page = list_runs(ctx, ADMIN, limit=2, cursor=cursor)
        seen += [r.id for r in page.runs]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == expected
    # A run created meanwhile does not shift a page already being read.
    first = list_runs(ctx, ADMIN, limit=2)
    store_at(ctx, T0 + timedelta(hours=1)).create(spec("utrecht"))
    after = list_runs(ctx, ADMIN, limit=2, cursor=first.next_cursor)
    assert [r.id for r in after.runs] == expected[2:4]
    with pytest.raises(InvalidInput, match=r"^cursor: "):
        list_runs(ctx, ADMIN, cursor="not-a-cursor")


def test_filters_by_app_status_and_time(ctx: Context) -> None:
    store = store_at(ctx, T0, T0 + timedelta(hours=1), T0 + timedelta(hours=2))
    early = store.create(spec("amsterdam"))
    other_app = store.create(spec("amsterdam", "reintegratie"))
    late = store.create(spec("amsterdam"))
    ctx.runs.request_cancel(late.id)

    def ids(where: RunFilter) -> list[str]:
        return [r.id for r in list_runs(ctx, AMSTERDAM, where).runs]

    assert ids(RunFilter(app="uitkering")) == [late.id, early.id]
    assert ids(RunFilter(statuses=(RunStatus.CANCELED,))) == [late.id]
    assert ids(RunFilter(since=T0 + timedelta(minutes=30))) == [late.id, other_app.id]
    assert ids(RunFilter(until=T0 + timedelta(minutes=30))) == [early.id]
    # A time without an offset is local (Amsterdam, UTC+1 in March): 10:30 local is 09:30Z.
    assert ids(RunFilter(since=datetime(2026, 3, 2, 10, 30))) == [late.id, other_app.id]
    with pytest.raises(InvalidInput, match=r"^until: must be after since"):
        list_runs(ctx, ADMIN, RunFilter(since=T0, until=T0))


def failed(ctx: Context, outcomes: list[HostOutcome], error: str) -> Run:
    run = ctx.runs.create(spec("amsterdam"))
    for i, outcome in enumerate(outcomes):
        ctx.runs.record_host(HostResult(run.id, f"lab-{i + 1}", outcome))
    return ctx.runs.transition(run.id, RunStatus.FAILED, error=error)


def test_a_run_failed_only_on_unreachable_hosts_is_exit_4(ctx: Context) -> None:
    dark = failed(ctx, [HostOutcome.UNREACHABLE, HostOutcome.OK], "lab-1: ssh timed out")
    with pytest.raises(Unreachable, match="lab-1: ssh timed out") as caught:
        ops.ensure_successful(ctx, [dark])
    assert exit_code_for(caught.value) == 4

    mixed = failed(ctx, [HostOutcome.UNREACHABLE, HostOutcome.FAILED], "rollout stopped")
    with pytest.raises(OperationFailed, match="rollout stopped") as caught_mixed:
        ops.ensure_successful(ctx, [dark, mixed])
    assert exit_code_for(caught_mixed.value) == 1
    nothing_known = failed(ctx, [], "deploy.yml failed (rc 2)")
    with pytest.raises(OperationFailed):
        ops.ensure_successful(ctx, [nothing_known])


def test_follow_yields_new_events_until_the_run_ends_and_recovers_meanwhile(
    ctx: Context,
) -> None:
    run = ctx.runs.create(spec("amsterdam"))

    def event(seq: int) -> RunEvent:
        return RunEvent(run.id, seq, "runner_on_ok", T0, "lab-1", f"task {seq}")

    ctx.runs.append_events(run.id, [event(0), event(1)])
    clock = itertools.count(0, 3)  # each look at the clock is 3 s later
    recoveries: list[int] = []
    naps: list[float] = []

    def sleep(seconds: float) -> None:
        naps.append(seconds)
        if len(naps) == 1:
            ctx.runs.append_events(run.id, [event(2)])
        else:
            ctx.runs.append_events(run.id, [event(3)])
            ctx.runs.transition(run.id, RunStatus.FAILED, error="stopped")

    seen = follow_events(
        ctx,
        AMSTERDAM,
        run.id,
        after_seq=0,
        recover=lambda: recoveries.append(1),
        sleep=sleep,
        monotonic=lambda: float(next(clock)),
    )
    assert [e.seq for e in seen] == [1, 2, 3]  # and the events written as it ended
    assert recoveries  # a dead owner cannot keep a follower waiting
    with pytest.raises(NotFound):
        next(follow_events(ctx, Principal("x", Role.ENGINEER, frozenset({"utrecht"})), run.id))


def probe(member: str, app: str, healthy: bool, version: str | None) -> ProbeResult:
    return ProbeResult(
        member=member,
        app=app,
        host="lab-1",
        address="127.0.0.1",
        port=1,
        healthy=healthy,
        version=version,
        latency_seconds=0.0,
        error=None,
        at=T0,
    )


def test_provision_runs_only_what_is_not_converged_and_marks_first_installs() -> None:
    up = spec("amsterdam")
    fresh = spec("utrecht")
    stale = spec("rotterdam")
    live: Live = {
        ("amsterdam", "uitkering"): [probe("amsterdam", "uitkering", True, "1.0.0")],
        ("utrecht", "uitkering"): [probe("utrecht", "uitkering", False, None)],
        ("rotterdam", "uitkering"): [probe("rotterdam", "uitkering", True, "0.9.0")],
    }
    todo = needed([up, fresh, stale], live, force=False)
    assert [(s.member, s.options.first_install) for s in todo] == [
        ("utrecht", True),
        ("rotterdam", False),
    ]
    assert len(needed([up, fresh, stale], live, force=True)) == 3


def test_a_deploy_for_later_names_the_parameter_and_stores_nothing(ctx: Context) -> None:
    with pytest.raises(InvalidInput, match=r"^when: 'tomorrow' is not understood"):
        schedule_deploy(ctx, ADMIN, "utrecht", "uitkering", when="tomorrow")
    with pytest.raises(InvalidInput, match=r"^app: "):
        schedule_deploy(ctx, ADMIN, "utrecht", None)
    with pytest.raises(NotFound):
        schedule_deploy(ctx, AMSTERDAM, "utrecht", "uitkering")
