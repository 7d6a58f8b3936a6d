"""Failures that say why: each failed or unreachable host's reason, the run's failure kind
and exit code, preflight problems, plans' predictions, run id prefixes and a run's log.

Most tests here are fast: the reasons are read from runner events shaped exactly as real
failing runs produced them (health gate, ssh, vault). A few end-to-end runs on the sshd
test hosts check that the playbooks, the engine and the CLI tell the same story.
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine as SqlEngine

from controlplane.app import Context
from controlplane.cli import run as cli_run
from controlplane.cli.progress import plan_lines, reason_lines
from controlplane.cli.root import exit_code_for
from controlplane.deploy.engine import Engine, EngineConfig
from controlplane.deploy.events import to_run_event
from controlplane.deploy.history import plan_changes, scrub_log, vault_values
from controlplane.deploy.model import (
    HostOutcome,
    Run,
    RunEvent,
    RunFailure,
    RunKind,
    RunSpec,
    RunStatus,
)
from controlplane.deploy.operations import outcome_error
from controlplane.deploy.plan import DeployRequest, Planner
from controlplane.deploy.reasons import (
    MAX_REASON,
    VAULT_TASK,
    HostReason,
    Setup,
    host_reasons,
    play_error,
    run_failure,
)
from controlplane.deploy.records import summary
from controlplane.deploy.rollout import judge
from controlplane.deploy.runner import HostStats, PlaybookRequest, PlaybookResult
from controlplane.errors import (
    InvalidInput,
    PreflightFailed,
    RunNotFound,
    Unreachable,
)
from controlplane.fleet.inventory import RenderContext
from controlplane.fleet.loader import load_fleet
from controlplane.schemas.runs import PlanChangeOut, RunDetailOut
from controlplane.settings import PLAYBOOKS_DIR, Settings
from controlplane.store.runs import RunStore
from tests.api_fixtures import Api, build_api
from tests.conftest import LAB, ssh_fleet
from tests.fleet_files import write_fleet
from tests.refapp_fixtures import kill_refapps
from tests.sshd import SshLab

FLEET = Path("/srv/fleet")
KEY = str(FLEET / "keys" / "client_key")
SETUP = Setup(
    fleet_dir=FLEET,
    keys={"srv-01": KEY, "srv-02": KEY},
    vault_file=str(FLEET / "vault" / "amsterdam.yml"),
)
T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def raw(event: str, host: str, task: str, res: dict[str, Any], **data: Any) -> dict[str, Any]:
    """A runner event as ansible-runner hands it to the event handler."""
    return {
        "event": event,
        "created": "2026-12-01T20:26:09.737474+00:00",
        "event_data": {
            "play": "Deploy a member's app release",
            "task": task,
            "task_action": "ansible.builtin.fail",
            "host": host,
            "res": res,
            **data,
        },
    }


def kept(*raws: dict[str, Any]) -> list[RunEvent]:
    """The events as the engine stores them (scrubbed, allow-listed)."""
    out = [to_run_event("r1", i, r) for i, r in enumerate(raws)]
    return [e for e in out if e is not None]


def unreachable(host: str, msg: str) -> dict[str, Any]:
    task = "Ask which user the play runs as and which member users exist"
    res = {"unreachable": True, "msg": msg, "changed": False, "_ansible_no_log": False}
    return raw("runner_on_unreachable", host, task, res)


# -- reasons from real event shapes ------------------------------------------------------------


def test_a_failed_health_gate_names_path_status_and_seconds() -> None:
    uri = {
        "url": "http://127.0.0.2:9000/healthz",
        "status": 503,
        "json": {"status": "broken"},
        "msg": "Status code was 503 and not [200]: HTTP Error 503: Service Unavailable",
        "attempts": 15,
        "changed": False,
    }
    gate = {"msg": "GET /healthz answered 503 for 15 s", "changed": False}
    final = {
        "msg": "amsterdam/uitkering 1.2.0 on srv-01 is not healthy: health gate: GET /healthz "
        "answered 503 for 15 s"
    }
    events = kept(
        # The waiting task's failure is ignored: the gate task after it says what it saw.
        raw(
            "runner_on_failed",
            "srv-01",
            "Wait for the health check to pass",
            uri,
            ignore_errors=True,
        ),
        raw("runner_on_failed", "srv-01", "health gate", gate),
        raw("runner_on_failed", "srv-01", "Fail the host when the release is not healthy", final),
    )
    reasons = host_reasons(events, SETUP)
    assert reasons == {
        "srv-01": HostReason("health gate: GET /healthz answered 503 for 15 s", RunFailure.FAILED)
    }


@pytest.mark.parametrize(
    ("msg", "reason"),
    [
        # mitogen (the default strategy) and the stock ssh plugin, as real runs said it
        (
            "Task failed: SSH authentication is incorrect",
            "unreachable: SSH authentication failed (key keys/client_key)",
        ),
        (
            "Task failed: Failed to connect to the host via ssh: root@127.0.0.3: Permission denied "
            "(publickey).",
            "unreachable: SSH authentication failed (key keys/client_key)",
        ),
        (
            "Task failed: Host key checking is enabled, and SSH reported an unrecognized or "
            "mismatching host key.",
            "unreachable: host key mismatch",
        ),
        (
            'Task failed: Data could not be sent to remote host "127.0.0.2". Make sure this host '
            "can be reached over ssh: @@@@@@@@@@@\r\n@    WARNING: REMOTE HOST IDENTIFICATION HAS "
            "CHANGED!     @\r\n" + "x" * 600 + "\r\nHost key verification failed.",
            "unreachable: host key mismatch",
        ),
        (
            "Task failed: EOF on stream; last 100 lines received:\nssh: connect to host 127.0.0.3 "
            "port 58641: Connection refused",
            "unreachable: SSH connection refused",
        ),
        (
            'Task failed: Data could not be sent to remote host "127.0.0.3". Make sure this host '
            "can be reached over ssh: ssh: connect to host 127.0.0.3 port 58641: Connection "
            "refused",
            "unreachable: SSH connection refused",
        ),
        (
            "Task failed: EOF on stream; last 100 lines received:\nssh: Could not resolve "
            "hostname nonexistent.invalid: Name or service not known",
            "unreachable: host name does not resolve",
        ),
        (
            "ssh: connect to host 10.0.0.9 port 22: Connection timed out",
            "unreachable: SSH connection timed out",
        ),
        (
            "ssh: connect to host 10.0.0.9 port 22: No route to host",
            "unreachable: no route to host",
        ),
        (
            "Task failed: something nobody expected\nsecond line",
            "unreachable: something nobody expected second line",
        ),
    ],
)
def test_ssh_messages_become_short_phrases(msg: str, reason: str) -> None:
    [event] = kept(unreachable("srv-02", msg))
    assert host_reasons([event], SETUP)["srv-02"] == HostReason(reason, RunFailure.UNREACHABLE)


def test_a_missing_key_file_is_a_configuration_problem_naming_the_key() -> None:
    events = kept(unreachable("srv-01", "Task failed: SSH authentication is incorrect"))
    missing = replace(SETUP, missing_keys=frozenset({"srv-01"}))
    assert host_reasons(events, missing)["srv-01"] == HostReason(
        "key file keys/client_key missing", RunFailure.CONFIG
    )
    # ssh's own warning says the same when the engine could not look.
    warned = kept(
        unreachable(
            "srv-02",
            "Failed to connect to the host via ssh: Warning: Identity file "
            f"{KEY} not accessible: No such file or directory.\r\nroot@10.0.0.2: Permission "
            "denied (publickey).",
        )
    )
    assert host_reasons(warned, SETUP)["srv-02"].text == "key file keys/client_key missing"


def test_vault_problems_name_the_file_or_the_setting() -> None:
    censored = {
        "censored": "the output has been hidden due to the fact that 'no_log: true' was "
        "specified for this result"
    }
    include = raw("runner_on_failed", "srv-01", VAULT_TASK, censored)
    no_password = replace(SETUP, vault_password=False)
    assert host_reasons(kept(include), no_password)["srv-01"] == HostReason(
        "vault password not configured (set CONTROLPLANE_VAULT_PASSWORD_FILE)", RunFailure.CONFIG
    )
    assert host_reasons(kept(include), SETUP)["srv-01"].text == (
        "vault file vault/amsterdam.yml does not open with the configured vault password "
        "(CONTROLPLANE_VAULT_PASSWORD_FILE)"
    )
    missing = raw(
        "runner_on_failed",
        "srv-01",
        "Check that the member's vault file is there",
        {"msg": f"vault file {FLEET}/vault/amsterdam.yml missing", "assertion": "x"},
    )
    assert host_reasons(kept(missing), SETUP)["srv-01"] == HostReason(
        "vault file vault/amsterdam.yml missing", RunFailure.CONFIG
    )
    stdout = (
        "PLAY [Deploy] ****\n[ERROR]: Attempting to decrypt but no vault secrets found\n"
        "Origin: /x/deploy.yml:3\n"
    )
    assert play_error(stdout, SETUP) == HostReason(
        "vault password not configured (set CONTROLPLANE_VAULT_PASSWORD_FILE)", RunFailure.CONFIG
    )
    wrong = (
        "ERROR! Decryption failed (no vault secrets were found that could decrypt) on "
        f"{FLEET}/vault/amsterdam.yml"
    )
    assert play_error(wrong, SETUP) == HostReason(
        "vault file vault/amsterdam.yml does not decrypt with the configured vault password "
        "(CONTROLPLANE_VAULT_PASSWORD_FILE)",
        RunFailure.CONFIG,
    )
    assert play_error("PLAY RECAP ****\nok=3\n", SETUP) is None


def test_a_failed_command_says_what_it_printed_as_the_roles_report_tells_it() -> None:
    task = "Ensure the app runs the live release (pidfile)"
    said = '{"action": "failed", "error": "error: [Errno 98] Address already in use"}'
    events = kept(
        raw("runner_on_failed", "srv-01", task, {"msg": "non-zero return code", "rc": 1}),
        report("srv-01", None, "2.1.0", False, error=f"{task}: non-zero return code {said}"),
    )
    assert host_reasons(events, SETUP)["srv-01"] == HostReason(
        f"{task}: non-zero return code {said}", RunFailure.FAILED
    )


def test_first_failure_wins_one_line_no_secret_and_no_hidden_output() -> None:
    long = "Module failed: " + "boom\n" * 100 + " db_password=s3cret-canary"
    events = kept(
        raw("runner_on_ok", "srv-01", "Install the application code", {"changed": True}),
        raw(
            "runner_on_failed",
            "srv-01",
            "Render the config",
            {"msg": "first", "_ansible_no_log": True},
        ),
        raw("runner_on_failed", "srv-01", "later task", {"msg": "second"}),
        raw("runner_on_async_failed", "srv-02", "Long job", {"msg": long}),
    )
    reasons = host_reasons(events, replace(SETUP, secrets=("s3cret-canary",)))
    # A no_log task's message is never kept: its reason only says it is hidden.
    assert reasons["srv-01"].text == "Render the config: failed; its output is hidden (no_log)"
    text = reasons["srv-02"].text
    assert text.startswith("Long job: boom boom") and "\n" not in text
    assert len(text) <= MAX_REASON and text.endswith("…")
    assert "s3cret-canary" not in text and "Module failed" not in text


def test_the_run_error_names_each_bad_host_with_its_reason() -> None:
    reasons = {
        "srv-01": HostReason("health gate: GET /healthz answered 503 for 15 s", RunFailure.FAILED),
        "srv-02": HostReason("unreachable: SSH connection refused", RunFailure.UNREACHABLE),
    }
    verdict = judge(
        ["srv-01", "srv-02", "srv-03"], "1.2.0", [], {"srv-01"}, {"srv-02": "unreachable"}
    )
    assert summary(verdict, reasons) == (
        "rollout stopped: srv-01: health gate: GET /healthz answered 503 for 15 s, "
        "srv-02: unreachable: SSH connection refused, srv-03 not_run"
    )


@pytest.mark.parametrize(
    ("kinds", "failure"),
    [
        ([RunFailure.UNREACHABLE, RunFailure.UNREACHABLE], RunFailure.UNREACHABLE),
        ([RunFailure.UNREACHABLE, RunFailure.CONFIG], RunFailure.CONFIG),
        ([RunFailure.CONFIG, RunFailure.FAILED], RunFailure.FAILED),
        ([], RunFailure.FAILED),  # failed with no host to blame: the play itself failed
    ],
)
def test_a_failed_task_outranks_config_which_outranks_unreachable(
    kinds: list[RunFailure], failure: RunFailure
) -> None:
    assert run_failure(kinds) is failure


def finished(status: RunStatus, failure: RunFailure | None, error: str) -> Run:
    return Run(
        id=uuid.uuid4().hex,
        kind=RunKind.DEPLOY,
        status=status,
        playbook="deploy.yml",
        started_by="t",
        reason="",
        member="amsterdam",
        app="uitkering",
        version="1.2.0",
        hosts=("srv-01",),
        options=RunSpec(RunKind.DEPLOY, "deploy.yml", "t").options,
        created_at=T0,
        error=error,
        failure=failure,
    )


def test_exit_codes_follow_the_runs_failure_kind() -> None:
    ok = finished(RunStatus.SUCCESSFUL, None, "")
    config = finished(RunStatus.FAILED, RunFailure.CONFIG, "preflight: srv-01: key file k missing")
    dark = finished(RunStatus.FAILED, RunFailure.UNREACHABLE, "rollout stopped: srv-01: unr")
    broken = finished(RunStatus.FAILED, RunFailure.FAILED, "rollout stopped: srv-01: health gate")
    canceled = finished(RunStatus.CANCELED, None, "canceled")

    def code(*runs: Run) -> int | None:
        error = outcome_error([(r, []) for r in runs])
        return None if error is None else exit_code_for(error)

    assert code(ok) is None
    assert code(ok, config) == 2
    assert code(dark) == 4
    assert code(dark, config) == 2
    assert code(broken, config, dark) == 1
    assert code(canceled) == 1
    error = outcome_error([(config, [])])
    assert error is not None and "preflight: srv-01: key file k missing" in str(error)


# -- the engine: preflight, reasons, plans ---------------------------------------------------


class FakeRunner:
    """Replays raw runner events per host and returns the stats they imply."""

    def __init__(self, plays: list[list[dict[str, Any]]]) -> None:
        self.plays = plays
        self.requests: list[PlaybookRequest] = []

    def __call__(
        self, request: PlaybookRequest, pdd: Path, ident: str, **kw: Any
    ) -> PlaybookResult:
        self.requests.append(request)
        stats: dict[str, HostStats] = {}
        for event in self.plays.pop(0):
            kw["event_handler"](event)
            host = event["event_data"]["host"]
            s = stats.get(host, HostStats())
            if event["event"] == "runner_on_unreachable":
                s = replace(s, dark=s.dark + 1)
            elif event["event"] == "runner_on_failed" and not event["event_data"].get(
                "ignore_errors"
            ):
                s = replace(s, failures=s.failures + 1)
            else:
                s = replace(s, ok=s.ok + 1)
            stats[host] = s
        failed = any(s.failures or s.dark for s in stats.values())
        return PlaybookResult("failed" if failed else "successful", 2 if failed else 0, stats, pdd)


def report(
    host: str, before: str | None, after: str | None, healthy: bool, **extra: Any
) -> dict[str, Any]:
    msg = {
        "member": "amsterdam",
        "app": "uitkering",
        "port": 8101,
        "before": before,
        "after": after,
        "healthy": healthy,
        **extra,
    }
    return raw("runner_on_ok", host, "cp-report-release", {"changed": False, "msg": msg})


@pytest.fixture
def store(sql: SqlEngine) -> RunStore:
    return RunStore(sql)


def lab_engine(store: RunStore, tmp: Path, runner: FakeRunner, preflight: Any = None) -> Engine:
    return Engine(
        load_fleet(LAB),
        store,
        EngineConfig(data_dir=tmp, playbooks_dir=PLAYBOOKS_DIR, fleet_dir=LAB, strategy="linear"),
        RenderContext(tmp, sys.executable),
        runner=runner,
        preflight=preflight,
    )


def submitted(engine: Engine, store: RunStore, check: bool = False) -> Run:
    [spec] = Planner(engine.fleet, store).plan_deploy(
        DeployRequest("amsterdam", app="uitkering", version="1.1.0", check=check)
    )
    return engine.submit(spec)


def test_a_preflight_problem_fails_the_run_before_any_play(store: RunStore, tmp_path: Path) -> None:
    runner = FakeRunner([])

    def preflight(run: Run) -> None:
        raise PreflightFailed(
            ["lab-1: key file keys/client_key missing", "vault password not configured (set X)"]
        )

    engine = lab_engine(store, tmp_path, runner, preflight)
    run = engine.execute(submitted(engine, store).id)
    assert runner.requests == []  # no play started
    assert run.status is RunStatus.FAILED and run.failure is RunFailure.CONFIG
    assert run.error == (
        "preflight: lab-1: key file keys/client_key missing; vault password not configured (set X)"
    )
    hosts = {h.host: h for h in store.host_results(run.id)}
    assert hosts["lab-1"].outcome is HostOutcome.FAILED
    assert hosts["lab-1"].reason == "key file keys/client_key missing"
    assert hosts["lab-2"].outcome is HostOutcome.NOT_RUN and hosts["lab-2"].reason is None
    assert store.held_locks() == []
    error = outcome_error([(run, store.host_results(run.id))])
    assert error is not None and exit_code_for(error) == 2

    def dark(run: Run) -> None:
        raise Unreachable("lab-2: unreachable: no answer within 5 s")

    engine = lab_engine(store, tmp_path, runner, dark)
    run = engine.execute(submitted(engine, store).id)
    assert run.failure is RunFailure.UNREACHABLE and runner.requests == []
    hosts = {h.host: h for h in store.host_results(run.id)}
    assert hosts["lab-2"].outcome is HostOutcome.UNREACHABLE
    assert hosts["lab-2"].reason == "unreachable: no answer within 5 s"
    error = outcome_error([(run, store.host_results(run.id))])
    assert error is not None and exit_code_for(error) == 4


def test_a_failed_host_and_an_unreachable_one_are_recorded_with_reasons(
    store: RunStore, tmp_path: Path
) -> None:
    gate = {"msg": "GET /healthz answered 503 for 15 s"}
    deploy = [
        raw("runner_on_failed", "lab-1", "health gate", gate),
        report("lab-1", "1.0.0", "1.1.0", False),
        unreachable("lab-2", "ssh: connect to host 127.0.10.2 port 22: Connection refused"),
    ]
    rollback = [report("lab-1", "1.1.0", "1.0.0", True)]
    runner = FakeRunner([deploy, rollback])
    engine = lab_engine(store, tmp_path, runner)
    run = engine.execute(submitted(engine, store).id)

    assert run.status is RunStatus.FAILED and run.failure is RunFailure.FAILED
    assert run.error == (
        "rollout stopped: lab-1: health gate: GET /healthz answered 503 for 15 s, "
        "lab-2: unreachable: SSH connection refused; rolled back lab-1 to 1.0.0"
    )
    hosts = {h.host: h for h in store.host_results(run.id)}
    assert hosts["lab-1"].reason == "health gate: GET /healthz answered 503 for 15 s"
    assert hosts["lab-2"].reason == "unreachable: SSH connection refused"
    shown = RunDetailOut(**_run_json(run, store))
    assert reason_lines(shown) == [
        "lab-1: health gate: GET /healthz answered 503 for 15 s",
        "lab-2: unreachable: SSH connection refused",
    ]


def _run_json(run: Run, store: RunStore) -> dict[str, Any]:
    from controlplane.schemas.runs import RunOut

    return RunOut.of(run, store.host_results(run.id)).model_dump()


def test_a_plan_records_and_prints_the_switch_and_restart_it_predicts(
    store: RunStore, tmp_path: Path
) -> None:
    plan = {"after": "1.1.0", "restart": True}
    play = [
        raw("runner_on_ok", "lab-1", "Write the VERSION file", {"changed": True}),
        report("lab-1", "1.0.0", "1.0.0", True, plan=plan),
        report("lab-2", "1.1.0", "1.1.0", True, plan={"after": "1.1.0", "restart": False}),
    ]
    engine = lab_engine(store, tmp_path, FakeRunner([play]))
    run = engine.execute(submitted(engine, store, check=True).id)
    assert run.status is RunStatus.SUCCESSFUL
    hosts = {h.host: h for h in store.host_results(run.id)}
    assert (hosts["lab-1"].release_before, hosts["lab-1"].release_after) == ("1.0.0", "1.1.0")
    assert (hosts["lab-2"].release_before, hosts["lab-2"].release_after) == ("1.1.0", "1.1.0")
    changes = plan_changes(store.events(run.id))
    assert changes == [
        PlanChangeOut(
            host="lab-1",
            tasks=["Write the VERSION file"],
            release_before="1.0.0",
            release_after="1.1.0",
            restart=True,
        )
    ]
    shown = RunDetailOut(**_run_json(run, store), changes=changes)
    assert shown.check is True
    assert plan_lines(shown) == [
        "plan: lab-1: 1.0.0 -> 1.1.0, would restart; would change: Write the VERSION file"
    ]


def test_a_failed_plan_never_says_nothing_would_change(store: RunStore, tmp_path: Path) -> None:
    play = [raw("runner_on_failed", "lab-1", "Prepare the member's user", {"msg": "no group"})]
    engine = lab_engine(store, tmp_path, FakeRunner([play]))
    run = engine.execute(submitted(engine, store, check=True).id)
    assert run.status is RunStatus.FAILED
    assert run.error == "plan failed: lab-1: Prepare the member's user: no group"
    shown = RunDetailOut(**_run_json(run, store), changes=plan_changes(store.events(run.id)))
    lines = plan_lines(shown)
    assert not any("nothing would change" in line for line in lines)
    assert lines == ["plan failed: what would change is not known for every host"]


# -- run id prefixes ---------------------------------------------------------------------------


def test_a_unique_prefix_of_four_finds_the_run_and_an_ambiguous_one_names_candidates(
    store: RunStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = iter(["abcd1111" + "0" * 24, "abcd2222" + "0" * 24, "abce3333" + "0" * 24])
    monkeypatch.setattr(uuid, "uuid4", lambda: uuid.UUID(next(ids)))
    spec = RunSpec(
        RunKind.DEPLOY,
        "deploy.yml",
        "t",
        member="amsterdam",
        app="uitkering",
        version="1.0.0",
        hosts=("lab-1",),
    )
    a, b = store.create(spec), store.create(spec)
    c = store.create(replace(spec, member="rotterdam"))
    assert store.resolve("abce").id == c.id
    assert store.resolve("ABCD2").id == b.id
    with pytest.raises(InvalidInput, match=r"^run id 'abcd' is ambiguous: it matches ") as many:
        store.resolve("abcd")
    assert {"abcd11110000", "abcd22220000"} == set(
        str(many.value).split(": it matches ")[1].split(", ")
    )
    with pytest.raises(InvalidInput, match="at least 4 characters"):
        store.resolve("abc")
    with pytest.raises(RunNotFound):
        store.resolve("ffff")
    # Limited to a caller's members, a prefix neither matches nor names anything else.
    with pytest.raises(RunNotFound):
        store.resolve("abce", frozenset({"amsterdam"}))
    assert store.resolve(a.id, frozenset({"amsterdam"})).id == a.id


# -- the log ---------------------------------------------------------------------------------


CANARY_TOKEN = "cpt_canary0123456789abcdef"


def test_runs_show_log_prints_each_play_scrubbed_and_says_when_it_is_gone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CONTROLPLANE_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("CONTROLPLANE_FLEET", str(LAB))
    monkeypatch.setenv("CONTROLPLANE_TOKEN", CANARY_TOKEN)
    monkeypatch.delenv("CONTROLPLANE_SERVER", raising=False)
    ctx = Context(Settings(data_dir=tmp_path / "var", fleet=LAB))
    password_file = ctx.settings.resolved_vault_password_file
    assert password_file is not None
    secrets = vault_values(LAB / "vault" / "amsterdam.yml", password_file)
    db_password = next(s for s in secrets if len(s) >= 8 and "\n" not in s)
    run = ctx.runs.create(
        RunSpec(
            RunKind.DEPLOY,
            "deploy.yml",
            "t",
            member="amsterdam",
            app="uitkering",
            version="1.2.0",
            hosts=("lab-1",),
        )
    )
    artifacts = ctx.data_dir / "runs" / run.id / "artifacts"
    for ident, text in (
        ("2-rollback-linear", "TASK [rollback]\nok: [lab-1]\n"),
        (
            "1-deploy-mitogen_linear",
            f"TASK [x]\nfatal: [lab-1]: password={db_password} token {CANARY_TOKEN}\n",
        ),
    ):
        (artifacts / ident).mkdir(parents=True)
        (artifacts / ident / "stdout").write_text(text)

    assert cli_run(["runs", "show", run.id[:4], "--log"]) == 0
    out = capsys.readouterr().out
    assert out.index("=== play 1: deploy.yml (mitogen_linear) ===") < out.index(
        "=== play 2: rollback.yml (linear) ==="
    )
    assert "fatal: [lab-1]: password=********" in out
    assert db_password not in out and CANARY_TOKEN not in out
    assert scrub_log("whsec_c2VjcmV0c2VjcmV0", []) == "********"

    for ident in ("1-deploy-mitogen_linear", "2-rollback-linear"):
        (artifacts / ident / "stdout").unlink()
    assert cli_run(["runs", "show", run.id, "--log"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (
        f"error: run {run.id[:8]}: its log is gone (only the newest 200 runs' logs are kept, "
        "on the machine that executed them)"
    )
    ctx.close()


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    built = build_api(tmp_path)
    yield built
    built.client.close()
    built.ctx.close()


def test_the_log_over_the_api_follows_the_runs_access_rules(api: Api) -> None:
    ctx = api.ctx
    mine, theirs = (
        ctx.runs.create(
            RunSpec(
                RunKind.DEPLOY,
                "deploy.yml",
                "t",
                member=m,
                app="uitkering",
                version="1.0.0",
                hosts=("lab-1",),
            )
        )
        for m in ("amsterdam", "rotterdam")
    )
    stdout = ctx.data_dir / "runs" / mine.id / "artifacts" / "1-deploy-linear" / "stdout"
    stdout.parent.mkdir(parents=True)
    stdout.write_text("PLAY RECAP\nlab-1 : ok=3\n")

    shown = api.get(f"/api/v1/runs/{mine.id[:6]}/log", "engineer")
    assert shown.status_code == 200, shown.text
    assert shown.headers["content-type"].startswith("text/plain")
    assert shown.text == "=== play 1: deploy.yml (linear) ===\nPLAY RECAP\nlab-1 : ok=3\n"
    assert api.get(f"/api/v1/runs/{theirs.id}/log", "engineer").status_code == 404
    assert api.get(f"/api/v1/runs/{mine.id}/log", "board").status_code == 403
    gone = api.get(f"/api/v1/runs/{theirs.id}/log", "admin")
    assert gone.status_code == 410 and gone.json()["error"]["code"] == "run_log_gone"


def test_runs_list_marks_plans(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CONTROLPLANE_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("CONTROLPLANE_FLEET", str(LAB))
    monkeypatch.delenv("CONTROLPLANE_SERVER", raising=False)
    ctx = Context(Settings(data_dir=tmp_path / "var", fleet=LAB))
    [spec] = ctx.planner.plan_deploy(DeployRequest("amsterdam", app="uitkering", check=True))
    ctx.runs.create(spec)
    ctx.close()
    assert cli_run(["runs", "list", "--json"]) == 0
    [listed] = json.loads(capsys.readouterr().out)
    assert listed["check"] is True and listed["failure"] is None
    assert cli_run(["runs", "list"]) == 0
    assert "deploy (plan)" in capsys.readouterr().out


# -- end to end on the sshd test hosts -----------------------------------------------------------


@pytest.fixture
def lab_cli(
    ssh_lab: SshLab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[SshLab, Path]]:
    """A one-host fleet directory on the sshd hosts, and the CLI's settings pointing at it."""
    fleet_dir = write_fleet(ssh_fleet(ssh_lab, hosts=1), tmp_path / "fleet", vault_from=LAB)
    monkeypatch.setenv("CONTROLPLANE_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("CONTROLPLANE_DATABASE_URL", f"sqlite:///{tmp_path / 'cp.db'}")
    monkeypatch.setenv("CONTROLPLANE_FLEET", str(fleet_dir))
    monkeypatch.setenv("CONTROLPLANE_HEALTH_TIMEOUT_SECONDS", "2")
    monkeypatch.setenv("CONTROLPLANE_USER", "newcomer@cp1")
    monkeypatch.delenv("CONTROLPLANE_VAULT_PASSWORD_FILE", raising=False)
    monkeypatch.delenv("CONTROLPLANE_SERVER", raising=False)
    yield ssh_lab, fleet_dir
    kill_refapps(*[h.root for h in ssh_lab.hosts])


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli_run(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.sshd
def test_a_broken_release_says_the_health_gate_failed_and_exits_1(
    lab_cli: tuple[SshLab, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cli(capsys, "deploy", "amsterdam", "--app", "uitkering", "--version", "1.2.0")
    reason = "health gate: GET /healthz answered 503 for 2 s"
    assert code == 1, err
    assert f"host1: {reason}" in out.splitlines()
    assert f"rollout stopped: host1: {reason}" in err
    code, out, _ = cli(capsys, "runs", "list", "--json")
    run_id = json.loads(out)[0]["id"]
    code, out, _ = cli(capsys, "runs", "show", run_id[:4], "--json")
    [shown] = json.loads(out)
    assert (shown["failure"], shown["hosts"][0]["reason"]) == ("failed", reason)
    code, out, _ = cli(capsys, "runs", "show", run_id, "--log")
    assert code == 0 and out.startswith("=== play 1: deploy.yml (mitogen_linear) ===")
    assert 'fatal: [host1]: FAILED! => {"changed": false, "msg": "GET /healthz answered 503' in out


@pytest.mark.sshd
def test_a_stopped_host_is_unreachable_and_exits_4(
    lab_cli: tuple[SshLab, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    lab, _ = lab_cli
    lab.hosts[0].stop()
    code, out, err = cli(capsys, "deploy", "amsterdam", "--app", "uitkering")
    assert code == 4, err
    assert "host1: unreachable: SSH connection refused" in out.splitlines()
    code, out, err = cli(capsys, "deploy", "amsterdam", "--app", "uitkering", "--json")
    assert code == 4, err
    [shown] = json.loads(out)
    assert shown["failure"] == "unreachable"
    assert shown["hosts"][0]["reason"] == "unreachable: SSH connection refused"


@pytest.mark.sshd
def test_setup_problems_are_caught_before_ansible_and_exit_2(
    lab_cli: tuple[SshLab, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _, fleet_dir = lab_cli
    hosts = (fleet_dir / "hosts.yml").read_text()
    (fleet_dir / "hosts.yml").write_text(
        "\n".join(
            "  private_key_file: keys/client_key" if "private_key_file" in line else line
            for line in hosts.splitlines()
        )
        + "\n"
    )
    code, out, err = cli(capsys, "deploy", "amsterdam", "--app", "uitkering")
    assert code == 2, err
    assert "host1: key file keys/client_key missing" in out.splitlines()
    assert "key file keys/client_key missing" in err
    code, out, err = cli(capsys, "deploy", "amsterdam", "--app", "uitkering", "--json")
    assert code == 2, err
    [shown] = json.loads(out)
    assert (shown["failure"], shown["hosts"][0]["reason"]) == (
        "config",
        "key file keys/client_key missing",
    )
    (fleet_dir / "hosts.yml").write_text(hosts)
    # No vault password configured: no CONTROLPLANE_VAULT_PASSWORD_FILE, no <fleet>/vault-password.
    password = fleet_dir / "vault-password"
    kept = password.read_bytes()
    password.unlink()
    no_password = "vault password not configured (set CONTROLPLANE_VAULT_PASSWORD_FILE)"
    code, out, err = cli(capsys, "deploy", "amsterdam", "--app", "uitkering")
    assert code == 2, err
    assert no_password in err
    code, out, err = cli(capsys, "deploy", "amsterdam", "--app", "uitkering", "--json")
    assert code == 2, err
    [shown] = json.loads(out)
    assert shown["failure"] == "config" and no_password in shown["error"]
    password.write_bytes(kept)
    (fleet_dir / "vault" / "amsterdam.yml").unlink()
    code, out, err = cli(capsys, "deploy", "amsterdam", "--app", "uitkering", "--json")
    assert code == 2, err
    [shown] = json.loads(out)
    assert shown["failure"] == "config"
    assert "vault file vault/amsterdam.yml missing" in shown["error"]


@pytest.mark.sshd
def test_without_preflight_the_play_itself_names_a_missing_key_and_vault_password(
    ssh_lab: SshLab, sql: SqlEngine, tmp_path: Path
) -> None:
    fleet = ssh_fleet(ssh_lab, hosts=2)
    fleet_dir = write_fleet(fleet, tmp_path / "fleet", vault_from=LAB)
    gone = str(fleet_dir / "keys" / "client_key")
    fleet = replace(fleet, hosts=(replace(fleet.hosts[0], private_key_file=gone), fleet.hosts[1]))
    store = RunStore(sql)
    engine = Engine(
        fleet,
        store,
        EngineConfig(
            data_dir=tmp_path / "var",
            playbooks_dir=PLAYBOOKS_DIR,
            fleet_dir=fleet_dir,
            vault_password_file=None,  # not configured
        ),
        RenderContext(tmp_path / "var", sys.executable),
    )
    [spec] = Planner(fleet, store).plan_deploy(
        DeployRequest("amsterdam", "uitkering", started_by="test")
    )
    run = engine.execute(engine.submit(spec).id)
    reasons = {h.host: h.reason for h in store.host_results(run.id)}
    assert reasons == {
        "host1": "key file keys/client_key missing",
        "host2": "vault password not configured (set CONTROLPLANE_VAULT_PASSWORD_FILE)",
    }
    assert run.failure is RunFailure.CONFIG
    # Nothing was installed where the vault could not be opened.
    assert list(ssh_lab.hosts[1].root.rglob("config.json")) == []
