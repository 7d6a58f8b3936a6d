"""Probes and the probe job against tiny real HTTP apps on 127.0.40.x (stdlib servers).

The helpers here (``FakeApp``, ``tiny_fleet``) are shared by the other uptime, metrics and
serve tests.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import Engine

from controlplane.fleet.loader import load_fleet
from controlplane.fleet.model import (
    Capacity,
    ConnectionKind,
    Fleet,
    Host,
    Instance,
    PlacedInstance,
    Stack,
    StackApp,
)
from controlplane.uptime.availability import Counts, Period
from controlplane.uptime.job import ProbeJob, RetentionJob
from controlplane.uptime.probes import probe, probe_all
from controlplane.uptime.store import ProbeStore
from controlplane.uptime.summary import UptimeReader, availabilities
from controlplane.uptime.windows import WindowCalendar
from tests.conftest import LAB

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


class QuietServer(ThreadingHTTPServer):
    """A client that gave up (a probe timeout) is expected here, not an error to print: a
    late traceback from this thread would land in whichever test captures stderr then."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass


class FakeApp:
    """An app instance: answers /healthz (``status``) and /version, optionally slowly."""

    def __init__(self, address: str, version: str = "1.1.0") -> None:
        self.status = 200
        self.delay = 0.0
        self.version = version
        self.version_body: bytes | None = None  # raw /version body instead of JSON
        app = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if app.delay:
                    time.sleep(app.delay)
                if self.path == "/healthz":
                    code, body = app.status, {"status": "ok" if app.status == 200 else "bad"}
                elif self.path == "/version":
                    code, body = 200, {"version": app.version}
                else:
                    code, body = 404, {}
                data = json.dumps(body).encode()
                if self.path == "/version" and app.version_body is not None:
                    data = app.version_body
                self.send_response(code)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = QuietServer((address, 0), Handler)
        self.address = address
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def tiny_fleet(apps: list[FakeApp], members: tuple[str, ...] = ("amsterdam",)) -> Fleet:
    """One uitkering instance per fake app, per member in turn, on its own host."""
    lab = load_fleet(LAB)
    hosts = tuple(
        Host(
            name=f"h{i}",
            address=a.address,
            capacity=Capacity(vcpu=16, ram_gib=64, disk_gib=500),  # type: ignore[arg-type]
            connection=ConnectionKind.LOCAL,
        )
        for i, a in enumerate(apps)
    )
    stacks = []
    for mi, member in enumerate(members):
        mine = [i for i in range(len(apps)) if i % len(members) == mi]
        stacks.append(
            Stack(
                member=member,
                apps=(
                    StackApp(
                        app="uitkering",
                        version="1.1.0",
                        instances=tuple(Instance(host=f"h{i}", port=apps[i].port) for i in mine),
                    ),
                ),
            )
        )
    return Fleet(
        name="uptime-test",
        members=lab.members,
        hosts=hosts,
        apps=lab.apps,
        stacks=tuple(stacks),
    )


class StepClock:
    def __init__(self, start: datetime = T0, step: timedelta = timedelta(seconds=30)) -> None:
        self.now = start
        self.step = step

    def __call__(self) -> datetime:
        self.now += self.step
        return self.now


@pytest.fixture
def apps() -> Iterator[list[FakeApp]]:
    started = [FakeApp("127.0.40.2"), FakeApp("127.0.40.3")]
    yield started
    for a in started:
        a.stop()


def test_probe_reports_health_version_and_failures(apps: list[FakeApp]) -> None:
    fleet = tiny_fleet(apps)
    first, second = fleet.instances()
    ok = probe(first, timeout=2)
    assert ok.healthy and ok.version == "1.1.0" and ok.error is None
    assert (ok.member, ok.app, ok.address, ok.port) == (
        "amsterdam",
        "uitkering",
        "127.0.40.2",
        apps[0].port,
    )

    apps[1].status = 503
    bad = probe(second, timeout=2)
    assert not bad.healthy and bad.error == "/healthz answered 503"

    apps[1].stop()
    gone = probe(second, timeout=2)
    assert not gone.healthy and gone.error is not None and "Connection" in gone.error


