"""Declared and imperative versions agree: ``deploy --version V --record`` writes V to the
fleet's stacks.yml after a successful run, a deploy without it says what the fleet still
declares, and ``provision`` never silently downgrades a live release."""

from __future__ import annotations

import json
import shutil
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from controlplane.access.policy import Principal
from controlplane.app import Context, build_context
from controlplane.deploy import declared
from controlplane.deploy import operations as ops
from controlplane.deploy.engine import Engine, EngineConfig
from controlplane.deploy.history import detail
from controlplane.deploy.model import RunKind, RunSpec, RunStatus
from controlplane.deploy.options import RunOptions
from controlplane.deploy.provision import Live, StackAction, needed, plan_stack
from controlplane.errors import InvalidInput, OperationFailed
from controlplane.fleet.loader import load_fleet
from controlplane.maintenance.operations import schedule_deploy, stored_schedule
from controlplane.schemas.runs import RunDetailOut
from controlplane.settings import PLAYBOOKS_DIR
from controlplane.uptime.probes import ProbeResult
from tests.conftest import LAB
from tests.refapp_fixtures import kill_refapps
from tests.test_audit_wiring import HealthyRunner

ADMIN = Principal.local("admin@test")
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def spec(version: str = "2.1.0", **options: Any) -> RunSpec:
    return RunSpec(
        kind=RunKind.DEPLOY,
        playbook="deploy.yml",
        started_by="test",
        member="utrecht",
        app="reintegratie",
        version=version,
        hosts=("lab-2",),
        options=RunOptions(**options),
    )


def probe(version: str | None, healthy: bool = True) -> ProbeResult:
    return ProbeResult(
        member="utrecht",
        app="reintegratie",
        host="lab-2",
        address="127.0.0.1",
        port=1,
        healthy=healthy,
        version=version,
        latency_seconds=0.0,
        error=None if healthy else "refused",
        at=T0,
    )


# -- provision's decision per member app (pure) ----------------------------------------------


def test_provision_refuses_a_downgrade_unless_forced() -> None:
    newer = [probe("2.2.0"), probe("2.1.0")]
    refused = plan_stack(spec(), newer, force=False)
    assert (refused.action, refused.newer, refused.live) == (
        StackAction.REFUSED,
        "2.2.0",
        ("2.1.0", "2.2.0"),
    )
    assert refused.note == (
        "utrecht/reintegratie: live 2.2.0 is newer than the declared 2.1.0; not downgraded "
        "without --force (to keep 2.2.0: controlplane deploy utrecht --app reintegratie "
        "--version 2.2.0 --record)"
    )
    assert not refused.runs
    forced = plan_stack(spec(), newer, force=True)
    assert (forced.action, forced.runs) == (StackAction.DOWNGRADE, True)
    assert "downgrading live 2.2.0 to the declared 2.1.0" in (forced.note or "")
    # PEP 440 order, not text order: 2.10.0 is newer than 2.9.0.
    assert plan_stack(spec("2.9.0"), [probe("2.10.0")], force=False).action is StackAction.REFUSED


@pytest.mark.parametrize(
    ("live", "action"),
    [
        ([probe("2.1.0")], StackAction.UP_TO_DATE),
        ([probe("2.1.0"), probe("2.1.0", healthy=False)], StackAction.DEPLOY),
        ([probe("2.0.0")], StackAction.DEPLOY),  # an upgrade is what provision is for
        ([probe(None, healthy=False)], StackAction.INSTALL),
        ([probe("not-a-version")], StackAction.DEPLOY),  # unknown order: never "newer"
    ],
)
def test_provision_decides_what_else_it_does(live: list[ProbeResult], action: StackAction) -> None:
    assert plan_stack(spec(), live, force=False).action is action


def test_provision_runs_neither_refused_nor_converged_apps() -> None:
    ahead, behind = spec("2.1.0"), replace(spec("2.1.0"), member="amsterdam")
    live: Live = {
        ("utrecht", "reintegratie"): [probe("2.2.0")],
        ("amsterdam", "reintegratie"): [probe("2.0.0")],
    }
    assert [s.member for s in needed([ahead, behind], live, force=False)] == ["amsterdam"]
    assert len(needed([ahead, behind], live, force=True)) == 2


# -- the option, the note, and recording without ansible -------------------------------------


def test_the_record_option_round_trips_and_old_runs_read_as_not_recording() -> None:
    assert RunOptions.from_json(RunOptions(record=True).to_json()).record is True
    assert RunOptions.from_json({"check": False}).record is False
    with pytest.raises(InvalidInput, match=r"^options\.record: expected true or false"):
        RunOptions.from_json({"record": "yes"})


