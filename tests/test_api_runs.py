"""``/api/v1/runs`` over a real SQLite store and the lab fleet, with real tokens: pages and
filters, a run equal to ``controlplane runs show --json``, cancel, the gate's 409, bad
bodies that write nothing, and the event stream. Nothing here starts Ansible (the one real
run over HTTP is in test_serve_api_e2e)."""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from controlplane.access.policy import Role
from controlplane.audit.store import AuditLog
from controlplane.cli import run as cli_run
from controlplane.deploy.model import Run, RunEvent, RunKind, RunSpec, RunStatus
from controlplane.deploy.processes import this_node
from controlplane.store.runs import RunStore
from tests.api_fixtures import OTHER, OWN, Api, build_api
from tests.conftest import LAB

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
DEPLOY = "/api/v1/runs/deploy"


@pytest.fixture
def api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Api]:
    # The CLI, asked for comparison, reads the same data directory from the environment.
    monkeypatch.setenv("CONTROLPLANE_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.delenv("CONTROLPLANE_DATABASE_URL", raising=False)
    built = build_api(tmp_path)
    yield built
    built.client.close()
    built.ctx.close()


def spec(member: str, app: str = "uitkering") -> RunSpec:
    return RunSpec(
        kind=RunKind.DEPLOY,
        playbook="deploy.yml",
        started_by="test",
        member=member,
        app=app,
        version="1.0.0",
        hosts=("lab-1",),
    )


def runs_at(api: Api, *members: str) -> list[Run]:
    """One queued run per member, a minute apart from T0 on."""
    ticks = iter(T0 + timedelta(minutes=i) for i in range(len(members)))
    store = RunStore(api.ctx.engine, clock=lambda: next(ticks))
    # Owned by this live process, so recovery (at launches, in serve) leaves them be.
    return [store.create(spec(m), node=this_node()) for m in members]


def finish(api: Api, run: Run, status: RunStatus = RunStatus.SUCCESSFUL) -> Run:
    api.ctx.runs.transition(run.id, RunStatus.RUNNING)
    return api.ctx.runs.transition(run.id, status, rc=0)


def event(run: Run, seq: int, name: str = "runner_on_ok") -> RunEvent:
    return RunEvent(run.id, seq, name, T0, host="lab-1", task=f"task {seq}", data={"n": seq})


def error_of(response: Any) -> dict[str, Any]:
    body: dict[str, Any] = response.json()["error"]
    return body


# -- listing and showing -------------------------------------------------------------------


def test_pages_of_runs_follow_the_cursor_newest_first_and_filter(api: Api) -> None:
    created = runs_at(api, OWN, OTHER, OWN, "utrecht", OWN)
    finish(api, created[0])
    newest_first = [r.id for r in reversed(created)]

    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = api.get("/api/v1/runs", params=params).json()
        seen += [r["id"] for r in page["runs"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == newest_first

    mine = api.get("/api/v1/runs", params={"member": OWN}).json()["runs"]
    assert [r["id"] for r in mine] == [created[4].id, created[2].id, created[0].id]
    done = api.get("/api/v1/runs", params={"status": ["successful", "failed"]}).json()["runs"]
    assert [r["id"] for r in done] == [created[0].id]
    since = api.get("/api/v1/runs", params={"since": "2026-03-02T09:03:00+00:00"}).json()
    assert [r["id"] for r in since["runs"]] == [created[4].id, created[3].id]
    # An engineer's list holds only their members' runs, and another member is a 404.
    engineer = api.get("/api/v1/runs", "engineer").json()["runs"]
    assert {r["member"] for r in engineer} == {OWN}
    assert api.get("/api/v1/runs", "engineer", params={"member": OTHER}).status_code == 404


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": "exploded"}, "status"),
        ({"limit": 0}, "limit"),
        ({"limit": 501}, "limit"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"since": "yesterday"}, "since"),
        ({"since": "2026-03-02", "until": "2026-03-01"}, "until"),
        # A misspelt filter must not answer with every member's runs.
        ({"membr": OWN}, "membr"),
        ({"m\u00e9mber": OWN}, "query"),
        ({"member": [OWN, OTHER]}, "member"),
    ],
)
def test_bad_list_parameters_are_422_naming_the_parameter(
    api: Api, params: dict[str, Any], field: str
) -> None:
    response = api.get("/api/v1/runs", params=params)
    assert response.status_code == 422, response.text
    # A repeated parameter is named with the index at fault: status.0
    assert error_of(response)["field"].split(".")[0] == field


