"""The HTTP client of the remote CLI on its own: error answers become the error tree's
errors (and so the CLI's exit codes), and server-sent events are read as sent."""

from __future__ import annotations

import httpx
import pytest

from controlplane.cli import exit_code_for
from controlplane.client import error_for, exposes_token, parse_sse
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


@pytest.mark.parametrize(
    ("status", "body", "kind", "code"),
    [
        (
            401,
            {"code": "unauthenticated", "message": "unknown, expired or revoked token"},
            Unauthenticated,
            3,
        ),
        (403, {"code": "forbidden", "message": "board may not runs.write"}, Forbidden, 3),
        (404, {"code": "member_not_found", "message": "unknown member 'x'"}, NotFound, 2),
        (409, {"code": "lock_held", "message": "stack:a/b is locked"}, Refused, 3),
        (413, {"code": "payload_too_large", "message": "body: too large"}, PayloadTooLarge, 2),
        (422, {"code": "invalid_input", "message": "serial: must be at least 1"}, InvalidInput, 2),
        (503, {"code": "store_unavailable", "message": "database down"}, Unreachable, 4),
        (500, {"code": "internal", "message": "internal error"}, OperationFailed, 1),
    ],
)
def test_error_answers_become_the_matching_error(
    status: int, body: dict[str, str], kind: type[ControlPlaneError], code: int
) -> None:
    error = error_for(httpx.Response(status, json={"error": body}))
    assert isinstance(error, kind)
    assert body["message"] in str(error)
    assert exit_code_for(error) == code


def test_a_gate_refusal_carries_the_gates_whole_message() -> None:
    gate = {"reason": "freeze", "message": "refused: freeze payment-run-amsterdam\nuntil Monday"}
    answer = {"code": "gate_closed", "message": "refused: freeze payment-run-amsterdam"}
    error = error_for(httpx.Response(409, json={"error": {**answer, "gate": gate}}))
    assert isinstance(error, GateClosed)
    assert str(error) == gate["message"]
    # A proxy's HTML page is not our error format: still the right class, a plain message.
    proxy = error_for(httpx.Response(502, text="<html>Bad Gateway</html>"))
    assert isinstance(proxy, Unreachable) and "HTTP 502" in str(proxy)


def test_server_sent_events_are_parsed_with_comments_and_multiline_data() -> None:
    lines = [
        ": ping",
        "id: 4",
        "event: runner_on_ok",
        'data: {"a":',
        "data: 1}",
        "",
        "event: end",
        "data: {}",
        "",
    ]
    assert list(parse_sse(iter(lines))) == [
        ("runner_on_ok", "4", '{"a":\n1}'),
        ("end", None, "{}"),
    ]


@pytest.mark.parametrize(
    ("url", "exposed"),
    [
        ("http://127.0.0.1:9480", False),
        ("http://localhost:9480", False),
        ("http://[::1]:9480", False),
        ("https://cp.example.org", False),
        ("http://cp.example.org:9480", True),
        ("http://10.1.2.3:9480", True),
    ],
)
def test_a_token_over_plain_http_beyond_loopback_is_flagged(url: str, exposed: bool) -> None:
    assert exposes_token(url) is exposed
