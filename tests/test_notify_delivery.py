"""Webhook delivery for real: serve's scheduler job scans a real store and POSTs to a
receiver on loopback, which checks every signature with the standardwebhooks library.

A failing receiver gets the same delivery again (same webhook-id) until it answers 2xx;
a hanging one costs the sender one attempt's timeout and the run nothing; a restart of
serve picks up what is still pending, also an attempt a dead node had claimed.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import Engine
from standardwebhooks import Webhook

from controlplane.deploy.model import RunKind, RunSpec, RunStatus
from controlplane.deploy.plan import DeployRequest, Planner
from controlplane.fleet.loader import load_fleet
from controlplane.fleet.model import Fleet
from controlplane.notify.backoff import Backoff
from controlplane.notify.config import Target
from controlplane.notify.delivery import Sender
from controlplane.notify.scanner import Scanner
from controlplane.notify.secrets import Signer
from controlplane.notify.service import Notifier
from controlplane.notify.store import Delivery, DeliveryStatus, DeliveryStore
from controlplane.scheduler import build_scheduler
from controlplane.schemas.notifications import DeliveryOut
from controlplane.store.runs import RunStore
from controlplane.windows.loader import load_gate
from tests.conftest import LAB
from tests.test_engine_core import ScriptedRunner, make_engine

SECRET = "whsec_" + base64.b64encode(os.urandom(32)).decode()
# Retries in a tenth of a second instead of seconds to an hour; nothing else differs.
FAST = Backoff(first=timedelta(seconds=0.1), factor=2, cap=timedelta(seconds=0.3), jitter=0)


@dataclass
class Received:
    headers: dict[str, str]
    payload: dict[str, Any]
    answer: int


@dataclass
class Receiver:
    """A webhook receiver as a user would write one: verify, then answer."""

    url: str = ""
    received: list[Received] = field(default_factory=list)
    fail_next: int = 0  # answer 503 to this many requests
    hang: bool = False  # hold every request until released
    released: threading.Event = field(default_factory=threading.Event)
    hanging: threading.Event = field(default_factory=threading.Event)

    def handle(self, headers: dict[str, str], body: bytes) -> int:
        # Raises (and so fails the test) on a bad or missing signature.
        payload = Webhook(SECRET).verify(body, headers)
        if self.hang:
            self.hanging.set()
            self.released.wait(30)
            return 200
        answer = 200
        if self.fail_next > 0:
            self.fail_next -= 1
            answer = 503
        self.received.append(Received(headers, payload, answer))
        return answer


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            try:
                code = state.handle(dict(self.headers.items()), body)
            except Exception:
                code = 400
            try:
                self.send_response(code)
                self.send_header("content-length", "0")
                self.end_headers()
            except OSError:
                pass  # the sender gave up waiting

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/cp"
    yield state
    state.released.set()
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def fleet() -> Fleet:
    return load_fleet(LAB)


def notifier(engine: Engine, fleet: Fleet, url: str, *, timeout: float = 2.0) -> Notifier:
    target = Target(
        name="ops",
        url=url,
        events=("run.finished",),  # type: ignore[arg-type]
        secret_env="CP_WEBHOOK_OPS_SECRET",
    )
    scanner = Scanner(engine, fleet, load_gate(LAB, fleet), [target])
    sender = Sender(engine, [target], {"ops": Signer(SECRET)}, backoff=FAST, timeout=timeout)
    return Notifier(scanner, sender, interval=0.1)


@pytest.fixture
def running() -> Iterator[Callable[[Notifier, Engine], BackgroundScheduler]]:
    """Start a notifier the way serve does: a job on the persistent scheduler."""
    started: list[BackgroundScheduler] = []

    def start(n: Notifier, engine: Engine) -> BackgroundScheduler:
        scheduler = build_scheduler(engine)
        n.install(scheduler)
        scheduler.start()
        started.append(scheduler)
        return scheduler

    yield start
    for scheduler in started:
        if scheduler.running:
            scheduler.shutdown(wait=True)


def wait_for(what: str, check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def finish_run(store: RunStore, member: str, status: RunStatus) -> str:
    run = store.create(
        RunSpec(
            kind=RunKind.DEPLOY,
            playbook="deploy.yml",
            started_by="alice@cp1",
            member=member,
            app="uitkering",
            version="1.1.0",
            hosts=("lab-1",),
        )
    )
    store.transition(run.id, RunStatus.RUNNING)
    store.transition(run.id, status)
    return run.id


def delivery_of(engine: Engine, run_id: str) -> Delivery | None:
    found = [d for d in DeliveryStore(engine).list() if d.event_key == f"run:{run_id}"]
    return found[0] if found else None


def test_a_signed_delivery_is_retried_after_503s_until_it_is_delivered(
    sql: Engine,
    fleet: Fleet,
    receiver: Receiver,
    running: Callable[[Notifier, Engine], BackgroundScheduler],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    runs = RunStore(sql)
    running(notifier(sql, fleet, receiver.url), sql)
    first = finish_run(runs, "amsterdam", RunStatus.SUCCESSFUL)
    wait_for("the first run's notification", lambda: delivery_of(sql, first) is not None)
    wait_for("it to be delivered", lambda: getattr(delivery_of(sql, first), "attempts", 0) == 1)
    [got] = receiver.received
    assert got.payload["type"] == "run.finished"
    assert got.payload["data"]["run"] == first
    assert got.payload["data"]["status"] == "successful"
    assert got.headers["content-type"] == "application/json"

    receiver.fail_next = 2
    second = finish_run(runs, "rotterdam", RunStatus.FAILED)

    def delivered() -> bool:
        d = delivery_of(sql, second)
        return d is not None and d.status is DeliveryStatus.DELIVERED

    wait_for("the second run's notification, after two 503s", delivered)
    d = delivery_of(sql, second)
    assert d is not None
    assert (d.attempts, d.last_http_status, d.last_error) == (3, 200, None)
    tries = [r for r in receiver.received if r.payload["data"]["run"] == second]
    assert [r.answer for r in tries] == [503, 503, 200]
    # One message, three attempts: the same webhook-id, each signed at its own time.
    assert {r.headers["webhook-id"] for r in tries} == {d.id}
    assert tries[0].payload == tries[2].payload
    first_delivery = delivery_of(sql, first)
    assert first_delivery is not None and first_delivery.attempts == 1
    # The logs say what happened by target name: no secret, not even the URL.
    assert "attempt 2 failed (HTTP 503)" in caplog.text
    assert SECRET not in caplog.text and receiver.url not in caplog.text
    stored = [DeliveryOut.of(d).model_dump_json() for d in DeliveryStore(sql).list()]
    assert not any(SECRET in row or receiver.url in row for row in stored)


def test_a_hanging_receiver_does_not_slow_a_run(
    sql: Engine,
    fleet: Fleet,
    receiver: Receiver,
    running: Callable[[Notifier, Engine], BackgroundScheduler],
    tmp_path: Path,
) -> None:
    """The run goes through the real engine and store while the sender waits on a receiver
    that does not answer (ansible itself is played by a stand-in: it is not the subject)."""
    runs = RunStore(sql)
    receiver.hang = True
    running(notifier(sql, fleet, receiver.url, timeout=2.0), sql)
    finish_run(runs, "amsterdam", RunStatus.FAILED)
    assert receiver.hanging.wait(5), "the receiver never got the first notification"

    engine = make_engine(runs, ScriptedRunner([("successful", 0, True)]), tmp_path)
    [spec] = Planner(fleet, runs).plan_deploy(DeployRequest("utrecht", app="uitkering"))
    began = time.monotonic()
    run = engine.execute(engine.submit(spec).id)
    took = time.monotonic() - began
    assert run.status is RunStatus.SUCCESSFUL
    # Far less than the receiver has been kept waiting, and the attempt is still open.
    assert took < 1.0, f"the run took {took:.2f} s"
    assert not receiver.released.is_set()
    pending = [d for d in DeliveryStore(sql).list() if d.attempts == 0]
    assert pending, "the hanging attempt was already recorded"

    def timed_out() -> bool:
        return any(d.last_error == "no answer within 2 s" for d in DeliveryStore(sql).list())

    wait_for("the hanging attempt to time out", timed_out, timeout=8)
    [failed] = [d for d in DeliveryStore(sql).list() if d.last_error]
    assert failed.status is DeliveryStatus.PENDING and failed.next_attempt_at is not None


def test_pending_deliveries_survive_a_restart_and_a_dead_nodes_claim_expires(
    sql: Engine,
    fleet: Fleet,
    receiver: Receiver,
    running: Callable[[Notifier, Engine], BackgroundScheduler],
) -> None:
    runs = RunStore(sql)
    before = notifier(sql, fleet, receiver.url)
    queued = finish_run(runs, "den-haag", RunStatus.CANCELED)
    claimed = finish_run(runs, "utrecht", RunStatus.INTERRUPTED)
    before.scanner.scan()  # serve scanned, then stopped before sending anything
    before.close()
    store = DeliveryStore(sql)
    now = datetime.now(UTC)
    dead = next(d for d in store.due(now) if d.event_key == f"run:{claimed}")
    # Another node claimed this one and died mid-send: its claim runs out shortly.
    assert store.claim(dead, now + timedelta(seconds=0.5))
    running(notifier(sql, fleet, receiver.url), sql)

    def both_delivered() -> bool:
        found = store.list()
        return len(found) == 2 and all(d.status is DeliveryStatus.DELIVERED for d in found)

    wait_for("both notifications delivered", both_delivered)
    # Sent side by side when both are due at the first look: in either order.
    assert sorted(r.payload["data"]["run"] for r in receiver.received) == sorted([queued, claimed])
    assert [d.attempts for d in store.list()] == [1, 1]
    assert json.dumps([r.payload for r in receiver.received]).count(SECRET) == 0
