"""The probe and availability metric families (composed by ``controlplane.metrics``)."""

from __future__ import annotations

from datetime import datetime, timedelta

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from controlplane.fleet.model import Fleet
from controlplane.uptime.availability import Period
from controlplane.uptime.store import ProbeStore
from controlplane.uptime.summary import UptimeReader, availabilities

PROBE_LABELS = ["member", "app", "host", "port"]


class UptimeMetrics:
    """Last probe per instance, probe counters, and availability per member, app, period.

    Only instances and apps placed in the fleet are exported, so labels stay bounded even
    when the store remembers instances that have since moved.
    """

    def __init__(self, fleet: Fleet, store: ProbeStore, probe_interval: float = 30.0) -> None:
        self.fleet = fleet
        self.store = store
        self.reader = UptimeReader(store)
        # A probe older than this is no longer the instance's state: its series disappear.
        self.lookback = timedelta(seconds=max(300.0, 3 * probe_interval))
        self.placed = {(i.member, i.app, i.host, i.port) for i in fleet.instances()}
        self.apps = [(s.member, sa.app) for s in fleet.stacks for sa in s.apps]

    def families(self, now: datetime) -> list[Metric]:
        """Every probe and availability family, read from the store now."""
        success = GaugeMetricFamily(
            "controlplane_probe_success",
            "1 when the instance's last probe answered healthy, else 0.",
            labels=PROBE_LABELS,
        )
        in_window = GaugeMetricFamily(
            "controlplane_probe_in_window",
            "1 when the instance's last probe was taken inside a maintenance window.",
            labels=PROBE_LABELS,
        )
        latency = GaugeMetricFamily(
            "controlplane_probe_duration_seconds",
            "How long the instance's last probe took.",
            labels=PROBE_LABELS,
        )
        last_round = GaugeMetricFamily(
            "controlplane_probe_last_timestamp_seconds",
            "When the fleet was last probed by any control-plane node (Unix time).",
        )
        for key, s in sorted(self.store.latest(now - self.lookback).items()):
            if key not in self.placed:
                continue
            labels = [s.member, s.app, s.host, str(s.port)]
            success.add_metric(labels, int(s.healthy))
            in_window.add_metric(labels, int(s.in_window))
            latency.add_metric(labels, s.latency_seconds)
        newest = self.store.last_probe_at()
        if newest is not None:
            last_round.add_metric([], newest.timestamp())

        counts = self.reader.counts(now)
        probes = CounterMetricFamily(
            "controlplane_probes",
            "Probes taken, by result and by whether a maintenance window covered the instance.",
            labels=["member", "app", "result", "in_window"],
        )
        for member, app in self.apps:
            c = counts.totals.get((member, app))
            good_w, bad_w = (c.good_in_window, c.in_window - c.good_in_window) if c else (0, 0)
            good, bad = (c.sla_good, c.sla_bad) if c else (0, 0)
            probes.add_metric([member, app, "success", "false"], good)
            probes.add_metric([member, app, "failure", "false"], bad)
            probes.add_metric([member, app, "success", "true"], good_w)
            probes.add_metric([member, app, "failure", "true"], bad_w)

        raw = GaugeMetricFamily(
            "controlplane_availability_ratio",
            "Good probes / all probes over the period.",
            labels=["member", "app", "period"],
        )
        sla = GaugeMetricFamily(
            "controlplane_sla_availability_ratio",
            "Availability over the period without the probes taken in maintenance windows.",
            labels=["member", "app", "period"],
        )
        budget = GaugeMetricFamily(
            "controlplane_error_budget_remaining_ratio",
            "(availability - SLO) / (1 - SLO) over the period: 1 untouched, below 0 overspent.",
            labels=["member", "app", "period"],
        )
        for a in availabilities(self.fleet, counts, tuple(Period)):
            labels = [a.member, a.app, a.period.value]
            if a.raw is not None:
                raw.add_metric(labels, a.raw)
            if a.sla is not None:
                sla.add_metric(labels, a.sla)
            if a.budget_remaining is not None:
                budget.add_metric(labels, a.budget_remaining)
        return [success, in_window, latency, last_round, probes, raw, sla, budget]
