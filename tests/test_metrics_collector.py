"""The /metrics collector over both store backends, and ``promtool check metrics`` on its
real output."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import prometheus_client
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine

from controlplane.deploy.model import (
    HostOutcome,
    HostResult,
    LockRequest,
    RunKind,
    RunSpec,
    RunStatus,
)
from controlplane.fleet.loader import load_fleet
from controlplane.fleet.model import Fleet, PlacedInstance
from controlplane.metrics import ControlPlaneCollector, build_registry, exposition
from controlplane.store.db import make_engine
from controlplane.store.runs import RunStore
from controlplane.uptime.probes import ProbeSample
from controlplane.uptime.store import ProbeStore
from controlplane.uptime.windows import WindowCalendar
from tests.conftest import LAB, missing

NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


class SetClock:
    def __init__(self, at: datetime) -> None:
        self.now = at

    def __call__(self) -> datetime:
        return self.now


def scrape(collector: ControlPlaneCollector) -> tuple[bytes, Samples]:
    text = exposition(build_registry(collector, process_metrics=False))
    samples: Samples = {}
    for family in text_string_to_metric_families(text.decode()):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return text, samples


def value(samples: Samples, metric: str, /, **labels: str) -> float:
    return samples[(metric, tuple(sorted(labels.items())))]


@pytest.fixture(scope="module")
def lab() -> Fleet:
    return load_fleet(LAB)


def run(
    store: RunStore,
    clock: SetClock,
    kind: RunKind,
    member: str | None,
    status: RunStatus,
    seconds: float = 0.0,
) -> str:
    r = store.create(
        RunSpec(kind, f"{kind.value}.yml", "test", member=member, app="uitkering", hosts=("lab-1",))
    )
    if status is RunStatus.QUEUED:
        return r.id
    store.transition(r.id, RunStatus.RUNNING)
    if status is not RunStatus.RUNNING:
        clock.now += timedelta(seconds=seconds)
        store.transition(r.id, status)
    return r.id


@pytest.fixture
def populated(engine: Engine, lab: Fleet) -> Iterator[Engine]:
    populate(engine, lab)
    yield engine


def populate(engine: Engine, lab: Fleet) -> None:
    """Runs of every kind and outcome, locks, drift checks, and 50 minutes of probes."""
    clock = SetClock(NOW - timedelta(hours=3))
    runs = RunStore(engine, clock=clock)
    run(runs, clock, RunKind.DEPLOY, "amsterdam", RunStatus.SUCCESSFUL, 42)
    run(runs, clock, RunKind.DEPLOY, "amsterdam", RunStatus.SUCCESSFUL, 400)
    run(runs, clock, RunKind.DEPLOY, "amsterdam", RunStatus.FAILED, 7)
    run(runs, clock, RunKind.ROLLBACK, "amsterdam", RunStatus.SUCCESSFUL, 3)
    run(runs, clock, RunKind.PATCH, None, RunStatus.SUCCESSFUL, 90)
    active = run(runs, clock, RunKind.DEPLOY, "rotterdam", RunStatus.RUNNING)
    runs.acquire(
        active,
        [LockRequest.stack("rotterdam", "uitkering"), LockRequest.host("lab-2", False)],
    )
    run(runs, clock, RunKind.DEPLOY, "utrecht", RunStatus.QUEUED)
    # Two drift checks of rotterdam: only the newest counts (it found one host drifted).
    old = run(runs, clock, RunKind.DRIFT, "rotterdam", RunStatus.SUCCESSFUL, 5)
    runs.record_host(HostResult(old, "lab-1", HostOutcome.CHANGED))
    runs.record_host(HostResult(old, "lab-2", HostOutcome.CHANGED))
    new = run(runs, clock, RunKind.DRIFT, "rotterdam", RunStatus.SUCCESSFUL, 5)
    runs.record_host(HostResult(new, "lab-1", HostOutcome.OK))
    runs.record_host(HostResult(new, "lab-2", HostOutcome.CHANGED))
    clean = run(runs, clock, RunKind.DRIFT, "utrecht", RunStatus.SUCCESSFUL, 5)
    runs.record_host(HostResult(clean, "lab-4", HostOutcome.OK))

    probes = ProbeStore(engine)
    samples = []
    for i in lab.instances():
        for k in range(10):  # every 5 minutes over the last 50 minutes
            at = NOW - timedelta(minutes=5 * k)
            down = i.member == "den-haag" and i.host == "lab-3" and k < 4
            in_window = i.member == "utrecht" and k < 2
            samples.append(
                ProbeSample(
                    i.member, i.app, i.host, i.port, at, not down, in_window, 0.002, i.version
                )
            )
    probes.record(samples)


def test_every_member_metric_reads_the_store(populated: Engine, lab: Fleet) -> None:
    collector = ControlPlaneCollector(lab, populated, clock=SetClock(NOW))
    text, samples = scrape(collector)

    assert (
        value(
            samples, "controlplane_member_info", member="den-haag", name=lab.member("den-haag").name
        )
        == 1
    )
    assert value(samples, "controlplane_member_slo_ratio", member="den-haag") == 0.999

    # Runs: counters by member, kind and result; zeros so a first failure is seen.
    assert (
        value(
            samples,
            "controlplane_runs_total",
            member="amsterdam",
            kind="deploy",
            result="successful",
        )
        == 2
    )
    assert (
        value(
            samples, "controlplane_runs_total", member="amsterdam", kind="deploy", result="failed"
        )
        == 1
    )
    assert (
        value(samples, "controlplane_runs_total", member="den-haag", kind="deploy", result="failed")
        == 0
    )
    assert (
        value(samples, "controlplane_runs_total", member="", kind="patch", result="successful") == 1
    )
    assert value(samples, "controlplane_runs_active", member="rotterdam", status="running") == 1
    assert value(samples, "controlplane_runs_active", member="utrecht", status="queued") == 1
    assert value(samples, "controlplane_runs_active", member="amsterdam", status="running") == 0

    # Deploy durations: 42 s, 400 s, 7 s.
    hist = {"member": "amsterdam", "kind": "deploy"}
    assert value(samples, "controlplane_run_duration_seconds_count", **hist) == 3
    assert value(samples, "controlplane_run_duration_seconds_sum", **hist) == pytest.approx(449)
    assert value(samples, "controlplane_run_duration_seconds_bucket", le="10.0", **hist) == 1
    assert value(samples, "controlplane_run_duration_seconds_bucket", le="60.0", **hist) == 2
    assert value(samples, "controlplane_run_duration_seconds_bucket", le="300.0", **hist) == 2
    assert value(samples, "controlplane_run_duration_seconds_bucket", le="600.0", **hist) == 3
    assert value(samples, "controlplane_run_duration_seconds_bucket", le="+Inf", **hist) == 3

    assert (
        value(
            samples, "controlplane_locks_held", member="rotterdam", scope="stack", mode="exclusive"
        )
        == 1
    )
    assert (
        value(samples, "controlplane_locks_held", member="rotterdam", scope="host", mode="shared")
        == 1
    )
    assert value(samples, "controlplane_drift_hosts", member="rotterdam") == 1
    assert value(samples, "controlplane_drift_hosts", member="utrecht") == 0

    # Probes: last state per instance, counters, availability raw and SLA.
    down = {"member": "den-haag", "app": "uitkering", "host": "lab-3", "port": "8103"}
    assert value(samples, "controlplane_probe_success", **down) == 0
    assert value(samples, "controlplane_probe_success", **{**down, "host": "lab-4"}) == 1
    assert (
        value(
            samples,
            "controlplane_probe_in_window",
            member="utrecht",
            app="uitkering",
            host="lab-4",
            port="8104",
        )
        == 1
    )
    assert (
        value(
            samples,
            "controlplane_probes_total",
            member="den-haag",
            app="uitkering",
            result="failure",
            in_window="false",
        )
        == 4
    )
    assert (
        value(
            samples,
            "controlplane_probes_total",
            member="utrecht",
            app="uitkering",
            result="success",
            in_window="true",
        )
        == 4
    )
    h = {"member": "den-haag", "app": "uitkering", "period": "1h"}
    assert value(samples, "controlplane_availability_ratio", **h) == pytest.approx(16 / 20)
    assert value(samples, "controlplane_sla_availability_ratio", **h) == pytest.approx(16 / 20)
    assert value(samples, "controlplane_error_budget_remaining_ratio", **h) == pytest.approx(
        (0.8 - 0.999) / 0.001
    )
    u = {"member": "utrecht", "app": "uitkering", "period": "30d"}
    assert value(samples, "controlplane_sla_availability_ratio", **u) == 1.0
    assert value(samples, "controlplane_availability_ratio", **u) == 1.0

    # Hosts: capacity and each member's reservation, in base units.
    assert value(samples, "controlplane_host_capacity_vcpus", host="lab-2") == 8
    assert value(samples, "controlplane_host_capacity_memory_bytes", host="lab-2") == 32 * 1024**3
    assert value(samples, "controlplane_host_reserved_vcpus", host="lab-2", member="rotterdam") == 2
    assert (
        value(samples, "controlplane_host_reserved_disk_bytes", host="lab-2", member="amsterdam")
        == 10 * 1024**3
    )
    assert value(samples, "controlplane_store_up") == 1
    assert value(samples, "controlplane_probe_last_timestamp_seconds") == NOW.timestamp()

    # Bounded labels only: never a run id.
    assert not re.search(rb'="[0-9a-f]{32}"', text)


def test_each_scrape_reads_fresh_values(populated: Engine, lab: Fleet) -> None:
    clock = SetClock(NOW)
    collector = ControlPlaneCollector(lab, populated, clock=clock)
    _, before = scrape(collector)
    runs = RunStore(populated, clock=clock)
    run(runs, clock, RunKind.DEPLOY, "den-haag", RunStatus.FAILED, 1)
    [inst] = [
        i for i in lab.instances(member="den-haag") if i.host == "lab-3" and i.app == "uitkering"
    ]
    clock.now += timedelta(seconds=30)
    ProbeStore(populated).record(
        [ProbeSample(inst.member, inst.app, inst.host, inst.port, clock.now, True, False, 0.001)]
    )
    _, after = scrape(collector)
    key = {"member": "den-haag", "kind": "deploy", "result": "failed"}
    assert value(before, "controlplane_runs_total", **key) == 0
    assert value(after, "controlplane_runs_total", **key) == 1
    down = {"member": "den-haag", "app": "uitkering", "host": "lab-3", "port": "8103"}
    assert value(after, "controlplane_probe_success", **down) == 1


def test_window_metrics_come_from_the_calendar(engine: Engine, lab: Fleet) -> None:
    start = NOW + timedelta(hours=5)

    def in_window(i: PlacedInstance, at: datetime) -> bool:
        return i.member == "amsterdam" and i.host == "lab-1"

    calendar = WindowCalendar(
        in_window=in_window,
        next_window_start=lambda m, at: start if m != "utrecht" else None,
    )
    _, samples = scrape(ControlPlaneCollector(lab, engine, calendar=calendar, clock=SetClock(NOW)))
    assert value(samples, "controlplane_maintenance_window_active", member="amsterdam") == 1
    # den-haag runs on lab-1 too, but the window covers only amsterdam's instance there.
    assert value(samples, "controlplane_maintenance_window_active", member="den-haag") == 0
    name = "controlplane_maintenance_window_next_start_timestamp_seconds"
    assert value(samples, name, member="amsterdam") == start.timestamp()
    assert (name, (("member", "utrecht"),)) not in samples


def test_an_unreachable_store_is_reported_not_raised(lab: Fleet) -> None:
    engine = make_engine("postgresql://nobody@127.0.0.1:9/none")
    _, samples = scrape(ControlPlaneCollector(lab, engine, clock=SetClock(NOW)))
    assert value(samples, "controlplane_store_up") == 0
    assert value(samples, "controlplane_member_slo_ratio", member="utrecht") == 0.99
    assert not any(name.startswith("controlplane_runs") for name, _ in samples)


def test_registry_is_private_and_has_process_metrics(engine: Engine, lab: Fleet) -> None:
    collector = ControlPlaneCollector(lab, engine, clock=SetClock(NOW))
    registry = build_registry(collector)
    text = exposition(registry).decode()
    assert "process_cpu_seconds_total" in text and "python_gc_objects_collected_total" in text
    assert "controlplane_member_info" in text
    assert "controlplane_member_info" not in prometheus_client.generate_latest().decode()


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        missing("promtool is not installed; scripts/setup.sh installs Debian's prometheus")
    assert path is not None
    return path


def test_promtool_check_metrics_is_silent_on_the_real_output(
    populated: Engine, lab: Fleet, tmp_path: Path
) -> None:
    registry = build_registry(ControlPlaneCollector(lab, populated, clock=SetClock(NOW)))
    text = exposition(registry)
    proc = subprocess.run(
        [promtool(), "check", "metrics"], input=text, capture_output=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout == b"" and proc.stderr == b"", proc.stdout + proc.stderr
