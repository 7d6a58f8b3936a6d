"""Wiring: the one place that builds settings, the fleet and the store together."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from sqlalchemy import Engine

from controlplane.fleet.inventory import RenderContext
from controlplane.fleet.loader import load_fleet
from controlplane.fleet.model import Fleet
from controlplane.settings import Settings
from controlplane.store.db import make_engine, migrate
from controlplane.store.runs import RunStore


@dataclass
class Context:
    """Lazily built dependencies for one CLI invocation or one service process."""

    settings: Settings
    _engine: Engine | None = field(default=None, init=False)

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
    def engine(self) -> Engine:
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

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
