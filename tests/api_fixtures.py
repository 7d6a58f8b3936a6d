"""The HTTP API over a real SQLite store and the lab fleet, with one real token per role.

Tokens are made by the real token store and checked by the real authenticator, so these
tests exercise the same path as a request to ``controlplane serve``.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, Counter

from controlplane.access.policy import Role
from controlplane.access.store import TokenStore
from controlplane.api.app import ROUTERS, create_app
from controlplane.api.system import Readiness, readiness_check
from controlplane.app import Context
from controlplane.settings import Settings
from controlplane.store.db import make_engine, migrate
from tests.conftest import LAB

OWN = "amsterdam"  # the engineer's member
OTHER = "rotterdam"  # a member the engineer does not act for


@dataclass
class Api:
    """A built app, its context, and a bearer header per role."""

    ctx: Context
    app: FastAPI
    client: TestClient
    tokens: dict[str, str]
    scheduler_running: list[bool] = field(default_factory=lambda: [True])

    def headers(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def get(self, path: str, who: str | None = "admin", **kw: Any) -> Any:
        headers = {**(self.headers(who) if who else {}), **kw.pop("headers", {})}
        return self.client.get(path, headers=headers, **kw)

    def token(self, role: Role, members: tuple[str, ...] = (), **kw: Any) -> str:
        store = TokenStore(self.ctx.engine, **kw.pop("store", {}))
        known = [m.slug for m in self.ctx.fleet.members]
        lifetime = kw.pop("lifetime", timedelta(days=1))
        _, secret = store.create(
            role=role, members=members, lifetime=lifetime, created_by="test", known_members=known
        )
        return secret


@functools.cache
def _migrated_template() -> Path:
    """A SQLite store migrated once per test session (removed at exit)."""
    folder = Path(tempfile.mkdtemp(prefix="cp-store-template-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    engine = make_engine(f"sqlite:///{folder / 'controlplane.db'}")
    migrate(engine)
    engine.dispose()
    return folder / "controlplane.db"


def seed_store(data_dir: Path) -> None:
    """Put a copy of the migrated template where a context looks for its SQLite store: the
    context then finds it at the newest migration, instead of migrating a new file for
    each of the many tests that build an app (a tenth of a second each)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_migrated_template(), data_dir / "controlplane.db")


def build_api(
    tmp_path: Path,
    *,
    routers: tuple[APIRouter, ...] = ROUTERS,
    **settings: Any,
) -> Api:
    resolved = Settings(**{"data_dir": tmp_path / "var", "fleet": LAB, **settings})
    if resolved.database_url is None:
        seed_store(resolved.resolved_data_dir)
    ctx = Context(resolved)
    registry = CollectorRegistry()
    Counter("controlplane_test_requests_total", "a sample metric", registry=registry).inc()
    running = [True]

    def readiness() -> Readiness:
        return readiness_check(ctx.engine, lambda: running[0])

    app = create_app(ctx, registry=registry, readiness=readiness, routers=routers)
    api = Api(ctx, app, TestClient(app), {}, running)
    api.tokens = {
        "admin": api.token(Role.ADMIN),
        "engineer": api.token(Role.ENGINEER, (OWN,)),
        "board": api.token(Role.BOARD),
        "metrics": api.token(Role.METRICS),
    }
    return api


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    built = build_api(tmp_path)
    yield built
    built.client.close()
    built.ctx.close()


def api_with(tmp_path: Path, extra: APIRouter, **settings: Any) -> Api:
    """The app with one more (test-only) router."""
    return build_api(tmp_path, routers=(*ROUTERS, extra), **settings)