def test_a_run_over_http_is_what_runs_show_json_prints(
    api: Api, capsys: pytest.CaptureFixture[str]
) -> None:
    [run] = runs_at(api, OWN)
    finish(api, run, RunStatus.FAILED)
    api.ctx.runs.append_events(run.id, [event(run, 0), event(run, 1)])
    capsys.readouterr()
    assert cli_run(["runs", "show", run.id, "--json", "--fleet", str(LAB)]) == 0
    [printed] = json.loads(capsys.readouterr().out)

    shown = api.get(f"/api/v1/runs/{run.id[:8]}", "engineer")
    assert shown.status_code == 200
    assert shown.json() == printed
    assert api.get(f"/api/v1/runs/{run.id}", "board").status_code == 403
    assert error_of(api.get("/api/v1/runs/0123456789abcdef"))["code"] == "run_not_found"


def test_another_members_run_is_404_to_an_engineer(api: Api) -> None:
    [theirs] = runs_at(api, OTHER)
    for method, path in (
        ("GET", f"/api/v1/runs/{theirs.id}"),
        ("GET", f"/api/v1/runs/{theirs.id}/events"),
        ("POST", f"/api/v1/runs/{theirs.id}/cancel"),
    ):
        response = api.client.request(method, path, headers=api.headers("engineer"))
        assert response.status_code == 404, f"{method} {path}: {response.text}"
    assert api.ctx.runs.get(theirs.id).status is RunStatus.QUEUED


# -- cancel -----------------------------------------------------------------------------------


def test_cancel_ends_a_queued_run_and_a_refused_cancel_is_audited(api: Api) -> None:
    [run] = runs_at(api, OWN)
    refused = api.client.post(f"/api/v1/runs/{run.id}/cancel", headers=api.headers("board"))
    assert refused.status_code == 403
    assert api.ctx.runs.get(run.id).status is RunStatus.QUEUED
    [entry] = AuditLog(api.ctx.engine).list()
    assert (entry.action, entry.outcome, entry.role) == ("cancel", "refused", "board")

    canceled = api.client.post(f"/api/v1/runs/{run.id}/cancel", headers=api.headers("engineer"))
    assert canceled.status_code == 200, canceled.text
    assert canceled.json()["status"] == "canceled"
    assert api.ctx.runs.get(run.id).status is RunStatus.CANCELED


# -- launching: the gate, and bad bodies --------------------------------------------------


@pytest.fixture
def frozen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Api]:
    """The lab fleet with a freeze on the engineer's member that is always on."""
    fleet = tmp_path / "fleet"
    shutil.copytree(LAB, fleet)
    (fleet / "windows.yml").write_text(
        "windows:\n"
        "  - name: always-frozen\n"
        "    kind: freeze\n"
        f"    scope: {{member: {OWN}}}\n"
        "    rrule: FREQ=DAILY\n"
        "    start: 2020-01-01T00:00\n"
        "    duration: P1D\n"
    )
    monkeypatch.setenv("CONTROLPLANE_DATA_DIR", str(tmp_path / "var"))
    built = build_api(tmp_path, fleet=fleet)
    yield built
    built.client.close()
    built.ctx.close()


