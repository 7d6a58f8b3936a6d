"""The API's one error format and the one place that maps the error tree to HTTP statuses.

Every error response is ``{"error": {"code", "message", "field"}}``: ``code`` is a stable
snake_case name (the error class, e.g. ``member_not_found``), ``message`` one line for a
person, ``field`` the parameter or body member at fault when there is one. A refusal by the
windows gate also carries the gate's decision (freeze, windows, next opening) in ``gate``.
No traceback ever reaches a body: an unexpected exception is logged here and answered with a
plain 500.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from controlplane.errors import (
    ControlPlaneError,
    Forbidden,
    GateClosed,
    InvalidInput,
    NotFound,
    OperationFailed,
    PayloadTooLarge,
    Refused,
    Unauthenticated,
    Unreachable,
)

log = logging.getLogger(__name__)

# RFC 6750: a rejected token gets error="invalid_token" added, so a client knows to stop
# retrying the same one rather than to send one at all.
CHALLENGE = 'Bearer realm="controlplane"'


class ErrorDetail(BaseModel):
    code: str = Field(description="stable snake_case name of the error, e.g. member_not_found")
    message: str = Field(description="one line for a person")
    field: str | None = Field(default=None, description="the parameter or body member at fault")
    gate: dict[str, Any] | None = Field(
        default=None,
        description="for gate_closed: the windows gate's decision (reason, freezes, windows, "
        "next_allowed)",
    )


class ErrorResponse(BaseModel):
    error: ErrorDetail


# Most specific first: PayloadTooLarge is an InvalidInput, Unauthenticated and Forbidden are
# Refused, and the first match wins.
STATUSES: tuple[tuple[type[ControlPlaneError], int], ...] = (
    (PayloadTooLarge, 413),
    (InvalidInput, 422),
    (NotFound, 404),
    (Unauthenticated, 401),
    (Forbidden, 403),
    (Refused, 409),
    (Unreachable, 503),
    (OperationFailed, 500),
)

_DESCRIPTIONS = {
    401: "No bearer token, or one that is unknown, expired or revoked",
    403: "The token's role may not do this",
    404: "Unknown id, or an object of a member the token does not act for",
    409: "Refused now: the windows gate or a lock",
    413: "The request body exceeds the size limit",
    422: "Invalid parameter or body; `field` names it",
    503: "A host or the database could not be reached",
}

# Added to every /api/v1 route, so the OpenAPI document promises exactly what is returned.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": text} for status, text in _DESCRIPTIONS.items()
}

_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")
# Core messages start with the parameter they are about ("serial: must be at least 1").
_LEADING_FIELD = re.compile(r"^([A-Za-z_][A-Za-z0-9_.\[\]-]*): ")


def status_for(exc: ControlPlaneError) -> int:
    for kind, status in STATUSES:
        if isinstance(exc, kind):
            return status
    return 500


def code_for(exc: BaseException) -> str:
    return _CAMEL.sub("_", type(exc).__name__).lower()


def field_for(exc: ControlPlaneError) -> str | None:
    named = getattr(exc, "field", None)
    if isinstance(named, str) and named:
        return named
    m = _LEADING_FIELD.match(str(exc))
    return m.group(1) if m else None


def error_response(
    status: int,
    code: str,
    message: str,
    field: str | None = None,
    *,
    gate: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """One error in the one format; ``message`` is cut to its first line."""
    first = (message.strip().splitlines() or [code])[0]
    body = ErrorResponse(error=ErrorDetail(code=code, message=first, field=field, gate=gate))
    return JSONResponse(
        body.model_dump(exclude_none=True), status_code=status, headers=headers or None
    )


def _gate_of(exc: ControlPlaneError) -> dict[str, Any] | None:
    if not isinstance(exc, GateClosed) or exc.decision is None:
        return None
    to_json = getattr(exc.decision, "to_json", None)
    return to_json() if callable(to_json) else None


async def _control_plane_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ControlPlaneError)
    status = status_for(exc)
    if status == 500:
        # Deliberate, but still something an operator should see in the service log.
        log.error("%s %s: %s", request.method, request.url.path, exc)
    headers = None
    if isinstance(exc, Unauthenticated):
        sent = "authorization" in request.headers
        headers = {"WWW-Authenticate": CHALLENGE + (', error="invalid_token"' if sent else "")}
    return error_response(
        status, code_for(exc), str(exc), field_for(exc), gate=_gate_of(exc), headers=headers
    )


def validation_field(loc: tuple[Any, ...] | list[Any]) -> str:
    """``("body", "serial")`` → ``serial``; ``("query", "limit")`` → ``limit``."""
    parts = [str(p) for p in loc]
    if len(parts) > 1 and parts[0] in ("body", "query", "path", "header", "cookie"):
        parts = parts[1:]
    return ".".join(parts) or "body"


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    if not errors:
        return error_response(422, "invalid_input", "invalid request", "body")
    first = errors[0]
    field = validation_field(tuple(first.get("loc", ())))
    msg = str(first.get("msg", "invalid")).removeprefix("Value error, ")
    if first.get("type") == "json_invalid":
        msg = "body is not valid JSON"
    return error_response(422, "invalid_input", f"{field}: {msg}", field)


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    code = _HTTP_CODES.get(status, "http_error")
    if status == 400:
        # Starlette's "error parsing the body" is bad input like any other.
        status, code = 422, "invalid_input"
    message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
    if status == 404 and message == "Not Found":
        message = "no such path"
    return error_response(status, code, message, headers=dict(exc.headers or {}) or None)


def install(app: FastAPI) -> None:
    """Register the handlers that turn every raised error into the one format."""
    app.add_exception_handler(ControlPlaneError, _control_plane_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
