"""Who is calling, and what each route needs.

A request carries ``Authorization: Bearer <token>``; the app's authenticator (the token
store) turns it into a ``Principal`` or raises ``Unauthenticated`` (unknown, expired or
revoked: 401). Each ``/api/v1`` route declares the ``Action`` it needs with
``requires(Action.X)``; the declaration stays on the route, so a test can walk the route
table and prove that no route was left without one. When the path names a ``{member}``,
``requires`` also applies the member scope: another member's object is a 404, never a 403.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Protocol

from fastapi import Depends, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, APIRouter, iter_route_contexts
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.routing import BaseRoute

from controlplane.access.policy import Action, Principal, authorize
from controlplane.audit.chain import AuditAction
from controlplane.errors import NotFound, Refused, Unauthenticated

if TYPE_CHECKING:
    from controlplane.app import Context


class Authenticator(Protocol):
    """Turns a bearer secret into the caller (``TokenStore`` is the real one)."""

    def authenticate(self, secret: str) -> Principal:
        """The token's holder; ``Unauthenticated`` when unknown, expired or revoked."""
        ...


bearer = HTTPBearer(
    auto_error=False,
    bearerFormat="cpt_…",
    description="An API token from `controlplane tokens create`.",
)

Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


def context(request: Request) -> Context:
    """The service's wiring (settings, fleet, store) for a route to call operations with."""
    ctx: Context = request.app.state.context
    return ctx


def authenticate(request: Request, credentials: HTTPAuthorizationCredentials | None) -> Principal:
    """The caller behind ``credentials``; remembered on the request for the audit and logs."""
    if credentials is None:
        raise Unauthenticated("a bearer token is required (Authorization: Bearer <token>)")
    authenticator: Authenticator = request.app.state.authenticator
    principal = authenticator.authenticate(credentials.credentials)
    request.state.principal = principal
    return principal


def current_principal(request: Request, credentials: Credentials) -> Principal:
    """Dependency: the authenticated caller, whatever the route needs."""
    return authenticate(request, credentials)


class Requires:
    """Dependency that authorizes ``action`` for the caller (and the path's ``{member}``).

    An instance of this class, not a closure, so ``route_action`` can find it again. With
    ``audit``, a refusal is written to the audit log as that action, refused: a write the
    caller may not make never reaches the operation that would otherwise record it."""

    def __init__(self, action: Action, audit: AuditAction | None = None) -> None:
        self.action = action
        self.audit = audit

    def __call__(
        self, request: Request, principal: Annotated[Principal, Depends(current_principal)]
    ) -> Principal:
        raw = request.path_params.get("member")
        member = raw if isinstance(raw, str) else None
        try:
            authorize(principal, self.action, member)
        except (Refused, NotFound) as exc:
            if self.audit is not None:
                target = f"{request.method} {request.url.path}"
                context(request).audit.refused(
                    principal, self.audit, exc, member=member, target=target
                )
            raise
        return principal

    def __repr__(self) -> str:
        return f"requires({self.action.value})"


def requires(action: Action, *, audit: AuditAction | None = None) -> Any:
    """``principal: Annotated[Principal, requires(Action.RUNS_READ)]`` in a route's signature;
    ``audit=AuditAction.DEPLOY`` on writes records refused attempts."""
    return Depends(Requires(action, audit))


def _walk(dependant: Dependant) -> Iterator[Dependant]:
    for sub in dependant.dependencies:
        yield sub
        yield from _walk(sub)


def route_action(route: APIRoute) -> Action | None:
    """The action ``route`` declared with ``requires``; None when it declared none."""
    for dep in _walk(route.dependant):
        if isinstance(dep.call, Requires):
            return dep.call.action
    return None


def api_routes(routes: list[BaseRoute]) -> Iterator[APIRoute]:
    """Every endpoint in ``routes``, also those behind a nested ``include_router``."""
    for context in iter_route_contexts(routes):
        route = context.original_route
        if isinstance(route, APIRoute):
            yield route


@dataclass(frozen=True)
class Endpoint:
    """One served operation: its full path, methods and the action it declared."""

    path: str
    methods: frozenset[str]
    action: Action | None
    route: APIRoute


def endpoints(routes: list[BaseRoute]) -> list[Endpoint]:
    """Every endpoint an app serves (``app.routes``), with its path as served."""
    found: list[Endpoint] = []
    for context in iter_route_contexts(routes):
        route = context.original_route
        if isinstance(route, APIRoute) and context.path is not None:
            methods = frozenset(context.methods or route.methods or ())
            found.append(Endpoint(context.path, methods, route_action(route), route))
    return found


def declare_actions(router: APIRouter) -> None:
    """Check that every route of ``router`` declares its action, and write the action
    into its OpenAPI operation as ``x-required-action``; call before including it."""
    for route in api_routes(router.routes):
        action = route_action(route)
        if action is None:
            raise RuntimeError(f"route {route.path} does not declare its action (requires)")
        route.openapi_extra = {**(route.openapi_extra or {}), "x-required-action": action.value}
