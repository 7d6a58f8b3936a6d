"""The web pages' frame: who is looking (from the session cookie), what they may see, how
a page is rendered, and how errors become pages.

A page is a route on a ``PageRouter``. It takes ``page: Annotated[Page, needs(Action.X)]``
(the signed-in caller, authorized for ``X``), calls the same operations the API calls with
``page.principal``, and returns ``render(page, "web/x.html", {...})``. A form that changes
something takes ``_: CsrfChecked`` as well. Everything the operations raise becomes an
error page with the status the API would answer (another member's object: 404; a role
without the action: 403), and a request without a valid session is sent to the login page.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property, partial
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader, select_autoescape

from controlplane.access.policy import Action, Principal, authorize
from controlplane.access.tokens import TokenStatus
from controlplane.api.errors import status_for, validation_field
from controlplane.clock import utc_now
from controlplane.errors import ControlPlaneError, NotFound
from controlplane.settings import TEMPLATES_DIR
from controlplane.web.session import SESSION_COOKIE, Session, SessionCodec, load_secret

if TYPE_CHECKING:
    from controlplane.app import Context

log = logging.getLogger(__name__)

WEB_TEMPLATES = TEMPLATES_DIR / "web"
STATIC_DIR = WEB_TEMPLATES / "static"
CSRF_FIELD = "csrf_token"

# Pages are per user and may show run logs: never cached, never framed, no foreign scripts.
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; object-src 'none'; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


@dataclass(frozen=True)
class NavItem:
    """A link in the navigation, shown only to roles that may do ``action``."""

    label: str
    href: str
    action: Action


# Every page of the navigation, in order; a page module only has to serve its path.
NAV: tuple[NavItem, ...] = (
    NavItem("Overview", "/", Action.FLEET_READ),
    NavItem("Runs", "/runs", Action.RUNS_READ),
    NavItem("Calendar", "/calendar", Action.WINDOWS_READ),
    NavItem("Uptime", "/uptime", Action.UPTIME_READ),
    NavItem("Costs", "/costs", Action.COSTS_READ),
)


class LoginRequired(Exception):
    """No valid session: the caller is sent to the login page."""


class CsrfRejected(Exception):
    """A form that changes something came without its session's CSRF token."""


class WebState:
    """What the pages share: the session codec (its secret is read on first use, so
    building the app touches nothing) and the template environment."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        env = Environment(
            loader=FileSystemLoader(str(TEMPLATES_DIR)),
            autoescape=select_autoescape(("html", "j2")),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.zone = ZoneInfo(ctx.settings.timezone)
        env.filters["local"] = partial(local_time, zone=self.zone)
        env.filters["ago"] = ago
        self.templates = Jinja2Templates(env=env)

    @cached_property
    def codec(self) -> SessionCodec:
        return SessionCodec(load_secret(self.ctx.data_dir))


def web_state(request: Request) -> WebState:
    state: WebState = request.app.state.web
    return state


def local_time(value: datetime | None, fmt: str = "%Y-%m-%d %H:%M", *, zone: ZoneInfo) -> str:
    """A stored (UTC) time in the configured timezone."""
    if value is None:
        return "—"
    return value.astimezone(zone).strftime(fmt)


def ago(seconds: float) -> str:
    """A duration as people say it: ``3 h 12 min``, ``45 s``."""
    total = max(0, int(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min"
    return f"{secs} s"


@dataclass
class Page:
    """The signed-in caller of a page request."""

    request: Request
    ctx: Context
    principal: Principal
    session: Session

    @property
    def csrf_token(self) -> str:
        return web_state(self.request).codec.csrf(self.session.sid)

    def may(self, action: Action) -> bool:
        return self.principal.may(action)

    def authorize(self, action: Action, member: str | None = None) -> None:
        """The API's rule: a role without ``action`` is refused (403), another member's
        object is not found (404)."""
        authorize(self.principal, action, member)


def session_of(request: Request) -> Session | None:
    """The request's session when its cookie is valid and its token is still active."""
    state = web_state(request)
    session = state.codec.read(request.cookies.get(SESSION_COOKIE))
    if session is None:
        return None
    try:
        record = state.ctx.tokens.get(session.token_id)
    except NotFound:
        return None
    if record.status(utc_now()) is not TokenStatus.ACTIVE:
        return None
    request.state.principal = record.principal()
    request.state.session = session
    return session


