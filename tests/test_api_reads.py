"""The read routes beside runs: windows, schedule, uptime, costs, audit and a member's live
health, over a real SQLite store and the lab fleet. Each answer is what the matching CLI
command prints with ``--json``, and an engineer's answer names only their members."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from controlplane.access.policy import Principal, Role
from controlplane.audit.chain import AuditAction
from controlplane.audit.store import AuditLog
from controlplane.cli import run as cli_run
from controlplane.maintenance.operations import schedule_deploy, sync_schedule
from tests.api_fixtures import OTHER, OWN, Api, build_api
from tests.conftest import LAB

ADMIN = Principal.local("admin@test")
# Utrecht has no instance on lab-3, so an engineer for utrecht does not see that host.
NARROW = "utrecht"


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    tmp = tmp_path_factory.mktemp("reads")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CONTROLPLANE_DATA_DIR", str(tmp / "var"))
        mp.delenv("CONTROLPLANE_DATABASE_URL", raising=False)
        mp.delenv("CONTROLPLANE_SERVER", raising=False)
        built = build_api(tmp)
        built.tokens["narrow"] = built.token(Role.ENGINEER, (NARROW,))
        yield built
        built.client.close()
        built.ctx.close()


def cli_json(capsys: pytest.CaptureFixture[str], *args: str) -> Any:
    capsys.readouterr()
    code = cli_run([*args, "--json", "--fleet", str(LAB)])
    out = capsys.readouterr().out
    assert code in (0, 3), out
    return json.loads(out)


def ok(response: Any) -> Any:
    assert response.status_code == 200, response.text
    return response.json()


def others_named(api: Api, text: str, mine: str = OWN) -> set[str]:
    return {m.slug for m in api.ctx.fleet.members if m.slug != mine and m.slug in text}


# -- windows ----------------------------------------------------------------------------------


def test_windows_list_is_the_cli_list_and_an_engineer_sees_only_their_windows(
    api: Api, capsys: pytest.CaptureFixture[str]
) -> None:
    span = {"from": "2026-03-01", "to": "2026-04-01"}
    listed = ok(api.get("/api/v1/windows", params=span))
    assert listed == cli_json(capsys, "windows", "list", "--from", span["from"], "--to", span["to"])
    assert {o["window"] for o in listed["occurrences"]} >= {f"payment-run-{OTHER}"}

    mine = ok(api.get("/api/v1/windows", "engineer", params=span))
    names = {o["window"] for o in mine["occurrences"]}
    assert f"payment-run-{OWN}" in names and f"payment-run-{OTHER}" not in names
    assert not others_named(api, json.dumps(mine))
    assert api.get("/api/v1/windows", "engineer", params={"member": OTHER}).status_code == 404
    bad = api.get("/api/v1/windows", params={"from": "soon"})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "from"


def test_a_gate_check_answers_200_allowed_or_not_as_the_cli_says(
    api: Api, capsys: pytest.CaptureFixture[str]
) -> None:
    # The last working days of March 2026 are Amsterdam's payment run: frozen.
    frozen_at, free_at = "2026-03-31T10:00", "2026-03-10T10:00"
    refused = ok(api.get("/api/v1/windows/check", params={"member": OWN, "at": frozen_at}))
    assert refused["allowed"] is False
    assert [f["window"] for f in refused["freezes"]] == [f"payment-run-{OWN}"]
    assert refused == cli_json(capsys, "windows", "check", OWN, "--at", frozen_at)
    allowed = ok(
        api.get("/api/v1/windows/check", "engineer", params={"member": OWN, "at": free_at})
    )
    assert allowed["allowed"] is True
    other = api.get("/api/v1/windows/check", "engineer", params={"member": OTHER})
    assert other.status_code == 404


def test_an_engineer_checks_only_hosts_carrying_their_instances(api: Api) -> None:
    at = {"at": "2026-03-02T05:30"}  # Monday: lab-1's patch window is open
    assert ok(api.get("/api/v1/windows/check-host", params={"host": "lab-1", **at}))["allowed"]
    assert ok(api.get("/api/v1/windows/check-host", "narrow", params={"host": "lab-1", **at}))
    hidden = api.get("/api/v1/windows/check-host", "narrow", params={"host": "lab-3"})
    unknown = api.get("/api/v1/windows/check-host", params={"host": "lab-9"})
    assert hidden.status_code == unknown.status_code == 404
    assert hidden.json()["error"]["message"] == "unknown host 'lab-3'"


def test_conflicts_are_the_cli_ones_and_an_engineer_sees_only_their_own(
    api: Api, capsys: pytest.CaptureFixture[str]
) -> None:
    span = {"from": "2026-01-01", "to": "2027-01-01"}
    everything = ok(api.get("/api/v1/windows/conflicts", params=span))
    assert everything == cli_json(
        capsys, "windows", "conflicts", "--from", span["from"], "--to", span["to"]
    )
    frozen = {s for c in everything["conflicts"] for s in c["shared"]}
    assert OTHER in {s.split("/")[0] for s in frozen}
    mine = ok(api.get("/api/v1/windows/conflicts", "engineer", params=span))["conflicts"]
    assert mine, "the lab's patch windows fall in Amsterdam's payment runs"
    assert all(s.split("/")[0] == OWN for c in mine for s in c["shared"])
    assert not others_named(api, json.dumps(mine))


def test_a_members_calendar_is_an_ics_file(api: Api) -> None:
    feed = api.get(f"/api/v1/members/{OWN}/calendar.ics", "engineer")
    assert feed.status_code == 200
    assert feed.headers["content-type"] == "text/calendar; charset=utf-8"
    assert feed.text.startswith("BEGIN:VCALENDAR\r\n")
    assert f"payment-run-{OWN}" in feed.text
    assert api.get(f"/api/v1/members/{OTHER}/calendar.ics", "engineer").status_code == 404


# -- schedule ---------------------------------------------------------------------------------


def test_the_schedule_shows_an_engineer_their_deploys_and_their_hosts_jobs(
    api: Api, capsys: pytest.CaptureFixture[str]
) -> None:
    sync_schedule(api.ctx, ADMIN)
    queued = schedule_deploy(api.ctx, ADMIN, OTHER, "uitkering", reason="later")
    everything = ok(api.get("/api/v1/schedule"))
    assert everything == cli_json(capsys, "schedule", "list")
    ids = {j["id"] for j in everything}
    assert queued.id in ids and any(i.startswith("window:patch-lab-3:") for i in ids)

    narrow = {j["id"] for j in ok(api.get("/api/v1/schedule", "narrow"))}
    assert queued.id not in narrow
    assert not any(i.startswith("window:patch-lab-3:") for i in narrow)
    assert any(i.startswith("window:patch-lab-1:") for i in narrow)
    assert "cron:drift-nightly" in narrow
    assert queued.id not in {j["id"] for j in ok(api.get("/api/v1/schedule", "engineer"))}
    assert api.get("/api/v1/schedule", "board").status_code == 403


# -- uptime, costs --------------------------------------------------------------------------


def test_uptime_rows_are_the_cli_rows_for_the_members_the_caller_sees(
    api: Api, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = ok(api.get("/api/v1/uptime", "board", params={"window": "24h"}))
    assert rows == cli_json(capsys, "uptime", "--window", "24h")
    assert {r["member"] for r in ok(api.get("/api/v1/uptime", "engineer"))} == {OWN}
    bad = api.get("/api/v1/uptime", params={"window": "2w"})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "window"


def test_a_months_allocation_is_the_cli_one_and_reports_are_files(
    api: Api, capsys: pytest.CaptureFixture[str]
) -> None:
    allocation = ok(api.get("/api/v1/costs/2026-01", "board"))
    assert allocation == cli_json(capsys, "costs", "allocate", "--period", "2026-01")
    assert api.get("/api/v1/costs/2026-01", "engineer").status_code == 403
    bad = api.get("/api/v1/costs/2026-13")
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "period"

    csv = api.get("/api/v1/costs/2026-Q1/report", "board", params={"format": "csv"})
    assert csv.status_code == 200
    assert csv.headers["content-type"] == "text/csv; charset=utf-8"
    # The quarter's title has an en dash: an ASCII fallback name, and the exact one.
    disposition = csv.headers["content-disposition"]
    assert disposition.startswith('attachment; filename="costs-')
    assert "filename*=UTF-8''costs-" in disposition and "%E2%80%93" in disposition
    assert "amsterdam" in csv.text
    html = api.get("/api/v1/costs/2026-01/report", "board")
    assert html.headers["content-type"] == "text/html; charset=utf-8"
    assert html.text.lstrip().lower().startswith("<!doctype html")


# -- audit, health ---------------------------------------------------------------------------


def test_the_audit_log_shows_an_engineer_their_members_entries_only(
    api: Api, capsys: pytest.CaptureFixture[str]
) -> None:
    log = AuditLog(api.ctx.engine)
    log.record(ADMIN, AuditAction.DEPLOY, member=OWN, target="run-a", reason="mine")
    log.record(ADMIN, AuditAction.DEPLOY, member=OTHER, target="run-b", reason="theirs")
    everything = ok(api.get("/api/v1/audit", "board"))
    assert everything == cli_json(capsys, "audit", "list")
    assert {e["member"] for e in everything} >= {OWN, OTHER}
    mine = ok(api.get("/api/v1/audit", "engineer"))
    assert {e["member"] for e in mine} == {OWN}
    assert api.get("/api/v1/audit", "engineer", params={"member": OTHER}).status_code == 404
    assert api.get("/api/v1/audit", "metrics").status_code == 403


def test_a_members_health_probes_its_instances_now(api: Api) -> None:
    health = ok(api.get(f"/api/v1/members/{OWN}/health", "engineer"))
    placed = api.ctx.fleet.instances(member=OWN)
    assert health["member"] == OWN
    assert [(i["host"], i["port"]) for i in health["instances"]] == [
        (i.host, i.port) for i in placed
    ]
    # Nothing of the lab runs in this test: every instance is probed and found down.
    assert health["status"] == "down" and health["healthy"] == 0
    assert all(i["status"] == "down" and i["error"] for i in health["instances"])
