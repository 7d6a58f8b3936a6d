"""The outermost layer of the API: limits on what a request may carry, and the last catch.

Before any route parses anything, a request is refused when

- its body is larger than ``max_body_bytes`` (413; a declared ``Content-Length`` is refused
  without reading the body, a streamed one as soon as it passes the limit), or
- its body, path or query string is not UTF-8 (422 naming ``body``, ``path`` or ``query``).

An exception nothing else handled is logged with its traceback and answered with a JSON
500 that says only that something went wrong: a traceback never reaches a client.
"""

from __future__ import annotations

import logging
from urllib.parse import unquote_to_bytes

from pydantic import BaseModel, ConfigDict
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from controlplane.api.errors import error_response

log = logging.getLogger(__name__)

DEFAULT_MAX_BODY_BYTES = 64 * 1024


class RequestBody(BaseModel):
    """Base of every request body: an unknown member is a 422 naming it, not silently
    dropped (a misspelt ``emergancy_reason`` must not launch a plain deploy)."""

    model_config = ConfigDict(extra="forbid")


class _TooLarge(Exception):
    pass


def _undecodable(scope: Scope) -> str | None:
    """``path`` or ``query`` when that part of the URL, percent-decoded, is not UTF-8."""
    raw_path = scope.get("raw_path") or scope.get("path", "").encode("utf-8", "surrogateescape")
    parts = (("path", raw_path), ("query", scope.get("query_string", b"").replace(b"+", b" ")))
    for name, raw in parts:
        try:
            unquote_to_bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            return name
    return None


class RequestGuard:
    """ASGI middleware: size and encoding limits, and the JSON 500 of last resort."""

    def __init__(self, app: ASGIApp, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        bad_part = _undecodable(scope)
        if bad_part is not None:
            response = error_response(
                422, "invalid_input", f"{bad_part}: is not UTF-8 after percent-decoding", bad_part
            )
            await response(scope, receive, send)
            return
        if self._declared_length(scope) > self.max_body_bytes:
            await self._too_large(scope, receive, send)
            return
        try:
            body = await self._read_body(receive)
        except _TooLarge:
            await self._too_large(scope, receive, send)
            return
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:
            response = error_response(422, "invalid_input", "body: is not UTF-8", "body")
            await response(scope, receive, send)
            return
        await self._call(scope, body, receive, send)

    def _declared_length(self, scope: Scope) -> int:
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    return int(value)
                except ValueError:
                    return 0  # the server itself rejects a malformed length
        return 0

    async def _read_body(self, receive: Receive) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise _TooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = self.max_body_bytes
        response = error_response(
            413, "payload_too_large", f"body: larger than the limit of {limit} bytes", "body"
        )
        await response(scope, receive, send)

    async def _call(self, scope: Scope, body: bytes, receive: Receive, send: Send) -> None:
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        started = False

        async def watch(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, replay, watch)
        except Exception:
            log.exception("%s %s failed", scope.get("method"), scope.get("path"))
            if started:
                raise  # the server can only drop the connection now
            response = error_response(500, "internal", "internal error; see the service log")
            await response(scope, receive, send)
