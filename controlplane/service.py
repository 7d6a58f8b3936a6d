"""``controlplane serve``: the long-running process.

It runs the scheduler (probe rounds every ``probe_interval_seconds``, sample retention
hourly, and, on this node only, keeping the metrics' closed-hour sums current) and serves
one ASGI app (the HTTP API, ``/metrics``, ``/healthz``, ``/readyz``) with uvicorn on one
port. It stops cleanly on SIGTERM and SIGINT: the listener closes, requests in flight and a
probe round in flight finish, and the scheduler shuts down.
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import FrameType
from typing import Protocol

import uvicorn
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.triggers.interval import IntervalTrigger
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine
from starlette.types import ASGIApp

from controlplane.api.app import system_app
from controlplane.api.system import Readiness, readiness_check
from controlplane.clock import utc_now
from controlplane.errors import Unreachable
from controlplane.fleet.model import Fleet
from controlplane.metrics import ControlPlaneCollector, build_registry
from controlplane.scheduler import add_job, build_scheduler, unregister
from controlplane.uptime.job import ProbeJob, RetentionJob
from controlplane.uptime.store import ProbeStore
from controlplane.uptime.windows import WindowCalendar, no_windows

log = logging.getLogger(__name__)

PROBE_JOB = "uptime.probe"
RETENTION_JOB = "uptime.retention"
WARM_JOB = "metrics.prepare"
RECOVER_JOB = "runs.recover"
RECOVER_SECONDS = 30

# Requests in flight get this long to finish once a stop is asked for.
GRACEFUL_SECONDS = 5


class SchedulerExtension(Protocol):
    """More scheduled work for the service (e.g. ``controlplane.maintenance.Maintenance``)."""

    def install(self, scheduler: BaseScheduler) -> None:
        """Called before the scheduler starts."""

    def sync(self) -> None:
        """Called once the scheduler runs: bring the stored jobs in line."""


class ApiFactory(Protocol):
    """Builds the ASGI app to serve (``partial(api.app.create_app, ctx)``)."""

    def __call__(
        self, *, registry: CollectorRegistry, readiness: Callable[[], Readiness]
    ) -> ASGIApp: ...


@dataclass(frozen=True)
class ServiceConfig:
    address: str = "127.0.0.1"
    port: int = 9480
    probe_interval: float = 30.0
    probe_timeout: float = 3.0
    retention: timedelta = timedelta(days=7)


def _listen(address: str, port: int) -> socket.socket:
    """Bind before anything starts, so a taken port fails fast with one line."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise Unreachable(f"cannot listen on {address}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


