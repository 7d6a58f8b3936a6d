"""Engine behaviour that needs no hosts: planning errors, lock refusals, strategy fallback.

The runner here is a stand-in for ansible-runner, so these tests exercise the engine's own
decisions; real runs are in test_deploy_e2e.py.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine as SqlEngine

from controlplane.deploy.engine import Engine, EngineConfig
from controlplane.deploy.model import RunKind, RunSpec, RunStatus
from controlplane.deploy.options import RunOptions
from controlplane.deploy.plan import DeployRequest, Planner
from controlplane.deploy.runner import HostStats, PlaybookRequest, PlaybookResult
from controlplane.errors import (
    AppNotFound,
    GateClosed,
    InvalidInput,
    MemberNotFound,
    VersionNotFound,
)
from controlplane.fleet.inventory import RenderContext
from controlplane.fleet.loader import load_fleet
from controlplane.store.runs import RunStore
from controlplane.windows.loader import load_gate
from tests.conftest import LAB, ROOT


class ScriptedRunner:
    """Plays back scripted outcomes and records each request."""

    def __init__(self, outcomes: list[tuple[str, int, bool]]) -> None:
        self.outcomes = outcomes
        self.requests: list[PlaybookRequest] = []

    def __call__(
        self, request: PlaybookRequest, pdd: Path, ident: str, **kw: Any
    ) -> PlaybookResult:
        self.requests.append(request)
        status, rc, ran = self.outcomes.pop(0)
        hosts = (request.limit or "").split(",")
        if ran:
            for host in hosts:
                kw["event_handler"](
                    {
                        "event": "runner_on_ok",
                        "event_data": {
                            "host": host,
                            "task": "cp-report-release",
                            "res": {
                                "changed": True,
                                "msg": {
                                    "member": request.extravars["cp_member"],
                                    "app": request.extravars["cp_app"],
                                    "port": 8101,
                                    "before": "1.0.0",
                                    "after": request.extravars["cp_version"],
                                    "healthy": True,
                                },
                            },
                        },
                    }
                )
        stats = {h: HostStats(ok=1, changed=1) for h in hosts} if ran else {}
        return PlaybookResult(status, rc, stats, pdd)


@pytest.fixture
def parts(engine: SqlEngine, tmp_path: Path) -> tuple[RunStore, Planner]:
    store = RunStore(engine)
    return store, Planner(load_fleet(LAB), store)


def make_engine(store: RunStore, runner: ScriptedRunner, tmp: Path) -> Engine:
    return Engine(
        load_fleet(LAB),
        store,
        EngineConfig(
            data_dir=tmp, playbooks_dir=ROOT / "controlplane" / "playbooks", fleet_dir=LAB
        ),
        RenderContext(tmp, sys.executable),
        runner=runner,
    )


@pytest.mark.parametrize(
    ("request_", "error"),
    [
        (DeployRequest("leiden"), MemberNotFound),
        (DeployRequest("amsterdam", app="schuldhulp"), AppNotFound),
        (DeployRequest("amsterdam", app="uitkering", version="9.9.9"), VersionNotFound),
        (DeployRequest("amsterdam", app="uitkering", version="1.1.0;reboot"), InvalidInput),
        (DeployRequest("amsterdam", version="1.1.0"), InvalidInput),
        (DeployRequest("amsterdam", serial="lots"), InvalidInput),
        (DeployRequest("amsterdam", max_fail="200%"), InvalidInput),
    ],
)
def test_bad_requests_queue_nothing(
    parts: tuple[RunStore, Planner], request_: DeployRequest, error: type[Exception]
) -> None:
    store, planner = parts
    with pytest.raises(error):
        planner.plan_deploy(request_)
    assert store.find() == []


def test_plan_is_one_run_per_app_with_hosts_and_options(parts: tuple[RunStore, Planner]) -> None:
    _, planner = parts
    specs = planner.plan_deploy(DeployRequest("rotterdam", serial="50%", max_fail="0%"))
    assert [(s.app, s.version, s.hosts) for s in specs] == [
        ("uitkering", "1.1.0", ("lab-2", "lab-3")),
        ("reintegratie", "2.1.0", ("lab-4", "lab-1")),
    ]
    assert specs[0].options == RunOptions(serial="50%", max_fail_percentage=0.0)
    broken = planner.plan_deploy(DeployRequest("rotterdam", app="uitkering", version="1.2.0"))
    assert broken[0].options.broken is True


def test_mitogen_failure_before_any_task_falls_back_to_linear(
    parts: tuple[RunStore, Planner], tmp_path: Path
) -> None:
    store, planner = parts
    runner = ScriptedRunner([("failed", 1, False), ("successful", 0, True)])
    engine = make_engine(store, runner, tmp_path)
    [spec] = planner.plan_deploy(DeployRequest("amsterdam", app="uitkering"))
    run = engine.execute(engine.submit(spec).id)
    assert run.status is RunStatus.SUCCESSFUL
    assert [r.tuning.strategy for r in runner.requests] == ["mitogen_linear", "linear"]
    assert run.tuning["deploy.yml"]["strategy"] == "linear"
    assert run.tuning["deploy.yml"]["fallback_from"] == "mitogen_linear"
    assert runner.requests[0].limit == "lab-1,lab-2"
    assert runner.requests[0].envvars["CONTROLPLANE_RUN_ID"] == run.id


def test_a_run_where_mitogen_works_runs_once(
    parts: tuple[RunStore, Planner], tmp_path: Path
) -> None:
    store, planner = parts
    runner = ScriptedRunner([("successful", 0, True)])
    engine = make_engine(store, runner, tmp_path)
    [spec] = planner.plan_deploy(DeployRequest("amsterdam", app="uitkering"))
    run = engine.execute(engine.submit(spec).id)
    assert run.status is RunStatus.SUCCESSFUL
    assert len(runner.requests) == 1
    assert run.tuning["deploy.yml"]["strategy"] == "mitogen_linear"
    assert store.held_locks() == []


# -- the windows gate ------------------------------------------------------------------------

FREEZE_DAY = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)  # Monday: a lab payment-run day
ORDINARY_DAY = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


def gated_engine(store: RunStore, tmp: Path, now: datetime, runner: ScriptedRunner) -> Engine:
    fleet = load_fleet(LAB)
    return Engine(
        fleet,
        store,
        EngineConfig(
            data_dir=tmp, playbooks_dir=ROOT / "controlplane" / "playbooks", fleet_dir=LAB
        ),
        RenderContext(tmp, sys.executable),
        runner=runner,
        clock=lambda: now,
        gate=load_gate(LAB, fleet),
    )


def test_gate_refuses_in_a_freeze_and_names_it_and_the_next_opening(
    parts: tuple[RunStore, Planner], tmp_path: Path
) -> None:
    store, planner = parts
    engine = gated_engine(store, tmp_path, FREEZE_DAY, ScriptedRunner([]))
    [spec] = planner.plan_deploy(DeployRequest("amsterdam", app="uitkering"))
    with pytest.raises(GateClosed) as refused:
        engine.submit(spec)
    assert "payment-run-amsterdam" in str(refused.value)
    assert "next opening 2026-12-01 00:00 CET" in str(refused.value)
    assert store.find() == []  # nothing queued


def test_emergency_override_is_allowed_and_recorded(
    parts: tuple[RunStore, Planner], tmp_path: Path
) -> None:
    store, planner = parts
    engine = gated_engine(store, tmp_path, FREEZE_DAY, ScriptedRunner([("successful", 0, True)]))
    [spec] = planner.plan_deploy(
        DeployRequest("amsterdam", app="uitkering", emergency_reason="CVE-2026-1234 hotfix")
    )
    run = engine.execute(engine.submit(spec).id)
    assert run.status is RunStatus.SUCCESSFUL
    assert run.emergency_reason == "CVE-2026-1234 hotfix"
    assert run.options.gate is not None and run.options.gate.reason == "emergency"
    assert "payment-run-amsterdam" in run.options.gate.message


def test_plans_and_ordinary_days_pass_the_gate(
    parts: tuple[RunStore, Planner], tmp_path: Path
) -> None:
    store, planner = parts
    frozen = gated_engine(store, tmp_path, FREEZE_DAY, ScriptedRunner([]))
    [plan] = planner.plan_deploy(DeployRequest("amsterdam", app="uitkering", check=True))
    assert frozen.submit(plan).status is RunStatus.QUEUED  # check mode changes nothing
    store.request_cancel(store.find()[0].id)
    ordinary = gated_engine(store, tmp_path, ORDINARY_DAY, ScriptedRunner([]))
    [spec] = planner.plan_deploy(DeployRequest("utrecht", app="uitkering"))
    run = ordinary.submit(spec)
    assert run.options.gate is not None and run.options.gate.reason == "no-freeze"


def test_patching_a_host_needs_its_window_and_no_member_freeze(
    parts: tuple[RunStore, Planner], tmp_path: Path
) -> None:
    store, _ = parts
    spec = RunSpec(RunKind.PATCH, "patch.yml", "ops", hosts=("lab-1",))
    tuesday_noon = datetime(2026, 11, 24, 11, 0, tzinfo=UTC)
    with pytest.raises(GateClosed, match="lab-1"):
        gated_engine(store, tmp_path, tuesday_noon, ScriptedRunner([])).submit(spec)
    monday_morning = datetime(2026, 11, 23, 4, 30, tzinfo=UTC)  # 05:30 CET, patch-lab-1
    run = gated_engine(store, tmp_path, monday_morning, ScriptedRunner([])).submit(spec)
    assert run.options.gate is not None and run.options.gate.reason == "in-window"
