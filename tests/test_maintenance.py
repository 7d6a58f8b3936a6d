"""Scheduled maintenance on a real APScheduler with its SQLAlchemy job store.

One test runs the real patch playbook over SSH when its window opens; the others use a
stand-in runner, because what they check is the scheduling: restarts, misfires, silences.
"""

from __future__ import annotations

import http.server
import json
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import Engine as SqlEngine

from controlplane.deploy.engine import Engine, EngineConfig
from controlplane.deploy.model import Run, RunKind, RunStatus
from controlplane.deploy.plan import Planner
from controlplane.deploy.runner import HostStats, PlaybookRequest, PlaybookResult
from controlplane.fleet.inventory import RenderContext
from controlplane.fleet.model import Fleet
from controlplane.maintenance.model import JobKind, MaintenanceJob
from controlplane.maintenance.schedule import Maintenance, Silence
from controlplane.scheduler import build_scheduler
from controlplane.store.runs import RunStore
from controlplane.windows.gate import Gate
from controlplane.windows.rules import Scope, Window, WindowKind
from tests.conftest import LAB, ROOT, ssh_fleet
from tests.sshd import SshLab

AMS = ZoneInfo("Europe/Amsterdam")
CLI = str(Path(sys.executable).parent / "controlplane")


def window_soon(seconds: float, duration: timedelta, name: str = "patch-soon") -> Window:
    """A daily maintenance window over everything whose next start is ``seconds`` away."""
    start = (datetime.now(AMS) + timedelta(seconds=seconds)).replace(microsecond=0)
    return Window(
        name=name,
        kind=WindowKind.MAINTENANCE,
        scope=Scope(),
        rrule="FREQ=DAILY",
        start=start.replace(tzinfo=None).isoformat(),  # type: ignore[arg-type]
        duration=duration,
        timezone="Europe/Amsterdam",
    )


class CountingRunner:
    """Stands in for ansible-runner: every host succeeds; remembers each request."""

    def __init__(self) -> None:
        self.requests: list[PlaybookRequest] = []

    def __call__(
        self, request: PlaybookRequest, pdd: Path, ident: str, **kw: Any
    ) -> PlaybookResult:
        self.requests.append(request)
        hosts = (request.limit or "").split(",")
        return PlaybookResult("successful", 0, {h: HostStats(ok=1) for h in hosts}, pdd)


def build(
    fleet: Fleet,
    sql: SqlEngine,
    tmp: Path,
    windows: list[Window],
    runner: Callable[..., Any],
    silence: Silence | None = None,
) -> Maintenance:
    gate = Gate(fleet, windows)
    store = RunStore(sql)
    engine = Engine(
        fleet,
        store,
        EngineConfig(
            data_dir=tmp / "var", playbooks_dir=ROOT / "controlplane" / "playbooks", fleet_dir=LAB
        ),
        RenderContext(tmp / "var", sys.executable),
        runner=runner,
        gate=gate,
    )
    job = MaintenanceJob(
        name="patch-all",
        kind=JobKind.PATCH,
        window=windows[0].name,
        hosts=tuple(h.name for h in fleet.hosts),
        serial="1",
        max_fail="0%",
    )
    return Maintenance(engine, Planner(fleet, store), gate, (job,), silence=silence)


def start(maintenance: Maintenance, sql: SqlEngine) -> BackgroundScheduler:
    scheduler = build_scheduler(sql)
    maintenance.install(scheduler)
    scheduler.start()
    maintenance.sync()
    return scheduler


def wait_for_runs(store: RunStore, count: int, timeout: float = 90) -> list[Run]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = [r for r in store.find() if r.status.finished]
        if len(runs) >= count:
            return runs
        time.sleep(0.2)
    raise AssertionError(f"expected {count} finished runs, have {store.find()}")


def stored_ids(sql: SqlEngine) -> list[str]:
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore

    from controlplane.maintenance.operations import StoreOnlyScheduler

    s = StoreOnlyScheduler(jobstores={"default": SQLAlchemyJobStore(engine=sql)}, timezone="UTC")
    s.start(paused=True)
    try:
        return sorted(j.id for j in s.get_jobs())
    finally:
        s.shutdown(wait=False)


@pytest.mark.sshd
def test_patch_job_runs_the_patch_playbook_when_its_window_opens(
    ssh_lab: SshLab, sql: SqlEngine, tmp_path: Path
) -> None:
    fleet = ssh_fleet(ssh_lab, hosts=2)
    from controlplane.deploy.runner import run_playbook

    maintenance = build(fleet, sql, tmp_path, [window_soon(3, timedelta(minutes=10))], run_playbook)
    scheduler = start(maintenance, sql)
    try:
        [run] = wait_for_runs(maintenance.engine.store, 1)
    finally:
        scheduler.shutdown(wait=True)
    assert run.kind is RunKind.PATCH and run.status is RunStatus.SUCCESSFUL, run.error
    assert run.started_by == "scheduler"
    schedule = run.options.schedule
    assert schedule is not None and schedule.window == "patch-soon"
    assert run.options.extravars() == {"cp_serial": "1", "cp_max_fail_percentage": 0.0}
    assert run.started_at is not None and schedule.occurrence is not None
    opened = schedule.occurrence
    assert run.started_at >= opened
    for host in ssh_lab.hosts[:2]:
        record = json.loads((host.root / "var/lib/controlplane/patch-level.json").read_text())
        assert record["mode"] == "simulate"
        assert datetime.fromisoformat(record["applied_at"].replace("Z", "+00:00")) >= opened
    # The next occurrence (tomorrow) is stored; the one that ran is gone.
    [next_job] = [j for j in stored_ids(sql) if j.startswith("window:")]
    assert next_job.startswith("window:patch-all:")
    assert datetime.fromisoformat(next_job.split(":", 2)[2]) == opened + timedelta(days=1)


