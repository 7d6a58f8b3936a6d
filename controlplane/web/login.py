"""``/login`` and ``/logout``: a session from an API token, and its end.

The login form takes the same tokens as the API. A good token opens a session (see
``web.session``), is audited as ``login`` and goes on to where the caller was headed (the
board, headed nowhere in particular, to the costs page). A bad one is answered with the
form again, one message for every way a token fails, and only logged (an unauthenticated
form must not be able to grow the audit chain). Logout is a form post with the session's
CSRF token, audited as ``logout``.
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from controlplane.access.policy import Role
from controlplane.audit.chain import AuditAction
from controlplane.errors import Unauthenticated
from controlplane.web.framework import (
    CSRF_FIELD,
    CsrfChecked,
    page_router,
    render,
    session_of,
    web_state,
)
from controlplane.web.session import (
    LOGIN_COOKIE,
    LOGIN_LIFETIME,
    SESSION_COOKIE,
    new_login_nonce,
    safe_next,
    valid_nonce,
)

log = logging.getLogger(__name__)

router = page_router()

MAX_TOKEN_LENGTH = 200
BOARD_LANDING = "/costs"


def _secure(request: Request) -> bool:
    """Cookies are Secure when the page was asked for over HTTPS (directly or, behind a
    proxy that says so, ``X-Forwarded-Proto``)."""
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return request.url.scheme == "https" or forwarded == "https"


def _login_form(
    request: Request, next_path: str, *, error: str = "", status_code: int = 200
) -> HTMLResponse:
    nonce = valid_nonce(request.cookies.get(LOGIN_COOKIE)) or new_login_nonce()
    response = render(
        request,
        "web/login.html",
        {
            "title": "Sign in",
            "next": next_path,
            "login_csrf": web_state(request).codec.csrf(nonce),
            "error": error,
        },
        status_code=status_code,
    )
    response.set_cookie(
        LOGIN_COOKIE,
        nonce,
        max_age=int(LOGIN_LIFETIME.total_seconds()),
        path="/login",
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )
    return response


@router.get("/login")
def login_form(
    request: Request, next: Annotated[str | None, Query(max_length=2000)] = None
) -> Response:
    target = safe_next(next)
    if session_of(request) is not None:
        return RedirectResponse(target, status_code=303)
    return _login_form(request, target)


@router.post("/login")
def login(
    request: Request,
    token: Annotated[str, Form(max_length=MAX_TOKEN_LENGTH)] = "",
    csrf_token: Annotated[str, Form(alias=CSRF_FIELD, max_length=200)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/",
) -> Response:
    state = web_state(request)
    target = safe_next(next)
    nonce = valid_nonce(request.cookies.get(LOGIN_COOKIE))
    if not state.codec.csrf_ok(nonce, csrf_token):
        return _login_form(
            request,
            target,
            error="The sign-in form expired or came from elsewhere; please try again.",
            status_code=403,
        )
    try:
        principal = state.ctx.tokens.authenticate(token)
    except Unauthenticated as exc:
        client = request.client.host if request.client else "?"
        log.warning("web login refused from %s: %s", client, exc)
        return _login_form(request, target, error=f"Sign-in failed: {exc}.", status_code=401)
    assert principal.token_id is not None  # a token's principal always names its token
    if target == "/" and principal.role is Role.BOARD:
        target = BOARD_LANDING  # the board comes for the money, not the machines
    issued = int(state.ctx.tokens.clock().timestamp())
    value, _session = state.codec.issue(principal.token_id, issued)
    state.ctx.audit.record(principal, AuditAction.LOGIN, target="web", detail={"via": "web"})
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        value,
        max_age=int(state.codec.lifetime.total_seconds()),
        path="/",
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )
    response.delete_cookie(LOGIN_COOKIE, path="/login")
    return response


@router.post("/logout")
def logout(page: CsrfChecked) -> Response:
    page.ctx.audit.record(page.principal, AuditAction.LOGOUT, target="web", detail={"via": "web"})
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(
        SESSION_COOKIE, path="/", httponly=True, samesite="strict", secure=_secure(page.request)
    )
    return response