def test_a_deploy_in_a_freeze_is_409_with_the_gate_decision_and_nothing_runs(
    frozen: Api,
) -> None:
    body = {"member": OWN, "app": "uitkering", "reason": "fix"}
    response = frozen.client.post(DEPLOY, json=body, headers=frozen.headers("engineer"))
    assert response.status_code == 409, response.text
    error = error_of(response)
    assert error["code"] == "gate_closed"
    assert "always-frozen" in error["message"]
    gate = error["gate"]
    assert gate["allowed"] is False
    assert [f["window"] for f in gate["freezes"]] == ["always-frozen"]
    assert gate["member"] == OWN
    assert frozen.ctx.runs.find() == []


BAD_BODIES = [
    ({"member": OWN, "app": "uitkering", "version": "1.0;id"}, "version"),
    ({"member": OWN, "app": "uitkering", "version": "9.9.9"}, "version"),
    ({"member": OWN, "version": "1.0.0"}, "version"),
    ({"member": "gouda"}, "member"),
    ({"member": OWN, "app": "kassa"}, "app"),
    ({"member": OWN, "serial": "lots"}, "serial"),
    ({"member": OWN, "serial": "0"}, "serial"),
    ({"member": OWN, "max_fail": "150%"}, "max_fail"),
    ({"member": OWN, "emergancy_reason": "typo"}, "emergancy_reason"),
    ({"member": OWN, "check": "maybe"}, "check"),
    ({}, "member"),
]


@pytest.mark.parametrize(("body", "field"), BAD_BODIES, ids=[f for _, f in BAD_BODIES])
def test_a_bad_deploy_body_is_422_naming_the_field_and_writes_nothing(
    api: Api, body: dict[str, Any], field: str
) -> None:
    response = api.client.post(DEPLOY, json=body, headers=api.headers("engineer"))
    assert response.status_code == 422, response.text
    error = error_of(response)
    assert error["field"] == field, error
    assert "\n" not in error["message"]
    assert api.ctx.runs.find() == []


def test_another_member_in_a_body_looks_unknown_and_the_attempt_is_audited(api: Api) -> None:
    theirs = api.client.post(DEPLOY, json={"member": OTHER}, headers=api.headers("engineer"))
    unknown = api.client.post(DEPLOY, json={"member": "gouda"}, headers=api.headers("engineer"))
    assert theirs.status_code == unknown.status_code == 422
    assert error_of(theirs)["message"] == f"member: unknown member {OTHER!r}"
    assert error_of(unknown)["message"] == "member: unknown member 'gouda'"
    rollback = api.client.post(
        "/api/v1/runs/rollback",
        json={"member": OTHER, "app": "uitkering"},
        headers=api.headers("engineer"),
    )
    assert rollback.status_code == 422
    entries = AuditLog(api.ctx.engine).list()
    assert [(e.action, e.outcome, e.member) for e in entries] == [
        ("deploy", "refused", OTHER),
        ("rollback", "refused", OTHER),
    ]
    assert api.ctx.runs.find() == []


def test_a_role_without_runs_write_is_403_and_audited(api: Api) -> None:
    response = api.client.post(DEPLOY, json={"member": OWN}, headers=api.headers("board"))
    assert response.status_code == 403
    [entry] = AuditLog(api.ctx.engine).list()
    assert (entry.action, entry.outcome, entry.role) == ("deploy", "refused", "board")
    assert api.ctx.runs.find() == []


def test_huge_and_non_utf8_deploy_bodies_write_nothing(api: Api) -> None:
    headers = {**api.headers("admin"), "content-type": "application/json"}
    huge = json.dumps({"member": OWN, "reason": "x" * 70_000})
    assert api.client.post(DEPLOY, content=huge, headers=headers).status_code == 413
    latin1 = '{"member": "amsterdam", "reason": "café"}'.encode("latin-1")
    response = api.client.post(DEPLOY, content=latin1, headers=headers)
    assert response.status_code == 422
    assert error_of(response)["field"] == "body"
    assert api.ctx.runs.find() == []