def shown(status: RunStatus, version: str = "2.2.0", **options: Any) -> RunDetailOut:
    return RunDetailOut(
        id="r1",
        kind="deploy",
        status=status.value,
        member="utrecht",
        app="reintegratie",
        version=version,
        playbook="deploy.yml",
        started_by="t",
        reason="",
        emergency_reason=None,
        options=RunOptions(**options).to_json(),
        tuning={},
        cancel_requested=False,
        created_at=T0,
        started_at=None,
        finished_at=None,
        rc=None,
        error=None,
        hosts=[],
    )


def test_a_deploy_without_record_says_what_provision_would_do() -> None:
    ok = RunStatus.SUCCESSFUL
    ahead = declared.declared_note(shown(ok), "f/stacks.yml", "2.1.0", None)
    assert ahead is not None and not ahead.record and not ahead.recorded
    assert ahead.note == (
        "the fleet still declares utrecht/reintegratie 2.1.0 (deployed 2.2.0): "
        "`controlplane provision` refuses to go back to it and `controlplane provision "
        "--force` would; to keep 2.2.0: controlplane deploy utrecht --app reintegratie "
        "--version 2.2.0 --record"
    )
    behind = declared.declared_note(shown(ok, "2.0.0"), "f/stacks.yml", "2.1.0", None)
    assert behind is not None
    assert "`controlplane provision` would return utrecht/reintegratie to it" in behind.note
    plan = declared.declared_note(shown(ok, check=True), "f/stacks.yml", "2.1.0", None)
    assert plan is not None and "(would deploy 2.2.0)" in plan.note
    # Nothing to say when the fleet declares what ran, or the run failed.
    assert declared.declared_note(shown(ok, "2.1.0"), "f/stacks.yml", "2.1.0", None) is None
    assert declared.declared_note(shown(RunStatus.FAILED), "f/stacks.yml", "2.1.0", None) is None


def test_a_deploy_with_record_says_what_happened() -> None:
    def note(status: RunStatus, event: dict[str, Any] | None, **options: Any) -> str:
        out = declared.declared_note(shown(status, record=True, **options), "f", "2.1.0", event)
        assert out is not None and out.record
        return out.note

    ok = RunStatus.SUCCESSFUL
    assert note(ok, {"recorded": True, "before": "2.1.0"}) == (
        "recorded: f now declares utrecht/reintegratie 2.2.0 (was 2.1.0)"
    )
    assert note(ok, {"recorded": True, "before": "2.2.0"}) == (
        "recorded: f already declared utrecht/reintegratie 2.2.0"
    )
    assert note(ok, {"recorded": False, "error": "f: bad"}) == (
        "not recorded: f: bad; the fleet still declares 2.1.0"
    )
    assert note(ok, None).startswith("recording utrecht/reintegratie 2.2.0 in f")
    assert (
        note(RunStatus.RUNNING, None)
        == "f will declare utrecht/reintegratie 2.2.0 once the run succeeds"
    )
    assert (
        note(RunStatus.FAILED, None) == "nothing recorded: the run did not succeed; f is unchanged"
    )
    assert (
        note(ok, None, check=True) == "plan: a deploy would record utrecht/reintegratie 2.2.0 in f"
    )


