"""Tokens at the API edge (401 for missing, unknown, expired and revoked ones), who may
read /metrics, what /readyz checks, and the audit entry a refused write leaves."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import pytest
from alembic import command
from fastapi import APIRouter
from sqlalchemy import create_engine

from controlplane.access.policy import Action, Principal, Role
from controlplane.access.store import TokenStore
from controlplane.api.auth import requires
from controlplane.api.system import readiness_check
from controlplane.audit.chain import AuditAction
from controlplane.audit.store import AuditLog
from controlplane.clock import utc_now
from controlplane.store.db import alembic_config
from tests.api_fixtures import OTHER, OWN, Api, api_with, build_api

REJECTED = "unknown, expired or revoked token"


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    built = build_api(tmp_path_factory.mktemp("access"))
    yield built
    built.client.close()
    built.ctx.close()


def test_missing_malformed_unknown_expired_and_revoked_tokens_are_401(shared: Api) -> None:
    api = shared
    expired = api.token(
        Role.ADMIN,
        lifetime=timedelta(hours=1),
        store={"clock": lambda: utc_now() - timedelta(hours=2)},
    )
    revoked = api.token(Role.ADMIN)
    TokenStore(api.ctx.engine).revoke(revoked)
    valid = api.tokens["admin"]
    unknown = valid[:-4] + ("AAAA" if not valid.endswith("AAAA") else "BBBB")
    cases = {
        "missing": {},
        "not bearer": {"Authorization": f"Basic {valid}"},
        "garbage": {"Authorization": "Bearer not-a-token"},
        "unknown": {"Authorization": f"Bearer {unknown}"},
        "expired": {"Authorization": f"Bearer {expired}"},
        "revoked": {"Authorization": f"Bearer {revoked}"},
    }
    for case, headers in cases.items():
        response = api.client.get("/api/v1/members", headers=headers)
        assert response.status_code == 401, case
        assert response.json()["error"]["code"] == "unauthenticated", case
        assert response.headers["www-authenticate"].startswith("Bearer"), case
        if case in ("garbage", "unknown", "expired", "revoked"):
            # One answer for every rejected token: nothing to learn by probing.
            assert response.json()["error"]["message"] == REJECTED, case
    assert api.get("/api/v1/members").status_code == 200


def test_metrics_need_a_metrics_or_admin_token(shared: Api) -> None:
    api = shared
    for who in ("metrics", "admin"):
        response = api.get("/metrics", who)
        assert response.status_code == 200, who
        assert response.headers["content-type"].startswith("text/plain")
        assert "controlplane_test_requests_total 1.0" in response.text
    for who in ("engineer", "board"):
        assert api.get("/metrics", who).status_code == 403, who
    assert api.get("/metrics", None).status_code == 401
    assert api.get("/metrics", None, headers={"Authorization": "Bearer x"}).status_code == 401


def test_metrics_public_serves_metrics_without_a_token(tmp_path: Path) -> None:
    api = build_api(tmp_path, metrics_public=True)
    try:
        assert api.get("/metrics", None).status_code == 200
        # Only /metrics is opened; the API still wants a token.
        assert api.get("/api/v1/members", None).status_code == 401
    finally:
        api.ctx.close()


def test_readyz_checks_database_migrations_and_scheduler(tmp_path: Path) -> None:
    api = build_api(tmp_path)
    try:
        assert api.get("/healthz", None).json() == {"status": "ok"}
        ready = api.get("/readyz", None)
        assert ready.status_code == 200
        assert ready.json()["status"] == "ready"
        assert {c["name"] for c in ready.json()["checks"]} == {
            "database",
            "migrations",
            "scheduler",
        }

        api.scheduler_running[0] = False
        stopped = api.get("/readyz", None)
        assert stopped.status_code == 503
        failing = {c["name"] for c in stopped.json()["checks"] if not c["ok"]}
        assert failing == {"scheduler"}
        api.scheduler_running[0] = True

        command.downgrade(alembic_config(api.ctx.engine), "0002")
        behind = api.get("/readyz", None)
        assert behind.status_code == 503
        [migrations] = [c for c in behind.json()["checks"] if c["name"] == "migrations"]
        assert not migrations["ok"] and migrations["detail"].startswith("at 0002, newest is ")
        # /healthz is liveness only: a stale schema is not a reason to restart the process.
        assert api.get("/healthz", None).status_code == 200
    finally:
        api.ctx.close()


def test_an_unreachable_database_is_not_ready(tmp_path: Path) -> None:
    gone = create_engine(f"sqlite:///{tmp_path / 'no' / 'such' / 'dir' / 'cp.db'}")
    result = readiness_check(gone, lambda: True)
    assert result.status == "not_ready"
    by_name = {c.name: c for c in result.checks}
    assert not by_name["database"].ok and by_name["database"].detail.startswith("unreachable: ")
    assert not by_name["migrations"].ok


def _write_router() -> APIRouter:
    router = APIRouter(prefix="/api/v1/test")

    @router.post("/members/{member}/deploy")
    def deploy(
        member: str,
        _p: Annotated[Principal, requires(Action.RUNS_WRITE, audit=AuditAction.DEPLOY)],
    ) -> dict[str, str]:
        return {"member": member}

    return router


def test_a_refused_write_is_audited(tmp_path: Path) -> None:
    api = api_with(tmp_path, _write_router())
    try:
        audit = AuditLog(api.ctx.engine)
        assert (
            api.client.post(
                f"/api/v1/test/members/{OWN}/deploy", headers=api.headers("board")
            ).status_code
            == 403
        )
        assert (
            api.client.post(
                f"/api/v1/test/members/{OTHER}/deploy", headers=api.headers("engineer")
            ).status_code
            == 404
        )
        assert (
            api.client.post(
                f"/api/v1/test/members/{OWN}/deploy", headers=api.headers("engineer")
            ).status_code
            == 200
        )
        entries = audit.entries()
        assert [(e.role, e.action, e.outcome, e.member) for e in entries] == [
            ("board", "deploy", "refused", OWN),
            ("engineer", "deploy", "refused", OTHER),
        ]
        assert entries[0].detail["refused"] == "role board may not runs.write"
        assert entries[1].target == f"POST /api/v1/test/members/{OTHER}/deploy"
        assert audit.verify().ok
    finally:
        api.ctx.close()
