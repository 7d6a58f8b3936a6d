"""``controlplane serve``: the long-running process.

It runs the scheduler (probe rounds every ``probe_interval_seconds``, sample retention
hourly, and, on this node only, keeping the metrics' closed-hour sums current) and serves
``/metrics`` (and ``/healthz``) over HTTP on a port of its own. It stops cleanly on SIGTERM
and SIGINT: the HTTP listener closes, a probe round in flight finishes, and the scheduler
shuts down.
"""

from __future__ import annotations

import logging
import signal
import socketserver
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import FrameType
from typing import Any, Protocol
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.triggers.interval import IntervalTrigger
from prometheus_client import CollectorRegistry, make_wsgi_app
from sqlalchemy import Engine

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

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class SchedulerExtension(Protocol):
    """More scheduled work for the service (e.g. ``controlplane.maintenance.Maintenance``)."""

    def install(self, scheduler: BaseScheduler) -> None:
        """Called before the scheduler starts."""

    def sync(self) -> None:
        """Called once the scheduler runs: bring the stored jobs in line."""


@dataclass(frozen=True)
class ServiceConfig:
    address: str = "127.0.0.1"
    port: int = 9480
    probe_interval: float = 30.0
    probe_timeout: float = 3.0
    retention: timedelta = timedelta(days=7)


def http_app(registry: CollectorRegistry) -> WsgiApp:
    """``/metrics`` from ``registry``, ``/healthz`` for the process itself, 404 elsewhere.

    The HTTP API can mount the same ``/metrics`` app when it arrives."""
    metrics = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == "/metrics":
            return metrics(environ, start_response)  # type: ignore[no-any-return]
        if path == "/healthz":
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"ok\n"]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found; try /metrics\n"]

    return app


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http: " + format, *args)


class Service:
    """The scheduler, the probe and retention jobs, and the metrics listener."""

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
    ) -> None:
        self.fleet = fleet
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
        self._http: WSGIServer | None = None
        self._http_thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        if self._http is None:
            raise RuntimeError("the service is not started")
        host, port = self._http.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        """Bind the listener first (a taken port fails fast), then start the scheduler."""
        try:
            self._http = make_server(
                self.config.address,
                self.config.port,
                http_app(self.registry),
                server_class=_ThreadingServer,
                handler_class=_QuietHandler,
            )
        except OSError as exc:
            where = f"{self.config.address}:{self.config.port}"
            raise Unreachable(f"cannot listen on {where}: {exc.strerror or exc}") from None
        self._http_thread = threading.Thread(
            target=self._http.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True
        )
        self._http_thread.start()
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
        for extension in self.extensions:
            extension.install(scheduler)
        scheduler.start()
        self.scheduler = scheduler
        for extension in self.extensions:
            extension.sync()

    def stop(self) -> None:
        """Close the listener, let a running job finish, stop the scheduler."""
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=True)
            self.scheduler = None
        for name in (PROBE_JOB, RETENTION_JOB, WARM_JOB):
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
