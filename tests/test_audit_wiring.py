"""Every change reaches the audit log: deploys, plans, rollbacks, cancels, emergency
overrides, scheduled starts and skips, refused attempts included.

The real operations, engine, windows gate, scheduler logic and SQLite store over the lab
fleet; only ansible-runner is replaced by a stand-in that reports every host healthy on
the requested release, because what these tests check is what gets recorded, not Ansible
(the end-to-end suites run the real playbooks). Nothing here starts Ansible or sshd.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from apscheduler.events import EVENT_JOB_MISSED, JobExecutionEvent

from controlplane.access.operations import issue_token
from controlplane.access.policy import Principal, Role
from controlplane.app import Context, build_context
from controlplane.audit.chain import AuditEntry
from controlplane.cli import run as cli
from controlplane.deploy import operations as ops
from controlplane.deploy.engine import Engine, EngineConfig
from controlplane.deploy.model import RunKind, RunSpec, RunStatus
from controlplane.deploy.runner import HostStats, PlaybookRequest, PlaybookResult
from controlplane.errors import Forbidden, GateClosed, LockHeld
from controlplane.maintenance.operations import schedule_deploy, stored_schedule
from controlplane.settings import PLAYBOOKS_DIR
from tests.conftest import LAB

ADMIN = Principal.local("admin@test")
EVE = Principal("eve", Role.ENGINEER, frozenset({"amsterdam"}))
BOARD = Principal("board", Role.BOARD)

# March 2026: the payment-run freeze covers the last three working days (27, 30, 31).
FROZEN = datetime(2026, 3, 30, 10, 0, tzinfo=UTC)
OPEN = datetime(2026, 3, 10, 10, 0, tzinfo=UTC)
# Monday 05:30 in Amsterdam: inside lab-1's weekly patch window, before its cutoff.
PATCH_WINDOW = datetime(2026, 3, 9, 4, 30, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class HealthyRunner:
    """Stands in for ansible-runner: every host reports the requested release healthy."""

    def __init__(self) -> None:
        self.requests: list[PlaybookRequest] = []

    def __call__(
        self, request: PlaybookRequest, pdd: Path, ident: str, **kw: Any
    ) -> PlaybookResult:
        self.requests.append(request)
        hosts = (request.limit or "").split(",")
        version = request.extravars.get("cp_version")
        for host in hosts if version else []:
            report = {
                "member": request.extravars["cp_member"],
                "app": request.extravars["cp_app"],
                "port": 8101,
                "before": "1.0.0",
                "after": version,
                "healthy": True,
            }
            event = {"host": host, "task": "cp-report-release", "res": {"msg": report}}
            kw["event_handler"]({"event": "runner_on_ok", "event_data": event})
        return PlaybookResult("successful", 0, {h: HostStats(ok=1) for h in hosts}, pdd)


@pytest.fixture
def ctx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Context]:
    monkeypatch.setenv("CONTROLPLANE_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.delenv("CONTROLPLANE_DATABASE_URL", raising=False)
    with build_context(LAB) as context:
        yield context


@pytest.fixture
def clock(ctx: Context) -> Clock:
    """Puts the context's deploy engine on this clock and the stand-in runner."""
    now = Clock(OPEN)
    ctx.deployer = Engine(
        ctx.fleet,
        ctx.runs,
        EngineConfig(data_dir=ctx.data_dir, playbooks_dir=PLAYBOOKS_DIR, fleet_dir=LAB),
        ctx.render_context,
        runner=HealthyRunner(),
        clock=now,
        gate=ctx.gate,
    )
    return now


def entries(ctx: Context) -> list[AuditEntry]:
    return ctx.audit.entries()


def summary(found: list[AuditEntry]) -> list[tuple[str, str, str, str | None]]:
    return [(e.actor, e.action, e.outcome, e.member) for e in found]


def test_a_deploy_is_audited_when_accepted_and_when_it_ends(ctx: Context, clock: Clock) -> None:
    [run] = ops.deploy(ctx, EVE, "amsterdam", app="uitkering", reason="release 1.1.0")
    assert run.status is RunStatus.SUCCESSFUL
    accepted, ended = entries(ctx)
    assert (accepted.actor, accepted.role, accepted.action, accepted.outcome) == (
        "eve",
        "engineer",
        "deploy",
        "accepted",
    )
    assert (accepted.member, accepted.target, accepted.reason) == (
        "amsterdam",
        run.id,
        "release 1.1.0",
    )
    assert accepted.detail["app"] == "uitkering" and accepted.detail["version"] == "1.1.0"
    assert accepted.detail["hosts"] == ["lab-1", "lab-2"]
    # The end is reported by the control plane and still says who asked.
    assert (ended.actor, ended.action, ended.outcome, ended.target) == (
        "controlplane",
        "deploy",
        "ok",
        run.id,
    )
    assert ended.detail["status"] == "successful" and ended.detail["started_by"] == "eve"


