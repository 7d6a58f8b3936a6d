"""The notification outbox over a real store, on SQLite and PostgreSQL: the scanner turns
finished runs, audit entries and window edges into one delivery per target and event,
exactly once; a sender's claim is exclusive."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from controlplane.access.policy import Principal, Role
from controlplane.audit.chain import AuditAction, Outcome
from controlplane.audit.store import AuditLog
from controlplane.deploy.model import RunKind, RunSpec, RunStatus
from controlplane.fleet.loader import load_fleet
from controlplane.fleet.model import Fleet
from controlplane.notify.config import EventType, Target
from controlplane.notify.scanner import LOOKBACK, MAX_CATCH_UP, WATERMARK, Scanner
from controlplane.notify.store import DeliveryStatus, DeliveryStore, NewDelivery
from controlplane.store.runs import RunStore
from controlplane.windows.gate import Gate
from controlplane.windows.loader import load_gate
from tests.api_fixtures import build_api
from tests.conftest import LAB

ALL = tuple(EventType)
ALICE = Principal(name="alice@cp1", role=Role.ADMIN)
# A Monday in November: patch-lab-1 opens at 05:00 Amsterdam, 04:00Z, for two hours.
MONDAY = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)


class Clock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


@pytest.fixture(scope="module")
def fleet() -> Fleet:
    return load_fleet(LAB)


@pytest.fixture(scope="module")
def gate(fleet: Fleet) -> Gate:
    return load_gate(LAB, fleet, clock=None)


def target(name: str, **fields: Any) -> Target:
    base: dict[str, Any] = {"url": "https://hooks.example.org/", "secret_env": "S"}
    return Target(name=name, **{**base, **fields})


def finished(
    store: RunStore, member: str | None, status: RunStatus, hosts: tuple[str, ...] = ("lab-1",)
) -> str:
    run = store.create(
        RunSpec(
            kind=RunKind.DEPLOY if member else RunKind.PATCH,
            playbook="deploy.yml",
            started_by="alice@cp1",
            member=member,
            app="uitkering" if member else None,
            version="1.1.0" if member else None,
            hosts=hosts,
        )
    )
    if status is not RunStatus.SKIPPED and status is not RunStatus.CANCELED:
        store.transition(run.id, RunStatus.RUNNING)
    store.transition(run.id, status, error=None if status is RunStatus.SUCCESSFUL else "boom")
    return run.id


def test_each_event_goes_once_to_each_target_that_wants_it(
    engine: Engine, fleet: Fleet, gate: Gate
) -> None:
    runs, audit = RunStore(engine), AuditLog(engine)
    failed = finished(runs, "amsterdam", RunStatus.FAILED)
    good = finished(runs, "rotterdam", RunStatus.SUCCESSFUL)
    canceled = finished(runs, "den-haag", RunStatus.CANCELED)
    finished(runs, None, RunStatus.SKIPPED)  # skipped work is maintenance.skipped, not a run end
    runs.create(RunSpec(kind=RunKind.DEPLOY, playbook="deploy.yml", started_by="x"))  # queued
    audit.record(
        ALICE,
        AuditAction.EMERGENCY_OVERRIDE,
        member="utrecht",
        target=good,
        reason="payment run outage",
        detail={"action": "deploy", "gate": "freeze payment-run-utrecht"},
    )
    audit.refused(ALICE, AuditAction.EMERGENCY_OVERRIDE, "role board may not", member="utrecht")
    audit.record(
        ALICE,
        AuditAction.MAINTENANCE_SKIPPED,
        outcome=Outcome.FAILED,
        detail={"job": "patch-lab-2", "hosts": ["lab-2"], "why": "missed"},
    )
    audit.record(ALICE, AuditAction.DEPLOY, member="amsterdam", outcome=Outcome.ACCEPTED)
    targets = [
        target("ops", events=ALL),
        target(
            "amsterdam-itsm",
            events=("run.finished", "emergency.override"),
            members=("amsterdam",),
            run_statuses=("failed", "interrupted"),
        ),
    ]
    scanner = Scanner(engine, fleet, gate, targets)
    assert scanner.scan() == 6
    assert scanner.scan() == 0  # the same records, seen again
    assert Scanner(engine, fleet, gate, targets).scan() == 0  # and after a restart
    store = DeliveryStore(engine)
    found = {(d.target, d.event_key): d for d in store.list()}
    runs_seen = {k for t, k in found if t == "ops" and k.startswith("run:")}
    assert runs_seen == {f"run:{failed}", f"run:{good}", f"run:{canceled}"}
    assert {k for t, k in found if t == "amsterdam-itsm"} == {f"run:{failed}"}
    assert sorted(d.event_type for d in found.values() if d.target == "ops") == [
        "emergency.override",
        "maintenance.skipped",
        "run.finished",
        "run.finished",
        "run.finished",
    ]
    mine = found[("amsterdam-itsm", f"run:{failed}")]
    assert mine.status is DeliveryStatus.PENDING and mine.attempts == 0
    assert mine.payload["type"] == "run.finished"
    assert mine.payload["data"]["members"] == ["amsterdam"]
    assert mine.payload["data"]["status"] == "failed"
    skipped = next(d for d in found.values() if d.event_type == "maintenance.skipped")
    placed = sorted({i.member for i in fleet.instances() if i.host == "lab-2"})
    assert skipped.payload["data"]["members"] == placed


def test_runs_that_ended_while_serve_was_down_are_seen_and_stale_news_is_not(
    engine: Engine, fleet: Fleet, gate: Gate
) -> None:
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=3)
    clock = Clock(start)
    runs = RunStore(engine, clock=clock)
    scanner = Scanner(engine, fleet, gate, [target("ops", events=("run.finished",))], clock=clock)
    assert scanner.scan() == 0
    assert DeliveryStore(engine).watermark(WATERMARK) == start
    # serve stops; a day and a half later a CLI run ends, and another half a day later.
    clock.at = start + timedelta(hours=36)
    stale = finished(runs, "amsterdam", RunStatus.SUCCESSFUL)
    clock.at = start + timedelta(hours=60)
    fresh = finished(runs, "utrecht", RunStatus.INTERRUPTED)
    # serve starts again a day after that: only the last MAX_CATCH_UP is news.
    clock.at = start + timedelta(hours=60) + MAX_CATCH_UP - LOOKBACK - timedelta(minutes=1)
    assert Scanner(engine, fleet, gate, scanner.targets, clock=clock).scan() == 1
    [sent] = DeliveryStore(engine).list()
    assert sent.event_key == f"run:{fresh}" != f"run:{stale}"
    assert sent.payload["data"]["status"] == "interrupted"
    # A run whose end was written just before the watermark (a late commit, a node whose
    # clock lags) is still seen on the next scan.
    lagging = RunStore(engine, clock=lambda: clock.at - LOOKBACK / 2)
    late = finished(lagging, "rotterdam", RunStatus.FAILED)
    assert scanner.scan() == 1
    assert {d.event_key for d in DeliveryStore(engine).list()} == {f"run:{fresh}", f"run:{late}"}


def test_window_edges_are_told_once_as_they_pass(engine: Engine, fleet: Fleet, gate: Gate) -> None:
    clock = Clock(MONDAY)
    wants = [
        target("lab-1-watch", events=("window.opened", "window.closed"), members=("amsterdam",))
    ]
    placed = {i.member for i in fleet.instances() if i.host == "lab-1"}
    assert "amsterdam" in placed
    scanner = Scanner(engine, fleet, gate, wants, clock=clock)
    assert scanner.scan() == 0
    seen: list[tuple[str, str]] = []

    def step(minutes: int) -> int:
        clock.at += timedelta(minutes=minutes)
        added = scanner.scan()
        seen[:] = [
            (d.event_type, d.payload["data"]["window"]) for d in DeliveryStore(engine).list()
        ]
        return added

    assert step(59) == 0  # 03:59Z
    assert step(1) == 1  # 04:00Z: the edge itself counts
    assert seen == [("window.opened", "patch-lab-1")]
    assert step(1) == 0
    assert step(119) == 1  # 06:00Z
    assert seen[0] == ("window.closed", "patch-lab-1")
    [opened] = DeliveryStore(engine).list(target="lab-1-watch", limit=2)[1:]
    assert opened.payload["timestamp"] == "2026-11-23T04:00:00Z"
    assert opened.payload["data"]["start_local"] == "2026-11-23T05:00:00+01:00"
    assert opened.payload["data"]["members"] == ["amsterdam"]


def test_a_claim_is_exclusive_and_the_watermark_never_goes_back(engine: Engine) -> None:
    store = DeliveryStore(engine)
    now = datetime.now(UTC)
    new = NewDelivery("ops", "run:x", "run.finished", None, {"type": "run.finished"})
    assert store.add([new, new], now) == 1
    assert store.add([new], now) == 0
    [due] = store.due(now)
    assert store.claim(due, now + timedelta(minutes=1))
    assert not store.claim(due, now + timedelta(minutes=1))  # a second sender loses
    assert store.due(now) == []
    store.set_watermark("k", now)
    store.set_watermark("k", now - timedelta(hours=1))
    assert store.watermark("k") == now


def test_the_cli_and_the_admin_api_list_deliveries_by_status(
    engine: Engine, cli: Callable[..., tuple[int, str, str]], tmp_path: Path
) -> None:
    store = DeliveryStore(engine)
    now = datetime.now(UTC)
    payload = {"type": "run.finished", "data": {"run": "x"}}
    store.add([NewDelivery(t, "run:x", "run.finished", "amsterdam", payload) for t in "ab"], now)
    done = next(d for d in store.due(now) if d.target == "b")
    store.record(done.id, at=now, http_status=204, error=None, delivered=True, next_attempt=None)
    code, out, _ = cli("notifications", "list", "--status", "pending", "--json")
    assert code == 0
    [shown] = json.loads(out)
    assert (shown["target"], shown["status"], shown["attempts"]) == ("a", "pending", 0)
    assert shown["payload"] == payload
    code, out, _ = cli("notifications", "list", "--status", "delivered")
    assert code == 0 and "204" in out and done.id[:12] in out
    code, out, err = cli("notifications", "list", "--status", "sent")
    assert (code, out) == (2, "")
    assert err.strip() == "error: status: 'sent' is not one of pending, delivered, failed"
    if engine.dialect.name != "sqlite":
        return
    api = build_api(tmp_path / "api", database_url=engine.url.render_as_string(False))
    try:
        answer = api.get("/api/v1/notifications?status=delivered")
        assert answer.status_code == 200
        assert [(d["id"], d["last_http_status"]) for d in answer.json()] == [(done.id, 204)]
        assert api.get("/api/v1/notifications", who="engineer").status_code == 403
    finally:
        api.client.close()
        api.ctx.close()


def test_a_delivery_for_a_target_no_longer_configured_is_failed_not_sent(engine: Engine) -> None:
    from controlplane.notify.delivery import Sender

    store = DeliveryStore(engine)
    now = datetime.now(UTC)
    store.add([NewDelivery("gone", "run:x", "run.finished", None, {"type": "run.finished"})], now)
    sender = Sender(engine, [], {})
    try:
        assert sender.dispatch() == []
    finally:
        sender.close()
    [d] = store.list()
    assert (d.status, d.attempts) == (DeliveryStatus.FAILED, 0)
    assert d.last_error == "target gone is no longer in notifications.yml"
