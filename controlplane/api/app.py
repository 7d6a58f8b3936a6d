"""The one ASGI app ``controlplane serve`` serves: ``/api/v1``, ``/metrics``, ``/healthz``,
``/readyz``, the OpenAPI document at ``/api/v1/openapi.json``, and the web pages under ``/``
(``controlplane.web``).

A capability's router is a thin file (see ``api/fleet.py``): add it to ``ROUTERS`` and the
authorization test covers its routes without further work.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from fastapi import APIRouter, FastAPI
from prometheus_client import CollectorRegistry

import controlplane
from controlplane.access.policy import Principal
from controlplane.api import errors
from controlplane.api.audit import router as audit_router
from controlplane.api.auth import Authenticator, declare_actions
from controlplane.api.costs import router as costs_router
from controlplane.api.events import router as events_router
from controlplane.api.fleet import router as fleet_router
from controlplane.api.guard import DEFAULT_MAX_BODY_BYTES, RequestGuard
from controlplane.api.notifications import router as notifications_router
from controlplane.api.runs import router as runs_router
from controlplane.api.schedule import router as schedule_router
from controlplane.api.system import Readiness
from controlplane.api.system import router as system_router
from controlplane.api.uptime import router as uptime_router
from controlplane.api.windows import router as windows_router
from controlplane.errors import Unauthenticated
from controlplane.web import mount as mount_web

if TYPE_CHECKING:
    from controlplane.app import Context

OPENAPI_URL = "/api/v1/openapi.json"

# Every capability router under /api/v1; each route in them declares its action.
ROUTERS: tuple[APIRouter, ...] = (
    fleet_router,
    runs_router,
    events_router,
    windows_router,
    schedule_router,
    uptime_router,
    costs_router,
    audit_router,
    notifications_router,
)

DESCRIPTION = """\
The control plane's HTTP API. Authenticate with `Authorization: Bearer <token>` (tokens
come from `controlplane tokens create`). Every error is
`{"error": {"code", "message", "field"}}`; each operation names the action it needs in
`x-required-action`.
"""


class _ContextTokens:
    """The context's token store, asked at each request (the database is opened and
    migrated lazily, so building the app touches nothing)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def authenticate(self, secret: str) -> Principal:
        return self.ctx.tokens.authenticate(secret)


class _NoTokens:
    def authenticate(self, secret: str) -> Principal:
        raise Unauthenticated("this server has no token store")


def _base(max_body_bytes: int) -> FastAPI:
    app = FastAPI(
        title="controlplane",
        version=controlplane.__version__,
        description=DESCRIPTION,
        openapi_url=OPENAPI_URL,
        docs_url="/api/v1/docs",
        redoc_url=None,
    )
    errors.install(app)
    app.add_middleware(RequestGuard, max_body_bytes=max_body_bytes)
    app.include_router(system_router)
    return app


def create_app(
    ctx: Context,
    *,
    registry: CollectorRegistry,
    readiness: Callable[[], Readiness],
    authenticator: Authenticator | None = None,
    routers: Sequence[APIRouter] = ROUTERS,
) -> FastAPI:
    """The API over ``ctx``: tokens are checked against ``ctx``'s database unless another
    ``authenticator`` is given; ``/metrics`` serves ``registry``; ``/readyz`` asks
    ``readiness``."""
    settings = ctx.settings
    app = _base(settings.max_body_bytes)
    app.state.context = ctx
    app.state.registry = registry
    app.state.readiness = readiness
    app.state.metrics_public = settings.metrics_public
    app.state.authenticator = authenticator or _ContextTokens(ctx)
    for router in routers:
        declare_actions(router)
        app.include_router(router)
    # The web pages under / (login, overview, runs, …) over the same operations.
    mount_web(app, ctx)
    return app


def system_app(registry: CollectorRegistry, readiness: Callable[[], Readiness]) -> FastAPI:
    """Only ``/healthz``, ``/readyz`` and an open ``/metrics``: what a service embedded
    without the API (a test, a library user) serves."""
    app = _base(DEFAULT_MAX_BODY_BYTES)
    app.state.registry = registry
    app.state.readiness = readiness
    app.state.metrics_public = True
    app.state.authenticator = _NoTokens()
    return app