def current_page(request: Request) -> Page:
    """Dependency: the signed-in caller; without a valid session, off to the login page."""
    session = session_of(request)
    if session is None:
        raise LoginRequired
    principal: Principal = request.state.principal
    return Page(request, web_state(request).ctx, principal, session)


class Needs:
    """Dependency: the signed-in caller, authorized for ``action`` (and for the path's
    ``{member}``, when it has one)."""

    def __init__(self, action: Action) -> None:
        self.action = action

    def __call__(self, page: Annotated[Page, Depends(current_page)]) -> Page:
        raw = page.request.path_params.get("member")
        page.authorize(self.action, raw if isinstance(raw, str) else None)
        return page

    def __repr__(self) -> str:
        return f"needs({self.action.value})"


def needs(action: Action) -> Any:
    """``page: Annotated[Page, needs(Action.RUNS_READ)]`` in a page's signature."""
    return Depends(Needs(action))


async def check_csrf(page: Annotated[Page, Depends(current_page)]) -> Page:
    """Dependency for every form that changes something: its ``csrf_token`` field must be
    this session's, else the request is refused (403) before anything is done."""
    form = await page.request.form()
    presented = form.get(CSRF_FIELD)
    codec = web_state(page.request).codec
    if not codec.csrf_ok(page.session.sid, presented if isinstance(presented, str) else None):
        raise CsrfRejected
    return page


CsrfChecked = Annotated[Page, Depends(check_csrf)]


def base_context(request: Request) -> dict[str, Any]:
    """What every template may use: the caller (or None), the navigation they may see,
    the CSRF token of their session, the configured zone."""
    state = web_state(request)
    principal: Principal | None = getattr(request.state, "principal", None)
    session: Session | None = getattr(request.state, "session", None)
    nav = [n for n in NAV if principal is not None and principal.may(n.action)]
    return {
        "request": request,
        "principal": principal,
        "nav": nav,
        "csrf_token": state.codec.csrf(session.sid) if session is not None else "",
        "csrf_field": CSRF_FIELD,
        "zone": state.zone,
        "path": request.url.path,
    }


def render(
    page: Page | Request,
    template: str,
    context: Mapping[str, Any] | None = None,
    *,
    status_code: int = 200,
    headers: Mapping[str, str] | None = None,
) -> HTMLResponse:
    """``template`` (a path under ``templates/``, e.g. ``web/runs.html``) with the base
    context, the page's own ``context`` and the security headers."""
    request = page.request if isinstance(page, Page) else page
    values = {**base_context(request), **(context or {})}
    response = web_state(request).templates.TemplateResponse(
        request, template, values, status_code=status_code
    )
    response.headers.update({**SECURITY_HEADERS, **(headers or {})})
    return response


def login_redirect(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    response = RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)
    if SESSION_COOKIE in request.cookies:
        response.delete_cookie(SESSION_COOKIE, path="/")
    return response


TITLES = {403: "Not allowed", 404: "Not found", 422: "Bad input", 409: "Refused"}


def error_page(request: Request, status: int, message: str) -> HTMLResponse:
    title = TITLES.get(status, "Refused" if status < 500 else "Something went wrong")
    return render(
        request,
        "web/error.html",
        {"title": title, "status": status, "message": message},
        status_code=status,
    )


class PageRoute(APIRoute):
    """A page route: errors become HTML pages (not the API's JSON), a missing session a
    redirect to the login page."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def page_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except LoginRequired:
                return login_redirect(request)
            except CsrfRejected:
                return error_page(
                    request,
                    403,
                    "This form has expired or did not come from this site; "
                    "reload the page and try again. Nothing was changed.",
                )
            except RequestValidationError as exc:
                first = (exc.errors() or [{}])[0]
                field = validation_field(tuple(first.get("loc", ())))
                msg = str(first.get("msg", "invalid")).removeprefix("Value error, ")
                return error_page(request, 422, f"{field}: {msg}")
            except ControlPlaneError as exc:
                status = status_for(exc)
                if status >= 500:
                    log.error("%s %s: %s", request.method, request.url.path, exc)
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                return error_page(request, status, first)

        return page_handler


def page_router() -> APIRouter:
    """A router for pages: HTML errors, and kept out of the API's OpenAPI document."""
    return APIRouter(route_class=PageRoute, include_in_schema=False)