def test_a_plan_is_audited_as_a_plan(ctx: Context, clock: Clock) -> None:
    clock.now = FROZEN  # plans change nothing and pass a freeze
    [run] = ops.plan(ctx, EVE, "amsterdam", app="uitkering")
    assert summary(entries(ctx)) == [
        ("eve", "plan", "accepted", "amsterdam"),
        ("controlplane", "plan", "ok", "amsterdam"),
    ]
    assert entries(ctx)[0].target == run.id


def test_a_deploy_the_freeze_refuses_is_audited_and_creates_no_run(
    ctx: Context, clock: Clock
) -> None:
    clock.now = FROZEN
    with pytest.raises(GateClosed):
        ops.deploy(ctx, EVE, "amsterdam", app="uitkering", reason="release 1.1.0")
    [refused] = entries(ctx)
    assert summary([refused]) == [("eve", "deploy", "refused", "amsterdam")]
    assert refused.target is None and refused.reason == "release 1.1.0"
    assert "payment-run-amsterdam" in refused.detail["refused"]
    assert refused.detail["app"] == "uitkering"
    assert ctx.runs.find() == []


def test_a_role_that_may_not_deploy_is_refused_and_audited(ctx: Context, clock: Clock) -> None:
    with pytest.raises(Forbidden):
        ops.deploy(ctx, BOARD, "amsterdam", reason="curious")
    [refused] = entries(ctx)
    assert summary([refused]) == [("board", "deploy", "refused", "amsterdam")]
    assert refused.reason == "curious" and "may not" in refused.detail["refused"]


def test_an_emergency_reason_through_a_freeze_is_an_emergency_override(
    ctx: Context, clock: Clock
) -> None:
    clock.now = FROZEN
    [run] = ops.deploy(
        ctx,
        EVE,
        "amsterdam",
        app="uitkering",
        reason="hotfix",
        emergency_reason="payments fail: INC-4711",
    )
    assert run.status is RunStatus.SUCCESSFUL
    found = entries(ctx)
    assert summary(found) == [
        ("eve", "deploy", "accepted", "amsterdam"),
        ("eve", "emergency_override", "ok", "amsterdam"),
        ("controlplane", "deploy", "ok", "amsterdam"),
    ]
    override = found[1]
    assert override.target == run.id and override.reason == "payments fail: INC-4711"
    assert override.detail["action"] == "deploy"
    assert "payment-run-amsterdam" in override.detail["gate"]


def test_an_emergency_reason_on_an_open_gate_overrides_nothing(ctx: Context, clock: Clock) -> None:
    ops.deploy(ctx, EVE, "amsterdam", app="uitkering", emergency_reason="just in case")
    assert "emergency_override" not in [e.action for e in entries(ctx)]


def test_rollbacks_are_audited_refused_in_a_freeze_and_accepted_outside(
    ctx: Context, clock: Clock
) -> None:
    clock.now = FROZEN
    with pytest.raises(GateClosed):
        ops.rollback(ctx, EVE, "amsterdam", "uitkering", version="1.0.0", reason="bad release")
    clock.now = OPEN
    [run] = ops.rollback(ctx, EVE, "amsterdam", "uitkering", version="1.0.0", reason="bad release")
    assert run.status is RunStatus.SUCCESSFUL
    found = entries(ctx)
    assert summary(found) == [
        ("eve", "rollback", "refused", "amsterdam"),
        ("eve", "rollback", "accepted", "amsterdam"),
        ("controlplane", "rollback", "ok", "amsterdam"),
    ]
    assert all(e.reason == "bad release" for e in found)
    assert found[1].target == run.id and found[1].detail["version"] == "1.0.0"


def test_a_lock_refusal_is_audited(ctx: Context, clock: Clock) -> None:
    held = ops.submit(ctx, ADMIN, deploy_spec())  # queued, holding the app's lock
    with pytest.raises(LockHeld):
        ops.deploy(ctx, EVE, "amsterdam", app="uitkering", reason="second")
    found = entries(ctx)
    assert summary(found) == [
        ("admin@test", "deploy", "accepted", "amsterdam"),
        ("eve", "deploy", "refused", "amsterdam"),
    ]
    assert held.id in found[1].detail["refused"]
    assert [r.id for r in ctx.runs.find()] == [held.id]  # the refused run was not kept


def deploy_spec(reason: str = "first") -> RunSpec:
    return RunSpec(
        kind=RunKind.DEPLOY,
        playbook="deploy.yml",
        started_by="admin@test",
        reason=reason,
        member="amsterdam",
        app="uitkering",
        version="1.1.0",
        hosts=("lab-1", "lab-2"),
    )