def test_a_rollback_without_an_earlier_release_is_422_naming_version(api: Api) -> None:
    body = {"member": OWN, "app": "uitkering"}
    response = api.client.post("/api/v1/runs/rollback", json=body, headers=api.headers("admin"))
    assert response.status_code == 422
    assert error_of(response)["field"] == "version"
    assert api.ctx.runs.find() == []


# -- the event stream -------------------------------------------------------------------------


def sse(text: str) -> list[dict[str, str]]:
    """The events of an SSE body, comments left out."""
    found = []
    for block in text.strip().split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            if line.startswith(":"):
                continue
            key, _, value = line.partition(": ")
            fields[key] = value
        if fields:
            found.append(fields)
    return found


def test_a_finished_runs_events_are_replayed_then_end_with_the_run(api: Api) -> None:
    [run] = runs_at(api, OWN)
    api.ctx.runs.append_events(run.id, [event(run, i) for i in range(3)])
    finish(api, run)
    response = api.get(f"/api/v1/runs/{run.id}/events", "engineer")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse(response.text)
    assert [e.get("id") for e in events] == ["0", "1", "2", None]
    assert [e["event"] for e in events] == ["runner_on_ok"] * 3 + ["end"]
    assert json.loads(events[1]["data"])["task"] == "task 1"
    end = json.loads(events[-1]["data"])
    assert end == api.get(f"/api/v1/runs/{run.id}").json()
    assert end["status"] == "successful"

    # A reconnecting client gets only what it has not seen.
    resumed = api.get(f"/api/v1/runs/{run.id}/events", headers={"Last-Event-ID": "1"})
    assert [e.get("id") for e in sse(resumed.text)] == ["2", None]
    after = api.get(f"/api/v1/runs/{run.id}/events", params={"after": 2})
    assert [e["event"] for e in sse(after.text)] == ["end"]
    bad = api.get(f"/api/v1/runs/{run.id}/events", headers={"Last-Event-ID": "x"})
    assert bad.status_code == 422
    assert error_of(bad)["field"] == "Last-Event-ID"


def test_the_stream_follows_a_live_run_to_its_end(api: Api) -> None:
    [run] = runs_at(api, OWN)
    api.ctx.runs.transition(run.id, RunStatus.RUNNING)

    def execute() -> None:
        for seq in range(3):
            time.sleep(0.3)
            api.ctx.runs.append_events(run.id, [event(run, seq)])
        api.ctx.runs.transition(run.id, RunStatus.FAILED, rc=2, error="boom")

    worker = threading.Thread(target=execute)
    started = time.monotonic()
    worker.start()
    lines: list[str] = []
    with api.client.stream(
        "GET", f"/api/v1/runs/{run.id}/events", headers=api.headers("engineer")
    ) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            lines.append(line)
    worker.join()
    events = sse("\n".join(lines))
    assert [e.get("id") for e in events] == ["0", "1", "2", None]
    assert json.loads(events[-1]["data"])["error"] == "boom"
    assert time.monotonic() - started < 10


def test_leaving_a_live_stream_ends_it(api: Api) -> None:
    [run] = runs_at(api, OWN)
    api.ctx.runs.transition(run.id, RunStatus.RUNNING)
    api.ctx.runs.append_events(run.id, [event(run, 0)])
    started = time.monotonic()
    with api.client.stream("GET", f"/api/v1/runs/{run.id}/events") as response:
        for line in response.iter_lines():
            if line.startswith("id: 0"):
                break
    # The run goes on; the client left, and the stream with it.
    assert time.monotonic() - started < 5
    assert api.ctx.runs.get(run.id).status is RunStatus.RUNNING


def test_an_expired_token_cannot_follow(api: Api) -> None:
    [run] = runs_at(api, OWN)
    stale = api.token(Role.ENGINEER, (OWN,), lifetime=timedelta(microseconds=1))
    time.sleep(0.01)
    response = api.client.get(
        f"/api/v1/runs/{run.id}/events", headers={"Authorization": f"Bearer {stale}"}
    )
    assert response.status_code == 401
