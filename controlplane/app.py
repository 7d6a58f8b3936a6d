"""Wiring: the one place that builds settings, the fleet and the store together."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine as SqlEngine

from controlplane.access.store import TokenStore
from controlplane.audit.store import AuditLog
from controlplane.clock import utc_now
from controlplane.costs.history import ReservationHistory
from controlplane.deploy.declared import record_declared
from controlplane.deploy.engine import Engine, EngineConfig
from controlplane.deploy.history import is_plan
from controlplane.deploy.model import Run, RunKind
from controlplane.deploy.plan import Planner
from controlplane.fleet.inventory import RenderContext
from controlplane.fleet.loader import load_fleet
from controlplane.fleet.model import Fleet
from controlplane.maintenance.loader import load_jobs
from controlplane.maintenance.schedule import Maintenance, Silence
from controlplane.preflight import RunPreflight
from controlplane.settings import PLAYBOOKS_DIR, Settings, load_settings
from controlplane.store.db import make_engine, migrate
from controlplane.store.runs import RunStore
from controlplane.windows.gate import Gate
from controlplane.windows.loader import load_gate

if TYPE_CHECKING:
    from controlplane.service import Service


@dataclass
class Context:
    """Lazily built dependencies for one CLI invocation or one service process."""

    settings: Settings
    _engine: SqlEngine | None = field(default=None, init=False)

    @cached_property
    def fleet(self) -> Fleet:
        return load_fleet(self.settings.resolved_fleet)

    @property
    def data_dir(self) -> Path:
        path = self.settings.resolved_data_dir
        path.mkdir(parents=True, exist_ok=True)
        return path

    @cached_property
    def render_context(self) -> RenderContext:
        return RenderContext(
            data_dir=self.settings.resolved_data_dir,
            local_python=self.settings.python_interpreter or sys.executable,
        )

    @property
    def engine(self) -> SqlEngine:
        if self._engine is None:
            if self.settings.database_url is None:
                self.data_dir  # noqa: B018 - the SQLite file lives there
            engine = make_engine(self.settings.resolved_database_url)
            migrate(engine)
            self._engine = engine
        return self._engine

    @cached_property
    def runs(self) -> RunStore:
        return RunStore(self.engine)

    @property
    def audit(self) -> AuditLog:
        """The audit log; every operation that changes something writes to it."""
        return AuditLog(self.engine)

    @property
    def tokens(self) -> TokenStore:
        return TokenStore(self.engine)

    @cached_property
    def deployer(self) -> Engine:
        """The deploy engine. Building it has no side effect: recovering runs a dead process
        left behind is the explicit ``deploy.operations.recover_runs``."""
        s = self.settings
        return Engine(
            self.fleet,
            self.runs,
            EngineConfig(
                data_dir=self.data_dir,
                playbooks_dir=PLAYBOOKS_DIR,
                fleet_dir=s.resolved_fleet,
                vault_password_file=s.resolved_vault_password_file,
                artifact_retention=s.artifact_retention,
                run_timeout_seconds=s.run_timeout_seconds,
                strategy=s.strategy,
                health_timeout_seconds=s.health_timeout_seconds,
            ),
            self.render_context,
            gate=self.gate,
            on_success=self._after_success,
            # Key, known_hosts and vault files checked before the first play of every run.
            preflight=RunPreflight(self.fleet, s.resolved_fleet, s.resolved_vault_password_file),
        )

    def _after_success(self, run: Run) -> None:
        """A successful run: the fleet declares its version when asked to record it, and
        the reservations are what members pay for from now on."""
        try:
            record_declared(self, run)
        finally:
            self._record_reservations(run)

    def _record_reservations(self, run: Run) -> None:
        """After a successful deploy the fleet's reservations are what members pay for."""
        if run.kind is RunKind.DEPLOY and not is_plan(run):
            ReservationHistory(self.engine).record(self.fleet, run.finished_at or utc_now())

    @cached_property
    def gate(self) -> Gate:
        return load_gate(self.settings.resolved_fleet, self.fleet)

    @cached_property
    def maintenance(self) -> Maintenance:
        s = self.settings
        jobs = load_jobs(s.resolved_fleet, self.fleet, self.gate)
        return Maintenance(
            self.deployer,
            self.planner,
            self.gate,
            jobs,
            silence=Silence(s.alertmanager_url) if s.alertmanager_url else None,
            fleet_dir=str(s.resolved_fleet),
            audit=self.audit,
        )

    @cached_property
    def planner(self) -> Planner:
        return Planner(self.fleet, self.runs)

    def __enter__(self) -> Context:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None


def build_context(fleet: Path | None = None, **overrides: Any) -> Context:
    """The one way every edge (CLI, HTTP API, scheduler) builds its dependencies: settings
    from the environment and file, a fleet directory, and any explicit overrides."""
    return Context(load_settings(fleet=fleet, **overrides))


def build_service(ctx: Context) -> Service:
    """``serve``: the scheduler (probes, maintenance, queued deploys, run recovery) and the
    HTTP API with ``/metrics`` on one port, all over ``ctx``."""
    from functools import partial

    from controlplane.api.app import create_app
    from controlplane.deploy.operations import recover_runs
    from controlplane.deploy.runner import scrub_leftover_artifacts
    from controlplane.notify.service import build_notifier
    from controlplane.service import Service, ServiceConfig
    from controlplane.uptime.operations import calendar

    s = ctx.settings
    # Whatever a crash left behind: runner's copy of the environment may hold secrets.
    scrub_leftover_artifacts(ctx.data_dir / "runs")
    config = ServiceConfig(
        address=s.metrics_address,
        port=s.metrics_port,
        probe_interval=s.probe_interval_seconds,
        probe_timeout=s.probe_timeout_seconds,
        retention=timedelta(hours=s.probe_retention_hours),
    )
    return Service(
        ctx.fleet,
        ctx.engine,
        config,
        calendar=calendar(ctx),
        # Webhook notifications: every target's secret is read here, so a missing one
        # stops serve at start (exit 2) rather than at the first event.
        extensions=[ctx.maintenance, build_notifier(ctx)],
        api=partial(create_app, ctx),
        recover=lambda: recover_runs(ctx),
    )