def test_cancels_are_audited_with_their_outcome(ctx: Context, clock: Clock) -> None:
    run = ops.submit(ctx, EVE, deploy_spec())
    with pytest.raises(Forbidden):
        ops.cancel(ctx, BOARD, run.id, reason="not mine to cancel")
    canceled = ops.cancel(ctx, EVE, run.id, reason="wrong version")
    assert canceled.status is RunStatus.CANCELED
    ops.cancel(ctx, EVE, run.id, reason="again")  # it already ended: nothing changes
    found = entries(ctx)
    assert summary(found) == [
        ("eve", "deploy", "accepted", "amsterdam"),
        ("board", "cancel", "refused", None),
        ("eve", "cancel", "ok", "amsterdam"),
        ("controlplane", "deploy", "failed", "amsterdam"),
        ("eve", "cancel", "failed", "amsterdam"),
    ]
    assert found[1].detail["run"] == run.id
    assert (found[2].target, found[2].reason) == (run.id, "wrong version")
    assert found[3].detail["status"] == "canceled"


def test_a_scheduled_patch_start_is_audited_as_the_scheduler(ctx: Context, clock: Clock) -> None:
    clock.now = PATCH_WINDOW
    run = ctx.maintenance.dispatch("cron", "patch-lab-1", {})
    assert run is not None and run.status is RunStatus.SUCCESSFUL
    found = entries(ctx)
    assert summary(found) == [
        ("scheduler", "schedule_start", "accepted", None),
        ("controlplane", "schedule_start", "ok", None),
    ]
    assert found[0].role == "admin" and found[0].target == run.id
    assert found[0].detail["job"] == "patch-lab-1" and found[0].detail["kind"] == "patch"


def test_scheduled_work_the_gate_refuses_is_audited_as_skipped(ctx: Context, clock: Clock) -> None:
    clock.now = OPEN  # a Tuesday: lab-1's patch window is on Mondays
    run = ctx.maintenance.dispatch("cron", "patch-lab-1", {})
    assert run is not None and run.status is RunStatus.SKIPPED
    [skipped] = entries(ctx)
    assert summary([skipped]) == [("scheduler", "maintenance_skipped", "refused", None)]
    assert skipped.target == run.id and "gate refused" in skipped.detail["why"]


def test_a_missed_job_is_audited_as_skipped(ctx: Context, clock: Clock) -> None:
    missed = JobExecutionEvent(EVENT_JOB_MISSED, "cron:drift-nightly", "default", OPEN)
    ctx.maintenance._on_missed(missed)
    [skipped] = entries(ctx)
    assert summary([skipped]) == [("scheduler", "maintenance_skipped", "failed", None)]
    assert skipped.detail["job"] == "drift-nightly" and "missed" in skipped.detail["why"]


def test_a_queued_deploy_is_audited_when_queued_started_and_ended(
    ctx: Context, clock: Clock
) -> None:
    queued = schedule_deploy(ctx, EVE, "amsterdam", "uitkering", reason="next window please")
    with stored_schedule(ctx) as scheduler:
        job = scheduler.get_job(queued.id)
        assert job is not None
        kind, name, payload = job.args
    run = ctx.maintenance.dispatch(kind, name, payload)
    assert run is not None and run.status is RunStatus.SUCCESSFUL
    found = entries(ctx)
    assert summary(found) == [
        ("eve", "deploy", "accepted", "amsterdam"),
        ("scheduler", "schedule_start", "accepted", "amsterdam"),
        ("controlplane", "deploy", "ok", "amsterdam"),
    ]
    assert found[0].target == queued.id and found[0].reason == "next window please"
    assert found[1].target == run.id and found[1].detail["started_by"] == "eve"


def test_the_chain_verifies_and_holds_no_secret(
    ctx: Context, clock: Clock, capsys: pytest.CaptureFixture[str]
) -> None:
    issued = issue_token(
        ctx.tokens,
        ctx.audit,
        ADMIN,
        role="engineer",
        members=["amsterdam"],
        expires="1d",
        known_members=[m.slug for m in ctx.fleet.members],
        name="ci-amsterdam",
    )
    ops.deploy(ctx, EVE, "amsterdam", app="uitkering", reason="release")
    clock.now = FROZEN
    with pytest.raises(GateClosed):
        ops.deploy(ctx, EVE, "amsterdam", app="uitkering", reason="release")
    ops.deploy(ctx, EVE, "amsterdam", app="uitkering", emergency_reason="INC-1")
    ctx.close()

    assert cli(["audit", "verify", "--json", "--fleet", str(LAB)]) == 0
    verified = json.loads(capsys.readouterr().out)
    assert verified["status"] == "ok" and verified["entries"] == 1 + 2 + 1 + 3
    assert cli(["audit", "list", "--json", "--fleet", str(LAB)]) == 0
    listed = capsys.readouterr().out
    vault_password = (LAB / "vault-password").read_text().strip()
    with build_context(LAB) as again:
        stored = "\n".join(e.canonical() for e in again.audit.entries())
    for text in (stored, listed):
        assert issued.token not in text and issued.token.split("_")[-1] not in text
        assert vault_password not in text
        assert "cp_vault_file" not in text  # no playbook variables at all
