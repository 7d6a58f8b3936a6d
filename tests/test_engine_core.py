"""Engine behaviour that needs no hosts: planning errors, lock refusals, strategy fallback.

The runner here is a stand-in for ansible-runner, so these tests exercise the engine's own
decisions; real runs are in test_deploy_e2e.py.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine as SqlEngine

from controlplane.deploy.engine import Engine, EngineConfig
from controlplane.deploy.model import RunStatus
from controlplane.deploy.plan import DeployRequest, Planner
from controlplane.deploy.runner import HostStats, PlaybookRequest, PlaybookResult
from controlplane.errors import AppNotFound, InvalidInput, MemberNotFound, VersionNotFound
from controlplane.fleet.inventory import RenderContext
from controlplane.fleet.loader import load_fleet
from controlplane.store.runs import RunStore
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
        EngineConfig(data_dir=tmp, playbooks_dir=ROOT / "playbooks", fleet_dir=LAB),
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


def test_plan_is_one_run_per_app_with_hosts_and_params(parts: tuple[RunStore, Planner]) -> None:
    _, planner = parts
    specs = planner.plan_deploy(DeployRequest("rotterdam", serial="50%", max_fail="0%"))
    assert [(s.app, s.version, s.hosts) for s in specs] == [
        ("uitkering", "1.1.0", ("lab-2", "lab-3")),
        ("reintegratie", "2.1.0", ("lab-4", "lab-1")),
    ]
    assert specs[0].params == {
        "check": False,
        "serial": "50%",
        "max_fail_percentage": 0.0,
        "broken": False,
    }
    broken = planner.plan_deploy(DeployRequest("rotterdam", app="uitkering", version="1.2.0"))
    assert broken[0].params["broken"] is True


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