class Service:
    """The scheduler, the probe and retention jobs, and the HTTP listener (the API factory's
    app, or only /healthz, /readyz and an open /metrics without one)."""

    def __init__(
        self,
        fleet: Fleet,
        engine: Engine,
        config: ServiceConfig,
        *,
        calendar: WindowCalendar | None = None,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], datetime] = utc_now,
        extensions: Sequence[SchedulerExtension] = (),
        api: ApiFactory | None = None,
        recover: Callable[[], object] | None = None,
    ) -> None:
        self.fleet = fleet
        # Marks runs whose owner died as interrupted and frees their locks; every node
        # runs it, as recovering a run twice is harmless.
        self.recover = recover
        self.extensions = tuple(extensions)
        self.engine = engine
        self.config = config
        self.calendar = calendar or no_windows()
        self.clock = clock
        self.store = ProbeStore(engine)
        self.collector = ControlPlaneCollector(
            fleet, engine, calendar=self.calendar, probe_interval=config.probe_interval, clock=clock
        )
        if registry is None:
            registry = build_registry(self.collector)
        else:
            registry.register(self.collector)
        self.registry = registry
        self.probe_job = ProbeJob(
            fleet,
            self.store,
            timeout=config.probe_timeout,
            # Another node that probed within half an interval has done this round.
            min_gap=timedelta(seconds=config.probe_interval / 2),
            calendar=self.calendar,
            clock=clock,
        )
        self.retention_job = RetentionJob(self.store, config.retention, clock=clock)
        self.scheduler: BackgroundScheduler | None = None
        factory = api or system_app
        self.app = factory(registry=registry, readiness=self.readiness)
        self._socket: socket.socket | None = None
        self._server: uvicorn.Server | None = None
        self._http_thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        if self._socket is None:
            raise RuntimeError("the service is not started")
        host, port = self._socket.getsockname()[:2]
        return str(host), int(port)

    def readiness(self) -> Readiness:
        """Database reachable, migrations current, scheduler running (``/readyz``)."""
        scheduler = self.scheduler
        return readiness_check(self.engine, lambda: scheduler is not None and scheduler.running)

    def _serve_http(self) -> None:
        self._socket = _listen(self.config.address, self.config.port)
        config = uvicorn.Config(
            self.app,
            log_config=None,  # the process's logging stays as the CLI set it up
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=GRACEFUL_SECONDS,
            server_header=False,
        )
        server = uvicorn.Server(config)
        self._server = server
        sockets = [self._socket]
        self._http_thread = threading.Thread(
            target=server.run, kwargs={"sockets": sockets}, name="http", daemon=True
        )
        self._http_thread.start()
        deadline = time.monotonic() + 10
        while not server.started and self._http_thread.is_alive():
            if time.monotonic() > deadline:
                raise Unreachable("the HTTP server did not start within 10 s")
            time.sleep(0.02)
        if not server.started:
            raise Unreachable("the HTTP server stopped while starting; see the log")

    def start(self) -> None:
        """Bind the listener first (a taken port fails fast), then start the scheduler."""
        self._serve_http()
        scheduler = build_scheduler(self.engine)
        now = self.clock()
        add_job(
            scheduler,
            PROBE_JOB,
            self.probe_job.run,
            IntervalTrigger(seconds=self.config.probe_interval),
            next_run_time=now,
            misfire_grace_time=max(1, int(self.config.probe_interval)),
        )
        add_job(
            scheduler,
            RETENTION_JOB,
            self.retention_job.run,
            IntervalTrigger(hours=1),
            next_run_time=now + timedelta(seconds=self.config.probe_interval),
            misfire_grace_time=3600,
        )
        # Keeps this node's closed-hour sums current, so no scrape pays for a new hour.
        add_job(
            scheduler,
            WARM_JOB,
            lambda: self.collector.uptime.prepare(self.clock()),
            IntervalTrigger(seconds=60),
            next_run_time=now,
            local=True,
        )
        if self.recover is not None:
            add_job(
                scheduler,
                RECOVER_JOB,
                self.recover,
                IntervalTrigger(seconds=RECOVER_SECONDS),
                next_run_time=now + timedelta(seconds=RECOVER_SECONDS),
                local=True,
            )
        for extension in self.extensions:
            extension.install(scheduler)
        scheduler.start()
        self.scheduler = scheduler
        for extension in self.extensions:
            extension.sync()

    def stop(self) -> None:
        """Close the listener, let a running job finish, stop the scheduler."""
        if self._server is not None:
            self._server.should_exit = True
            if self._http_thread is not None:
                self._http_thread.join(GRACEFUL_SECONDS + 5)
            self._server = None
            self._http_thread = None
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=True)
            self.scheduler = None
        for name in (PROBE_JOB, RETENTION_JOB, WARM_JOB, RECOVER_JOB):
            unregister(name)

    def run_until_signalled(self, on_started: Callable[[Service], None] | None = None) -> int:
        """Start, wait for SIGTERM or SIGINT, stop; returns the signal number."""
        stop = threading.Event()
        received: list[int] = []

        def handler(signum: int, _frame: FrameType | None) -> None:
            received.append(signum)
            stop.set()

        previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            self.start()
            if on_started is not None:
                on_started(self)
            while not stop.wait(0.5):
                pass
        finally:
            self.stop()
            for s, h in previous.items():
                signal.signal(s, h)
        return received[0] if received else 0
