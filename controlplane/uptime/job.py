"""The scheduled uptime work: a probe round over every instance, and sample retention."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from controlplane.clock import utc_now
from controlplane.fleet.model import Fleet, PlacedInstance
from controlplane.uptime.probes import ProbeResult, ProbeSample, probe_all
from controlplane.uptime.store import ProbeStore
from controlplane.uptime.windows import WindowCalendar, no_windows

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
Prober = Callable[[list[PlacedInstance], float, datetime], list[ProbeResult]]


def default_prober(
    instances: list[PlacedInstance], timeout: float, at: datetime
) -> list[ProbeResult]:
    # Probes wait on the network, not the CPU: many at once keep a round short even when
    # hundreds of instances time out.
    return probe_all(instances, timeout, at, workers=64)


@dataclass
class ProbeJob:
    """Probe every instance of the fleet once and store what was found.

    Several control-plane nodes may run this on the same store: a round first takes the
    store's round lock and skips when another node probed less than ``min_gap`` ago, so the
    fleet is probed about once per interval, not once per node.
    """

    fleet: Fleet
    store: ProbeStore
    timeout: float = 3.0
    min_gap: timedelta = timedelta(0)
    calendar: WindowCalendar = field(default_factory=no_windows)
    clock: Clock = utc_now
    prober: Prober = default_prober

    def run(self) -> list[ProbeSample] | None:
        """One round; None when another node holds the round or probed a moment ago."""
        instances = self.fleet.instances()
        if not instances:
            return []
        with self.store.round_lock() as mine:
            if not mine:
                log.debug("probe round skipped: another node is probing")
                return None
            at = self.clock()
            last = self.store.last_probe_at()
            if self.min_gap and last is not None and at - last < self.min_gap:
                log.debug("probe round skipped: probed %s ago", at - last)
                return None
            results = self.prober(instances, self.timeout, at)
            samples = [
                ProbeSample.of(r, at, self.calendar.in_window(i, at))
                for r, i in zip(results, instances, strict=True)
            ]
            self.store.record(samples)
        down = [s for s in samples if not s.healthy]
        log.info("probed %d instances, %d down", len(samples), len(down))
        return samples


@dataclass
class RetentionJob:
    """Delete raw samples older than the retention limit (hourly counts stay)."""

    store: ProbeStore
    retention: timedelta
    clock: Clock = utc_now

    def run(self) -> int:
        removed = self.store.expire(self.clock() - self.retention)
        if removed:
            log.info("expired %d probe samples older than %s", removed, self.retention)
        return removed