def test_a_hanging_instance_costs_one_timeout_not_a_round(apps: list[FakeApp]) -> None:
    apps[0].delay = 3.0
    started = time.monotonic()
    results = probe_all(tiny_fleet(apps).instances(), timeout=0.5)
    assert time.monotonic() - started < 2.0
    assert [r.healthy for r in results] == [False, True]
    assert "timed out" in (results[0].error or "")


def test_probe_job_stores_rounds_and_availability_falls_when_an_app_dies(
    apps: list[FakeApp], sql: Engine
) -> None:
    fleet = tiny_fleet(apps)
    store = ProbeStore(sql)
    clock = StepClock()
    job = ProbeJob(fleet, store, timeout=1.0, clock=clock)
    for _ in range(3):
        samples = job.run()
        assert samples is not None and all(s.healthy for s in samples)
    apps[0].stop()
    for _ in range(3):
        job.run()
    latest = store.latest(clock.now - timedelta(minutes=5))
    assert {k[2]: v.healthy for k, v in latest.items()} == {"h0": False, "h1": True}
    [hour, *_] = availabilities(fleet, UptimeReader(store).counts(clock.now), (Period.HOUR,))
    assert hour.counts.total == 12 and hour.raw == pytest.approx(9 / 12)
    assert hour.budget_remaining is not None and hour.budget_remaining < 0


def test_probes_in_a_window_are_left_out_of_the_sla(apps: list[FakeApp], sql: Engine) -> None:
    fleet = tiny_fleet(apps)
    store = ProbeStore(sql)
    clock = StepClock()
    window_open = False

    def in_window(instance: PlacedInstance, at: datetime) -> bool:
        return window_open and instance.host == "h0"

    calendar = WindowCalendar(in_window=in_window, next_window_start=lambda m, at: None)
    job = ProbeJob(fleet, store, timeout=1.0, clock=clock, calendar=calendar)
    for _ in range(4):
        job.run()
    window_open = True
    apps[0].status = 503  # maintenance takes h0 down, inside its window
    for _ in range(4):
        job.run()
    [a] = availabilities(fleet, UptimeReader(store).counts(clock.now), (Period.DAY,))
    assert a.counts == Counts(16, 12, 4, 0)
    assert a.raw == pytest.approx(12 / 16)
    assert a.sla == 1.0  # the four down probes were all inside the window
    samples = store.samples(T0)
    assert sum(s.in_window for s in samples) == 4
    assert all(s.host == "h0" and not s.healthy for s in samples if s.in_window)


def test_a_round_another_node_just_did_is_skipped(apps: list[FakeApp], sql: Engine) -> None:
    fleet = tiny_fleet(apps)
    store = ProbeStore(sql)
    clock = StepClock(step=timedelta(seconds=5))
    node_a = ProbeJob(fleet, store, timeout=1.0, clock=clock, min_gap=timedelta(seconds=15))
    node_b = ProbeJob(fleet, store, timeout=1.0, clock=clock, min_gap=timedelta(seconds=15))
    assert node_a.run() is not None
    assert node_b.run() is None  # 5 s later: A's round stands
    clock.now += timedelta(seconds=20)
    assert node_b.run() is not None
    assert len(store.samples(T0)) == 4


def test_retention_job_expires_raw_samples_only(apps: list[FakeApp], sql: Engine) -> None:
    fleet = tiny_fleet(apps)
    store = ProbeStore(sql)
    clock = StepClock(step=timedelta(minutes=20))
    job = ProbeJob(fleet, store, timeout=1.0, clock=clock)
    for _ in range(9):  # 09:20 to 12:00
        job.run()
    removed = RetentionJob(store, timedelta(hours=2), clock=lambda: clock.now).run()
    assert removed == 2 * 2  # the rounds before 10:00, of two instances each
    assert sum(r["total"] for r in store.hourly_rows()) == 18


def test_the_health_check_alone_decides_up_or_down(apps: list[FakeApp]) -> None:
    inst = tiny_fleet(apps).instances()[0]
    apps[0].version_body = b"<html>not json"
    result = probe(inst, timeout=1)
    assert result.healthy and result.error is None and result.version is None
    apps[0].status = 503
    result = probe(inst, timeout=1)
    assert not result.healthy and result.error == "/healthz answered 503"