def test_restart_mid_schedule_neither_loses_nor_duplicates(sql: SqlEngine, tmp_path: Path) -> None:
    fleet = ssh_fleet_stub()
    runner = CountingRunner()
    maintenance = build(fleet, sql, tmp_path, [window_soon(2, timedelta(minutes=10))], runner)
    first = start(maintenance, sql)
    before = stored_ids(sql)
    first.shutdown(wait=True)  # the control plane stops before the window opens
    assert len(before) == 1
    time.sleep(3)  # the window opens while it is down

    second = start(maintenance, sql)  # restart: due and inside the window, so it runs once
    try:
        [run] = wait_for_runs(maintenance.engine.store, 1)
        time.sleep(1)
    finally:
        second.shutdown(wait=True)
    assert run.status is RunStatus.SUCCESSFUL
    assert len(runner.requests) == 1
    third = start(maintenance, sql)  # and again: nothing new runs, nothing is doubled
    time.sleep(1)
    third.shutdown(wait=True)
    assert len(runner.requests) == 1
    after = stored_ids(sql)
    assert len(after) == 1 and after != before  # just the next occurrence


def test_window_missed_entirely_is_skipped_and_recorded(sql: SqlEngine, tmp_path: Path) -> None:
    runner = CountingRunner()
    maintenance = build(
        ssh_fleet_stub(), sql, tmp_path, [window_soon(1, timedelta(seconds=2))], runner
    )
    start(maintenance, sql).shutdown(wait=True)
    time.sleep(4)  # the whole window passes while the control plane is down
    scheduler = start(maintenance, sql)
    try:
        [run] = wait_for_runs(maintenance.engine.store, 1, timeout=20)
    finally:
        scheduler.shutdown(wait=True)
    assert run.status is RunStatus.SKIPPED
    assert "missed" in (run.error or "")
    assert runner.requests == []
    assert len([j for j in stored_ids(sql) if j.startswith("window:")]) == 1


def test_window_creates_an_alertmanager_silence(sql: SqlEngine, tmp_path: Path) -> None:
    received: list[dict[str, Any]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            assert self.path == "/api/v2/silences"
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            body = b'{"silenceID": "abc-123"}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    window = window_soon(1, timedelta(minutes=5))
    maintenance = build(
        ssh_fleet_stub(), sql, tmp_path, [window], CountingRunner(), silence=Silence(url)
    )
    scheduler = start(maintenance, sql)
    try:
        [run] = wait_for_runs(maintenance.engine.store, 1, timeout=20)
    finally:
        scheduler.shutdown(wait=True)
        server.shutdown()
    assert run.options.schedule is not None
    assert run.options.schedule.silence_id == "abc-123"
    [silence] = received
    assert silence["createdBy"] == "controlplane"
    assert silence["comment"] == "maintenance window patch-soon"
    assert silence["matchers"] == [{"name": "job", "value": ".+", "isRegex": True, "isEqual": True}]
    starts = datetime.fromisoformat(silence["startsAt"].replace("Z", "+00:00"))
    ends = datetime.fromisoformat(silence["endsAt"].replace("Z", "+00:00"))
    assert ends - starts == timedelta(minutes=5)


def test_deploy_when_next_window_is_stored_for_the_next_opening(tmp_path: Path) -> None:
    fleet = tmp_path / "fleet"
    shutil.copytree(LAB, fleet)
    (fleet / "windows.yml").write_text(
        "windows:\n"
        "  - name: long-freeze\n"
        "    kind: freeze\n"
        "    scope: {member: utrecht}\n"
        "    rrule: FREQ=DAILY\n"
        "    start: 2020-01-01T00:00\n"
        "    duration: PT23H\n"
    )
    (fleet / "maintenance.yml").unlink()
    env = {"CONTROLPLANE_DATA_DIR": str(tmp_path / "var"), "PATH": str(Path(CLI).parent)}
    run = lambda *a: subprocess.run(  # noqa: E731
        [CLI, *a, "--fleet", str(fleet)], env=env, capture_output=True, text=True, check=False
    )
    queued = run("deploy", "utrecht", "--app", "uitkering", "--when", "next-window", "--json")
    assert queued.returncode == 0, queued.stderr
    data = json.loads(queued.stdout)
    at = datetime.fromisoformat(data["at"]).astimezone(AMS)
    now = datetime.now(AMS)
    assert (at.hour, at.minute) == (23, 0) or now.hour == 23  # the freeze ends at 23:00
    listed = json.loads(run("schedule", "list", "--json").stdout)
    assert [j["id"] for j in listed] == [data["id"]]
    bad = run("deploy", "utrecht", "--app", "uitkering", "--when", "tomorrow")
    assert bad.returncode == 2 and "when: 'tomorrow'" in bad.stderr


def ssh_fleet_stub() -> Fleet:
    """The lab fleet: the stand-in runner never contacts its hosts."""
    from controlplane.fleet.loader import load_fleet

    return load_fleet(LAB)
