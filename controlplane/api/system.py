"""``/healthz``, ``/readyz`` and ``/metrics``: the routes for machines, outside ``/api/v1``.

``/healthz`` answers while the process serves at all (liveness: restart me when it stops).
``/readyz`` answers 200 only when the database answers, its schema is at the newest
migration and the scheduler runs (readiness: send me work); otherwise 503 with the failing
check named. ``/metrics`` needs a token with the metrics (or admin) role, unless
``metrics_public`` is set.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Annotated, Literal

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from pydantic import BaseModel, Field
from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

from controlplane.access.policy import Action, authorize
from controlplane.api.auth import Credentials, authenticate
from controlplane.api.errors import ERROR_RESPONSES
from controlplane.store.db import MIGRATIONS


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Check(BaseModel):
    name: Literal["database", "migrations", "scheduler"]
    ok: bool
    detail: str = Field(description="one line: what was found")


class Readiness(BaseModel):
    status: Literal["ready", "not_ready"]
    checks: list[Check]

    @staticmethod
    def of(checks: list[Check]) -> Readiness:
        return Readiness(
            status="ready" if all(c.ok for c in checks) else "not_ready", checks=checks
        )


@cache
def head_revision() -> str | None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(cfg).get_current_head()


def store_checks(engine: Engine) -> list[Check]:
    """Is the database reachable (``SELECT 1``), and is its schema at the newest revision?"""
    head = head_revision()
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
            current = MigrationContext.configure(conn).get_current_revision()
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        return [
            Check(name="database", ok=False, detail=f"unreachable: {reason}"),
            Check(name="migrations", ok=False, detail="unknown: the database is unreachable"),
        ]
    return [
        Check(name="database", ok=True, detail="reachable"),
        Check(
            name="migrations",
            ok=current == head,
            detail=f"at {current}" + ("" if current == head else f", newest is {head}"),
        ),
    ]


def readiness_check(engine: Engine, scheduler_running: Callable[[], bool]) -> Readiness:
    """The three checks behind ``/readyz``."""
    running = scheduler_running()
    scheduler = Check(name="scheduler", ok=running, detail="running" if running else "not running")
    return Readiness.of([*store_checks(engine), scheduler])


def metrics_access(request: Request, credentials: Credentials) -> None:
    """Metrics and admin tokens only, unless the operator made ``/metrics`` public."""
    if request.app.state.metrics_public:
        return
    authorize(authenticate(request, credentials), Action.METRICS_READ)


router = APIRouter(tags=["system"])


@router.get("/healthz", response_model=Health, summary="Liveness: the process serves")
async def healthz() -> Health:
    return Health()


@router.get(
    "/readyz",
    response_model=Readiness,
    summary="Readiness: database reachable, migrations current, scheduler running",
    responses={503: {"model": Readiness, "description": "A check failed; it is named"}},
)
def readyz(request: Request) -> JSONResponse:
    readiness: Callable[[], Readiness] = request.app.state.readiness
    result = readiness()
    return JSONResponse(result.model_dump(), status_code=200 if result.status == "ready" else 503)


@router.get(
    "/metrics",
    summary="Prometheus metrics (text exposition format)",
    response_class=Response,
    responses={
        200: {"content": {"text/plain": {"schema": {"type": "string"}}}},
        **{s: ERROR_RESPONSES[s] for s in (401, 403, 503)},
    },
)
def metrics(request: Request, _access: Annotated[None, Depends(metrics_access)]) -> Response:
    registry: CollectorRegistry = request.app.state.registry
    encoder, content_type = choose_encoder(request.headers.get("accept", ""))
    return Response(encoder(registry), media_type=content_type)