@pytest.fixture
def fleet_ctx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Context]:
    fleet = tmp_path / "fleet"
    shutil.copytree(LAB, fleet)
    monkeypatch.setenv("CONTROLPLANE_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.delenv("CONTROLPLANE_DATABASE_URL", raising=False)
    with build_context(fleet) as ctx:
        yield ctx


def finished(ctx: Context, run_spec: RunSpec) -> RunDetailOut:
    """A run through the engine's success hook, as if its playbook had succeeded."""
    run = ctx.runs.create(run_spec)
    ctx.runs.transition(run.id, RunStatus.RUNNING)
    done = ctx.runs.transition(run.id, RunStatus.SUCCESSFUL)
    ctx.deployer.on_success(done)  # type: ignore[misc]
    return detail(ctx, ctx.runs.get(run.id))


def test_the_success_hook_records_once_and_says_why_it_could_not(fleet_ctx: Context) -> None:
    ctx = fleet_ctx
    stacks = ctx.settings.resolved_fleet / "stacks.yml"
    before = stacks.read_text()

    plan = finished(ctx, spec("2.2.0", record=True, check=True))
    not_asked = finished(ctx, spec("2.2.0"))
    assert stacks.read_text() == before  # a plan, or a deploy not asked to, records nothing
    assert plan.declared is not None and not plan.declared.recorded
    assert not_asked.declared is not None and "still declares" in not_asked.declared.note

    recorded = finished(ctx, spec("2.2.0", record=True))
    assert recorded.declared is not None and recorded.declared.recorded
    assert recorded.declared.declared == "2.2.0"
    assert stacks.read_text() == before.replace(
        'utrecht:\n    uitkering:\n      version: "1.1.0"\n      instances:\n'
        "        - {host: lab-4, port: 8104}\n        - {host: lab-1, port: 8104}\n"
        '    reintegratie:\n      version: "2.1.0"',
        'utrecht:\n    uitkering:\n      version: "1.1.0"\n      instances:\n'
        "        - {host: lab-4, port: 8104}\n        - {host: lab-1, port: 8104}\n"
        '    reintegratie:\n      version: "2.2.0"',
    )
    assert stacks.read_text() != before

    # A version the catalogue lacks (the fleet changed meanwhile): nothing written, and the
    # edge hears why and fails.
    ghost = finished(ctx, spec("7.0.0", record=True))
    assert ghost.declared is not None and ghost.declared.error is not None
    assert "7.0.0" in ghost.declared.error and "nothing was written" in ghost.declared.error
    assert "2.2.0" in stacks.read_text()
    with pytest.raises(OperationFailed, match=r"^not recorded: "):
        declared.ensure_recorded([recorded, ghost])
    declared.ensure_recorded([recorded, plan, not_asked])


def test_record_needs_a_version(fleet_ctx: Context) -> None:
    with pytest.raises(InvalidInput, match=r"^record: needs a version"):
        ops.deploy(fleet_ctx, ADMIN, "utrecht", app="reintegratie", record=True)
    assert fleet_ctx.runs.find() == []


@pytest.fixture
def stand_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Context]:
    """The lab fleet (no freezes) with the real operations, engine, success hook and
    scheduler logic; only ansible-runner is a stand-in reporting every host healthy."""
    fleet = tmp_path / "fleet"
    shutil.copytree(LAB, fleet)
    (fleet / "windows.yml").write_text("windows: []\n")
    (fleet / "maintenance.yml").unlink()
    monkeypatch.setenv("CONTROLPLANE_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.delenv("CONTROLPLANE_DATABASE_URL", raising=False)
    with build_context(fleet) as ctx:
        ctx.deployer = Engine(
            ctx.fleet,
            ctx.runs,
            EngineConfig(data_dir=ctx.data_dir, playbooks_dir=PLAYBOOKS_DIR, fleet_dir=fleet),
            ctx.render_context,
            runner=HealthyRunner(),
            gate=ctx.gate,
            on_success=ctx._after_success,
        )
        yield ctx


def declares(ctx: Context) -> str:
    return load_fleet(ctx.settings.resolved_fleet).stack_app("utrecht", "reintegratie").version


def test_a_deploy_records_through_the_engine_and_a_queued_one_when_serve_runs_it(
    stand_in: Context,
) -> None:
    ctx = stand_in
    [planned] = ops.deploy(
        ctx, ADMIN, "utrecht", app="reintegratie", version="2.2.0", check=True, record=True
    )
    assert planned.status is RunStatus.SUCCESSFUL and declares(ctx) == "2.1.0"

    [run] = ops.deploy(ctx, ADMIN, "utrecht", app="reintegratie", version="2.2.0", record=True)
    assert run.options.record and ctx.runs.get(run.id).options.record  # stored with the run
    assert declares(ctx) == "2.2.0"
    [event] = [e for e in ctx.runs.events(run.id) if e.event == declared.DECLARED_EVENT]
    assert event.data["recorded"] is True and event.data["before"] == "2.1.0"

    # Stored for the next window, then started by serve's scheduler: it records too.
    queued = schedule_deploy(
        ctx, ADMIN, "utrecht", "reintegratie", version="2.0.0", reason="r", record=True
    )
    with stored_schedule(ctx) as scheduler:
        job = scheduler.get_job(queued.id)
        assert job is not None
        kind, name, payload = job.args
    later = ctx.maintenance.dispatch(kind, name, payload)
    assert later is not None and later.status is RunStatus.SUCCESSFUL and later.options.record
    assert declares(ctx) == "2.0.0"
    with pytest.raises(InvalidInput, match=r"^record: needs a version"):
        schedule_deploy(ctx, ADMIN, "utrecht", "reintegratie", record=True)


# -- end to end: the lab fleet, connection local, on its own loopback range ---------------


@pytest.fixture
def lab(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Iterator[tuple[Path, Callable[..., tuple[int, Any, str]]]]:
    """One member app (utrecht's reintegratie, one instance) of the lab fleet on
    127.0.73.x, with no freezes, and the CLI in-process over it."""
    from controlplane.cli import run

    fleet = tmp_path / "fleet"
    shutil.copytree(LAB, fleet)
    hosts = fleet / "hosts.yml"
    hosts.write_text(hosts.read_text().replace("127.0.10.", "127.0.73."))
    (fleet / "stacks.yml").write_text(
        "# utrecht only\n"
        "stacks:\n"
        "  utrecht:\n"
        "    reintegratie:\n"
        '      version: "2.1.0"  # the release the board signed off\n'
        "      instances:\n"
        "        - {host: lab-2, port: 8204}\n"
    )
    (fleet / "windows.yml").write_text("windows: []\n")  # no freeze can refuse the test
    (fleet / "maintenance.yml").unlink()
    monkeypatch.setenv("CONTROLPLANE_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("CONTROLPLANE_FLEET", str(fleet))
    monkeypatch.delenv("CONTROLPLANE_DATABASE_URL", raising=False)
    monkeypatch.delenv("CONTROLPLANE_SERVER", raising=False)

    def invoke(*args: str) -> tuple[int, Any, str]:
        code = run(list(args))
        captured = capsys.readouterr()
        body = json.loads(captured.out) if "--json" in args and captured.out else captured.out
        return code, body, captured.err

    yield fleet, invoke
    kill_refapps(tmp_path / "var" / "hosts")


def live_version() -> str:
    with urllib.request.urlopen("http://127.0.73.2:8204/version", timeout=3) as answer:
        return str(json.loads(answer.read())["version"])


def test_declared_and_imperative_versions_agree_end_to_end(
    lab: tuple[Path, Callable[..., tuple[int, Any, str]]],
) -> None:
    fleet, cli = lab
    stacks = fleet / "stacks.yml"
    declared = stacks.read_text()

    # An imperative deploy: the fleet still declares 2.1.0, and the output says so.
    code, runs, err = cli(
        "deploy", "utrecht", "--app", "reintegratie", "--version", "2.2.0", "--json"
    )
    assert code == 0, err
    assert runs[0]["status"] == "successful"
    assert runs[0]["declared"]["declared"] == "2.1.0"
    assert runs[0]["declared"]["recorded"] is False
    assert "--version 2.2.0 --record" in runs[0]["declared"]["note"]
    assert stacks.read_text() == declared
    assert live_version() == "2.2.0"

    # provision does not silently take it back: the plan shows it, the job refuses (3).
    code, plan, err = cli("provision", "utrecht", "--plan", "--json")
    assert code == 3
    assert [(s["app"], s["live"], s["action"]) for s in plan["stacks"]] == [
        ("reintegratie", ["2.2.0"], "refused")
    ]
    code, out, err = cli("provision", "utrecht")
    assert code == 3
    line = err.strip().splitlines()[-1]  # after the progress line, one error line
    assert line.startswith("error: utrecht/reintegratie: live 2.2.0 ")
    for part in ("declared 2.1.0", "--force"):
        assert part in line
    assert live_version() == "2.2.0"
    code, page, err = cli("runs", "list", "--json")
    assert [r["version"] for r in page] == ["2.2.0"]  # provision ran nothing

    # --force would go back to the declared release (it runs like any deploy).
    code, forced, err = cli("provision", "utrecht", "--plan", "--force", "--json")
    assert code == 0, err
    assert [(s["app"], s["action"]) for s in forced["stacks"]] == [("reintegratie", "downgrade")]

    # Recorded: stacks.yml declares 2.2.0 (one line changed, its comment kept), and
    # provision then has nothing to do.
    code, out, err = cli(
        "deploy", "utrecht", "--app", "reintegratie", "--version", "2.2.0", "--record"
    )
    assert code == 0, err
    assert f"recorded: {stacks} now declares utrecht/reintegratie 2.2.0 (was 2.1.0)" in out
    assert stacks.read_text() == declared.replace(
        '"2.1.0"  # the release the board signed off', '"2.2.0"  # the release the board signed off'
    )
    code, again, err = cli("provision", "utrecht", "--json")
    assert code == 0, err
    assert again["runs"] == [] and again["refused"] == []
    assert live_version() == "2.2.0"
