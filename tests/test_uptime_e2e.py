"""Uptime end to end: deploy a lab member with the real deploy engine (ansible-runner and the
shipped playbooks, local connection), see it probed up, kill an app process, see probe
success drop to 0 and availability fall; probes inside a window stay out of the SLA."""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine

from controlplane.deploy.engine import Engine as DeployEngine
from controlplane.deploy.engine import EngineConfig
from controlplane.deploy.model import RunStatus
from controlplane.deploy.plan import DeployRequest, Planner
from controlplane.fleet.inventory import RenderContext
from controlplane.fleet.loader import load_fleet
from controlplane.fleet.model import (
    Capacity,
    ConnectionKind,
    Fleet,
    Host,
    Instance,
    Stack,
    StackApp,
)
from controlplane.metrics import ControlPlaneCollector, build_registry, exposition
from controlplane.store.runs import RunStore
from controlplane.uptime.availability import Period
from controlplane.uptime.job import ProbeJob
from controlplane.uptime.store import ProbeStore
from controlplane.uptime.summary import UptimeReader, availabilities
from controlplane.uptime.windows import WindowCalendar, fleet_calendar, no_windows
from tests.conftest import LAB, ROOT
from tests.refapp_fixtures import kill_refapps

PORT = 8101


def lab_fleet(roots: Path) -> Fleet:
    """amsterdam's uitkering on two local-connection hosts, 127.0.40.11 and .12."""
    lab = load_fleet(LAB)
    hosts = tuple(
        Host(
            name=f"up{n}",
            address=f"127.0.40.{10 + n}",
            capacity=Capacity(vcpu=8, ram_gib=32, disk_gib=200),  # type: ignore[arg-type]
            connection=ConnectionKind.LOCAL,
            root=str(roots / f"up{n}"),
        )
        for n in (1, 2)
    )
    stack = Stack(
        member="amsterdam",
        apps=(
            StackApp(
                app="uitkering",
                version="1.1.0",
                instances=(Instance(host="up1", port=PORT), Instance(host="up2", port=PORT)),
            ),
        ),
    )
    return Fleet(
        name="uptime-e2e", members=lab.members, hosts=hosts, apps=lab.apps, stacks=(stack,)
    )


def window_over_up1(fleet: Fleet, directory: Path) -> WindowCalendar:
    """A daily one-hour maintenance window on host up1 that opened five minutes ago."""
    local = datetime.now(ZoneInfo("Europe/Amsterdam")) - timedelta(minutes=5)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "windows.yml").write_text(
        yaml.safe_dump(
            {
                "windows": [
                    {
                        "name": "patch-up1",
                        "kind": "maintenance",
                        "scope": {"host": "up1"},
                        "rrule": "FREQ=DAILY",
                        "start": local.strftime("%Y-%m-%dT%H:%M"),
                        "duration": "PT1H",
                    }
                ]
            }
        )
    )
    return fleet_calendar(directory, fleet)


def pidfile(root: Path) -> Path:
    return root / "run/controlplane/amsterdam/uitkering.pid"


def refuses(address: str, port: int) -> bool:
    try:
        socket.create_connection((address, port), timeout=1).close()
    except OSError:
        return True
    return False


@pytest.fixture
def deployed(sql: Engine, tmp_path: Path) -> Iterator[Fleet]:
    roots = tmp_path / "roots"
    fleet = lab_fleet(roots)
    runs = RunStore(sql)
    engine = DeployEngine(
        fleet,
        runs,
        EngineConfig(
            data_dir=tmp_path / "var",
            playbooks_dir=ROOT / "controlplane" / "playbooks",
            fleet_dir=LAB,
            vault_password_file=LAB / "vault-password",
            health_timeout_seconds=10,
        ),
        RenderContext(tmp_path / "var", sys.executable),
    )
    try:
        [spec] = Planner(fleet, runs).plan_deploy(
            DeployRequest("amsterdam", "uitkering", started_by="test-uptime")
        )
        run = engine.execute(engine.submit(spec).id)
        assert run.status is RunStatus.SUCCESSFUL, run.error
        yield fleet
    finally:
        kill_refapps(roots / "up1", roots / "up2")


def success(text: bytes) -> dict[str, float]:
    out = {}
    for family in text_string_to_metric_families(text.decode()):
        if family.name == "controlplane_probe_success":
            for s in family.samples:
                out[s.labels["host"]] = s.value
    return out


def test_deployed_member_is_probed_up_then_down_and_windows_stay_out_of_the_sla(
    deployed: Fleet, sql: Engine, tmp_path: Path
) -> None:
    fleet = deployed
    store = ProbeStore(sql)
    job = ProbeJob(fleet, store, timeout=2.0, calendar=no_windows())
    collector = ControlPlaneCollector(fleet, sql, calendar=no_windows())
    registry = build_registry(collector, process_metrics=False)

    def availability() -> tuple[float | None, float | None]:
        [a] = availabilities(fleet, UptimeReader(store).counts(datetime.now(UTC)), (Period.HOUR,))
        return a.raw, a.sla

    # Deployed: both instances answer healthy and report the deployed version.
    for _ in range(2):
        samples = job.run()
        assert samples is not None
        assert [(s.host, s.healthy, s.version) for s in samples] == [
            ("up1", True, "1.1.0"),
            ("up2", True, "1.1.0"),
        ]
    assert success(exposition(registry)) == {"up1": 1.0, "up2": 1.0}
    assert availability() == (1.0, 1.0)

    # Kill the app process on up1, found by its pidfile under the host root.
    root = tmp_path / "roots" / "up1"
    pid = int(pidfile(root).read_text().strip())
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while not refuses("127.0.40.11", PORT) and time.monotonic() < deadline:
        time.sleep(0.1)
    for _ in range(2):
        job.run()
    assert success(exposition(registry)) == {"up1": 0.0, "up2": 1.0}
    raw, sla = availability()
    assert raw == pytest.approx(6 / 8) and sla == pytest.approx(6 / 8)
    text = exposition(registry).decode()
    assert (
        'controlplane_availability_ratio{app="uitkering",member="amsterdam",period="1h"} 0.75'
        in text
    )

    # A maintenance window of host up1 (a real windows.yml, read by controlplane.windows)
    # opened five minutes ago. While up1 stays down, its probes count neither as up nor as
    # down for the SLA, but the raw figure keeps falling.
    calendar = window_over_up1(fleet, tmp_path / "windows")
    job.calendar = calendar
    for _ in range(2):
        job.run()
    raw, sla = availability()
    assert raw == pytest.approx(8 / 12)
    # up1's two down probes in the window are left out; up2's two good ones count.
    assert sla == pytest.approx(8 / 10)
    latest = store.latest(datetime.now(UTC) - timedelta(minutes=10))
    assert latest[("amsterdam", "uitkering", "up1", PORT)].in_window
    assert not latest[("amsterdam", "uitkering", "up2", PORT)].in_window
    text = exposition(
        build_registry(ControlPlaneCollector(fleet, sql, calendar=calendar), process_metrics=False)
    ).decode()
    assert 'controlplane_maintenance_window_active{member="amsterdam"} 1.0' in text
    up1 = 'app="uitkering",host="up1",member="amsterdam",port="8101"'
    assert f"controlplane_probe_in_window{{{up1}}} 1.0" in text
    assert f"controlplane_probe_success{{{up1}}} 0.0" in text
