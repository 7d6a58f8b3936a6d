"""``controlplane serve``: the real scheduler, probe rounds and /metrics, in-process and as
the CLI process, and its clean shutdown on SIGTERM and SIGINT."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import Engine, text

from controlplane.access.policy import Role
from controlplane.access.store import TokenStore
from controlplane.fleet.loader import load_fleet
from controlplane.scheduler import add_job, build_scheduler, run_registered, unregister
from controlplane.service import PROBE_JOB, RETENTION_JOB, Service, ServiceConfig
from controlplane.store.db import make_engine, migrate
from tests.fleet_files import write_fleet
from tests.test_uptime_probes import FakeApp, tiny_fleet

CLI = str(Path(sys.executable).parent / "controlplane")
SUCCESS = re.compile(rb'^controlplane_probe_success\{[^}]*host="(h\d)"[^}]*\} (\S+)$', re.M)


def get(url: str, timeout: float = 5.0, token: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_for(what: str, check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def probe_success(metrics: bytes) -> dict[str, float]:
    return {h.decode(): float(v) for h, v in SUCCESS.findall(metrics)}


@pytest.fixture
def apps() -> Iterator[list[FakeApp]]:
    started = [FakeApp("127.0.40.4"), FakeApp("127.0.40.5")]
    yield started
    for a in started:
        a.stop()


def test_service_probes_on_schedule_and_serves_metrics(apps: list[FakeApp], sql: Engine) -> None:
    config = ServiceConfig(address="127.0.0.1", port=0, probe_interval=0.5, probe_timeout=1.0)
    calls: list[str] = []

    class Extension:  # what maintenance scheduling plugs in
        def install(self, scheduler: BaseScheduler) -> None:
            calls.append("install" if not scheduler.running else "install after start")

        def sync(self) -> None:
            calls.append("sync" if service.scheduler is not None else "sync before start")

    service = Service(tiny_fleet(apps), sql, config, extensions=[Extension()])
    service.start()
    assert calls == ["install", "sync"]
    try:
        host, port = service.address
        url = f"http://{host}:{port}"
        wait_for(
            "both instances probed up",
            lambda: probe_success(get(f"{url}/metrics")[1]) == {"h0": 1.0, "h1": 1.0},
        )
        apps[1].stop()
        wait_for("h1 probed down", lambda: probe_success(get(f"{url}/metrics")[1]).get("h1") == 0.0)
        assert get(f"{url}/healthz") == (200, b'{"status":"ok"}')
        assert json.loads(get(f"{url}/readyz")[1])["status"] == "ready"
        assert get(f"{url}/nothing")[0] == 404
        with sql.connect() as conn:
            jobs = set(conn.execute(text("SELECT id FROM apscheduler_jobs")).scalars())
        assert jobs == {PROBE_JOB, RETENTION_JOB}
    finally:
        started = time.monotonic()
        service.stop()
    assert time.monotonic() - started < 5
    # Stopped means stopped: nothing listens, nothing probes.
    with pytest.raises(OSError):
        socket.create_connection((host, port), timeout=1)
    rounds = service.store.samples(service.clock() - timedelta(minutes=5))
    time.sleep(1.0)
    assert len(service.store.samples(service.clock() - timedelta(minutes=5))) == len(rounds)


def test_scheduler_persists_jobs_by_name_and_replaces_them(engine: Engine) -> None:
    ran = threading.Event()
    scheduler = build_scheduler(engine)
    add_job(scheduler, "test.tick", ran.set, IntervalTrigger(seconds=0.2))
    scheduler.start()
    try:
        assert ran.wait(5)
    finally:
        scheduler.shutdown(wait=True)
    # A second process start replaces the job instead of adding a second one.
    again = build_scheduler(engine)
    add_job(again, "test.tick", lambda: None, IntervalTrigger(seconds=60))
    again.start(paused=True)
    try:
        [job] = again.get_jobs()
        assert job.id == "test.tick" and job.args == ("test.tick",)
        assert job.trigger.interval == timedelta(seconds=60)
        again.remove_job("test.tick")
    finally:
        again.shutdown(wait=False)
        unregister("test.tick")
    run_registered("test.tick")  # no implementation here any more: logged, not raised


def issue_token(env: dict[str, str], role: Role) -> str:
    """A real token in the database ``serve`` will use (created before it starts)."""
    engine = make_engine(env["CONTROLPLANE_DATABASE_URL"])
    try:
        migrate(engine)
        known = [m.slug for m in load_fleet(Path(env["CONTROLPLANE_FLEET"])).members]
        _, secret = TokenStore(engine).create(
            role=role, lifetime=timedelta(hours=1), created_by="test", known_members=known
        )
    finally:
        engine.dispose()
    return secret


def write_env(tmp_path: Path, apps: list[FakeApp]) -> dict[str, str]:
    fleet_dir = write_fleet(tiny_fleet(apps), tmp_path / "fleet")
    return {
        **os.environ,
        "CONTROLPLANE_DATA_DIR": str(tmp_path / "var"),
        "CONTROLPLANE_DATABASE_URL": f"sqlite:///{tmp_path / 'serve.db'}",
        "CONTROLPLANE_FLEET": str(fleet_dir),
        "CONTROLPLANE_PROBE_INTERVAL_SECONDS": "0.5",
        "CONTROLPLANE_PROBE_TIMEOUT_SECONDS": "1",
    }


class ServeProcess:
    """``controlplane serve`` as a child process on a free loopback port."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.proc = subprocess.Popen(
            [CLI, "serve", "--address", "127.0.0.1", "--port", "0", *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.lines: list[str] = []
        self._ready = threading.Event()
        self.url = ""
        threading.Thread(target=self._read, daemon=True).start()
        if not self._ready.wait(30):
            self.proc.kill()
            raise AssertionError("serve did not start:\n" + "".join(self.lines))

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            line = raw.decode(errors="replace")
            self.lines.append(line)
            m = re.search(r"serving (http://\S+)/metrics", line)
            if m:
                self.url = m.group(1)
                self._ready.set()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_serve_command_stops_cleanly_on_signals(
    apps: list[FakeApp], tmp_path: Path, sig: int
) -> None:
    env = write_env(tmp_path, apps)
    token = issue_token(env, Role.METRICS)
    admin = issue_token(env, Role.ADMIN)
    serve = ServeProcess(env)
    try:
        wait_for(
            "instances probed up",
            lambda: (
                probe_success(get(f"{serve.url}/metrics", token=token)[1]) == {"h0": 1.0, "h1": 1.0}
            ),
        )
        assert get(f"{serve.url}/metrics")[0] == 401
        # The API is served on the same port, by the same process.
        status, members = get(f"{serve.url}/api/v1/members", token=admin)
        assert status == 200 and "amsterdam" in {m["member"] for m in json.loads(members)}
        assert get(f"{serve.url}/api/v1/members", token=token)[0] == 403
        body = get(f"{serve.url}/metrics", token=token)[1]
        assert b"process_cpu_seconds_total" in body
        assert (
            b'controlplane_availability_ratio{app="uitkering",member="amsterdam",period="1h"} 1.0'
            in body
        )
    finally:
        started = time.monotonic()
        code = serve.stop(sig)
    assert code == 0, "".join(serve.lines)
    assert time.monotonic() - started < 10
    assert f"stopped on {signal.Signals(sig).name}" in "".join(serve.lines)
    assert "Traceback" not in "".join(serve.lines)


def test_serve_on_a_taken_port_is_one_line_and_exit_4(apps: list[FakeApp], tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run(
            [CLI, "serve", "--address", "127.0.0.1", "--port", str(port)],
            env=write_env(tmp_path, apps),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert proc.returncode == 4, proc.stderr
    assert (
        proc.stderr.strip().splitlines()[-1].startswith(f"error: cannot listen on 127.0.0.1:{port}")
    )
    assert "Traceback" not in proc.stderr
