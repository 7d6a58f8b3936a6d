"""Every error kind reaches a client as {"error": {"code", "message", "field"}} with its
documented status; oversized and non-UTF-8 requests are refused before anything runs."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated, Any

import pytest
from fastapi import APIRouter, Query
from pydantic import Field

from controlplane.access.policy import Action, Principal
from controlplane.api.auth import requires
from controlplane.api.guard import RequestBody
from controlplane.errors import (
    FleetInvalid,
    Forbidden,
    GateClosed,
    InvalidInput,
    LockHeld,
    MemberNotFound,
    OperationFailed,
    PayloadTooLarge,
    StoreUnavailable,
    Unauthenticated,
    Unreachable,
)
from controlplane.fleet.model import DeployPolicy
from controlplane.windows.decision import Decision, Reason, Verdict
from tests.api_fixtures import Api, api_with

AT = datetime(2026, 12, 28, 9, 0, tzinfo=UTC)
OPENS = datetime(2027, 1, 2, 7, 0, tzinfo=UTC)

REFUSAL = Decision(
    verdict=Verdict.REFUSED,
    reason=Reason.FREEZE,
    message="amsterdam/uitkering: frozen by payment-run until 2027-01-02 08:00 CET",
    at=AT,
    policy=DeployPolicy.AVOID_FREEZES,
    member="amsterdam",
    app="uitkering",
    host=None,
    hosts=("lab-1",),
    freezes=(),
    windows=(),
    next_allowed=OPENS,
    closes_at=None,
)

RAISED: dict[str, Exception] = {
    "invalid": InvalidInput("serial: must be at least 1"),
    "fleet": FleetInvalid("stacks.amsterdam.uitkering.version", "not a version", "stacks.yml"),
    "member": MemberNotFound("unknown member 'gouda'"),
    "gate": GateClosed(REFUSAL.message, REFUSAL),
    "lock": LockHeld("member:amsterdam", "r-123"),
    "forbidden": Forbidden("role board may not runs.write"),
    "unauthenticated": Unauthenticated("unknown, expired or revoked token"),
    "unreachable": Unreachable("host lab-1: connection refused"),
    "store": StoreUnavailable("database postgresql://cp@db/cp: connection refused"),
    "too_large": PayloadTooLarge("body: too large"),
    "failed": OperationFailed("some instances do not answer healthy"),
    "bug": RuntimeError("secret=hunter2 in a local variable"),
}

EXPECTED: dict[str, tuple[int, str, str | None]] = {
    "invalid": (422, "invalid_input", "serial"),
    "fleet": (422, "fleet_invalid", "stacks.amsterdam.uitkering.version"),
    "member": (404, "member_not_found", None),
    "gate": (409, "gate_closed", None),
    "lock": (409, "lock_held", None),
    "forbidden": (403, "forbidden", None),
    "unauthenticated": (401, "unauthenticated", None),
    "unreachable": (503, "unreachable", None),
    "store": (503, "store_unavailable", None),
    "too_large": (413, "payload_too_large", "body"),
    "failed": (500, "operation_failed", None),
    "bug": (500, "internal", None),
}

calls: list[str] = []


class Body(RequestBody):
    serial: int = Field(ge=1)
    version: str = Field(pattern=r"^[0-9]+(\.[0-9]+){0,2}$")


def _router() -> APIRouter:
    router = APIRouter(prefix="/api/v1/test")

    @router.get("/raise/{kind}")
    def raise_(kind: str, _p: Annotated[Principal, requires(Action.FLEET_READ)]) -> dict[str, str]:
        raise RAISED[kind]

    @router.get("/query")
    def query(
        _p: Annotated[Principal, requires(Action.FLEET_READ)],
        limit: Annotated[int, Query(ge=1, le=100)] = 10,
    ) -> dict[str, int]:
        return {"limit": limit}

    @router.post("/write")
    def write(body: Body, _p: Annotated[Principal, requires(Action.RUNS_WRITE)]) -> dict[str, Any]:
        calls.append(body.version)
        return body.model_dump()

    return router


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    app = api_with(tmp_path_factory.mktemp("api"), _router(), max_body_bytes=4096)
    yield app
    app.client.close()
    app.ctx.close()


@pytest.fixture
def api(built: Api) -> Api:
    calls.clear()
    return built


def error_of(response: Any) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}, body
    assert "Traceback" not in response.text
    err: dict[str, Any] = body["error"]
    assert "\n" not in err["message"]
    return err


@pytest.mark.parametrize("kind", sorted(RAISED))
def test_each_error_kind_has_its_status_code_and_field(
    api: Api, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR):
        response = api.get(f"/api/v1/test/raise/{kind}")
    status, code, field = EXPECTED[kind]
    assert response.status_code == status
    err = error_of(response)
    assert err["code"] == code
    assert err.get("field") == field
    if kind == "bug":
        # The client learns nothing of the failure; the log has the whole story.
        assert err["message"] == "internal error; see the service log"
        assert "hunter2" not in response.text
        assert "RuntimeError" in caplog.text
    else:
        assert err["message"] == str(RAISED[kind]).splitlines()[0]


def test_a_gate_refusal_carries_the_decision(api: Api) -> None:
    err = error_of(api.get("/api/v1/test/raise/gate"))
    assert err["gate"]["reason"] == "freeze"
    assert err["gate"]["allowed"] is False
    assert err["gate"]["next_allowed"] == "2027-01-02T07:00:00Z"


def test_unauthenticated_answers_carry_a_bearer_challenge(api: Api) -> None:
    missing = api.get("/api/v1/members", who=None)
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == 'Bearer realm="controlplane"'
    rejected = api.get("/api/v1/members", who=None, headers={"Authorization": "Bearer nope"})
    assert rejected.status_code == 401
    assert 'error="invalid_token"' in rejected.headers["www-authenticate"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"serial": 0, "version": "1.0"}, "serial"),
        ({"serial": "two", "version": "1.0"}, "serial"),
        ({"serial": 1, "version": "1.0;id"}, "version"),
        ({"serial": 1}, "version"),
        ({"serial": 1, "version": "1.0", "emergancy_reason": "typo"}, "emergancy_reason"),
        ([], "body"),
    ],
)
def test_invalid_bodies_are_422_naming_the_field_and_run_nothing(
    api: Api, body: Any, field: str
) -> None:
    response = api.client.post("/api/v1/test/write", json=body, headers=api.headers("admin"))
    assert response.status_code == 422
    err = error_of(response)
    assert (err["code"], err["field"]) == ("invalid_input", field)
    assert err["message"].startswith(f"{field}: ")
    assert calls == []


def test_malformed_json_and_bad_query_parameters_are_422(api: Api) -> None:
    broken = api.client.post(
        "/api/v1/test/write",
        content=b'{"serial": 1,',
        headers={**api.headers("admin"), "Content-Type": "application/json"},
    )
    assert broken.status_code == 422
    assert error_of(broken)["message"].endswith("body is not valid JSON")
    bad = api.get("/api/v1/test/query", params={"limit": "lots"})
    assert bad.status_code == 422
    assert error_of(bad)["field"] == "limit"
    assert api.get("/api/v1/test/query", params={"limit": "5"}).json() == {"limit": 5}
    assert calls == []


def test_unknown_paths_and_methods_answer_in_the_error_format(api: Api) -> None:
    assert error_of(api.get("/api/v1/nothing"))["code"] == "not_found"
    wrong = api.client.delete("/api/v1/members", headers=api.headers("admin"))
    assert wrong.status_code == 405
    assert error_of(wrong)["code"] == "method_not_allowed"


def test_a_body_over_the_limit_is_413_before_parsing(api: Api) -> None:
    huge = b'{"serial": 1, "version": "1.0", "pad": "' + b"x" * 5000 + b'"}'
    declared = api.client.post(
        "/api/v1/test/write",
        content=huge,
        headers={**api.headers("admin"), "Content-Type": "application/json"},
    )
    assert declared.status_code == 413
    err = error_of(declared)
    assert (err["code"], err["field"]) == ("payload_too_large", "body")
    assert "4096 bytes" in err["message"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit applies while reading
        for _ in range(10):
            yield b" " * 1000

    streamed = api.client.post(
        "/api/v1/test/write",
        content=chunks(),
        headers={**api.headers("admin"), "Content-Type": "application/json"},
    )
    assert streamed.status_code == 413
    assert calls == []


def test_non_utf8_bodies_paths_and_queries_are_422(api: Api) -> None:
    latin1 = '{"serial": 1, "version": "1.0", "note": "café"}'.encode("latin-1")
    response = api.client.post(
        "/api/v1/test/write",
        content=latin1,
        headers={**api.headers("admin"), "Content-Type": "application/json"},
    )
    assert response.status_code == 422
    assert error_of(response)["field"] == "body"
    path = api.get("/api/v1/members/caf%E9/stack")
    assert (path.status_code, error_of(path)["field"]) == (422, "path")
    query = api.get("/api/v1/test/query?limit=%FF")
    assert (query.status_code, error_of(query)["field"]) == (422, "query")
    assert calls == []
