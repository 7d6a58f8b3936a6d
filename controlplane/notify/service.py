"""Notifications in ``serve``: one scheduler job that scans and hands due deliveries to
the sender's own threads.

The job is local (every node runs it, none persists it): two nodes scanning the same
records insert each delivery once (unique target and event key), and a delivery is
claimed before it is sent, so it is sent once per attempt. Pending deliveries live in the
database, so a restart of ``serve`` picks them up where it left off.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from apscheduler.events import EVENT_SCHEDULER_SHUTDOWN, SchedulerEvent
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy.exc import SQLAlchemyError

from controlplane.clock import utc_now
from controlplane.errors import ControlPlaneError
from controlplane.notify.backoff import Backoff
from controlplane.notify.config import load_targets
from controlplane.notify.delivery import DEFAULT_TIMEOUT, Sender
from controlplane.notify.scanner import Scanner
from controlplane.notify.secrets import signers
from controlplane.scheduler import add_job, unregister

if TYPE_CHECKING:
    from controlplane.app import Context

log = logging.getLogger(__name__)

TICK_JOB = "notify.tick"
INTERVAL_SECONDS = 2.0


class Notifier:
    """A ``SchedulerExtension`` for ``Service``: scan, then send what is due."""

    def __init__(
        self, scanner: Scanner, sender: Sender, *, interval: float = INTERVAL_SECONDS
    ) -> None:
        self.scanner = scanner
        self.sender = sender
        self.interval = interval

    def tick(self) -> None:
        try:
            self.scanner.scan()
        except (SQLAlchemyError, ControlPlaneError) as exc:
            # The next tick scans the same span again: nothing is lost by skipping one.
            log.warning("notifications: scan failed: %s", type(exc).__name__)
        try:
            self.sender.dispatch()
        except (SQLAlchemyError, ControlPlaneError) as exc:
            log.warning("notifications: dispatch failed: %s", type(exc).__name__)

    def install(self, scheduler: BaseScheduler) -> None:
        # httpx logs every request's URL at INFO; a URL is configuration, not log material.
        logging.getLogger("httpx").setLevel(logging.WARNING)
        assert isinstance(scheduler, BackgroundScheduler)
        add_job(
            scheduler,
            TICK_JOB,
            self.tick,
            IntervalTrigger(seconds=self.interval),
            next_run_time=utc_now(),
            misfire_grace_time=max(1, int(self.interval)),
            local=True,
        )
        scheduler.add_listener(self._stopped, EVENT_SCHEDULER_SHUTDOWN)

    def sync(self) -> None:
        """Nothing is stored in the scheduler to bring in line."""

    def _stopped(self, _event: SchedulerEvent) -> None:
        self.close()

    def close(self) -> None:
        unregister(TICK_JOB)
        self.sender.close()


def build_notifier(
    ctx: Context,
    *,
    backoff: Backoff | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    interval: float = INTERVAL_SECONDS,
    clock: Callable[[], datetime] = utc_now,
) -> Notifier:
    """The notifier over ``ctx``'s fleet and database. Every target's secret is read now:
    a missing or malformed one is one ``InvalidInput`` line naming the target."""
    s = ctx.settings
    targets = load_targets(s.resolved_fleet, ctx.fleet)
    keys = signers(targets, s.resolved_fleet, s.resolved_vault_password_file)
    scanner = Scanner(ctx.engine, ctx.fleet, ctx.gate, targets, clock=clock)
    sender = Sender(ctx.engine, targets, keys, backoff=backoff, timeout=timeout, clock=clock)
    return Notifier(scanner, sender, interval=interval)
