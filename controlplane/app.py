"""Wiring: the one place that builds settings, the fleet and the store together."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from sqlalchemy import Engine as SqlEngine

from controlplane.clock import utc_now
from controlplane.costs.history import ReservationHistory
from controlplane.deploy.engine import Engine, EngineConfig
from controlplane.deploy.model import Run, RunKind
from controlplane.deploy.plan import Planner
from controlplane.fleet.inventory import RenderContext
from controlplane.fleet.loader import load_fleet
from controlplane.fleet.model import Fleet
from controlplane.maintenance.loader import load_jobs
from controlplane.maintenance.schedule import Maintenance, Silence
from controlplane.settings import PLAYBOOKS_DIR, Settings
from controlplane.store.db import make_engine, migrate
from controlplane.store.runs import RunStore
from controlplane.windows.gate import Gate
from controlplane.windows.loader import load_gate


@dataclass
class Context:
    """Lazily built dependencies for one CLI invocation or one service process."""

    settings: Settings
    _engine: SqlEngine | None = field(default=None, init=False)
    recovered: list[Run] = field(default_factory=list, init=False)

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

    @cached_property
    def deployer(self) -> Engine:
        """The deploy engine; building it first recovers runs a dead process left behind."""
        s = self.settings
        engine = Engine(
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
            on_success=self._record_reservations,
        )
        self.recovered = engine.recover()
        return engine

    def _record_reservations(self, run: Run) -> None:
        """After a successful deploy the fleet's reservations are what members pay for."""
        if run.kind is RunKind.DEPLOY and not run.params.get("check"):
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
        )

    @cached_property
    def planner(self) -> Planner:
        return Planner(self.fleet, self.runs)

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
