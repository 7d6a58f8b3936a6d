"""The web pages ``controlplane serve`` serves under ``/``, for people without a terminal.

Pages sit on the same operations and access policy as the API: a page calls the operation
with the signed-in caller's ``Principal``. See ``web.framework`` for how a page is written
and ``docs/web.md`` for what the pages show.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import APIRouter, FastAPI
from fastapi.staticfiles import StaticFiles

from controlplane.web.calendar import router as calendar_router
from controlplane.web.costs import router as costs_router
from controlplane.web.framework import STATIC_DIR, WebState
from controlplane.web.login import router as login_router
from controlplane.web.overview import router as overview_router
from controlplane.web.runs import router as runs_router
from controlplane.web.uptime import router as uptime_router

if TYPE_CHECKING:
    from controlplane.app import Context

# Every page router; a new page module adds its router here.
PAGE_ROUTERS: tuple[APIRouter, ...] = (
    login_router,
    overview_router,
    runs_router,
    calendar_router,
    uptime_router,
    costs_router,
)


def mount(app: FastAPI, ctx: Context, routers: tuple[APIRouter, ...] = PAGE_ROUTERS) -> None:
    """Serve the pages and their static files on ``app``."""
    app.state.web = WebState(ctx)
    for router in routers:
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
